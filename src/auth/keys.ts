/**
 * API keys: `stt_` + 43 base64url characters (256 random bits). Only sha256(key) is stored; the
 * first 8 random characters (`lookup`, also the displayed prefix) find the candidate rows, whose
 * hashes are then compared in constant time. The raw key is returned once, at creation.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Account, AccountStore, ApiKeyRecord } from '../store/accounts.ts';

export const KEY_PREFIX = 'stt_';
const KEY_PATTERN = /^stt_[A-Za-z0-9_-]{43}$/;
const LOOKUP_CHARS = 8;

export function generateKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url');
}

export function hashKey(raw: string): string {
  return createHash('sha256').update(raw, 'utf8').digest('hex');
}

export function isWellFormedKey(raw: string): boolean {
  return KEY_PATTERN.test(raw);
}

export function keyLookup(raw: string): string {
  return raw.slice(KEY_PREFIX.length, KEY_PREFIX.length + LOOKUP_CHARS);
}

/** Creates a key for the account; the raw key is in the result and nowhere else. */
export async function issueKey(accounts: AccountStore, accountId: string, name = ''): Promise<{ key: string; record: ApiKeyRecord }> {
  const key = generateKey();
  const record = await accounts.insertKey({ accountId, name, lookup: keyLookup(key), keyHash: hashKey(key) });
  return { key, record };
}

/** The account of a live key, or null (unknown, malformed or revoked). */
export async function verifyKey(accounts: AccountStore, raw: string): Promise<{ account: Account; keyId: string } | null> {
  if (!isWellFormedKey(raw)) return null;
  const digest = Buffer.from(hashKey(raw), 'hex');
  let found: { account: Account; keyId: string } | null = null;
  for (const c of await accounts.keyCandidates(keyLookup(raw))) {
    const stored = Buffer.from(c.keyHash, 'hex');
    // Compare every candidate (there is almost always exactly one) without an early exit.
    if (stored.length === digest.length && timingSafeEqual(stored, digest)) found = { account: c.account, keyId: c.keyId };
  }
  return found;
}

/** The token of an `Authorization: Bearer <token>` header; undefined when absent, null when malformed. */
export function bearerToken(header: string | undefined): string | undefined | null {
  if (header === undefined || header.trim() === '') return undefined;
  const m = /^Bearer[ \t]+(\S+)\s*$/i.exec(header.trim());
  return m ? m[1] : null;
}
