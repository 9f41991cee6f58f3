import { describe, expect, it } from 'vitest';
import { streamCapacity } from '../../src/pipeline/stream-admission.ts';

describe('streamCapacity', () => {
  it('admits up to the limit, refuses above it with the lag, the limit and when to retry', () => {
    expect(streamCapacity('m', 0, { maxFinalWaitMs: 3000 })).toEqual({ ok: true });
    expect(streamCapacity('m', 3000, { maxFinalWaitMs: 3000 })).toEqual({ ok: true });
    const v = streamCapacity('large-v3', 4250, { maxFinalWaitMs: 3000, retryAfterS: 7 });
    expect(v).toEqual({
      ok: false,
      retryAfterS: 7,
      message: "Server at capacity: live results of model 'large-v3' are 4.3 s behind (limit 3.0 s). Retry in 7 s or connect to another instance.",
    });
  });

  it('0 turns the check off', () => {
    expect(streamCapacity('m', 1e9, { maxFinalWaitMs: 0 })).toEqual({ ok: true });
  });
});
