/**
 * One scheduler per loaded model: gathers work from every stream and file job into batches and
 * runs one model call per batch.
 *
 * - A batch closes after `windowMs` from its first request, or at once when `maxBatch` requests wait.
 * - Priorities: `final` (end of an utterance) before `file` (upload chunks) before `partial`.
 * - Within a priority, requests are taken round-robin by `key` (stream or job id): no stream starves.
 * - Partials are disposable: a newer partial of the same key replaces the queued one, and partials
 *   older than `partialMaxAgeMs` are dropped under load. Finals and file chunks are never dropped.
 * - One batch runs at a time: the engine already uses every core.
 * - Requests of different `group`s (e.g. a speech model's `transcribe` and `detect` ops) never share
 *   a batch: each batch is one kind of model call. The first request taken fixes the batch's group.
 * - `finalWaitMs()` says how far behind the model is for finals (admission control of new streams);
 *   `partialWaitMs()` the same for partials (live streams widen their partial interval from it, so
 *   that under load they ask for fewer partials before any has to be dropped for age).
 * - `load()` says how busy the model worker was over the last `loadWindowMs`, split by priority
 *   (predictive admission of new streams). Schedulers given one `share` (the speech models' workers, whose
 *   sessions all run on the JavaScript thread) are charged only their share of the time their batches overlap.
 */
import { DomainError } from '../errors.ts';
import { BusyWindow } from './busy-window.ts';
import { RecentWindow } from './recent-window.ts';
import { type ShareTicket, ThreadShare } from './thread-share.ts';

export type Priority = 'final' | 'file' | 'partial';
const PRIORITIES: Priority[] = ['final', 'file', 'partial'];

export class DroppedError extends Error {
  constructor(reason: string) {
    super(`partial dropped: ${reason}`);
    this.name = 'DroppedError';
  }
}

/** The model is closing (shutdown, unload): 'unavailable', and a work-queue worker hands the item to another. */
export class SchedulerClosedError extends DomainError {
  constructor(name: string) {
    super('unavailable', `The ${name} model is shutting down; retry shortly.`, { expected: false });
    this.name = 'SchedulerClosedError';
  }
}

export interface BatchSchedulerOptions<Req, Res> {
  name: string;
  /** Runs one batch; must return one result per request, in order. */
  run: (requests: Req[]) => Promise<Res[]>;
  maxBatch?: number;
  windowMs?: number;
  partialMaxAgeMs?: number;
  /** Called whenever queue depths change (metrics). */
  onDepth?: (depth: Record<Priority, number>) => void;
  /** Called when a partial is dropped (superseded or too old). */
  onDrop?: (reason: 'superseded' | 'stale') => void;
  /** Called after every batch (benchmarks, metrics). */
  onBatch?: (info: { size: number; ms: number; priorities: Record<Priority, number> }) => void;
  /** How far back `finalWaitMs()` looks at the waits of finals already started (default 10 s). */
  waitWindowMs?: number;
  /** How far back `partialWaitMs()` looks at the waits of partials already started (default 5 s: load that has gone soon stops widening intervals). */
  partialWaitWindowMs?: number;
  /** The kind of model call a request needs; only requests of one group share a batch (default: one group). */
  group?: (req: Req) => string;
  /** How far back `load()` looks (default 30 s: several utterances of every stream). */
  loadWindowMs?: number;
  /** Wall clock in ms (default Date.now) of queue waits and busy time; tests inject one to make them exact. */
  clock?: () => number;
  /**
   * The thread this worker's model calls share with other schedulers' (default: its own): overlapping batches are
   * each charged their share of the overlap in `load()`. Schedulers sharing one must share one clock.
   */
  share?: ThreadShare;
}

/**
 * How busy the model worker was over the last `windowMs` (one batch runs at a time, so busy time is
 * model time; a batch that overlapped another scheduler's on a shared thread counts its share of the overlap):
 * fractions of the window (0–1) in all and per priority, and requests served per priority.
 */
export interface SchedulerLoad {
  windowMs: number;
  busyFraction: number;
  finalBusyFraction: number;
  fileBusyFraction: number;
  partialBusyFraction: number;
  busyMs: Record<Priority, number>;
  /** Requests served in the window (a batch partly inside it counts for that part). */
  requests: Record<Priority, number>;
}

interface Pending<Req, Res> {
  req: Req;
  key: string;
  group: string;
  priority: Priority;
  enqueuedAt: number;
  resolve: (r: Res) => void;
  reject: (e: unknown) => void;
  cleanup: () => void;
}

