/** Timing helpers for the benchmarks: warm-up, repeated runs, medians. */

export interface Timing {
  /** median of the timed runs, ms */
  median: number;
  min: number;
  max: number;
  /** every timed run, ms */
  samples: number[];
}

export function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function summarize(samples: number[]): Timing {
  return { median: median(samples), min: Math.min(...samples), max: Math.max(...samples), samples: samples.map(round3) };
}

/** `warmup` untimed calls, then `iters` timed calls of `fn` (performance.now()). */
export async function measure(fn: () => Promise<unknown>, o: { warmup: number; iters: number }): Promise<Timing> {
  for (let i = 0; i < o.warmup; i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < o.iters; i++) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
  }
  return summarize(samples);
}

export function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** Fixed-precision number for tables (3 significant digits below 10, else 1 decimal). */
export function fmt(x: number | null | undefined, digits?: number): string {
  if (x === null || x === undefined || Number.isNaN(x)) return 'n/a';
  if (digits !== undefined) return x.toFixed(digits);
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toFixed(3);
}

/** Markdown table. */
export function table(head: string[], rows: (string | number)[][]): string {
  const line = (r: (string | number)[]) => `| ${r.map(String).join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

/**
 * Round-robin timing of several variants: each round runs every variant once, so load changes on a
 * shared machine hit all variants alike. Returns one Timing per key. `before` (not timed) runs before every call,
 * warm-up included: e.g. a full GC, so one variant's garbage is not collected inside another's timing.
 */
export async function interleave<K extends string>(fns: Record<K, () => Promise<unknown>>, o: { warmup: number; iters: number; before?: () => unknown }): Promise<Record<K, Timing>> {
  const keys = Object.keys(fns) as K[];
  const samples = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  for (let r = 0; r < o.warmup + o.iters; r++) {
    for (const k of keys) {
      await o.before?.();
      const t0 = performance.now();
      await fns[k]();
      if (r >= o.warmup) samples[k].push(performance.now() - t0);
    }
  }
  return Object.fromEntries(keys.map((k) => [k, summarize(samples[k])])) as Record<K, Timing>;
}

/** One round of `roundPlan`: load `side`, run its warm-up and `iters` timed calls, release it. */
export interface Round<K extends string> {
  side: K;
  round: number;
  iters: number;
}

/**
 * Rounds for comparing sides that must not be loaded at the same time (two real-size models do not fit in memory
 * together): each round loads one side, warms it up, times its share of the `iters` calls and releases it. The order
 * of the sides is reversed every other round (A B, B A, A B …), so a linear drift in machine load hits both alike;
 * loading is never timed. `rounds` is capped at `iters`, so every round times at least one call; the shares add up
 * to `iters` for every side.
 */
export function roundPlan<K extends string>(sides: readonly K[], iters: number, rounds: number): Round<K>[] {
  if (!Number.isInteger(iters) || iters < 1) throw new Error(`iters must be a positive integer, got ${iters}`);
  const r = Math.max(1, Math.min(Math.floor(rounds), iters));
  const plan: Round<K>[] = [];
  for (let i = 0; i < r; i++) {
    const share = Math.floor(iters / r) + (i < iters % r ? 1 : 0);
    for (const side of i % 2 ? [...sides].reverse() : sides) plan.push({ side, round: i, iters: share });
  }
  return plan;
}
