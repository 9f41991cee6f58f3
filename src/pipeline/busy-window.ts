/**
 * How busy a model worker was over the last `windowMs`: the time its batches ran, split by the
 * share of each priority in the batch (a batch of 3 finals and 1 partial gives 3/4 of its time to
 * finals), and how many requests of each priority were served. A batch that overlaps the window's
 * start counts only for its part inside it, and so do its requests. This is the measure behind
 * predictive admission (what one more live stream would cost the model).
 *
 * A batch's busy time is its wall time unless the caller charges it less: batches of several models that
 * overlap share one thread (ThreadShare), and each is charged only its share of the overlap.
 */

/** Busy time (ms) and requests served per kind of work, within a window. */
export interface BusySplit<K extends string> {
  /** The span measured (ms): the window, or less while the worker is younger than it. */
  windowMs: number;
  busyMs: Record<K, number>;
  requests: Record<K, number>;
}

interface Interval<K extends string> {
  start: number;
  end: number;
  /** Busy time charged to the batch (ms, at most end − start). */
  busyMs: number;
  counts: Partial<Record<K, number>>;
}

export class BusyWindow<K extends string> {
  private readonly items: Interval<K>[] = [];

  /**
   * @param kinds the kinds of work reported (each gets a 0 when it did none)
   * @param since when the worker started: the span measured is never older than this
   */
  constructor(
    readonly windowMs: number,
    private readonly kinds: readonly K[],
    private readonly since: number,
  ) {}

  /**
   * A batch that ran from `start` to `end` (ms, the window's clock) with `counts` requests of each kind, charged
   * `busyMs` of busy time (default: all of it).
   */
  add(start: number, end: number, counts: Partial<Record<K, number>>, busyMs = end - start): void {
    this.items.push({ start, end, busyMs, counts });
    this.prune(end);
  }

  /**
   * Busy time and requests per kind in (now − windowMs, now]; `running`, a batch started and not yet
   * finished, counts up to `now` (with `busyMs` charged so far, default all of it). A batch partly inside
   * the window counts the same part of its charge.
   */
  split(now: number, running?: { start: number; counts: Partial<Record<K, number>>; busyMs?: number }): BusySplit<K> {
    this.prune(now);
    const from = Math.max(now - this.windowMs, this.since);
    const busyMs = Object.fromEntries(this.kinds.map((k) => [k, 0])) as Record<K, number>;
    const requests = Object.fromEntries(this.kinds.map((k) => [k, 0])) as Record<K, number>;
    const all = running ? [...this.items, { ...running, end: now, busyMs: running.busyMs ?? now - running.start }] : this.items;
    for (const b of all) {
      const overlap = Math.min(b.end, now) - Math.max(b.start, from);
      if (overlap <= 0 && !(b.end === b.start && b.start > from)) continue;
      const duration = b.end - b.start;
      // The part of the batch inside the window (a batch of no duration counts whole when inside it).
      const inside = duration > 0 ? Math.max(0, overlap) / duration : 1;
      let total = 0;
      for (const k of this.kinds) total += b.counts[k] ?? 0;
      if (total === 0) continue;
      for (const k of this.kinds) {
        const n = b.counts[k] ?? 0;
        busyMs[k] += (b.busyMs * inside * n) / total; // a batch of no duration was charged nothing
        requests[k] += n * inside;
      }
    }
    return { windowMs: Math.max(0, now - from), busyMs, requests };
  }

  private prune(now: number): void {
    while (this.items.length && this.items[0].end <= now - this.windowMs) this.items.shift();
  }
}
