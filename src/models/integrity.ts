/** File hashing and the lock file (`.stt-model.json`) written into every installed model folder. */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';

export const LOCK_FILE = '.stt-model.json';

/** Feeds bytes [0, end) of a file (all of it when end is undefined) into a hash. */
export async function hashFileInto(h: Hash, path: string, end?: number): Promise<void> {
  if (end === 0) return;
  const stream = createReadStream(path, end === undefined ? {} : { start: 0, end: end - 1 });
  for await (const chunk of stream) h.update(chunk as Buffer);
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await hashFileInto(h, path);
  return h.digest('hex');
}

/** Git's blob id: sha1("blob <size>\0" + content). The hub's ETag of a file not stored in LFS. */
export async function gitBlobSha1File(path: string): Promise<string> {
  const { size } = await stat(path);
  const h = createHash('sha1');
  h.update(`blob ${size}\0`);
  await hashFileInto(h, path);
  return h.digest('hex');
}

/**
 * How a file's integrity was established at install time:
 * - `manifest`: sha256 from models/manifest.json (and the hub's, where it sent one, also matched);
 * - `hub-sha256`: the hub's LFS sha256 (X-Linked-Etag / ETag), manifest had none;
 * - `hub-git-sha1`: the hub's git blob id (ETag of a non-LFS file), manifest had none;
 * - `unverified`: no reference checksum anywhere; installed only with `allowUnverified`.
 */
export const VERIFIED_AGAINST = ['manifest', 'hub-sha256', 'hub-git-sha1', 'unverified'] as const;
export type VerifiedAgainst = (typeof VERIFIED_AGAINST)[number];

export const LockFileSchema = z.object({
  version: z.literal(1),
  id: z.string(),
  repo: z.string(),
  revision: z.string(),
  /** Commit the hub resolved the revision to (X-Repo-Commit), when it said. */
  commit: z.string().nullable(),
  endpoint: z.string(),
  variant: z.string(),
  installedAt: z.string(),
  files: z.record(z.string(), z.object({ size: z.number().int().nonnegative(), sha256: z.string(), verifiedAgainst: z.enum(VERIFIED_AGAINST) })),
  /** Optional manifest files the hub did not have (404). */
  absent: z.array(z.string()).default([]),
});
export type LockFile = z.infer<typeof LockFileSchema>;

/** Reads `<dir>/.stt-model.json`; null when absent or unreadable. */
export async function readLockFile(dir: string): Promise<LockFile | null> {
  try {
    const r = LockFileSchema.safeParse(JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8')));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}
