/**
 * Split a whole 16 kHz mono signal into speech chunks for Whisper:
 * - VAD probabilities -> padded speech segments via the pure segmenter ({@link segmentProbabilities});
 * - silence between segments is skipped;
 * - neighbouring segments closer than `maxMergeGapS` are merged (gap included) as long as the
 *   merged chunk stays <= `maxChunkS`, so Whisper gets sentence context instead of fragments;
 * - every chunk is <= maxChunkS (Whisper's 30 s window); longer speech is cut by the segmenter.
 */
import { PcmBuffer } from '../audio/pcm-buffer.ts';
import { createSegmenterState, segmentProbabilities, segmenterFinish, segmenterReducer, resolveSegmenterOptions, type SegmenterEvent, type SegmenterOptions } from './segmenter.ts';

export interface ChunkerOptions extends SegmenterOptions {
  /** Upper bound for a chunk, seconds. Default 30 (also caps segmenter's maxUtteranceS). */
  maxChunkS?: number;
  /** Merge neighbouring segments when the silence between them is <= this. Default 1.0 s. */
  maxMergeGapS?: number;
  /** Drop chunks shorter than this after merging, seconds. Default 0 (keep all). */
  minChunkS?: number;
}

export interface SpeechSegmentRef {
  startSample: number;
  endSample: number;
}

export interface SpeechChunk {
  /** 0-based position in the returned list. */
  index: number;
  /** Seconds from the start of the audio. */
  start: number;
  end: number;
  /** Sample offsets (end exclusive) into the input signal. */
  startSample: number;
  endSample: number;
  /** View (no copy) of the chunk's samples. */
  audio: Float32Array;
  /** The VAD segments merged into this chunk (padded), in order. */
  segments: SpeechSegmentRef[];
}

export const DEFAULT_CHUNKER_OPTIONS = Object.freeze({ maxChunkS: 30, maxMergeGapS: 1.0, minChunkS: 0 });

/**
 * Pure: turn a signal + its per-frame speech probabilities (frame = 512 samples) into chunks.
 * `probs.length` should be ceil(samples.length / frameSamples).
 */
export function chunkSpeech(samples: Float32Array, probs: ArrayLike<number>, opts: ChunkerOptions = {}): SpeechChunk[] {
  const maxChunkS = opts.maxChunkS ?? DEFAULT_CHUNKER_OPTIONS.maxChunkS;
  const maxMergeGapS = opts.maxMergeGapS ?? DEFAULT_CHUNKER_OPTIONS.maxMergeGapS;
  const minChunkS = opts.minChunkS ?? DEFAULT_CHUNKER_OPTIONS.minChunkS;
  const segOpts: SegmenterOptions = { ...opts, maxUtteranceS: Math.min(opts.maxUtteranceS ?? maxChunkS, maxChunkS) };
  const resolved = resolveSegmenterOptions(segOpts);
  const sr = resolved.sampleRate;
  const maxChunkSamples = Math.floor(maxChunkS * sr);
  const maxGapSamples = Math.round(maxMergeGapS * sr);
  const minChunkSamples = Math.round(minChunkS * sr);

  const segments = segmentProbabilities(probs, resolved, samples.length)
    .map((s) => ({ startSample: Math.max(0, s.startSample), endSample: Math.min(samples.length, s.endSample) }))
    .filter((s) => s.endSample > s.startSample);

  const groups: SpeechSegmentRef[][] = [];
  for (const seg of segments) {
    const g = groups[groups.length - 1];
    if (g) {
      const first = g[0];
      const last = g[g.length - 1];
      if (seg.startSample - last.endSample <= maxGapSamples && seg.endSample - first.startSample <= maxChunkSamples) {
        g.push(seg);
        continue;
      }
    }
    groups.push([seg]);
  }

  const chunks: SpeechChunk[] = [];
  for (const g of groups) {
    const startSample = g[0].startSample;
    const endSample = g[g.length - 1].endSample;
    if (endSample - startSample < minChunkSamples) continue;
    chunks.push({
      index: chunks.length,
      start: startSample / sr,
      end: endSample / sr,
      startSample,
      endSample,
      audio: samples.subarray(startSample, endSample),
      segments: g,
    });
  }
  return chunks;
}

/** Anything that can score a whole signal (SileroVad does; tests can pass a fake). */
export interface SpeechProbabilitySource {
  speechProbabilities(samples: Float32Array, opts?: { signal?: AbortSignal }): Promise<Float32Array>;
}

/** Run the VAD over a whole decoded file and chunk it. */
export async function splitFileIntoSpeechChunks(samples: Float32Array, vad: SpeechProbabilitySource, opts: ChunkerOptions & { signal?: AbortSignal } = {}): Promise<SpeechChunk[]> {
  const { signal, ...chunkOpts } = opts;
  const probs = await vad.speechProbabilities(samples, signal ? { signal } : {});
  return chunkSpeech(samples, probs, chunkOpts);
}

