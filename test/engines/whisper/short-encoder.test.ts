/**
 * The encoder on shorter audio (encoder-graph.ts): the stock export rewritten at load so that its time axis
 * is symbolic and the position table is sliced, checked against `golden/short_encoder.json` (Hugging Face on
 * the first `frames` frames with embed_positions[:frames/2]) and against the original graph at 3000 frames.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encoderBucketFrames, ENCODER_BUCKETS, WhisperEngine } from '../../../src/engines/whisper/engine.ts';
import { sliceFrames } from '../../../src/engines/whisper/features.ts';
import { decodeGreedy } from '../../../src/engines/seq2seq/generate.ts';
import { trimmableEncoderGraph } from '../../../src/engines/whisper/encoder-graph.ts';
import type { EncoderOutput } from '../../../src/engines/whisper/model.ts';
import { GOLDEN_DIR, golden, loadAudio, MODEL_DIR, readF32 } from './helpers.ts';

interface ShortCase {
  wav: string;
  frames: number;
  encoder_positions: number;
  encoder: { shape: number[]; mean: number; std: number; first8: number[]; last8: number[] };
  generate: { notimestamps: number[]; timestamps: number[] };
}
const short: { inputs: Record<string, ShortCase> } = JSON.parse(readFileSync(join(GOLDEN_DIR, 'short_encoder.json'), 'utf8'));
const NAMES = Object.keys(short.inputs);
const MODES = ['notimestamps', 'timestamps'] as const;

/** Golden reference features [80, 3000], cut to the first `frames` frames. */
function goldenFeatures(name: string, frames: number): Float32Array {
  const full = readF32(join(GOLDEN_DIR, golden.inputs[name].features!.file));
  return sliceFrames({ data: full, nMels: 80, nFrames: 3000 }, 0, frames);
}

function stats(x: Float32Array): { mean: number; std: number } {
  let s = 0;
  for (const v of x) s += v;
  const mean = s / x.length;
  let v2 = 0;
  for (const v of x) v2 += (v - mean) ** 2;
  return { mean, std: Math.sqrt(v2 / x.length) };
}

