/** Accounts, plans, credits and API keys (hashes only: raw keys never reach the database). */
import { randomUUID } from 'node:crypto';
import type { Queryable } from './database.ts';
import { DomainError } from '../errors.ts';
import { isUuid } from './ids.ts';

export type Plan = 'free' | 'paid';
export const PLANS: readonly Plan[] = ['free', 'paid'];

export interface Account {
  id: string;
  email: string;
  name: string;
  plan: Plan;
  credits: number;
  emailPreferences: Record<string, unknown>;
  createdAt: Date;
  updatedAt: Date;
}

export interface ApiKeyRecord {
  id: string;
  accountId: string;
  name: string;
  /** Non-secret start of the key (`stt_` + first characters), to recognise it in lists. */
  prefix: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

/** A key candidate for verification: the caller compares hashes in constant time. */
export interface KeyCandidate {
  keyId: string;
  keyHash: string;
  account: Account;
}

/**
 * The email belongs to another account. Its message goes to API clients ('conflict', 409), so it neither names
 * the address nor says that an account has it: account routes must not help enumerate accounts.
 * Operator tools may read `email`.
 */
export class DuplicateEmailError extends DomainError {
  constructor(readonly email: string) {
    super('conflict', 'This email address cannot be used for this account; choose another one.');
    this.name = 'DuplicateEmailError';
  }
}

interface AccountRow {
  id: string;
  email: string;
  name: string;
  plan: Plan;
  credits: number;
  email_preferences: Record<string, unknown>;
  created_at: Date;
  updated_at: Date;
}

const ACCOUNT_COLUMNS = 'id, email, name, plan, credits, email_preferences, created_at, updated_at';

function toAccount(r: AccountRow): Account {
  return {
    id: r.id,
    email: r.email,
    name: r.name,
    plan: r.plan,
    credits: Number(r.credits),
    emailPreferences: r.email_preferences ?? {},
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
  };
}

function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: string } | null)?.code === '23505';
}

export class AccountStore {
  constructor(
    private readonly db: Queryable,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async create(input: { email: string; plan: Plan; credits?: number; name?: string }): Promise<Account> {
    const t = this.now();
    try {
      const rows = await this.db.query<AccountRow>(
        `INSERT INTO accounts (id, email, name, plan, credits, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING ${ACCOUNT_COLUMNS}`,
        [randomUUID(), input.email.trim(), input.name ?? '', input.plan, input.credits ?? 0, t],
      );
      return toAccount(rows[0]);
    } catch (err) {
      if (isUniqueViolation(err)) throw new DuplicateEmailError(input.email);
      throw err;
    }
  }

  async get(id: string): Promise<Account | null> {
    if (!isUuid(id)) return null;
    const rows = await this.db.query<AccountRow>(`SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE id = $1`, [id]);
    return rows[0] ? toAccount(rows[0]) : null;
  }

  async findByEmail(email: string): Promise<Account | null> {
    const rows = await this.db.query<AccountRow>(`SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE lower(email) = lower($1)`, [email.trim()]);
    return rows[0] ? toAccount(rows[0]) : null;
  }

  async list(): Promise<Account[]> {
    const rows = await this.db.query<AccountRow>(`SELECT ${ACCOUNT_COLUMNS} FROM accounts ORDER BY created_at, email`);
    return rows.map(toAccount);
  }

  /** Updates the user-editable fields; null when the account does not exist. */
  async update(id: string, patch: { email?: string; name?: string; emailPreferences?: Record<string, unknown> }): Promise<Account | null> {
    if (!isUuid(id)) return null;
    try {
      const rows = await this.db.query<AccountRow>(
        `UPDATE accounts SET
           email = COALESCE($2, email),
           name = COALESCE($3, name),
           email_preferences = CASE WHEN $4::jsonb IS NULL THEN email_preferences ELSE email_preferences || $4::jsonb END,
           updated_at = $5
         WHERE id = $1 RETURNING ${ACCOUNT_COLUMNS}`,
        [id, patch.email?.trim() ?? null, patch.name ?? null, patch.emailPreferences ? JSON.stringify(patch.emailPreferences) : null, this.now()],
      );
      return rows[0] ? toAccount(rows[0]) : null;
    } catch (err) {
      if (isUniqueViolation(err) && patch.email) throw new DuplicateEmailError(patch.email);
      throw err;
    }
  }

  async setPlan(id: string, plan: Plan): Promise<Account | null> {
    if (!isUuid(id)) return null;
    const rows = await this.db.query<AccountRow>(`UPDATE accounts SET plan = $2, updated_at = $3 WHERE id = $1 RETURNING ${ACCOUNT_COLUMNS}`, [id, plan, this.now()]);
    return rows[0] ? toAccount(rows[0]) : null;
  }

  /** Adds (or, with a negative amount, removes) credits; never below zero. Null when the account does not exist. */
  async addCredits(id: string, amount: number): Promise<Account | null> {
    if (!isUuid(id)) return null;
    if (!Number.isInteger(amount)) throw new Error('credits must be an integer');
    const rows = await this.db.query<AccountRow>(`UPDATE accounts SET credits = GREATEST(0, credits + $2), updated_at = $3 WHERE id = $1 RETURNING ${ACCOUNT_COLUMNS}`, [id, amount, this.now()]);
    return rows[0] ? toAccount(rows[0]) : null;
  }

  async delete(id: string): Promise<boolean> {
    if (!isUuid(id)) return false;
    const rows = await this.db.query(`DELETE FROM accounts WHERE id = $1 RETURNING id`, [id]);
    return rows.length > 0;
  }

  // ---- API keys -------------------------------------------------------------------------------

  async insertKey(input: { accountId: string; name: string; lookup: string; keyHash: string }): Promise<ApiKeyRecord> {
    const rows = await this.db.query<KeyRow>(
      `INSERT INTO api_keys (id, account_id, name, lookup, key_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)
       RETURNING ${KEY_COLUMNS}`,
      [randomUUID(), input.accountId, input.name, input.lookup, input.keyHash, this.now()],
    );
    return toKey(rows[0]);
  }

  async listKeys(accountId: string): Promise<ApiKeyRecord[]> {
    if (!isUuid(accountId)) return [];
    const rows = await this.db.query<KeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY created_at, id`, [accountId]);
    return rows.map(toKey);
  }

  /** One key by id (revoked ones too); null when it does not exist (deleted with its account). */
  async getKey(keyId: string): Promise<ApiKeyRecord | null> {
    if (!isUuid(keyId)) return null;
    const rows = await this.db.query<KeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys WHERE id = $1`, [keyId]);
    return rows[0] ? toKey(rows[0]) : null;
  }