// ---------------------------------------------------------------------------------------------
// Streaming: PCM blocks in, speech chunks out, memory bounded by one VAD block + one open chunk.
// ---------------------------------------------------------------------------------------------

/** The frame-level VAD API the streaming chunker drives (SileroVad implements it). */
export interface StreamingVad {
  createStream(): VadStreamLike;
  processBatch(items: ReadonlyArray<{ stream: VadStreamLike; frame: Float32Array }>): Promise<number[]>;
}
/** A VAD's per-stream recurrent state (opaque here). */
export type VadStreamLike = object;

const FRAME = 512;
/** Warm-up frames of a lane that starts inside a block (as SileroVad.speechProbabilities). */
const LANE_WARMUP = 256;
const MAX_LANES = 16;
/**
 * Frames per VAD block (16 lanes × 2048 frames ≈ 17.5 min, 67 MB of float32). A file that fits
 * in one block gets exactly the probabilities of SileroVad.speechProbabilities over the whole
 * signal; longer files are scored block by block, lane 0 of each block continuing the recurrent
 * state of the previous block's last lane.
 */
export const DEFAULT_VAD_BLOCK_FRAMES = MAX_LANES * 2048;

export interface StreamChunkerOptions extends ChunkerOptions {
  signal?: AbortSignal;
  /** Frames per VAD block (see {@link DEFAULT_VAD_BLOCK_FRAMES}); tests use small blocks. */
  blockFrames?: number;
}

/**
 * Speech probabilities of frames [first, first + n) of `win` in lanes, as
 * SileroVad.speechProbabilities does for a whole signal. `carry` (the recurrent state at `first`)
 * continues lane 0; without it lane 0 starts fresh. Returns the probabilities and the state at
 * the end of the block (its last lane).
 */
async function scoreBlock(vad: StreamingVad, win: PcmBuffer, first: number, n: number, carry: VadStreamLike | null, signal?: AbortSignal): Promise<{ probs: Float32Array; last: VadStreamLike }> {
  const probs = new Float32Array(n);
  const lanes = Math.max(1, Math.min(MAX_LANES, Math.floor(n / (4 * LANE_WARMUP))));
  const per = Math.ceil(n / lanes);
  const parts = Array.from({ length: lanes }, (_, k) => {
    const f = k * per;
    const from = k === 0 ? 0 : Math.max(0, f - LANE_WARMUP);
    return { stream: k === 0 && carry ? carry : vad.createStream(), from, first: f, end: Math.min(n, f + per) };
  }).filter((p) => p.first < p.end);
  const frameAt = (i: number): Float32Array => {
    const s = (first + i) * FRAME;
    const frame = win.view(s, s + FRAME);
    if (frame.length === FRAME) return frame;
    const pad = new Float32Array(FRAME);
    pad.set(frame);
    return pad;
  };
  const steps = Math.max(...parts.map((p) => p.end - p.from));
  for (let t = 0; t < steps; t++) {
    if ((t & 255) === 0) signal?.throwIfAborted();
    const live = parts.filter((p) => p.from + t < p.end);
    const out = await vad.processBatch(live.map((p) => ({ stream: p.stream, frame: frameAt(p.from + t) })));
    live.forEach((p, j) => {
      const i = p.from + t;
      if (i >= p.first) probs[i] = out[j];
    });
  }
  return { probs, last: parts[parts.length - 1].stream };
}

/**
 * Streaming {@link splitFileIntoSpeechChunks}: reads 16 kHz PCM pieces from `source` (any sizes),
 * yields speech chunks (audio copied, so the caller may keep them) as soon as they are final.
 * Pulls from `source` only while the consumer pulls chunks (back-pressure), and holds at most one
 * VAD block plus the samples of the chunk still open, whatever the length of the stream. For a
 * stream shorter than one block the chunks equal those of splitFileIntoSpeechChunks with
 * SileroVad.speechProbabilities. `onScored` reports the samples scored so far (progress).
 */
