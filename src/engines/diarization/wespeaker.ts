/**
 * WeSpeaker ResNet34 speaker embedder on onnxruntime-node (layout of
 * onnx-community/wespeaker-voxceleb-resnet34-LM / WeSpeaker `voxceleb_resnet34_LM.onnx`):
 *   feats float32 [B, T, 80] (Kaldi fbank after CMN, see fbank.ts) → embs float32 [B, 256]
 * Embeddings are not L2-normalised; compare them with cosine similarity.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { applyCmn, kaldiFbank, WESPEAKER_FBANK, type Fbank } from './fbank.ts';

/** Fewer frames leave one time step after the ResNet's 8x downsampling: the variance is NaN. */
export const WESPEAKER_MIN_FRAMES = 9;

export interface SessionOptions {
  intraOpThreads?: number;
}

export function findOnnx(dir: string, names: string[]): string {
  for (const n of names) {
    const p = join(dir, n);
    if (existsSync(p)) return p;
  }
  throw new Error(`No ONNX model in ${dir} (looked for ${names.join(', ')})`);
}

export class WespeakerEmbedder {
  readonly dim: number;
  private closed = false;
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly modelPath: string,
  ) {
    if (!session.inputNames.includes('feats') || !session.outputNames.includes('embs')) {
      throw new Error(`Unexpected WeSpeaker IO ${JSON.stringify([session.inputNames, session.outputNames])} in ${modelPath} (need feats → embs)`);
    }
    this.dim = 256;
  }

  static async load(dir: string, opts: SessionOptions = {}): Promise<WespeakerEmbedder> {
    const path = findOnnx(dir, ['model.onnx', 'onnx/model.onnx', 'voxceleb_resnet34_LM.onnx', 'voxceleb_resnet34.onnx']);
    const session = await ort.InferenceSession.create(path, {
      ...(opts.intraOpThreads ? { intraOpNumThreads: opts.intraOpThreads } : {}),
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    });
    return new WespeakerEmbedder(session, path);
  }

  /** Embed equal-length feature blocks (each [T, 80] after CMN) in one call → B vectors of 256. */
  async embedFeats(feats: Float32Array[], T: number): Promise<Float32Array[]> {
    if (this.closed) throw new Error('WespeakerEmbedder is closed');
    const B = feats.length;
    if (B === 0) return [];
    if (T < WESPEAKER_MIN_FRAMES) throw new RangeError(`WeSpeaker needs at least ${WESPEAKER_MIN_FRAMES} frames, got ${T}`);
    const input = new Float32Array(B * T * 80);
    feats.forEach((f, b) => {
      if (f.length !== T * 80) throw new RangeError(`feature block ${b} has ${f.length / 80} frames, expected ${T}`);
      input.set(f, b * T * 80);
    });
    const r = await this.session.run({ feats: new ort.Tensor('float32', input, [B, T, 80]) });
    const e = r.embs.data as Float32Array;
    const D = e.length / B;
    return feats.map((_, b) => e.slice(b * D, (b + 1) * D));
  }

  /** Embedding of a whole waveform (16 kHz, [-1,1]): fbank → CMN → model. */
  async embedWaveform(samples: Float32Array): Promise<Float32Array> {
    const fb = kaldiFbank(samples, WESPEAKER_FBANK);
    const [e] = await this.embedFeats([applyCmn(fb)], fb.frames);
    return e;
  }

  /**
   * Embeddings of frame ranges of one precomputed fbank (CMN per range, WeSpeaker's subseg_cmn),
   * batched by length.
   */
  async embedRanges(fb: Fbank, ranges: Array<[number, number]>, maxBatch = 16, signal?: AbortSignal): Promise<Float32Array[]> {
    const out = new Array<Float32Array>(ranges.length);
    const byLen = new Map<number, number[]>();
    ranges.forEach(([a, b], i) => {
      const L = b - a;
      if (!byLen.has(L)) byLen.set(L, []);
      byLen.get(L)!.push(i);
    });
    for (const [L, idx] of byLen) {
      for (let s = 0; s < idx.length; s += maxBatch) {
        signal?.throwIfAborted();
        const part = idx.slice(s, s + maxBatch);
        const embs = await this.embedFeats(
          part.map((i) => applyCmn(fb, ranges[i][0], ranges[i][1])),
          L,
        );
        part.forEach((i, j) => (out[i] = embs[j]));
      }
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.session.release();
  }
}