  /** Revokes one of the account's keys; false when it is not the account's (or does not exist). */
  async revokeKey(accountId: string, keyId: string): Promise<boolean> {
    if (!isUuid(accountId) || !isUuid(keyId)) return false;
    const rows = await this.db.query(`UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) WHERE id = $1 AND account_id = $2 RETURNING id`, [keyId, accountId, this.now()]);
    return rows.length > 0;
  }

  /** Live (not revoked) keys whose lookup matches, with their accounts. */
  async keyCandidates(lookup: string): Promise<KeyCandidate[]> {
    const rows = await this.db.query<AccountRow & { key_id: string; key_hash: string }>(
      `SELECT k.id AS key_id, k.key_hash, a.id, a.email, a.name, a.plan, a.credits, a.email_preferences, a.created_at, a.updated_at
         FROM api_keys k JOIN accounts a ON a.id = k.account_id
        WHERE k.lookup = $1 AND k.revoked_at IS NULL`,
      [lookup],
    );
    return rows.map((r) => ({ keyId: r.key_id, keyHash: r.key_hash, account: toAccount(r) }));
  }

  /** Records use of a key (at most once a minute per key, to keep writes cheap). */
  async touchKey(keyId: string): Promise<void> {
    const t = this.now();
    await this.db.query(`UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)`, [keyId, t, new Date(t.getTime() - 60_000)]);
  }
}

interface KeyRow {
  id: string;
  account_id: string;
  name: string;
  lookup: string;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

const KEY_COLUMNS = 'id, account_id, name, lookup, created_at, last_used_at, revoked_at';

function toKey(r: KeyRow): ApiKeyRecord {
  return {
    id: r.id,
    accountId: r.account_id,
    name: r.name,
    prefix: `stt_${r.lookup}`,
    createdAt: new Date(r.created_at),
    lastUsedAt: r.last_used_at ? new Date(r.last_used_at) : null,
    revokedAt: r.revoked_at ? new Date(r.revoked_at) : null,
  };
}
