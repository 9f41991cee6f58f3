/**
 * Speaker diarization engines behind one interface:
 *  - 'baseline-mfcc'      no weights: MFCC + pitch statistics per window (baseline.ts), AHC.
 *  - 'wespeaker'          WeSpeaker ResNet34 embeddings per window (1.5 s, 0.75 s shift, CMN per
 *                         window, as WeSpeaker's own `diarize`), AHC.
 *  - 'pyannote+wespeaker' pyannote segmentation-3.0 on 10 s chunks (local speakers, overlap),
 *                         one WeSpeaker embedding per (chunk, local speaker), AHC over them,
 *                         chunk activities aggregated per global speaker.
 * All work on 16 kHz mono float samples; speech regions come from the caller (Silero VAD) or
 * from an energy detector on the fbank.
 */
import { baselineFeatures, baselineWindowVector } from './baseline.ts';
import { clusterEmbeddings } from './clustering.ts';
import { kaldiFbank, WESPEAKER_FBANK, type Fbank } from './fbank.ts';
import { PyannoteSegmenter, powersetToMultilabel, SEGMENTATION_CHUNK_SAMPLES, segmentationGeometry } from './segmentation.ts';
import { WESPEAKER_MIN_FRAMES, WespeakerEmbedder } from './wespeaker.ts';

export interface SpeakerTurn {
  start: number;
  end: number;
  speaker: string;
}

export interface DiarizeOptions {
  /** Exact number of speakers; 0/undefined = estimate. */
  speakers?: number;
  signal?: AbortSignal;
  /** VAD speech regions in seconds (optional). */
  speech?: Array<{ start: number; end: number }>;
}

export interface Diarizer {
  readonly method: 'baseline-mfcc' | 'wespeaker' | 'pyannote+wespeaker';
  diarize(samples: Float32Array, opts?: DiarizeOptions): Promise<SpeakerTurn[]>;
  close(): Promise<void>;
}

export interface CreateDiarizerOptions {
  embeddingModelDir?: string | null;
  segmentationModelDir?: string | null;
  intraOpThreads?: number;
}

const SR = 16000;
const HOP_S = WESPEAKER_FBANK.frameShift / SR; // 10 ms fbank frames

/** Tunables (documented in docs/diarization.md). */
export const DIARIZATION_PARAMS = {
  windowS: 1.5,
  stepS: 0.75,
  /** Same-speaker turns separated by less than this are joined. */
  joinGapS: 0.6,
  /** Turns shorter than this are given to their neighbours. */
  minTurnS: 0.25,
  baseline: { threshold: 0.63, bias: 6, minClusterSize: 3 },
  wespeaker: { threshold: 0.6, minClusterSize: 3 },
};

export async function createDiarizer(opts: CreateDiarizerOptions = {}): Promise<Diarizer> {
  if (opts.segmentationModelDir && !opts.embeddingModelDir) throw new Error('the segmentation model needs an embedding model (embeddingModelDir)');
  if (!opts.embeddingModelDir) return new BaselineDiarizer();
  const emb = await WespeakerEmbedder.load(opts.embeddingModelDir, { intraOpThreads: opts.intraOpThreads });
  if (!opts.segmentationModelDir) return new WespeakerDiarizer(emb);
  try {
    const seg = await PyannoteSegmenter.load(opts.segmentationModelDir, { intraOpThreads: opts.intraOpThreads });
    return new PyannoteWespeakerDiarizer(seg, emb);
  } catch (err) {
    await emb.close();
    throw err;
  }
}

/** A diarizer over already loaded models (it owns them: `close()` releases them). */
export function diarizerFromModels(embedder: WespeakerEmbedder | null, segmenter?: PyannoteSegmenter | null): Diarizer {
  if (!embedder) {
    if (segmenter) throw new Error('the segmentation model needs an embedding model');
    return new BaselineDiarizer();
  }
  return segmenter ? new PyannoteWespeakerDiarizer(segmenter, embedder) : new WespeakerDiarizer(embedder);
}

