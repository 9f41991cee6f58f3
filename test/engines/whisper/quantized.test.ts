/**
 * int8 (`*_quantized.onnx`, dynamic quantization of the same random weights).
 * Random weights have tiny top-1 margins, so free-running greedy decoding diverges from the fp32
 * golden after a few steps. The stated tolerance is therefore on teacher-forced steps (the golden
 * prefix is fed, as in golden/onnx_check.json), measured on this fixture at 20-22 of 24:
 *  - raw argmax agrees with the golden next token on >= 18 of 24 teacher-forced steps, every input;
 *  - first-step top-10 shares >= 8 tokens with golden, shared logits within 6.0;
 *  - first-step top-1 equals golden on >= 2 of 3 inputs;
 *  - full transcription runs, honours the budget and starts with the golden token on >= 2 of 3 inputs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WhisperEngine } from '../../../src/engines/whisper/engine.ts';
import { argmax, topK } from '../../../src/engines/seq2seq/index.ts';
import type { EncoderOutput } from '../../../src/engines/whisper/model.ts';
import { golden, GOLDEN_NAMES, loadAudio, MODEL_DIR } from './helpers.ts';

describe('whisper int8 (quantized: true)', () => {
  let eng: WhisperEngine;
  let enc: EncoderOutput;
  const audio = GOLDEN_NAMES.map((n) => loadAudio(n));

  beforeAll(async () => {
    eng = await WhisperEngine.load(MODEL_DIR, { quantized: true, intraOpThreads: 1, interOpThreads: 1 });
    enc = await eng.encode(audio.map((a) => eng.features(a)));
  });
  afterAll(async () => eng?.close());

  it('picks the split layout (no merged int8 file in this export)', () => {
    expect(eng.info.quantized).toBe(true);
    expect(eng.info.layout).toBe('split');
  });

  it('encoder output stays close to fp32 golden (first8 within 0.05)', () => {
    const per = enc.frames * enc.dModel;
    GOLDEN_NAMES.forEach((n, i) => golden.inputs[n].encoder!.first8.forEach((v, k) => expect(Math.abs(enc.data[i * per + k] - v)).toBeLessThan(0.05)));
  });

  it('teacher-forced argmax and first-step logits within the stated tolerance', async () => {
    const prompt = golden.prompt_notimestamps;
    const out = await eng.model.prefill(
      enc,
      GOLDEN_NAMES.map((n) => [...prompt, ...golden.inputs[n].generate!.notimestamps.slice(0, 23)]),
    );
    const row = (i: number, pos: number) => out.logits.subarray((i * out.seqLen + pos) * out.vocab, (i * out.seqLen + pos + 1) * out.vocab);
    let top1 = 0;
    GOLDEN_NAMES.forEach((n, i) => {
      const g = golden.inputs[n].generate!.notimestamps;
      let agree = 0;
      for (let k = 0; k < 24; k++) if (argmax(row(i, prompt.length - 1 + k)) === g[k]) agree++;
      expect(agree).toBeGreaterThanOrEqual(18);
      const first = row(i, prompt.length - 1);
      const gt = golden.inputs[n].first_step_logits_top10_notimestamps!;
      const mine = topK(first, 10);
      const shared = gt.filter(([id]) => mine.includes(id));
      expect(shared.length).toBeGreaterThanOrEqual(8);
      for (const [id, v] of shared) expect(Math.abs(first[id] - v)).toBeLessThan(6);
      if (mine[0] === gt[0][0]) top1++;
    });
    expect(top1).toBeGreaterThanOrEqual(2);
  });

  it('transcribes a batch within budget', async () => {
    const res = await eng.transcribe(audio.map((a) => ({ audio: a, options: { language: 'en', timestamps: false, temperature: 0, maxNewTokens: 24 } })));
    let firstOk = 0;
    res.forEach((r, i) => {
      expect(r.tokensPerWindow[0]).toHaveLength(24);
      if (r.tokensPerWindow[0][0] === golden.inputs[GOLDEN_NAMES[i]].generate!.notimestamps[0]) firstOk++;
    });
    expect(firstOk).toBeGreaterThanOrEqual(2);
  });
});