describe('encoder on shorter audio (golden short_encoder.json)', () => {
  for (const layout of ['merged', 'split'] as const) {
    describe(`${layout} decoder`, () => {
      let eng: WhisperEngine;
      const enc = new Map<string, EncoderOutput>();
      beforeAll(async () => {
        eng = await WhisperEngine.load(MODEL_DIR, { decoderLayout: layout, intraOpThreads: 1, interOpThreads: 1 });
        for (const n of NAMES) enc.set(n, await eng.encode([goldenFeatures(n, short.inputs[n].frames)], short.inputs[n].frames));
      });
      afterAll(async () => eng?.close());

      it('the rewritten encoder gives frames/2 positions matching the golden (mean, std, first and last 8 within 1e-4)', () => {
        expect(eng.model.trimmable).toBe(true);
        for (const n of NAMES) {
          const g = short.inputs[n];
          const e = enc.get(n)!;
          expect([e.batch, e.frames, e.dModel]).toEqual(g.encoder.shape);
          expect(e.frames).toBe(g.encoder_positions);
          const { mean, std } = stats(e.data);
          expect(Math.abs(mean - g.encoder.mean)).toBeLessThan(1e-4);
          expect(Math.abs(std - g.encoder.std)).toBeLessThan(1e-4);
          g.encoder.first8.forEach((v, k) => expect(Math.abs(e.data[k] - v)).toBeLessThan(1e-4));
          g.encoder.last8.forEach((v, k) => expect(Math.abs(e.data[e.data.length - 8 + k] - v)).toBeLessThan(1e-4));
        }
      });

      for (const mode of MODES) {
        it(`greedy ${mode}: the 24 golden tokens for every input`, async () => {
          for (const n of NAMES) {
            const task = eng.task({ language: 'en', timestamps: mode === 'timestamps', maxNewTokens: 24 });
            const [r] = await decodeGreedy(eng.model, enc.get(n)!, [task], eng.ids);
            expect(r.tokens, `${n} ${mode}`).toEqual(short.inputs[n].generate[mode]);
          }
        });
      }
    });
  }

  describe('features and the original graph', () => {
    let eng: WhisperEngine;
    let original: WhisperEngine;
    beforeAll(async () => {
      eng = await WhisperEngine.load(MODEL_DIR, { intraOpThreads: 1, interOpThreads: 1 });
      original = await WhisperEngine.load(MODEL_DIR, { intraOpThreads: 1, interOpThreads: 1, trimmableEncoder: false });
    });
    afterAll(async () => {
      await eng?.close();
      await original?.close();
    });

    it('our log-mel of the first frames only equals the reference cut (1e-4), and our own full log-mel cut exactly when the audio fits', () => {
      for (const n of NAMES) {
        const frames = short.inputs[n].frames;
        const audio = loadAudio(n);
        const ours = eng.features(audio, frames);
        const ref = goldenFeatures(n, frames);
        expect(ours.length).toBe(ref.length);
        let max = 0;
        for (let i = 0; i < ref.length; i++) max = Math.max(max, Math.abs(ours[i] - ref[i]));
        expect(max).toBeLessThan(1e-4);
        // exact when the audio ends within the kept frames (the trimmed path's case; 'tone' is 5 s in 400 frames)
        if (audio.length <= frames * 160) expect(ours).toEqual(sliceFrames({ data: eng.features(audio), nMels: 80, nFrames: 3000 }, 0, frames));
      }
    });

    it('at 3000 frames the rewritten encoder is bit-identical to the original graph', async () => {
      expect(original.model.trimmable).toBe(false);
      const feats = NAMES.map((n) => eng.features(loadAudio(n)));
      const a = await eng.encode(feats);
      const b = await original.encode(feats);
      expect([a.batch, a.frames, a.dModel]).toEqual([NAMES.length, 1500, 64]);
      expect(a.data).toEqual(b.data);
    });

    it('int8: the rewritten quantized encoder stays within 1e-5 of its original at 3000 frames and runs shorter input', async () => {
      // (bit-identical at graphOptimizationLevel 'basic'; at 'all' the fixed-shape original is fused differently)
      const q = await WhisperEngine.load(MODEL_DIR, { quantized: true, intraOpThreads: 1, interOpThreads: 1 });
      const qOrig = await WhisperEngine.load(MODEL_DIR, { quantized: true, intraOpThreads: 1, interOpThreads: 1, trimmableEncoder: false });
      try {
        expect(q.model.trimmable).toBe(true);
        const feats = [eng.features(loadAudio('speech'))];
        const a = await q.encode(feats);
        const b = await qOrig.encode(feats);
        let max = 0;
        for (let i = 0; i < a.data.length; i++) max = Math.max(max, Math.abs(a.data[i] - b.data[i]));
        expect(max).toBeLessThan(1e-5);
        const short = await q.encode([eng.features(loadAudio('speech'), 800)], 800);
        expect([short.batch, short.frames, short.dModel]).toEqual([1, 400, 64]);
      } finally {
        await q.close();
        await qOrig.close();
      }
    });

    it('the original graph refuses shorter input with a message; the rewritten one refuses odd frame counts', async () => {
      await expect(original.encode([eng.features(loadAudio('jfk'), 1200)], 1200)).rejects.toThrow(/only runs on 3000 frames/);
      await expect(eng.encode([eng.features(loadAudio('jfk'), 1201)], 1201)).rejects.toThrow(/even number/);
    });

    it('engine.transcribe with encoder=trimmed runs the bucket of the audio and returns its text', async () => {
      const audio = loadAudio('jfk'); // 11 s → 1100 frames → the 1500-frame bucket
      expect(eng.encoderFrames(audio.length, 'trimmed')).toBe(1500);
      expect(eng.encoderFrames(audio.length, 'full')).toBe(3000);
      const [r] = await eng.transcribe([{ audio, options: { language: 'en', encoder: 'trimmed', timestamps: false, temperature: 0, maxNewTokens: 8 } }]);
      expect(r.tokensPerWindow[0]).toHaveLength(8);
      // the same as decoding the bucket by hand
      const e = await eng.encode([eng.features(audio, 1500)], 1500);
      const [hand] = await decodeGreedy(eng.model, e, [eng.task({ language: 'en', timestamps: false, maxNewTokens: 8 })], eng.ids);
      expect(r.tokensPerWindow[0]).toEqual(hand.tokens);
    });

    it('a batch mixing full and trimmed requests of several buckets gives each what it gives alone', async () => {
      const reqs = [
        { audio: loadAudio('jfk'), options: { encoder: 'trimmed' as const } },
        { audio: loadAudio('speech'), options: { encoder: 'trimmed' as const } },
        { audio: loadAudio('speech'), options: { encoder: 'full' as const } },
        { audio: loadAudio('tone'), options: { encoder: 'trimmed' as const } },
      ].map((r) => ({ audio: r.audio, options: { ...r.options, language: 'en', timestamps: false, temperature: 0, maxNewTokens: 6 } }));
      const together = await eng.transcribe(reqs);
      for (let i = 0; i < reqs.length; i++) {
        const [alone] = await eng.transcribe([reqs[i]]);
        expect(together[i].tokensPerWindow).toEqual(alone.tokensPerWindow);
      }
    });

    it('prefix: forced after the SOT sequence in the prefill, the result holds only what follows', async () => {
      const audio = loadAudio('speech');
      const base = { language: 'en', timestamps: false, temperature: 0 } as const;
      const [whole] = await eng.transcribe([{ audio, options: { ...base, maxNewTokens: 10 } }]);
      // Take the first decoded tokens as the prefix: the rest of the greedy decode must follow unchanged.
      const tok = eng.tokenizer;
      const prefixIds = whole.tokensPerWindow[0].slice(0, 4);
      const prefix = tok.decode(prefixIds);
      const [rest] = await eng.transcribe([{ audio, options: { ...base, maxNewTokens: 6, prefix } }]);
      const task = eng.task({ language: 'en', timestamps: false, prefix: tok.encodeText(` ${prefix.trim()}`), maxNewTokens: 6 });
      expect(task.prompt.slice(0, 4)).toEqual(golden.prompt_notimestamps);
      expect(task.prompt.length).toBeGreaterThan(4);
      const e = await eng.encode([eng.features(audio)]);
      const [hand] = await decodeGreedy(eng.model, e, [task], eng.ids);
      expect(rest.tokensPerWindow[0]).toEqual(hand.tokens);
      expect(rest.tokensPerWindow[0]).toHaveLength(6);
      // when the prefix tokenizes back to the same ids, the continuation is the unprefixed decode's
      if (JSON.stringify(tok.encodeText(` ${prefix.trim()}`)) === JSON.stringify(prefixIds)) {
        expect(rest.tokensPerWindow[0]).toEqual(whole.tokensPerWindow[0].slice(4, 10));
      }
    });

    it('buckets: audio rounds up to the next bucket, never past 3000 frames', () => {
      expect(encoderBucketFrames(1)).toBe(ENCODER_BUCKETS[0]);
      expect(encoderBucketFrames(250)).toBe(250);
      expect(encoderBucketFrames(251)).toBe(500);
      expect(encoderBucketFrames(2999)).toBe(3000);
      expect(encoderBucketFrames(5000)).toBe(3000);
      for (const b of ENCODER_BUCKETS) expect(b % 2).toBe(0);
    });

    it('the rewrite refuses a graph without the position-table Add (keeps the original)', () => {
      const bytes = readFileSync(join(MODEL_DIR, 'onnx', 'encoder_model.onnx'));
      expect(trimmableEncoderGraph(bytes, { maxPositions: 1500, dModel: 64 })).not.toBeNull();
      expect(trimmableEncoderGraph(bytes, { maxPositions: 1499, dModel: 64 })).toBeNull();
    });
  });
});