// ---------------------------------------------------------------- speech frames and windows

/** Speech mask per fbank frame: from VAD regions, else an energy detector on the fbank. */
export function speechMask(fb: Fbank, speech?: Array<{ start: number; end: number }>): Uint8Array {
  const T = fb.frames;
  const mask = new Uint8Array(T);
  if (speech) {
    for (const r of speech) {
      const a = Math.max(0, Math.floor(r.start / HOP_S));
      const b = Math.min(T, Math.ceil(r.end / HOP_S));
      for (let t = a; t < b; t++) mask[t] = 1;
    }
    return mask;
  }
  const M = fb.nMels;
  const e = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    let s = 0;
    for (let m = 0; m < M; m++) s += Math.exp(fb.data[t * M + m]);
    e[t] = Math.log(s + 1e-9);
  }
  const sorted = Float64Array.from(e).sort();
  const ref = sorted[Math.floor(0.95 * (T - 1))] ?? 0;
  const thr = Math.max(ref - 9, 8); // ≈ 39 dB below loud speech, and above digital near-silence
  for (let t = 0; t < T; t++) mask[t] = e[t] > thr ? 1 : 0;
  // close gaps < 0.3 s, drop blips < 0.1 s
  fillRuns(mask, 0, Math.round(0.3 / HOP_S), 1);
  fillRuns(mask, 1, Math.round(0.1 / HOP_S), 0);
  return mask;
}

/** Set interior runs of `value` shorter than `maxLen` to `to`. */
function fillRuns(mask: Uint8Array, value: number, maxLen: number, to: number): void {
  let t = 0;
  while (t < mask.length) {
    if (mask[t] !== value) {
      t++;
      continue;
    }
    let u = t;
    while (u < mask.length && mask[u] === value) u++;
    const interior = value === 1 || (t > 0 && u < mask.length);
    if (interior && u - t < maxLen) mask.fill(to, t, u);
    t = u;
  }
}

function regionsOf(mask: Uint8Array): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let t = 0;
  while (t < mask.length) {
    if (!mask[t]) {
      t++;
      continue;
    }
    let u = t;
    while (u < mask.length && mask[u]) u++;
    out.push([t, u]);
    t = u;
  }
  return out;
}

/** Windows (frame ranges) over speech regions: `win` long, `step` apart, the last one flush with the region end. */
export function speechWindows(mask: Uint8Array, win: number, step: number, minLen: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const [a, b] of regionsOf(mask)) {
    if (b - a < minLen) continue;
    if (b - a <= win) {
      out.push([a, b]);
      continue;
    }
    let s = a;
    for (; s + win <= b; s += step) out.push([s, s + win]);
    if (s - step + win < b) out.push([b - win, b]);
  }
  return out;
}

/** Per speech frame, the cluster with the most (centre-weighted) window votes; -1 off speech. */
export function frameLabels(mask: Uint8Array, windows: Array<[number, number]>, labels: ArrayLike<number>, k: number): Int32Array {
  const T = mask.length;
  const votes = new Float32Array(T * k);
  windows.forEach(([a, b], i) => {
    const c = labels[i];
    if (c < 0) return;
    const mid = (a + b) / 2;
    const half = (b - a) / 2 + 1;
    for (let t = a; t < b; t++) votes[t * k + c] += 1 - Math.abs(t + 0.5 - mid) / half;
  });
  const out = new Int32Array(T).fill(-1);
  let last = -1;
  for (let t = 0; t < T; t++) {
    if (!mask[t]) continue;
    let best = -1;
    let bv = 0;
    for (let c = 0; c < k; c++) {
      if (votes[t * k + c] > bv) {
        bv = votes[t * k + c];
        best = c;
      }
    }
    // speech frames no window covers (too-short regions) keep the previous speaker
    out[t] = best >= 0 ? best : last;
    if (out[t] >= 0) last = out[t];
  }
  // leading uncovered frames take the first speaker
  const first = out.find((x) => x >= 0) ?? -1;
  for (let t = 0; t < T && mask[t] && out[t] < 0; t++) out[t] = first;
  return out;
}