export class BatchScheduler<Req, Res> {
  private readonly queues: Record<Priority, Pending<Req, Res>[]> = { final: [], file: [], partial: [] };
  private readonly maxBatch: number;
  private readonly windowMs: number;
  private readonly partialMaxAgeMs: number;
  /** Queue waits (enqueue → model call) of finals started recently. */
  private readonly finalWaits: RecentWindow;
  /** Queue waits of partials started recently. */
  private readonly partialWaits: RecentWindow;
  /** Model time of recent batches per priority (load()). */
  private readonly busy: BusyWindow<Priority>;
  /** The batch running now: when it started and what it holds (load() counts it up to now). */
  private current: { start: number; counts: Record<Priority, number>; ticket: ShareTicket } | null = null;
  private readonly share: ThreadShare;
  private readonly clock: () => number;
  private running = false;
  private timer: NodeJS.Timeout | null = null;
  private timerDelay = 0;
  private closed = false;
  private idle: Promise<void> = Promise.resolve();
  /** Last key served per priority, for round-robin. */
  private readonly lastKey: Record<Priority, string | null> = { final: null, file: null, partial: null };
  /** Totals since start (benchmarks, tests): batches run, requests served (in all and per group), largest batch. */
  readonly stats = { batches: 0, requests: 0, maxBatchSize: 0, droppedPartials: 0, byGroup: {} as Record<string, number> };

  constructor(private readonly opts: BatchSchedulerOptions<Req, Res>) {
    this.maxBatch = opts.maxBatch ?? 8;
    this.windowMs = opts.windowMs ?? 10;
    this.partialMaxAgeMs = opts.partialMaxAgeMs ?? 2000;
    this.finalWaits = new RecentWindow(opts.waitWindowMs ?? 10_000);
    this.partialWaits = new RecentWindow(opts.partialWaitWindowMs ?? 5_000);
    this.clock = opts.clock ?? (() => Date.now()); // read Date.now at each call: tests fake the clock after construction
    this.busy = new BusyWindow(opts.loadWindowMs ?? 30_000, PRIORITIES, this.clock());
    this.share = opts.share ?? new ThreadShare();
  }

  /** How busy the model worker was over the last `loadWindowMs` (the batch running now counts up to `now`). */
  load(now = this.clock()): SchedulerLoad {
    const c = this.current;
    const { windowMs, busyMs, requests } = this.busy.split(now, c ? { start: c.start, counts: c.counts, busyMs: this.share.charged(c.ticket, now) } : undefined);
    const frac = (ms: number) => (windowMs > 0 ? ms / windowMs : 0);
    return {
      windowMs,
      busyFraction: frac(busyMs.final + busyMs.file + busyMs.partial),
      finalBusyFraction: frac(busyMs.final),
      fileBusyFraction: frac(busyMs.file),
      partialBusyFraction: frac(busyMs.partial),
      busyMs,
      requests,
    };
  }

  /**
   * How far behind the model is for finals, in ms: the longer of the wait of the oldest final still
   * queued and the 90th percentile of the waits of finals started in the last `waitWindowMs`.
   * A model that keeps up shows at most about one batch duration; more means finals queue up.
   */
  finalWaitMs(now = this.clock()): number {
    const oldest = this.queues.final.length ? now - Math.min(...this.queues.final.map((p) => p.enqueuedAt)) : 0;
    return Math.max(oldest, this.finalWaits.quantile(0.9, now));
  }

  /**
   * The partial backlog, in ms: the longer of the wait of the oldest partial still queued and the
   * 90th percentile of the waits of partials started in the last `partialWaitWindowMs`. Partials
   * that wait `partialMaxAgeMs` are dropped; a live stream spaces its partials by a multiple of this.
   */
  partialWaitMs(now = this.clock()): number {
    let oldest = now;
    for (const p of this.queues.partial) oldest = Math.min(oldest, p.enqueuedAt);
    return Math.max(now - oldest, this.partialWaits.quantile(0.9, now));
  }

  get depth(): Record<Priority, number> {
    return { final: this.queues.final.length, file: this.queues.file.length, partial: this.queues.partial.length };
  }