export async function* streamSpeechChunks(
  source: AsyncIterable<Float32Array>,
  vad: StreamingVad,
  opts: StreamChunkerOptions & { onScored?: (samples: number) => void } = {},
): AsyncGenerator<SpeechChunk, void, undefined> {
  const { signal, blockFrames = DEFAULT_VAD_BLOCK_FRAMES, onScored, ...chunkOpts } = opts;
  const maxChunkS = chunkOpts.maxChunkS ?? DEFAULT_CHUNKER_OPTIONS.maxChunkS;
  const maxGapSamples = Math.round((chunkOpts.maxMergeGapS ?? DEFAULT_CHUNKER_OPTIONS.maxMergeGapS) * 16000);
  const resolved = resolveSegmenterOptions({ ...chunkOpts, maxUtteranceS: Math.min(chunkOpts.maxUtteranceS ?? maxChunkS, maxChunkS) });
  const sr = resolved.sampleRate;
  const maxChunkSamples = Math.floor(maxChunkS * sr);
  const minChunkSamples = Math.round((chunkOpts.minChunkS ?? DEFAULT_CHUNKER_OPTIONS.minChunkS) * sr);
  if (resolved.frameSamples !== FRAME) throw new RangeError(`streamSpeechChunks needs ${FRAME}-sample frames`);

  // +25 %, not ×2: the window peaks at one VAD block, and doubling would reserve twice that.
  const win = new PcmBuffer(1 << 16, { growth: 1.25 });
  let seg = createSegmenterState(resolved);
  let group: SpeechSegmentRef[] = [];
  let emitted = 0;
  let scoredFrames = 0; // frames [0, scoredFrames) went through the VAD and the segmenter
  let carry: VadStreamLike | null = null;

  const closeGroup = (): SpeechChunk | null => {
    const g = group;
    group = [];
    if (!g.length) return null;
    const startSample = g[0].startSample;
    const endSample = g[g.length - 1].endSample;
    if (endSample - startSample < minChunkSamples) return null;
    return { index: emitted++, start: startSample / sr, end: endSample / sr, startSample, endSample, audio: win.view(startSample, endSample).slice(), segments: g };
  };
  /** Add a finished segment (clipped to the signal); returns the chunk it closed, if any. */
  const addSegment = (s: SpeechSegmentRef, total: number): SpeechChunk | null => {
    const c = { startSample: Math.max(0, s.startSample), endSample: Math.min(total, s.endSample) };
    if (c.endSample <= c.startSample) return null;
    const first = group[0];
    const last = group[group.length - 1];
    if (first && c.startSample - last.endSample <= maxGapSamples && c.endSample - first.startSample <= maxChunkSamples) {
      group.push(c);
      return null;
    }
    const out = closeGroup();
    group = [c];
    return out;
  };
  /** Earliest sample a segment still to come can start at (segmenter rules). */
  const nextSegmentFloor = (): number => {
    const o = seg.opts;
    if (seg.triggered) return seg.confirmed ? seg.segStart : Math.max(0, seg.lastEnd, seg.speechStart - o.padSamples);
    return Math.max(0, seg.lastEnd, (seg.lastFrameIndex + 1) * o.frameSamples - o.padSamples);
  };

  /** Score frames [scoredFrames, scoredFrames + n), run the segmenter, collect the chunks that became final. */
  async function* scoreAndSegment(n: number, final: boolean): AsyncGenerator<SpeechChunk> {
    const total = win.end;
    const { probs, last } = await scoreBlock(vad, win, scoredFrames, n, carry, signal);
    carry = last;
    const ready: SpeechChunk[] = [];
    const collect = (events: SegmenterEvent[]) => {
      for (const e of events) {
        if (e.type !== 'speech_end') continue;
        const c = addSegment({ startSample: e.startSample, endSample: e.endSample }, total);
        if (c) ready.push(c);
      }
    };
    for (let i = 0; i < n; i++) {
      const step = segmenterReducer(seg, { prob: probs[i], frameIndex: scoredFrames + i });
      seg = step.state;
      collect(step.events);
    }
    scoredFrames += n;
    onScored?.(Math.min(total, scoredFrames * FRAME));
    if (final) {
      collect(segmenterFinish(seg, total).events);
      const c = closeGroup();
      if (c) ready.push(c);
    } else {
      // A group no later segment can join is final now (identical result, and its samples can go).
      const floor = nextSegmentFloor();
      const first = group[0];
      const lastSeg = group[group.length - 1];
      if (first && (floor - lastSeg.endSample > maxGapSamples || floor - first.startSample >= maxChunkSamples)) {
        const c = closeGroup();
        if (c) ready.push(c);
      }
      win.dropBefore(Math.min(group[0]?.startSample ?? Infinity, floor));
    }
    yield* ready;
  }

  for await (const piece of source) {
    signal?.throwIfAborted();
    win.append(piece);
    // Whole blocks only while the stream goes on: the last (partial) block is scored at the end.
    while (Math.floor(win.end / FRAME) - scoredFrames > blockFrames) {
      yield* scoreAndSegment(blockFrames, false);
    }
  }
  signal?.throwIfAborted();
  // Whole blocks were scored only while more than a block was waiting, so the stream's last frame
  // (if any) is always left for this final, possibly partial, block.
  const rest = Math.ceil(win.end / FRAME) - scoredFrames;
  if (rest > 0) yield* scoreAndSegment(rest, true);
}
