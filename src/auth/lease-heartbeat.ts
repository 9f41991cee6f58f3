/**
 * Keeps a set of database leases alive: while any is held, renews them every ttlS/3 (unref'd timer,
 * stopped when none is held), so that leases of a server that crashed or lost the database expire
 * by themselves after at most ttlS seconds. Used by the concurrency slots (concurrency-slots.ts) and
 * the credit reservations (credit-ledger.ts); what a lease is and how it is renewed is theirs.
 */
import type { Logger } from 'pino';

export interface LeaseHeartbeatOptions {
  /** Lease lifetime without renewal, seconds (CONCURRENCY_LEASE_TTL_S). */
  ttlS: number;
  /** Heartbeat period, seconds (default ttlS / 3). */
  heartbeatS?: number;
  /** Extends the given leases; resolves with the ids that still existed. */
  renew(ids: string[]): Promise<string[]>;
  /** Runs after each successful renewal (e.g. purge expired rows of every server). */
  afterBeat?(): Promise<unknown>;
  /** A held lease was not renewed (lost: expired or deleted elsewhere); it is no longer held. */
  onLost?(id: string): void;
  /** What the leases are, for log lines ("concurrency leases"). */
  what: string;
  logger?: Logger;
}

export class LeaseHeartbeat {
  private readonly held = new Set<string>();
  private readonly heartbeatMs: number;
  private timer: NodeJS.Timeout | null = null;
  private beating: Promise<void> | null = null;
  private stopped = false;

  constructor(private readonly opts: LeaseHeartbeatOptions) {
    if (!(opts.ttlS > 0)) throw new Error(`LeaseHeartbeat: ttlS must be > 0 (got ${opts.ttlS})`);
    this.heartbeatMs = Math.max(10, Math.round((opts.heartbeatS ?? opts.ttlS / 3) * 1000));
  }

  get size(): number {
    return this.held.size;
  }

  /** Whether the timer is running (only while leases are held). */
  get running(): boolean {
    return this.timer !== null;
  }

  has(id: string): boolean {
    return this.held.has(id);
  }

  /** Starts renewing `id` (and the timer, if it was idle). */
  add(id: string): void {
    this.held.add(id);
    if (!this.timer && !this.stopped) {
      this.timer = setInterval(() => void this.beat(), this.heartbeatMs);
      this.timer.unref();
    }
  }

  /** Stops renewing `id`; false when it was not held. */
  delete(id: string): boolean {
    const had = this.held.delete(id);
    if (this.held.size === 0) this.stopTimer();
    return had;
  }

  /** One renewal round (the timer calls it; tests may too). */
  beat(): Promise<void> {
    this.beating ??= this.renewAll().finally(() => {
      this.beating = null;
    });
    return this.beating;
  }

  /** Stops the timer for good and waits for a round in progress; returns the ids still held (and forgets them). */
  async stop(): Promise<string[]> {
    this.stopped = true;
    this.stopTimer();
    await this.beating;
    const ids = [...this.held];
    this.held.clear();
    return ids;
  }

  private async renewAll(): Promise<void> {
    const ids = [...this.held];
    if (ids.length === 0) return;
    try {
      const kept = new Set(await this.opts.renew(ids));
      for (const id of ids) {
        if (kept.has(id) || !this.held.has(id)) continue;
        this.held.delete(id);
        this.opts.onLost?.(id);
      }
      if (this.held.size === 0) this.stopTimer();
      await this.opts.afterBeat?.();
    } catch (err) {
      this.opts.logger?.warn({ err }, `could not renew ${this.opts.what}; retrying at the next heartbeat`);
    }
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
