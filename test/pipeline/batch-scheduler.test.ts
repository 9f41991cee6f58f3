import { describe, expect, it } from 'vitest';
import { BatchScheduler, DroppedError, SchedulerClosedError } from '../../src/pipeline/batch-scheduler.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A scheduler whose "model" records each batch and answers req*10 after `ms`. */
function recording(opts: { maxBatch?: number; windowMs?: number; ms?: number; partialMaxAgeMs?: number } = {}) {
  const batches: string[][] = [];
  const s = new BatchScheduler<string, string>({
    name: 'test',
    maxBatch: opts.maxBatch ?? 4,
    windowMs: opts.windowMs ?? 5,
    partialMaxAgeMs: opts.partialMaxAgeMs,
    run: async (reqs) => {
      batches.push(reqs);
      await sleep(opts.ms ?? 20);
      return reqs.map((r) => `done:${r}`);
    },
  });
  return { s, batches };
}

describe('BatchScheduler', () => {
  it('gathers concurrent requests into one model call and routes results back', async () => {
    const { s, batches } = recording();
    const results = await Promise.all(['a', 'b', 'c'].map((r, i) => s.submit(r, { priority: 'file', key: `k${i}` })));
    expect(results).toEqual(['done:a', 'done:b', 'done:c']);
    expect(batches).toEqual([['a', 'b', 'c']]);
  });

  it('caps batches at maxBatch and keeps going', async () => {
    const { s, batches } = recording({ maxBatch: 2 });
    await Promise.all(['a', 'b', 'c', 'd', 'e'].map((r) => s.submit(r, { priority: 'file', key: r })));
    expect(batches.map((b) => b.length)).toEqual([2, 2, 1]);
  });

  it('serves finals before file chunks before partials', async () => {
    const { s, batches } = recording({ maxBatch: 2, windowMs: 20 });
    const all = [s.submit('p1', { priority: 'partial', key: 's1' }), s.submit('f1', { priority: 'file', key: 'job' }), s.submit('F1', { priority: 'final', key: 's2' })];
    await Promise.all(all);
    expect(batches[0]).toEqual(['F1', 'f1']);
    expect(batches[1]).toEqual(['p1']);
  });

  it('round-robins keys within a priority so one busy job cannot starve another', async () => {
    const { s, batches } = recording({ maxBatch: 2, windowMs: 5 });
    const jobA = ['a1', 'a2', 'a3', 'a4'].map((r) => s.submit(r, { priority: 'file', key: 'A' }));
    const jobB = s.submit('b1', { priority: 'file', key: 'B' });
    await Promise.all([...jobA, jobB]);
    // B's only chunk rides in the first batch, not after all of A's.
    expect(batches[0]).toContain('b1');
  });

  it('replaces a queued partial with the newer one of the same stream, never a final', async () => {
    const { s, batches } = recording({ windowMs: 30 });
    const old = s.submit('p-old', { priority: 'partial', key: 's1' });
    const fin = s.submit('final', { priority: 'final', key: 's1' });
    const fresh = s.submit('p-new', { priority: 'partial', key: 's1' });
    await expect(old).rejects.toBeInstanceOf(DroppedError);
    expect(await fin).toBe('done:final');
    expect(await fresh).toBe('done:p-new');
    expect(batches.flat()).toEqual(['final', 'p-new']);
  });

  it('never mixes groups in one batch: each batch is one kind of call, by priority, counted per group', async () => {
    const batches: string[][] = [];
    const s = new BatchScheduler<string, string>({
      name: 'test',
      maxBatch: 8,
      windowMs: 20,
      group: (r) => r.split(':')[0],
      run: async (reqs) => {
        batches.push(reqs);
        return reqs;
      },
    });
    const all = [
      s.submit('detect:F1', { priority: 'final', key: 's1' }),
      s.submit('transcribe:F2', { priority: 'final', key: 's2' }),
      s.submit('detect:f1', { priority: 'file', key: 'job' }),
      s.submit('transcribe:f2', { priority: 'file', key: 'job' }),
      s.submit('transcribe:p1', { priority: 'partial', key: 's3' }),
    ];
    expect(s.depthByGroup).toEqual({ detect: 2, transcribe: 3 });
    await Promise.all(all);
    // The first final fixes the group; the rest follows in the next batch.
    expect(batches).toEqual([
      ['detect:F1', 'detect:f1'],
      ['transcribe:F2', 'transcribe:f2', 'transcribe:p1'],
    ]);
    expect(s.stats.byGroup).toEqual({ detect: 2, transcribe: 3 });
    expect(s.depthByGroup).toEqual({});
  });

  it('finalWaitMs: zero when idle, the backlog of queued finals while behind, back to zero after its window', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const s = new BatchScheduler<string, string>({
      name: 'test',
      maxBatch: 1,
      windowMs: 0,
      waitWindowMs: 200,
      run: async (reqs) => {
        await gate;
        return reqs;
      },
    });
    expect(s.finalWaitMs()).toBe(0);
    const done = ['f1', 'f2', 'f3'].map((r) => s.submit(r, { priority: 'final', key: r }));
    s.submit('p', { priority: 'partial', key: 'p' }).catch(() => undefined);
    await sleep(120); // f1 runs (blocked); f2, f3 have waited ~120 ms
    const behind = s.finalWaitMs();
    expect(behind).toBeGreaterThanOrEqual(100);
    expect(behind).toBeLessThan(1000);
    release();
    await Promise.all(done);
    // All started; the recent waits (f2, f3 waited ≥ 100 ms) still count within the window…
    expect(s.finalWaitMs()).toBeGreaterThanOrEqual(100);
    // …and age out after it.
    await sleep(250);
    expect(s.finalWaitMs()).toBe(0);
    await s.close();
  });

  it('drops partials that waited too long under load, but runs every final', async () => {
    const { s } = recording({ maxBatch: 1, windowMs: 1, ms: 40, partialMaxAgeMs: 30 });
    const finals = ['f1', 'f2', 'f3'].map((r, i) => s.submit(r, { priority: 'final', key: `s${i}` }));
    const partial = s.submit('p', { priority: 'partial', key: 'sx' }).catch((e: unknown) => e);
    expect(await Promise.all(finals)).toEqual(['done:f1', 'done:f2', 'done:f3']);
    expect(await partial).toBeInstanceOf(DroppedError);
  });

  it('removes aborted requests from the queue', async () => {
    const { s, batches } = recording({ windowMs: 30 });
    const ac = new AbortController();
    const a = s.submit('gone', { priority: 'file', key: 'x', signal: ac.signal });
    const b = s.submit('kept', { priority: 'file', key: 'y' });
    ac.abort(new Error('client left'));
    await expect(a).rejects.toThrow('client left');
    expect(await b).toBe('done:kept');
    expect(batches).toEqual([['kept']]);
  });

  it('propagates model errors to every request of the batch and keeps serving', async () => {
    let fail = true;
    const s = new BatchScheduler<number, number>({
      name: 't',
      windowMs: 5,
      run: async (r) => {
        if (fail) {
          fail = false;
          throw new Error('model exploded');
        }
        return r.map((x) => x + 1);
      },
    });
    const first = await Promise.allSettled([s.submit(1, { priority: 'file', key: 'a' }), s.submit(2, { priority: 'file', key: 'b' })]);
    expect(first.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(await s.submit(3, { priority: 'file', key: 'a' })).toBe(4);
  });

  it('close() rejects queued work with a 503 error and waits for the running batch', async () => {
    const { s } = recording({ maxBatch: 1, windowMs: 1, ms: 50 });
    const running = s.submit('a', { priority: 'file', key: 'a' });
    await sleep(10);
    const queued = s.submit('b', { priority: 'file', key: 'b' }).catch((e: unknown) => e);
    await s.close();
    expect(await running).toBe('done:a');
    expect(await queued).toBeInstanceOf(SchedulerClosedError);
    await expect(s.submit('c', { priority: 'file', key: 'c' })).rejects.toMatchObject({ kind: 'unavailable' });
  });
});
