/** tokenLogprobs=false (live partials): the same tokens without the per-step log-softmax. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WhisperEngine } from '../../../src/engines/whisper/engine.ts';
import { golden, loadAudio, MODEL_DIR } from './helpers.ts';

describe('tokenLogprobs option', () => {
  let eng: WhisperEngine;
  beforeAll(async () => {
    eng = await WhisperEngine.load(MODEL_DIR, { intraOpThreads: 1, interOpThreads: 1 });
  });
  afterAll(async () => eng?.close());

  it('false gives the golden tokens with NaN log-probabilities; the default gives finite ones', async () => {
    const audio = loadAudio('jfk');
    const options = { language: 'en', timestamps: false, temperature: 0, maxNewTokens: 24, compressionRatioThreshold: null, logprobThreshold: null };
    const [fast, full] = await eng.transcribe([
      { audio, options: { ...options, tokenLogprobs: false } },
      { audio, options },
    ]);
    expect(fast.tokensPerWindow[0]).toEqual(golden.inputs.jfk.generate!.notimestamps);
    expect(full.tokensPerWindow[0]).toEqual(golden.inputs.jfk.generate!.notimestamps);
    expect(fast.segments.every((s) => Number.isNaN(s.avgLogprob))).toBe(true);
    expect(full.segments.every((s) => Number.isFinite(s.avgLogprob) && s.avgLogprob < 0)).toBe(true);
  });
});
