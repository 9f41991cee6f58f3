/**
 * The ONNX variant measured at load (variant-choice.ts): every candidate whose files exist is timed, the
 * lowest score is kept and the choice is reported; the layout does not change the tokens.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { WhisperEngine } from '../../../src/engines/whisper/engine.ts';
import { variantCandidates } from '../../../src/engines/whisper/variant-choice.ts';
import { golden, loadAudio, MODEL_DIR } from './helpers.ts';

describe('variant chosen by measurement at load', () => {
  const engines: WhisperEngine[] = [];
  afterAll(async () => {
    for (const e of engines) await e.close();
  });

  it('lists the candidates whose files exist (the mini fixture has no merged int8 decoder)', () => {
    expect(variantCandidates(MODEL_DIR, { precision: 'fp32', layout: 'measure' })).toEqual([
      { quantized: false, layout: 'merged' },
      { quantized: false, layout: 'split' },
    ]);
    expect(variantCandidates(MODEL_DIR, { precision: 'measure', layout: 'measure' })).toEqual([
      { quantized: false, layout: 'merged' },
      { quantized: false, layout: 'split' },
      { quantized: true, layout: 'split' },
    ]);
    expect(variantCandidates(MODEL_DIR, { precision: 'int8', layout: 'merged' })).toEqual([]);
  });

  it("decoderLayout 'measure' times both layouts, keeps the lower score, and decodes the golden tokens", async () => {
    const eng = await WhisperEngine.load(MODEL_DIR, { decoderLayout: 'measure', intraOpThreads: 1, interOpThreads: 1 });
    engines.push(eng);
    const t = eng.info.variantTimings!;
    expect(t.map((x) => x.layout).sort()).toEqual(['merged', 'split']);
    for (const x of t) {
      expect(x.quantized).toBe(false);
      expect(Number.isFinite(x.score) && x.score > 0).toBe(true);
      expect(x.score).toBeCloseTo(x.encoderMs + 16 * x.stepMs, 6);
    }
    const best = t.reduce((a, b) => (b.score < a.score ? b : a));
    expect(eng.info.layout).toBe(best.layout);
    const [r] = await eng.transcribe([{ audio: loadAudio('speech'), options: { language: 'en', timestamps: false, temperature: 0, maxNewTokens: 24 } }]);
    expect(r.tokensPerWindow[0]).toEqual(golden.inputs.speech.generate!.notimestamps);
  });

  it("precision 'measure' includes the int8 files and reports which precision won", async () => {
    const eng = await WhisperEngine.load(MODEL_DIR, { precision: 'measure', decoderLayout: 'measure', intraOpThreads: 1, interOpThreads: 1 });
    engines.push(eng);
    const t = eng.info.variantTimings!;
    expect(t).toHaveLength(3);
    const best = t.reduce((a, b) => (b.score < a.score ? b : a));
    expect([eng.info.quantized, eng.info.layout]).toEqual([best.quantized, best.layout]);
  });

  it('a single candidate is loaded without timing', async () => {
    const eng = await WhisperEngine.load(MODEL_DIR, { precision: 'int8', decoderLayout: 'measure', intraOpThreads: 1, interOpThreads: 1 });
    engines.push(eng);
    expect(eng.info.variantTimings).toEqual([]);
    expect([eng.info.quantized, eng.info.layout]).toEqual([true, 'split']);
  });
});
