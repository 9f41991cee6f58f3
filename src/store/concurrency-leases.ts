/**
 * Concurrency leases (migrations/0003_concurrency_leases.up.sql): the SQL behind concurrency slots
 * shared by every server on one database (src/auth/concurrency-slots.ts decides when to call it).
 *
 * acquire: one transaction that takes pg_advisory_xact_lock(LEASE_LOCK_NAMESPACE, hashtext(key)),
 * deletes the key's expired leases, counts the live ones and inserts a new lease when fewer than
 * `limit` are live. The lock serialises acquirers of one key on every server (released at commit),
 * so the count and the insert cannot interleave with another server's. Expiry uses the database's
 * clock (clock_timestamp()), never the servers', so clock skew between servers does not matter.
 */
import { randomUUID } from 'node:crypto';
import type { Executor, Queryable } from './database.ts';

/** First key of the two-int advisory lock: keeps lease locks apart from the migration lock (single bigint key). */
export const LEASE_LOCK_NAMESPACE = 640_611_007;

type Tx = <T>(fn: (tx: Executor) => Promise<T>) => Promise<T>;

export interface LeaseDatabase extends Queryable {
  transaction: Tx;
}

export class ConcurrencyLeaseStore {
  constructor(private readonly db: LeaseDatabase) {}

  /**
   * Inserts a lease of `key` valid for `ttlS` seconds if fewer than `limit` unexpired leases of the
   * key exist; returns its id, or null when the key is full. Atomic across servers.
   */
  async acquire(key: string, limit: number, ttlS: number, holder: string): Promise<string | null> {
    if (!(limit >= 1)) return null;
    return this.db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LEASE_LOCK_NAMESPACE, key]);
      await tx.query('DELETE FROM concurrency_leases WHERE key = $1 AND expires_at <= clock_timestamp()', [key]);
      const [{ n }] = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM concurrency_leases WHERE key = $1', [key]);
      if (n >= limit) return null;
      const id = randomUUID();
      await tx.query(
        `INSERT INTO concurrency_leases (id, key, holder, acquired_at, expires_at)
         VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp() + $4::double precision * interval '1 second')`,
        [id, key, holder, ttlS],
      );
      return id;
    });
  }

  /** Extends the given leases to `ttlS` seconds from now; returns the ids that still existed (a missing one was lost). */
  async renew(ids: string[], ttlS: number): Promise<string[]> {
    if (ids.length === 0) return [];
    const rows = await this.db.query<{ id: string }>(
      `UPDATE concurrency_leases SET expires_at = clock_timestamp() + $2::double precision * interval '1 second'
       WHERE id = ANY($1::uuid[]) RETURNING id`,
      [ids, ttlS],
    );
    return rows.map((r) => r.id);
  }

  /** Deletes leases (idempotent). */
  async release(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.db.query('DELETE FROM concurrency_leases WHERE id = ANY($1::uuid[])', [ids]);
  }

  /** Deletes every expired lease (of any key, any server); returns how many. */
  async purgeExpired(): Promise<number> {
    const rows = await this.db.query<{ id: string }>('DELETE FROM concurrency_leases WHERE expires_at <= clock_timestamp() RETURNING id');
    return rows.length;
  }

  /** Unexpired leases of `key` (all servers). */
  async live(key: string): Promise<number> {
    const [{ n }] = await this.db.query<{ n: number }>('SELECT count(*)::int AS n FROM concurrency_leases WHERE key = $1 AND expires_at > clock_timestamp()', [key]);
    return n;
  }
}