  /** Requests waiting per group (all priorities). */
  get depthByGroup(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const p of PRIORITIES) for (const item of this.queues[p]) out[item.group] = (out[item.group] ?? 0) + 1;
    return out;
  }

  submit(req: Req, opts: { priority: Priority; key: string; signal?: AbortSignal }): Promise<Res> {
    if (this.closed) return Promise.reject(new SchedulerClosedError(this.opts.name));
    if (opts.signal?.aborted) return Promise.reject(opts.signal.reason ?? new Error('aborted'));
    const group = this.opts.group?.(req) ?? '';
    return new Promise<Res>((resolve, reject) => {
      const queue = this.queues[opts.priority];
      if (opts.priority === 'partial') {
        const stale = queue.findIndex((p) => p.key === opts.key && p.group === group);
        if (stale >= 0) {
          const [old] = queue.splice(stale, 1);
          old.cleanup();
          this.stats.droppedPartials++;
          this.opts.onDrop?.('superseded');
          old.reject(new DroppedError('superseded by a newer partial'));
        }
      }
      // Aborted while queued: leave the queue. Aborted while its batch runs: the caller is released
      // at once and the row's result is discarded (the other rows of the batch are unaffected).
      const onAbort = () => {
        const i = queue.indexOf(item);
        if (i >= 0) {
          queue.splice(i, 1);
          this.reportDepth();
        }
        reject(opts.signal!.reason ?? new Error('aborted'));
      };
      const item: Pending<Req, Res> = {
        req,
        key: opts.key,
        group,
        priority: opts.priority,
        enqueuedAt: this.clock(),
        resolve,
        reject,
        cleanup: () => opts.signal?.removeEventListener('abort', onAbort),
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      queue.push(item);
      this.reportDepth();
      this.schedule();
    });
  }

  /** Rejects queued work, waits for the running batch. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const p of PRIORITIES) {
      for (const item of this.queues[p].splice(0)) {
        item.cleanup();
        item.reject(new SchedulerClosedError(this.opts.name));
      }
    }
    this.reportDepth();
    await this.idle;
  }

  private queued(): number {
    return this.queues.final.length + this.queues.file.length + this.queues.partial.length;
  }

  private schedule(): void {
    if (this.running || this.closed || this.queued() === 0) return;
    // Full: run on the next turn of the loop (requests submitted in this same tick still get ranked);
    // otherwise wait out the batching window that the first request opened.
    const delay = this.queued() >= this.maxBatch ? 0 : this.windowMs;
    if (this.timer) {
      if (delay > 0 || this.timerDelay === 0) return;
      clearTimeout(this.timer);
    }
    this.timerDelay = delay;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.runBatch();
    }, delay);
  }

  /** Takes up to maxBatch requests of one group: by priority, round-robin over keys within a priority. */
  private take(): Pending<Req, Res>[] {
    const now = this.clock();
    const partials = this.queues.partial;
    for (let i = partials.length - 1; i >= 0; i--) {
      if (now - partials[i].enqueuedAt > this.partialMaxAgeMs) {
        const [old] = partials.splice(i, 1);
        old.cleanup();
        this.stats.droppedPartials++;
        this.opts.onDrop?.('stale');
        old.reject(new DroppedError(`waited over ${this.partialMaxAgeMs} ms`));
      }
    }
    const batch: Pending<Req, Res>[] = [];
    let group: string | null = null;
    const fits = (x: Pending<Req, Res>) => group === null || x.group === group;
    for (const p of PRIORITIES) {
      const q = this.queues[p];
      while (batch.length < this.maxBatch) {
        const keys = [...new Set(q.filter(fits).map((x) => x.key))];
        if (!keys.length) break;
        const after = this.lastKey[p] === null ? -1 : keys.indexOf(this.lastKey[p]!);
        // Next key after the last one served (or the first), then that key's oldest request.
        const key = keys[(after + 1) % keys.length] ?? keys[0];
        const idx = q.findIndex((x) => x.key === key && fits(x));
        const [item] = q.splice(idx, 1);
        batch.push(item);
        group ??= item.group;
        this.lastKey[p] = key;
      }
    }
    return batch;
  }

  private runBatch(): void {
    if (this.running || this.closed) return;
    const batch = this.take();
    this.reportDepth();
    if (!batch.length) return;
    const startedAt = this.clock();
    const counts = { final: 0, file: 0, partial: 0 };
    for (const b of batch) counts[b.priority]++;
    const ticket = this.share.begin(startedAt);
    this.current = { start: startedAt, counts, ticket };
    for (const b of batch) {
      if (b.priority === 'final') this.finalWaits.add(startedAt - b.enqueuedAt, startedAt);
      else if (b.priority === 'partial') this.partialWaits.add(startedAt - b.enqueuedAt, startedAt);
    }
    this.running = true;
    this.stats.batches++;
    this.stats.requests += batch.length;
    this.stats.maxBatchSize = Math.max(this.stats.maxBatchSize, batch.length);
    this.stats.byGroup[batch[0].group] = (this.stats.byGroup[batch[0].group] ?? 0) + batch.length;
    const t0 = performance.now();
    let ran: Promise<Res[]>;
    try {
      ran = this.opts.run(batch.map((b) => b.req));
    } catch (e) {
      ran = Promise.reject(e); // a run that throws before its promise still ends its batch (and its share of the thread)
    }
    this.idle = ran
      // The model is free once run settles: busy time ends there, before any caller hears of it.
      .finally(() => {
        const end = this.clock();
        this.busy.add(startedAt, end, counts, this.share.end(ticket, end));
        this.current = null;
      })
      .then(
        (results) => {
          if (results.length !== batch.length) throw new Error(`${this.opts.name}: batch returned ${results.length} results for ${batch.length} requests`);
          batch.forEach((b, i) => b.resolve(results[i]));
        },
        (err) => batch.forEach((b) => b.reject(err)),
      )
      .catch((err) => batch.forEach((b) => b.reject(err)))
      .finally(() => {
        batch.forEach((b) => b.cleanup());
        this.opts.onBatch?.({ size: batch.length, ms: performance.now() - t0, priorities: { ...counts } });
        this.running = false;
        this.schedule();
      });
  }

  private reportDepth(): void {
    this.opts.onDepth?.(this.depth);
  }
}
