import { describe, expect, it, vi } from 'vitest';
import { BatchScheduler } from '../../src/pipeline/batch-scheduler.ts';
import { ThreadShare } from '../../src/pipeline/thread-share.ts';

/**
 * A real BatchScheduler on an injected clock whose "model" takes a known time: each batch moves
 * the clock forward by `batchMs` before answering, so busy fractions are exact (no sleeping).
 */
function clocked(o: { start: number; batchMs: number; loadWindowMs?: number; clock?: { t: number }; share?: ThreadShare }) {
  const clock = o.clock ?? { t: o.start };
  let gate: Promise<void> | null = null;
  const s = new BatchScheduler<string, string>({
    name: 'test',
    maxBatch: 8,
    windowMs: 0,
    loadWindowMs: o.loadWindowMs ?? 10_000,
    clock: () => clock.t,
    share: o.share,
    run: async (reqs) => {
      if (gate) await gate;
      else clock.t += o.batchMs;
      return reqs.map((r) => `done:${r}`);
    },
  });
  return {
    s,
    clock,
    /** The next batch waits until released (the test moves the clock meanwhile). */
    hold(): () => void {
      let release!: () => void;
      gate = new Promise((r) => (release = r));
      return () => {
        gate = null;
        release();
      };
    },
  };
}

describe('BatchScheduler.load', () => {
  it('splits busy time by priority within a batch (by request count) and over the window', async () => {
    const { s, clock } = clocked({ start: 1000, batchMs: 300 });
    expect(s.load()).toMatchObject({ windowMs: 0, busyFraction: 0 });
    // One batch of 2 finals and 1 partial, 1000 → 1300: finals 200 ms, the partial 100 ms.
    await Promise.all([s.submit('F1', { priority: 'final', key: 'a' }), s.submit('F2', { priority: 'final', key: 'b' }), s.submit('P1', { priority: 'partial', key: 'c' })]);
    expect(s.stats.batches).toBe(1);
    expect(clock.t).toBe(1300);
    clock.t = 5000;
    // A file chunk, 5000 → 5300.
    await s.submit('X', { priority: 'file', key: 'job' });
    // The scheduler is 5 s old: the span measured is 5 s, not the 10 s window.
    const early = s.load(6000);
    expect(early.windowMs).toBe(5000);
    expect(early.busyMs).toEqual({ final: 200, file: 300, partial: 100 });
    expect(early.requests).toEqual({ final: 2, file: 1, partial: 1 });
    expect(early.busyFraction).toBeCloseTo(600 / 5000, 12);
    expect(early.finalBusyFraction).toBeCloseTo(200 / 5000, 12);
    expect(early.fileBusyFraction).toBeCloseTo(300 / 5000, 12);
    expect(early.partialBusyFraction).toBeCloseTo(100 / 5000, 12);
    // At 11 150 the window starts at 1150: half of the first batch is in it, and half of its requests.
    const later = s.load(11_150);
    expect(later.windowMs).toBe(10_000);
    expect(later.busyMs).toEqual({ final: 100, file: 300, partial: 50 });
    expect(later.requests).toEqual({ final: 1, file: 1, partial: 0.5 });
    expect(later.busyFraction).toBeCloseTo(450 / 10_000, 12);
    // Both batches have left the window.
    expect(s.load(30_000)).toMatchObject({ busyFraction: 0, busyMs: { final: 0, file: 0, partial: 0 } });
  });

  it('counts the batch running now up to now', async () => {
    const { s, clock, hold } = clocked({ start: 0, batchMs: 0 });
    clock.t = 20_000;
    const release = hold();
    const done = s.submit('F', { priority: 'final', key: 'a' });
    await vi.waitFor(() => expect(s.stats.batches).toBe(1), { timeout: 30_000 });
    clock.t = 20_400;
    expect(s.load()).toMatchObject({ windowMs: 10_000, busyMs: { final: 400, file: 0, partial: 0 } });
    clock.t = 21_000;
    release();
    expect(await done).toBe('done:F');
    // Finished: 20 000 → 21 000, 1 s of finals in the window.
    expect(s.load(22_000).busyMs.final).toBe(1000);
    expect(s.load(22_000).finalBusyFraction).toBe(0.1);
  });

  it('queue waits use the same clock', async () => {
    const { s, clock, hold } = clocked({ start: 0, batchMs: 0 });
    const release = hold();
    const first = s.submit('F1', { priority: 'final', key: 'a' });
    await vi.waitFor(() => expect(s.stats.batches).toBe(1), { timeout: 30_000 });
    // A final queued behind the running batch waits as long as the clock says.
    const second = s.submit('F2', { priority: 'final', key: 'b' });
    clock.t = 2500;
    expect(s.finalWaitMs()).toBe(2500);
    release();
    await Promise.all([first, second]);
  });

  it('two schedulers on one thread are each charged their share of the time their batches overlap', async () => {
    // Two models' workers whose sessions run on the one JavaScript thread: batch A 0 → 1000, batch B 500 → 1500.
    const clock = { t: 0 };
    const share = new ThreadShare();
    const a = clocked({ start: 0, batchMs: 0, clock, share });
    const b = clocked({ start: 0, batchMs: 0, clock, share });
    const releaseA = a.hold();
    const doneA = a.s.submit('A', { priority: 'final', key: 'x' });
    await vi.waitFor(() => expect(a.s.stats.batches).toBe(1), { timeout: 30_000 });
    clock.t = 500;
    const releaseB = b.hold();
    const doneB = b.s.submit('B', { priority: 'partial', key: 'y' });
    await vi.waitFor(() => expect(b.s.stats.batches).toBe(1), { timeout: 30_000 });
    // Running, at 800: A alone for 500 ms and half of 300; B half of 300.
    clock.t = 800;
    expect(a.s.load().busyMs.final).toBe(650);
    expect(b.s.load().busyMs.partial).toBe(150);
    clock.t = 1000;
    releaseA();
    await doneA;
    clock.t = 1500;
    releaseB();
    await doneB;
    // Each 750 ms: together the 1500 ms during which either ran, where wall times would add up to 2000.
    const la = a.s.load(2000);
    const lb = b.s.load(2000);
    expect(la.busyMs.final).toBe(750);
    expect(lb.busyMs.partial).toBe(750);
    expect(la.busyFraction + lb.busyFraction).toBeCloseTo(1500 / 2000, 12);
    // At 10 500 the window starts at 500: half of batch A is inside it and counts half of its charge.
    expect(a.s.load(10_500).busyMs.final).toBeCloseTo(750 * 0.5, 9);
  });
});
