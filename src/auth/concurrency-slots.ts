/**
 * Concurrency slots: how many requests of one account (or anonymous client address) run at once.
 *
 * Two implementations of one interface:
 *   - InProcessConcurrencySlots: counters in this process. Right when only one server uses the
 *     database: the embedded PGlite can only be opened by one process anyway.
 *   - SqlConcurrencySlots: leases in the `concurrency_leases` table (src/store/concurrency-leases.ts),
 *     shared by every server on one PostgreSQL. A lease expires `ttlS` seconds after its last
 *     renewal; a heartbeat (every ttlS/3, unref'd timer, running only while leases are held) renews
 *     this server's leases and purges expired rows, so the slots of a server that crashed or lost
 *     the database free themselves after at most ttlS seconds.
 *
 * `createConcurrencySlots(db, …)` picks SQL for PostgreSQL and in-process for PGlite.
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { Logger } from 'pino';
import { ConcurrencyLeaseStore, type LeaseDatabase } from '../store/concurrency-leases.ts';
import { LeaseHeartbeat } from './lease-heartbeat.ts';

export interface SlotLease {
  readonly key: string;
  readonly id: string;
}

export interface ConcurrencySlots {
  readonly kind: 'in-process' | 'database';
  /** A lease of one of `limit` slots of `key`, or null when all are taken. Rejects when the slot store fails (database down). */
  acquire(key: string, limit: number): Promise<SlotLease | null>;
  /** Frees the lease (idempotent). Never rejects: a lease that cannot be deleted expires by itself. */
  release(lease: SlotLease): Promise<void>;
  /** Slots of `key` taken now (on every server sharing the store). */
  inUse(key: string): Promise<number>;
  /** Stops timers and frees the leases still held (a server shutting down). */
  close(): Promise<void>;
}

/** In-process concurrency counters, keyed by account or client address. */
export class ConcurrencyLimiter {
  private readonly counts = new Map<string, number>();

  tryAcquire(key: string, limit: number): boolean {
    const n = this.counts.get(key) ?? 0;
    if (n >= limit) return false;
    this.counts.set(key, n + 1);
    return true;
  }

  release(key: string): void {
    const n = this.counts.get(key) ?? 0;
    if (n <= 1) this.counts.delete(key);
    else this.counts.set(key, n - 1);
  }

  inUse(key: string): number {
    return this.counts.get(key) ?? 0;
  }
}

/** Slots counted in this process: one server only. acquire/release take effect synchronously. */
export class InProcessConcurrencySlots implements ConcurrencySlots {
  readonly kind = 'in-process' as const;
  private readonly limiter = new ConcurrencyLimiter();
  private readonly live = new Set<string>();
  private next = 0;

  async acquire(key: string, limit: number): Promise<SlotLease | null> {
    if (!this.limiter.tryAcquire(key, limit)) return null;
    const id = String(++this.next);
    this.live.add(id);
    return { key, id };
  }

  release(lease: SlotLease): Promise<void> {
    if (this.live.delete(lease.id)) this.limiter.release(lease.key);
    return Promise.resolve();
  }

  async inUse(key: string): Promise<number> {
    return this.limiter.inUse(key);
  }

  async close(): Promise<void> {}
}

export interface SqlConcurrencySlotsOptions {
  /** Lease lifetime without renewal, seconds (CONCURRENCY_LEASE_TTL_S). */
  ttlS: number;
  /** Heartbeat period, seconds (default ttlS / 3). */
  heartbeatS?: number;
  /** Written into each lease row for operators (default host:pid:random). */
  holder?: string;
  logger?: Logger;
}

/** Slots shared by every server on one database, as expiring leases renewed while held. */
export class SqlConcurrencySlots implements ConcurrencySlots {
  readonly kind = 'database' as const;
  readonly holder: string;
  private readonly ttlS: number;
  /** Keys of the leases this server holds (id → key), for log lines. */
  private readonly keys = new Map<string, string>();
  private readonly leases: LeaseHeartbeat;
  private closed = false;

  constructor(
    private readonly store: ConcurrencyLeaseStore,
    private readonly opts: SqlConcurrencySlotsOptions,
  ) {
    if (!(opts.ttlS > 0)) throw new Error(`SqlConcurrencySlots: ttlS must be > 0 (got ${opts.ttlS})`);
    this.ttlS = opts.ttlS;
    this.holder = opts.holder ?? `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.leases = new LeaseHeartbeat({
      ttlS: opts.ttlS,
      heartbeatS: opts.heartbeatS,
      what: 'concurrency leases',
      logger: opts.logger,
      renew: (ids) => this.store.renew(ids, this.ttlS),
      afterBeat: () => this.store.purgeExpired(),
      // Not renewed for longer than the TTL (database unreachable, event loop blocked): another
      // server may have taken the slot. The request keeps running; the slot is no longer counted.
      onLost: (id) => {
        this.opts.logger?.warn({ key: this.keys.get(id), lease: id }, 'concurrency lease expired while held; the slot is no longer reserved');
        this.keys.delete(id);
      },
    });
  }

  /** Leases this server holds now. */
  get heldCount(): number {
    return this.leases.size;
  }

  /** Whether the heartbeat timer is running (it runs only while leases are held). */
  get heartbeatRunning(): boolean {
    return this.leases.running;
  }

  async acquire(key: string, limit: number): Promise<SlotLease | null> {
    if (this.closed) throw new Error('Concurrency slots are closed (server shutting down).');
    const id = await this.store.acquire(key, limit, this.ttlS, this.holder);
    if (id === null) return null;
    if (this.closed) {
      await this.deleteLeases([id]);
      throw new Error('Concurrency slots are closed (server shutting down).');
    }
    this.keys.set(id, key);
    this.leases.add(id);
    return { key, id };
  }

  async release(lease: SlotLease): Promise<void> {
    if (!this.leases.delete(lease.id)) return;
    this.keys.delete(lease.id);
    await this.deleteLeases([lease.id]);
  }

  inUse(key: string): Promise<number> {
    return this.store.live(key);
  }

  async close(): Promise<void> {
    this.closed = true;
    const ids = await this.leases.stop();
    this.keys.clear();
    await this.deleteLeases(ids);
  }

  /** One renewal round (the timer calls it; tests may too). */
  heartbeat(): Promise<void> {
    return this.leases.beat();
  }

  private async deleteLeases(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    try {
      await this.store.release(ids);
    } catch (err) {
      this.opts.logger?.warn({ err, leases: ids.length }, `could not release concurrency leases; they expire within ${this.ttlS} s`);
    }
  }
}

export interface CreateConcurrencySlotsOptions {
  /** Lease lifetime for the database implementation (CONCURRENCY_LEASE_TTL_S). */
  leaseTtlS: number;
  logger?: Logger;
}

/**
 * The slots for a database: shared SQL leases on PostgreSQL (several servers may use it), in-process
 * counters on the embedded PGlite (one process only).
 */
export function createConcurrencySlots(db: LeaseDatabase & { readonly kind: 'postgres' | 'pglite' }, opts: CreateConcurrencySlotsOptions): ConcurrencySlots {
  if (db.kind === 'pglite') return new InProcessConcurrencySlots();
  return new SqlConcurrencySlots(new ConcurrencyLeaseStore(db), { ttlS: opts.leaseTtlS, logger: opts.logger });
}
