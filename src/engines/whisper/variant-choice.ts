/**
 * Which ONNX variant of a Whisper folder runs fastest on this machine: fp32 or int8, merged or split
 * decoder. It depends on the CPU (int8 is ~3× faster where VNNI/AMX exist and slower than fp32 at batch 1
 * elsewhere), so it is measured at load instead of guessed: each candidate is loaded, runs one encoder
 * window and a few decoder steps, and the fastest is kept (the others are released at once, so at most
 * two variants are in memory). The layout never changes results; int8 does (slightly), which is why
 * precision is only measured when asked for (`precision: 'measure'`).
 */
import type { VariantTiming } from '../speech-engine.ts';
import type { WhisperConfig } from './config.ts';
import { onnxFiles } from '../seq2seq/kv-decoder.ts';
import { type DecoderLayout, WhisperOnnxModel, type WhisperModelOptions } from './model.ts';

export type { VariantTiming } from '../speech-engine.ts';

export interface VariantChoice {
  model: WhisperOnnxModel;
  timings: VariantTiming[];
}

/** A live decode's token budget: the score weighs the decoder steps as a 16-token decode does. */
const STEPS_PER_DECODE = 16;
const TIMED_STEPS = 6;

/** The (precision, layout) pairs whose files exist in the folder. */
export function variantCandidates(dir: string, o: { precision: 'fp32' | 'int8' | 'measure'; layout: 'auto' | 'measure' | DecoderLayout }): { quantized: boolean; layout: DecoderLayout }[] {
  const out: { quantized: boolean; layout: DecoderLayout }[] = [];
  const precisions = o.precision === 'measure' ? [false, true] : [o.precision === 'int8'];
  for (const quantized of precisions) {
    const f = onnxFiles(dir, quantized);
    if (!f.hasEncoder) continue;
    const has = { merged: f.hasMerged, split: f.hasSplit };
    const layouts: DecoderLayout[] = o.layout === 'measure' || o.layout === 'auto' ? ['merged', 'split'] : [o.layout];
    for (const layout of layouts) if (has[layout]) out.push({ quantized, layout });
  }
  return out;
}

/** Times one loaded variant: an encoder window, a prefill and a few cached steps (after one warm-up of each). */
export async function timeVariant(model: WhisperOnnxModel, cfg: WhisperConfig, prompt: number[]): Promise<Omit<VariantTiming, 'quantized' | 'layout'>> {
  const { nMels, nFrames } = cfg.features;
  const frames = model.trimmable ? Math.min(1000, nFrames) : nFrames;
  const features = new Float32Array(nMels * frames).fill(-0.5); // log-mel of near-silence; values do not change the cost
  await model.encode([features], frames); // warm-up: first runs allocate
  let t = performance.now();
  const enc = await model.encode([features], frames);
  const encoderMs = performance.now() - t;
  let out = await model.prefill(enc, [prompt]);
  out = await model.step(out.cache, [prompt[prompt.length - 1]]); // warm-up step
  t = performance.now();
  for (let i = 0; i < TIMED_STEPS; i++) out = await model.step(out.cache, [prompt[prompt.length - 1]]);
  const stepMs = (performance.now() - t) / TIMED_STEPS;
  return { encoderMs, stepMs, score: encoderMs + STEPS_PER_DECODE * stepMs };
}

/**
 * Loads every candidate in turn, times it and keeps the fastest. `prompt` is a start-of-transcript sequence.
 * With a single candidate nothing is timed.
 */
export async function loadFastestVariant(
  dir: string,
  cfg: WhisperConfig,
  opts: WhisperModelOptions,
  choice: { precision: 'fp32' | 'int8' | 'measure'; layout: 'auto' | 'measure' | DecoderLayout },
  prompt: number[],
): Promise<VariantChoice> {
  const candidates = variantCandidates(dir, choice);
  if (!candidates.length) throw new Error(`no Whisper ONNX files for precision ${choice.precision} in ${dir}`);
  if (candidates.length === 1) {
    const [c] = candidates;
    return { model: await WhisperOnnxModel.load(dir, cfg, { ...opts, quantized: c.quantized, decoderLayout: c.layout }), timings: [] };
  }
  let best: { model: WhisperOnnxModel; score: number } | null = null;
  const timings: VariantTiming[] = [];
  for (const c of candidates) {
    const model = await WhisperOnnxModel.load(dir, cfg, { ...opts, quantized: c.quantized, decoderLayout: c.layout });
    try {
      const t = await timeVariant(model, cfg, prompt);
      timings.push({ ...c, ...t });
      if (!best || t.score < best.score) {
        await best?.model.close();
        best = { model, score: t.score };
        continue;
      }
    } catch (err) {
      await best?.model.close();
      await model.close();
      throw err;
    }
    await model.close();
  }
  return { model: best!.model, timings };
}
