/**
 * pyannote segmentation-3.0 (PyanNet, powerset) on onnxruntime-node, layout of
 * onnx-community/pyannote-segmentation-3.0:
 *   input_values float32 [B, 1, samples] (raw 16 kHz waveform in [-1,1]) → logits float32 [B, frames, 7]
 * The "logits" are log-probabilities over the powerset classes [{}, {0}, {1}, {2}, {0,1}, {0,2}, {1,2}].
 *
 * Frame geometry comes from the conv stack (kernels [251,3,5,3,5,3], strides [10,3,1,3,1,3], no padding):
 * frame i covers samples [270 i, 270 i + 991), centre 270 i + 495 (pyannote's SlidingWindow(0, 0.0619375, 0.016875)).
 */
import * as ort from 'onnxruntime-node';
import { findOnnx, type SessionOptions } from './wespeaker.ts';

export const SEGMENTATION_SAMPLE_RATE = 16000;
export const SEGMENTATION_CHUNK_SAMPLES = 160000; // 10 s
const CONV_STACK: Array<[number, number]> = [
  [251, 10],
  [3, 3],
  [5, 1],
  [3, 3],
  [5, 1],
  [3, 3],
];

/** Output frames for `numSamples` input samples. */
export function segmentationFrameCount(numSamples: number): number {
  let n = numSamples;
  for (const [k, s] of CONV_STACK) {
    if (n < k) return 0;
    n = 1 + Math.floor((n - k) / s);
  }
  return n;
}

/** Step, receptive field and first-frame centre, in samples, derived from the conv stack. */
export function segmentationGeometry(): { stepSamples: number; receptiveFieldSamples: number; centerOffsetSamples: number; stepS: number; durationS: number } {
  let step = 1;
  let rf = 1;
  for (const [k, s] of CONV_STACK) {
    rf += (k - 1) * step;
    step *= s;
  }
  return {
    stepSamples: step,
    receptiveFieldSamples: rf,
    centerOffsetSamples: (rf - 1) / 2,
    stepS: step / SEGMENTATION_SAMPLE_RATE,
    durationS: rf / SEGMENTATION_SAMPLE_RATE,
  };
}

/** Start, centre and end (seconds, relative to the chunk start) of output frame `i`. */
export function segmentationFrameTime(i: number): { start: number; center: number; end: number } {
  const g = segmentationGeometry();
  const s = i * g.stepSamples;
  return { start: s / SEGMENTATION_SAMPLE_RATE, center: (s + g.centerOffsetSamples) / SEGMENTATION_SAMPLE_RATE, end: (s + g.receptiveFieldSamples) / SEGMENTATION_SAMPLE_RATE };
}

/** Powerset classes of segmentation-3.0: 3 speakers per chunk, at most 2 per frame. */
export function powersetClasses(numSpeakers = 3, maxPerFrame = 2): number[][] {
  const out: number[][] = [[]];
  const rec = (start: number, cur: number[], size: number) => {
    if (cur.length === size) {
      out.push([...cur]);
      return;
    }
    for (let s = start; s < numSpeakers; s++) rec(s + 1, [...cur, s], size);
  };
  for (let size = 1; size <= maxPerFrame; size++) rec(0, [], size);
  return out;
}

/**
 * Powerset → multilabel, per frame: hard (one-hot of the argmax class, pyannote's
 * `Powerset.to_multilabel(soft=False)`) or soft (speaker probability = sum of exp(logp) of the
 * classes containing it). Input [frames, classes] log-probabilities; output [frames, numSpeakers].
 */
export function powersetToMultilabel(logp: Float32Array, frames: number, opts: { soft?: boolean; classes?: number[][]; numSpeakers?: number } = {}): Float32Array {
  const classes = opts.classes ?? powersetClasses();
  const K = classes.length;
  const S = opts.numSpeakers ?? Math.max(...classes.flat()) + 1;
  if (logp.length !== frames * K) throw new RangeError(`expected ${frames}x${K} log-probabilities, got ${logp.length}`);
  const out = new Float32Array(frames * S);
  for (let t = 0; t < frames; t++) {
    const row = t * K;
    if (opts.soft) {
      for (let c = 0; c < K; c++) {
        const p = Math.exp(logp[row + c]);
        for (const s of classes[c]) out[t * S + s] += p;
      }
    } else {
      let best = 0;
      for (let c = 1; c < K; c++) if (logp[row + c] > logp[row + best]) best = c;
      for (const s of classes[best]) out[t * S + s] = 1;
    }
  }
  return out;
}

export class PyannoteSegmenter {
  private closed = false;
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly modelPath: string,
  ) {
    if (!session.inputNames.includes('input_values') || !session.outputNames.includes('logits')) {
      throw new Error(`Unexpected segmentation IO ${JSON.stringify([session.inputNames, session.outputNames])} in ${modelPath} (need input_values → logits)`);
    }
  }

  static async load(dir: string, opts: SessionOptions = {}): Promise<PyannoteSegmenter> {
    const path = findOnnx(dir, ['model.onnx', 'onnx/model.onnx']);
    const session = await ort.InferenceSession.create(path, {
      ...(opts.intraOpThreads ? { intraOpNumThreads: opts.intraOpThreads } : {}),
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    });
    return new PyannoteSegmenter(session, path);
  }

  /** Log-probabilities [B][frames*7] for equal-length chunks. */
  async run(chunks: Float32Array[]): Promise<{ logp: Float32Array[]; frames: number; classes: number }> {
    if (this.closed) throw new Error('PyannoteSegmenter is closed');
    const B = chunks.length;
    const N = chunks[0]?.length ?? 0;
    if (!B) return { logp: [], frames: 0, classes: 7 };
    const input = new Float32Array(B * N);
    chunks.forEach((c, b) => {
      if (c.length !== N) throw new RangeError('segmentation chunks must have equal length');
      input.set(c, b * N);
    });
    const r = await this.session.run({ input_values: new ort.Tensor('float32', input, [B, 1, N]) });
    const t = r.logits;
    const [, frames, K] = t.dims as number[];
    const d = t.data as Float32Array;
    return { logp: chunks.map((_, b) => d.slice(b * frames * K, (b + 1) * frames * K)), frames, classes: K };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.session.release();
  }
}
