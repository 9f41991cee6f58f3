/**
 * Golden parity suite (fp32): run once per decoder layout from golden-merged/golden-split.test.ts
 * so vitest can spread the two layouts over its workers. Sessions are loaded once per file.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WhisperEngine } from '../../../src/engines/whisper/engine.ts';
import { decodeGreedy } from '../../../src/engines/seq2seq/generate.ts';
import type { EncoderOutput } from '../../../src/engines/whisper/model.ts';
import { topK } from '../../../src/engines/seq2seq/generate.ts';
import { golden, GOLDEN_NAMES, loadAudio, MODEL_DIR } from './helpers.ts';

const MODES = ['notimestamps', 'timestamps'] as const;

export function goldenSuite(layout: 'merged' | 'split'): void {
  describe(`whisper golden parity, fp32, ${layout} decoder`, () => {
    let eng: WhisperEngine;
    let enc: EncoderOutput;
    const singles: EncoderOutput[] = [];
    const audio = GOLDEN_NAMES.map((n) => loadAudio(n));

    beforeAll(async () => {
      eng = await WhisperEngine.load(MODEL_DIR, { decoderLayout: layout, intraOpThreads: 1, interOpThreads: 1 });
      enc = await eng.encode(audio.map((a) => eng.features(a)));
    });
    afterAll(async () => eng?.close());

    it('loads the requested layout with config-driven dimensions', () => {
      expect(eng.info.layout).toBe(layout);
      expect(eng.info.quantized).toBe(false);
      expect(eng.info.family).toBe('whisper');
      expect(eng.info.languages).toContain('en');
      expect(eng.info.crossAttentions).toBe(false);
    });

    it('encoder output matches golden mean/std/first8 (batch of 3)', () => {
      const per = enc.frames * enc.dModel;
      expect([enc.batch, enc.frames, enc.dModel]).toEqual([3, 1500, 64]);
      GOLDEN_NAMES.forEach((n, i) => {
        const g = golden.inputs[n].encoder!;
        const x = enc.data.subarray(i * per, (i + 1) * per);
        let s = 0;
        for (const v of x) s += v;
        const mean = s / per;
        let v2 = 0;
        for (const v of x) v2 += (v - mean) ** 2;
        const std = Math.sqrt(v2 / per);
        expect(Math.abs(mean - g.mean)).toBeLessThan(1e-4);
        expect(Math.abs(std - g.std)).toBeLessThan(1e-4);
        g.first8.forEach((v, k) => expect(Math.abs(x[k] - v)).toBeLessThan(1e-4));
      });
    });

    it('language detection top-5 within 1e-3 of golden', async () => {
      const res = await eng.detectLanguageEncoded(enc);
      GOLDEN_NAMES.forEach((n, i) => {
        const g = golden.inputs[n].language_detection!.top5;
        const top5 = res[i].probs.slice(0, 5);
        expect(top5.map(([c]) => `<|${c}|>`)).toEqual(g.map(([c]) => c));
        top5.forEach(([, p], k) => expect(Math.abs(p - g[k][1])).toBeLessThan(1e-3));
      });
    });

    it('first-step logits top-10 within 1e-3 of golden', async () => {
      const out = await eng.model.prefill(
        enc,
        GOLDEN_NAMES.map(() => golden.prompt_notimestamps),
      );
      GOLDEN_NAMES.forEach((n, i) => {
        const pos = golden.prompt_notimestamps.length - 1;
        const row = out.logits.subarray((i * out.seqLen + pos) * out.vocab, (i * out.seqLen + pos + 1) * out.vocab);
        const g = golden.inputs[n].first_step_logits_top10_notimestamps!;
        expect(topK(row, 10)).toEqual(g.map(([id]) => id));
        g.forEach(([id, v]) => expect(Math.abs(row[id] - v)).toBeLessThan(1e-3));
      });
    });

    for (const mode of MODES) {
      it(`greedy ${mode}: batch of 3 gives the 24 golden tokens, equal to 3 single runs`, async () => {
        const ts = mode === 'timestamps';
        const mk = () => eng.task({ language: 'en', timestamps: ts, maxNewTokens: 24 });
        expect(mk().prompt).toEqual(ts ? golden.prompt_timestamps : golden.prompt_notimestamps);
        const batch = await decodeGreedy(eng.model, enc, GOLDEN_NAMES.map(mk), eng.ids);
        for (let i = 0; i < GOLDEN_NAMES.length; i++) {
          expect(batch[i].tokens).toEqual(golden.inputs[GOLDEN_NAMES[i]].generate![mode]);
          singles[i] ??= await eng.encode([eng.features(audio[i])]); // batch-of-1 encoder run too
          const [one] = await decodeGreedy(eng.model, singles[i], [mk()], eng.ids);
          expect(one.tokens).toEqual(batch[i].tokens);
        }
      });

      it(`engine.transcribe ${mode} (WAV -> features -> tokens) reproduces golden tokens for the batch`, async () => {
        const res = await eng.transcribe(audio.map((a) => ({ audio: a, options: { language: 'en', timestamps: mode === 'timestamps', temperature: 0, maxNewTokens: 24 } })));
        res.forEach((r, i) => {
          expect(r.language).toBe('en');
          expect(r.tokensPerWindow).toHaveLength(1);
          expect(r.tokensPerWindow[0]).toEqual(golden.inputs[GOLDEN_NAMES[i]].generate![mode]);
          for (const s of r.segments) {
            expect(s.start).toBeGreaterThanOrEqual(0);
            expect(s.end).toBeLessThanOrEqual(r.duration + 1e-6);
            expect(s.temperature).toBe(0);
          }
        });
      });
    }
  });
}
