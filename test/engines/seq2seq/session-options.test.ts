/**
 * Session options of every engine session: INFERENCE_SPINNING=off reaches onnxruntime as
 * `session.intra_op.allow_spinning=0` (also next to the CLI's disable_prepacking), and an engine loaded that way
 * gives the golden tokens (onnxruntime takes the key).
 */
import { expect, it } from 'vitest';
import { loadConfig } from '../../../config/config.ts';
import { decodeGreedy } from '../../../src/engines/seq2seq/generate.ts';
import { sessionOptions } from '../../../src/engines/seq2seq/kv-decoder.ts';
import { WhisperEngine } from '../../../src/engines/whisper/engine.ts';
import { golden, loadAudio, MODEL_DIR } from '../whisper/helpers.ts';

it('INFERENCE_SPINNING: on (default) leaves onnxruntime spinning; off sets allow_spinning 0', () => {
  expect(loadConfig({}).inference.allowSpinning).toBe(true);
  expect(loadConfig({ INFERENCE_SPINNING: 'off' }).inference.allowSpinning).toBe(false);
  expect(() => loadConfig({ INFERENCE_SPINNING: 'maybe' })).toThrow(/INFERENCE_SPINNING.*'on' or 'off'/s);
  expect(sessionOptions({}).extra).toBeUndefined();
  expect(sessionOptions({ allowSpinning: false, intraOpThreads: 2 })).toMatchObject({ intraOpNumThreads: 2, extra: { session: { intra_op: { allow_spinning: '0' } } } });
});

it('an engine without spinning (and without pre-packing) gives the golden greedy tokens', async () => {
  const eng = await WhisperEngine.load(MODEL_DIR, { intraOpThreads: 2, allowSpinning: false, prepackDecoder: false, decoderLayout: 'split' });
  try {
    const enc = await eng.encode([eng.features(loadAudio('tone'))]);
    const task = eng.task({ language: 'en', timestamps: false, maxNewTokens: golden.inputs.tone.generate!.notimestamps.length });
    const [r] = await decodeGreedy(eng.model, enc, [task], eng.ids);
    expect(r.tokens).toEqual(golden.inputs.tone.generate!.notimestamps);
  } finally {
    await eng.close();
  }
});
