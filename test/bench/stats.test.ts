/** bench/lib/stats.ts: the round plan that alternates sides loaded one at a time (bench:asr's transformers.js baseline), and round-robin timing. */
import { describe, expect, it } from 'vitest';
import { interleave, roundPlan } from '../../bench/lib/stats.ts';

describe('roundPlan', () => {
  it('alternates the order of the sides every round and splits the timed calls evenly', () => {
    expect(roundPlan(['ours', 'theirs'], 5, 2)).toEqual([
      { side: 'ours', round: 0, iters: 3 },
      { side: 'theirs', round: 0, iters: 3 },
      { side: 'theirs', round: 1, iters: 2 },
      { side: 'ours', round: 1, iters: 2 },
    ]);
  });

  it('never plans a round without a timed call, and every side gets all its calls', () => {
    expect(roundPlan(['a', 'b'], 1, 3)).toEqual([
      { side: 'a', round: 0, iters: 1 },
      { side: 'b', round: 0, iters: 1 },
    ]);
    for (const [iters, rounds] of [
      [7, 3],
      [2, 2],
      [4, 9],
    ]) {
      const plan = roundPlan(['a', 'b', 'c'], iters, rounds);
      for (const s of ['a', 'b', 'c']) expect(plan.filter((p) => p.side === s).reduce((n, p) => n + p.iters, 0)).toBe(iters);
      expect(plan.every((p) => p.iters >= 1)).toBe(true);
    }
  });

  it('rejects a plan without timed calls', () => {
    expect(() => roundPlan(['a'], 0, 2)).toThrow(/positive integer/);
  });
});

describe('interleave', () => {
  it('runs the variants round-robin, warm-up rounds untimed, `before` ahead of every call', async () => {
    const log: string[] = [];
    const t = await interleave(
      {
        a: async () => log.push('a'),
        b: async () => log.push('b'),
      },
      { warmup: 1, iters: 2, before: () => log.push('gc') },
    );
    expect(log).toEqual(['gc', 'a', 'gc', 'b', 'gc', 'a', 'gc', 'b', 'gc', 'a', 'gc', 'b']);
    expect([t.a.samples.length, t.b.samples.length]).toEqual([2, 2]);
  });
});