/**
 * Frame labels → turns: runs of one label; short turns are absorbed by their neighbours, same-speaker
 * turns closer than `joinGapS` are joined; speakers named 'Speaker N' in order of first appearance.
 */
export function labelsToTurns(labels: Int32Array, hopS = HOP_S, p = DIARIZATION_PARAMS): SpeakerTurn[] {
  const runs: Array<{ a: number; b: number; c: number }> = [];
  for (let t = 0; t < labels.length; t++) {
    const c = labels[t];
    if (c < 0) continue;
    const last = runs[runs.length - 1];
    if (last && last.c === c && last.b === t) last.b = t + 1;
    else runs.push({ a: t, b: t + 1, c });
  }
  const minLen = p.minTurnS / hopS;
  // absorb short runs that sit between speech of other speakers (contiguous neighbours)
  for (let changed = true; changed; ) {
    changed = false;
    for (let i = 0; i < runs.length; i++) {
      const r = runs[i];
      if (r.b - r.a >= minLen || runs.length === 1) continue;
      const prev = runs[i - 1];
      const next = runs[i + 1];
      const gp = prev ? r.a - prev.b : Infinity;
      const gn = next ? next.a - r.b : Infinity;
      if (Math.min(gp, gn) > p.joinGapS / hopS) continue; // an isolated short utterance stays
      r.c = gp <= gn ? prev!.c : next!.c;
      changed = true;
    }
    for (let i = runs.length - 1; i > 0; i--) {
      if (runs[i].c === runs[i - 1].c && runs[i].a - runs[i - 1].b <= p.joinGapS / hopS) {
        runs[i - 1].b = runs[i].b;
        runs.splice(i, 1);
        changed = true;
      }
    }
  }
  const names = new Map<number, string>();
  return runs.map((r) => {
    if (!names.has(r.c)) names.set(r.c, `Speaker ${names.size + 1}`);
    return { start: round(r.a * hopS), end: round(r.b * hopS), speaker: names.get(r.c)! };
  });
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function numClusters(opts: DiarizeOptions): number {
  return opts.speakers && opts.speakers > 0 ? Math.floor(opts.speakers) : 0;
}

// ---------------------------------------------------------------- engines

class BaselineDiarizer implements Diarizer {
  readonly method = 'baseline-mfcc' as const;

  async diarize(samples: Float32Array, opts: DiarizeOptions = {}): Promise<SpeakerTurn[]> {
    opts.signal?.throwIfAborted();
    const fb = kaldiFbank(samples, WESPEAKER_FBANK);
    const mask = speechMask(fb, opts.speech);
    const P = DIARIZATION_PARAMS;
    const win = Math.round(P.windowS / HOP_S);
    const step = Math.round(P.stepS / HOP_S);
    const windows = speechWindows(mask, win, step, Math.round(0.3 / HOP_S));
    if (!windows.length) return [];
    const feats = baselineFeatures(samples, fb);
    opts.signal?.throwIfAborted();
    const vecs: Array<Float64Array | null> = windows.map(([a, b]) => baselineWindowVector(feats, mask, a, b, 20));
    const kept = vecs.map((v, i) => (v ? i : -1)).filter((i) => i >= 0);
    const labels = new Int32Array(windows.length).fill(-1);
    if (kept.length) {
      const X = centreWithBias(
        kept.map((i) => vecs[i]!),
        P.baseline.bias,
      );
      const lab = clusterEmbeddings(X, { numClusters: numClusters(opts), threshold: P.baseline.threshold, minClusterSize: P.baseline.minClusterSize, refine: true });
      kept.forEach((w, j) => (labels[w] = lab[j]));
    }
    const k = Math.max(0, ...labels) + 1;
    return labelsToTurns(frameLabels(mask, windows, labels, k));
  }

  async close(): Promise<void> {}
}

/**
 * Centre the window vectors on their file mean (missing pitch → the mean) and append a constant
 * `bias`: the cosine distance then grows with the Euclidean distance between windows relative to
 * `bias`, so one speaker's windows stay close instead of being blown up by normalisation.
 */
export function centreWithBias(vecs: Float64Array[], bias: number): Float64Array[] {
  const D = vecs[0].length;
  const mean = new Float64Array(D);
  const cnt = new Float64Array(D);
  for (const v of vecs) for (let d = 0; d < D; d++) if (!Number.isNaN(v[d])) (mean[d] += v[d]), cnt[d]++;
  for (let d = 0; d < D; d++) mean[d] = cnt[d] ? mean[d] / cnt[d] : 0;
  return vecs.map((v) => {
    const o = new Float64Array(D + 1);
    for (let d = 0; d < D; d++) o[d] = Number.isNaN(v[d]) ? 0 : v[d] - mean[d];
    o[D] = bias;
    return o;
  });
}

class WespeakerDiarizer implements Diarizer {
  readonly method: Diarizer['method'] = 'wespeaker';
  constructor(protected readonly emb: WespeakerEmbedder) {}

  async diarize(samples: Float32Array, opts: DiarizeOptions = {}): Promise<SpeakerTurn[]> {
    opts.signal?.throwIfAborted();
    const fb = kaldiFbank(samples, WESPEAKER_FBANK);
    const mask = speechMask(fb, opts.speech);
    const P = DIARIZATION_PARAMS;
    const windows = speechWindows(mask, Math.round(P.windowS / HOP_S), Math.round(P.stepS / HOP_S), Math.max(WESPEAKER_MIN_FRAMES, Math.round(0.5 / HOP_S)));
    if (!windows.length) return [];
    const embs = await this.emb.embedRanges(fb, windows, 16, opts.signal);
    const labels = clusterEmbeddings(embs, { numClusters: numClusters(opts), threshold: P.wespeaker.threshold, minClusterSize: P.wespeaker.minClusterSize, refine: true });
    const k = Math.max(0, ...labels) + 1;
    return labelsToTurns(frameLabels(mask, windows, labels, k));
  }

  async close(): Promise<void> {
    await this.emb.close();
  }
}

class PyannoteWespeakerDiarizer implements Diarizer {
  readonly method = 'pyannote+wespeaker' as const;
  constructor(
    private readonly seg: PyannoteSegmenter,
    private readonly emb: WespeakerEmbedder,
  ) {}

  async diarize(samples: Float32Array, opts: DiarizeOptions = {}): Promise<SpeakerTurn[]> {
    opts.signal?.throwIfAborted();
    const N = SEGMENTATION_CHUNK_SAMPLES;
    const stepSamples = N / 2; // 5 s hop
    const g = segmentationGeometry();
    const fb = kaldiFbank(samples, WESPEAKER_FBANK);
    const starts: number[] = [];
    for (let s = 0; ; s += stepSamples) {
      starts.push(s);
      if (s + N >= samples.length) break;
    }
    // 1. local segmentation, chunk by chunk (batches of 4)
    const local: Array<{ start: number; act: Float32Array; frames: number }> = [];
    for (let i = 0; i < starts.length; i += 4) {
      opts.signal?.throwIfAborted();
      const batch = starts.slice(i, i + 4).map((s) => {
        const c = new Float32Array(N);
        c.set(samples.subarray(s, Math.min(samples.length, s + N)));
        return c;
      });
      const r = await this.seg.run(batch);
      r.logp.forEach((lp, j) => local.push({ start: starts[i + j], act: powersetToMultilabel(lp, r.frames), frames: r.frames }));
    }
    const S = 3;
    // 2. one embedding per (chunk, local speaker) from the fbank frames where it speaks alone
    const items: Array<{ chunk: number; spk: number; frames: number[] }> = [];
    local.forEach((c, ci) => {
      for (let s = 0; s < S; s++) {
        const fr = new Set<number>();
        for (let i = 0; i < c.frames; i++) {
          let n = 0;
          for (let q = 0; q < S; q++) n += c.act[i * S + q];
          if (c.act[i * S + s] !== 1 || n !== 1) continue;
          const a = Math.floor((c.start + i * g.stepSamples) / WESPEAKER_FBANK.frameShift);
          const b = Math.floor((c.start + (i + 1) * g.stepSamples) / WESPEAKER_FBANK.frameShift);
          for (let t = a; t < b && t < fb.frames; t++) fr.add(t);
        }
        if (fr.size >= Math.round(0.5 / HOP_S)) items.push({ chunk: ci, spk: s, frames: [...fr].sort((x, y) => x - y) });
      }
    });
    if (!items.length) return [];
    const embs: Float32Array[] = [];
    for (const it of items) {
      opts.signal?.throwIfAborted();
      const sub: Fbank = { nMels: fb.nMels, frames: it.frames.length, data: new Float32Array(it.frames.length * fb.nMels) };
      it.frames.forEach((t, j) => sub.data.set(fb.data.subarray(t * fb.nMels, (t + 1) * fb.nMels), j * fb.nMels));
      const [e] = await this.emb.embedRanges(sub, [[0, sub.frames]]);
      embs.push(e);
    }
    const labels = clusterEmbeddings(embs, { numClusters: numClusters(opts), threshold: DIARIZATION_PARAMS.wespeaker.threshold });
    const K = Math.max(...labels) + 1;
    // 3. aggregate chunk activities per global speaker on the segmentation frame grid
    const map = new Map<string, number>();
    items.forEach((it, i) => map.set(`${it.chunk}/${it.spk}`, labels[i]));
    const totalFrames = Math.ceil(samples.length / g.stepSamples);
    const sum = new Float32Array(totalFrames * K);
    const cover = new Float32Array(totalFrames);
    local.forEach((c, ci) => {
      const off = c.start / g.stepSamples;
      for (let i = 0; i < c.frames; i++) {
        const t = off + i;
        if (t >= totalFrames || c.start + i * g.stepSamples >= samples.length) break;
        cover[t]++;
        for (let s = 0; s < S; s++) {
          const k = map.get(`${ci}/${s}`);
          if (k !== undefined && c.act[i * S + s]) sum[t * K + k]++;
        }
      }
    });
    const turns: SpeakerTurn[] = [];
    const firstSeen: number[] = [];
    for (let k = 0; k < K; k++) {
      const lab = new Int32Array(totalFrames).fill(-1);
      for (let t = 0; t < totalFrames; t++) if (cover[t] && sum[t * K + k] / cover[t] >= 0.5) lab[t] = k;
      const centreOffset = g.centerOffsetSamples / SR - g.stepS / 2;
      for (const tr of labelsToTurns(lab, g.stepS)) {
        turns.push({ start: round(tr.start + centreOffset), end: round(tr.end + centreOffset), speaker: String(k) });
        if (firstSeen[k] === undefined) firstSeen[k] = tr.start;
      }
    }
    turns.sort((a, b) => a.start - b.start || a.end - b.end);
    const names = new Map<string, string>();
    return turns.map((t) => {
      if (!names.has(t.speaker)) names.set(t.speaker, `Speaker ${names.size + 1}`);
      return { ...t, start: Math.max(0, t.start), speaker: names.get(t.speaker)! };
    });
  }

  async close(): Promise<void> {
    await Promise.all([this.seg.close(), this.emb.close()]);
  }
}
