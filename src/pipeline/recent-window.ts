/**
 * Values seen in the last `windowMs` (wall clock), with quantiles: the load signals of admission
 * control (how long finals waited for a model call, how late finals reached their stream).
 */
export class RecentWindow {
  private readonly items: { at: number; value: number }[] = [];

  constructor(readonly windowMs: number) {}

  add(value: number, at = Date.now()): void {
    this.items.push({ at, value });
    this.prune(at);
  }

  /** The q-quantile (0–1, nearest rank) of the values of the window; 0 when it is empty. */
  quantile(q: number, now = Date.now()): number {
    this.prune(now);
    if (!this.items.length) return 0;
    const sorted = this.items.map((i) => i.value).sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
  }

  get size(): number {
    return this.items.length;
  }

  private prune(now: number): void {
    while (this.items.length && now - this.items[0].at > this.windowMs) this.items.shift();
  }
}
