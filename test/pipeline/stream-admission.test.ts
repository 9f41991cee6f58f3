import { describe, expect, it } from 'vitest';
import { StreamAdmission, streamCapacity } from '../../src/pipeline/stream-admission.ts';

describe('streamCapacity', () => {
  it('admits up to the limit, refuses above it with the lag, the limit and when to retry', () => {
    expect(streamCapacity('m', 0, { maxFinalWaitMs: 3000 })).toEqual({ ok: true });
    expect(streamCapacity('m', 3000, { maxFinalWaitMs: 3000 })).toEqual({ ok: true });
    const v = streamCapacity('large-v3', 4250, { maxFinalWaitMs: 3000, retryAfterS: 7 });
    expect(v).toEqual({
      ok: false,
      reason: 'capacity',
      retryAfterS: 7,
      message: "Server at capacity: live results of model 'large-v3' are 4.3 s behind (limit 3.0 s). Retry in 7 s or connect to another instance.",
    });
  });

  it('0 turns the check off', () => {
    expect(streamCapacity('m', 1e9, { maxFinalWaitMs: 0 })).toEqual({ ok: true });
  });
});

describe('slow start', () => {
  const opts = { maxFinalWaitMs: 3000, rampIntervalMs: 5000 };
  it('below half the limit admits freely; above it, one stream per rampIntervalMs with the time to wait', () => {
    expect(streamCapacity('m', 1400, opts, { lastAdmittedAt: 1000, now: 1001 })).toEqual({ ok: true });
    expect(streamCapacity('m', 1600, opts, { lastAdmittedAt: null, now: 1001 })).toEqual({ ok: true });
    expect(streamCapacity('m', 1600, opts, { lastAdmittedAt: 1000, now: 6000 })).toEqual({ ok: true });
    expect(streamCapacity('m', 1600, opts, { lastAdmittedAt: 1000, now: 3500 })).toEqual({
      ok: false,
      reason: 'slow_start',
      retryAfterS: 3,
      message: "Server near capacity: live results of model 'm' are 1.6 s behind (limit 3.0 s), so new streams are admitted one per 5 s. Retry in 3 s or connect to another instance.",
    });
    expect(streamCapacity('m', 1600, { ...opts, rampIntervalMs: 0 }, { lastAdmittedAt: 1000, now: 1001 })).toEqual({ ok: true });
  });

  it('StreamAdmission remembers admissions per model', () => {
    let lag = 0;
    const a = { id: 'a', scheduler: { finalWaitMs: () => lag }, liveLag: { p90Ms: () => 0 } };
    const b = { id: 'b', scheduler: { finalWaitMs: () => lag }, liveLag: { p90Ms: () => 0 } };
    const one = <M>(m: M) => ({ partial: m, final: m });
    const adm = new StreamAdmission(opts);
    expect(adm.admit(one(a), 'websocket', 0).ok).toBe(true);
    expect(adm.admit(one(a), 'websocket', 100).ok).toBe(true); // no lag: no slow start
    lag = 2000;
    expect(adm.admit(one(a), 'websocket', 200).ok).toBe(false); // 100 ms after the last admission of a
    expect(adm.admit(one(b), 'websocket', 200).ok).toBe(true); // b never admitted one
    expect(adm.admit(one(a), 'websocket', 5100).ok).toBe(true);
    expect(adm.admit(one(a), 'websocket', 5200).ok).toBe(false);
    lag = 3500;
    expect(adm.admit(one(a), 'websocket', 20_000)).toMatchObject({ ok: false, reason: 'capacity', message: expect.stringMatching(/^Server at capacity/) });
  });
});
