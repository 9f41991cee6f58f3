/**
 * Split a whole 16 kHz mono signal into speech chunks for Whisper:
 * - VAD probabilities -> padded speech segments via the pure segmenter ({@link segmentProbabilities});
 * - silence between segments is skipped;
 * - neighbouring segments closer than `maxMergeGapS` are merged (gap included) as long as the
 *   merged chunk stays <= `maxChunkS`, so Whisper gets sentence context instead of fragments;
 * - every chunk is <= maxChunkS (Whisper's 30 s window); longer speech is cut by the segmenter.
 */
import {
  segmentProbabilities,
  resolveSegmenterOptions,
  type SegmenterOptions,
} from './segmenter.ts';

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
export async function splitFileIntoSpeechChunks(
  samples: Float32Array,
  vad: SpeechProbabilitySource,
  opts: ChunkerOptions & { signal?: AbortSignal } = {},
): Promise<SpeechChunk[]> {
  const { signal, ...chunkOpts } = opts;
  const probs = await vad.speechProbabilities(samples, signal ? { signal } : {});
  return chunkSpeech(samples, probs, chunkOpts);
}
