/**
 * Reserve before the work, settle after: the lifecycle around CreditReservationStore
 * (src/store/credit-reservations.ts) for one server.
 *
 *   - reserve/topUp take credits or minutes into a reservation leased to this server; the lease is
 *     renewed by a LeaseHeartbeat (every ttlS/3, CONCURRENCY_LEASE_TTL_S) while the job runs.
 *   - settle charges what was delivered and refunds the rest; release refunds everything. Each
 *     happens at most once per reservation (the store deletes the row as it does it).
 *   - A sweeper (every ttlS, unref'd, on every server) refunds reservations whose lease expired: the
 *     jobs of a server that was killed. With the embedded database (`soleServer`) the only other
 *     user of the database was this server's previous life, so start() refunds every reservation left.
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { Logger } from 'pino';
import type { CreditReservationStore, NewReservation, Reservation, Settlement } from '../store/credit-reservations.ts';
import { LeaseHeartbeat } from './lease-heartbeat.ts';

export interface CreditLedgerOptions {
  /** Lease lifetime of a reservation without renewal, seconds (CONCURRENCY_LEASE_TTL_S). */
  ttlS: number;
  /** This process is the database's only user (embedded PGlite): start() refunds every reservation left. */
  soleServer?: boolean;
  /** Sweeper period, seconds (default ttlS). */
  sweepS?: number;
  holder?: string;
  logger?: Logger;
}

export class CreditLedger {
  readonly holder: string;
  private readonly leases: LeaseHeartbeat;
  private sweeper: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    readonly store: CreditReservationStore,
    private readonly opts: CreditLedgerOptions,
  ) {
    this.holder = opts.holder ?? `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.leases = new LeaseHeartbeat({
      ttlS: opts.ttlS,
      what: 'credit reservations',
      logger: opts.logger,
      renew: (ids) => this.store.renew(ids, opts.ttlS),
      onLost: (id) => this.opts.logger?.warn({ reservation: id }, 'credit reservation expired while its job ran; it is refunded in full by the sweeper'),
    });
  }

  /** Refunds what dead servers left (all of it with the embedded database), then sweeps every sweepS seconds. */
  async start(): Promise<void> {
    await this.sweep({ all: this.opts.soleServer === true });
    if (this.closed || this.sweeper) return;
    this.sweeper = setInterval(() => void this.sweep().catch(() => {}), Math.round((this.opts.sweepS ?? this.opts.ttlS) * 1000));
    this.sweeper.unref();
  }

  /** Refunds expired reservations (every one with `all`); returns them. */
  async sweep(opts: { all?: boolean } = {}): Promise<Reservation[]> {
    try {
      const swept = await this.store.sweep(opts);
      if (swept.length) this.opts.logger?.info({ reservations: swept.length, holders: [...new Set(swept.map((r) => r.holder))] }, 'refunded credit reservations of jobs that never finished');
      return swept;
    } catch (err) {
      this.opts.logger?.warn({ err }, 'could not sweep expired credit reservations; retrying later');
      throw err;
    }
  }

  /** A new reservation held (and renewed) by this server; null when the account cannot cover it. */
  async reserve(r: Omit<NewReservation, 'holder' | 'ttlS'>): Promise<string | null> {
    if (this.closed) throw new Error('The credit ledger is closed (server shutting down).');
    const id = await this.store.reserve({ ...r, holder: this.holder, ttlS: this.opts.ttlS });
    if (id !== null) this.leases.add(id);
    return id;
  }

  topUp(id: string, amount: number, seconds: number, limit?: number): Promise<'ok' | 'short' | 'gone'> {
    return this.store.topUp(id, amount, seconds, limit);
  }

  async settle(id: string, delivered: { seconds: number; minutes: number; at: Date }): Promise<Settlement | null> {
    const result = await this.store.settle(id, delivered);
    this.leases.delete(id);
    return result;
  }

  async release(id: string): Promise<number | null> {
    const refunded = await this.store.release(id);
    this.leases.delete(id);
    return refunded;
  }

  /** Stops the timers and refunds the reservations still held (their jobs did not finish). Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    for (const id of await this.leases.stop()) {
      await this.store.release(id).catch((err) => this.opts.logger?.warn({ err, reservation: id }, `could not refund a credit reservation; the sweeper refunds it after ${this.opts.ttlS} s`));
    }
  }
}
