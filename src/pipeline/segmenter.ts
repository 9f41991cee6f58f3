/**
 * Incremental speech segmenter: a PURE reducer over per-frame VAD probabilities.
 *
 *   let s = createSegmenterState({ threshold: 0.5 });
 *   for each frame i: ({ state: s, events } = segmenterReducer(s, { prob, frameIndex: i }));
 *   at end of input: ({ state: s, events } = segmenterFinish(s, totalSamples));
 *
 * No I/O, no mutation of its inputs (state objects are frozen-by-convention and replaced on
 * every step), so the same code drives live streams (feed frames as they arrive) and whole
 * files (fold over the probability array), and it is trivially unit-testable.
 *
 * Rules mirror Silero's `get_speech_timestamps`:
 * - speech is entered at the first frame with prob >= threshold;
 * - while in speech, a frame with prob < negThreshold starts a silence candidate (`tempEnd`);
 *   a frame >= threshold cancels it; once the silence has lasted minSilenceMs the segment ends
 *   at the start of the silence;
 * - segments whose (end - start) is not > minSpeechMs are dropped;
 * - segments are padded by speechPadMs on both sides, never overlapping the previous segment
 *   and splitting the gap in half when it is shorter than 2 * speechPadMs.
 * Differences (needed to be incremental):
 * - `speech_start` is emitted only once the segment is certain to pass minSpeechMs, so live
 *   consumers never see a start that is later retracted;
 * - maxUtteranceS: instead of Silero's "last silence >= 98 ms else hard cut", the segment is cut
 *   at the lowest-probability frame among the last `cutSearchS` seconds (centre of that frame),
 *   and the next segment starts at the cut without padding (speech continues there). If the
 *   stream is inside a silence candidate at that moment, the segment simply ends at the silence;
 * - at end of input an open segment ends at its silence candidate (if any) rather than at the
 *   very end of the audio.
 * Every emitted segment satisfies endSample - startSample <= maxUtteranceS * sampleRate.
 */

export interface SegmenterOptions {
  /** Speech starts when prob >= threshold. Default 0.5. */
  threshold?: number;
  /** Speech may end when prob < negThreshold (hysteresis). Default max(threshold - 0.15, 0.01). */
  negThreshold?: number;
  /** Segments not longer than this (before padding) are dropped. Default 250 ms. */
  minSpeechMs?: number;
  /** Silence needed to end an utterance. Default 500 ms. */
  minSilenceMs?: number;
  /** Padding added on both sides of a segment. Default 200 ms. */
  speechPadMs?: number;
  /** Hard upper bound of a segment (padding included); longer speech is cut. Default 30 s. */
  maxUtteranceS?: number;
  /** How far back to look for the quietest frame when forcing a cut. Default 5 s. */
  cutSearchS?: number;
  /** Samples per VAD frame. Default 512. */
  frameSamples?: number;
  /** Default 16000. */
  sampleRate?: number;
}

export interface ResolvedSegmenterOptions {
  readonly threshold: number;
  readonly negThreshold: number;
  readonly minSpeechMs: number;
  readonly minSilenceMs: number;
  readonly speechPadMs: number;
  readonly maxUtteranceS: number;
  readonly cutSearchS: number;
  readonly frameSamples: number;
  readonly sampleRate: number;
  // Derived, in samples / frames:
  readonly minSpeechSamples: number;
  readonly minSilenceSamples: number;
  readonly padSamples: number;
  readonly maxSamples: number;
  readonly cutSearchFrames: number;
}

export const DEFAULT_SEGMENTER_OPTIONS = Object.freeze({
  threshold: 0.5,
  minSpeechMs: 250,
  minSilenceMs: 500,
  speechPadMs: 200,
  maxUtteranceS: 30,
  cutSearchS: 5,
  frameSamples: 512,
  sampleRate: 16000,
});

export function resolveSegmenterOptions(opts: SegmenterOptions = {}): ResolvedSegmenterOptions {
  const o = { ...DEFAULT_SEGMENTER_OPTIONS, ...stripUndefined(opts) };
  const negThreshold = opts.negThreshold ?? Math.max(o.threshold - 0.15, 0.01);
  const sr = o.sampleRate;
  const frameSamples = o.frameSamples;
  if (!(o.threshold > 0 && o.threshold <= 1)) throw new RangeError(`threshold must be in (0, 1], got ${o.threshold}`);
  if (!(negThreshold >= 0 && negThreshold <= o.threshold)) throw new RangeError(`negThreshold must be in [0, threshold], got ${negThreshold}`);
  if (!(Number.isInteger(frameSamples) && frameSamples > 0)) throw new RangeError(`frameSamples must be a positive integer`);
  if (!(Number.isInteger(sr) && sr > 0)) throw new RangeError(`sampleRate must be a positive integer`);
  const padSamples = Math.floor((sr * o.speechPadMs) / 1000);
  const maxSamples = Math.floor(o.maxUtteranceS * sr);
  if (maxSamples < 2 * padSamples + 4 * frameSamples) {
    throw new RangeError(`maxUtteranceS (${o.maxUtteranceS}) is too small for speechPadMs ${o.speechPadMs}`);
  }
  return Object.freeze({
    threshold: o.threshold,
    negThreshold,
    minSpeechMs: o.minSpeechMs,
    minSilenceMs: o.minSilenceMs,
    speechPadMs: o.speechPadMs,
    maxUtteranceS: o.maxUtteranceS,
    cutSearchS: o.cutSearchS,
    frameSamples,
    sampleRate: sr,
    minSpeechSamples: (sr * o.minSpeechMs) / 1000,
    minSilenceSamples: (sr * o.minSilenceMs) / 1000,
    padSamples,
    maxSamples,
    cutSearchFrames: Math.max(1, Math.round((o.cutSearchS * sr) / frameSamples)),
  });
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export interface RecentFrame {
  readonly frameIndex: number;
  readonly prob: number;
}

export interface SegmenterState {
  readonly opts: ResolvedSegmenterOptions;
  /** Inside a (possibly unconfirmed) speech segment. */
  readonly triggered: boolean;
  /** speech_start has been emitted for the current segment. */
  readonly confirmed: boolean;
  /** Raw (unpadded) start sample of the current segment. */
  readonly speechStart: number;
  /** Emitted (padded) start sample of the current segment; valid when confirmed. */
  readonly segStart: number;
  /** Start sample of the current silence candidate, or null. */
  readonly tempEnd: number | null;
  /** End sample of the last emitted segment (padding never reaches before it). */
  readonly lastEnd: number;
  /** The frames of the last cutSearchS seconds, oldest first (for choosing a forced cut). */
  readonly recent: readonly RecentFrame[];
  /** Index of the last frame seen, -1 before the first. */
  readonly lastFrameIndex: number;
}

export type SegmenterEvent =
  | { type: 'speech_start' /** padded start sample */; sample: number; frameIndex: number }
  | {
      type: 'speech_end';
      /** padded start sample (same as the matching speech_start) */
      startSample: number;
      /** padded end sample (exclusive) */
      endSample: number;
      reason: 'silence' | 'max_length' | 'end_of_stream';
      frameIndex: number;
    };

export interface SegmenterFrame {
  prob: number;
  frameIndex: number;
}

export interface SegmenterStep {
  state: SegmenterState;
  events: SegmenterEvent[];
}

export function createSegmenterState(opts: SegmenterOptions | ResolvedSegmenterOptions = {}): SegmenterState {
  const resolved = 'padSamples' in opts ? (opts as ResolvedSegmenterOptions) : resolveSegmenterOptions(opts);
  return {
    opts: resolved,
    triggered: false,
    confirmed: false,
    speechStart: 0,
    segStart: 0,
    tempEnd: null,
    lastEnd: 0,
    recent: [],
    lastFrameIndex: -1,
  };
}

/** Feed one frame's speech probability. Frames must arrive with increasing frameIndex. */
export function segmenterReducer(state: SegmenterState, frame: SegmenterFrame): SegmenterStep {
  const o = state.opts;
  const { prob, frameIndex: i } = frame;
  if (!(i > state.lastFrameIndex)) {
    throw new RangeError(`segmenterReducer: frameIndex must increase (got ${i} after ${state.lastFrameIndex})`);
  }
  const W = o.frameSamples;
  const cur = i * W;
  // Keep the frames of the last cutSearchFrames (frame indices may have gaps).
  let keepFrom = 0;
  while (keepFrom < state.recent.length && state.recent[keepFrom].frameIndex <= i - o.cutSearchFrames) keepFrom++;
  const recent: readonly RecentFrame[] = [...(keepFrom ? state.recent.slice(keepFrom) : state.recent), { frameIndex: i, prob }];
  let s: SegmenterState = { ...state, recent, lastFrameIndex: i };
  const events: SegmenterEvent[] = [];

  if (prob >= o.threshold && s.tempEnd !== null) s = { ...s, tempEnd: null };

  if (prob >= o.threshold && !s.triggered) {
    s = { ...s, triggered: true, confirmed: false, speechStart: cur, tempEnd: null };
    return { state: maybeConfirm(s, i, events), events };
  }
  if (!s.triggered) return { state: s, events };

  if (prob < o.negThreshold) {
    const tempEnd = s.tempEnd ?? cur;
    s = { ...s, tempEnd };
    if (!s.confirmed) s = maybeConfirm(s, i, events);
    if (cur - tempEnd >= o.minSilenceSamples) {
      // Next segment can start at (i + 1) * W at the earliest: split the gap if it is short.
      const endPad = Math.min(o.padSamples, Math.floor(((i + 1) * W - tempEnd) / 2));
      return { state: closeSegment(s, tempEnd, endPad, 'silence', i, events), events };
    }
  }

  if (!s.confirmed) s = maybeConfirm(s, i, events);

  if (s.confirmed && (i + 1) * W + o.padSamples - s.segStart > o.maxSamples) {
    s = forceCut(s, i, events);
  }
  return { state: s, events };
}

/**
 * End of input: close an open segment (if long enough). `totalSamples` defaults to the end of
 * the last frame seen. Returns a state ready for more input (e.g. a reused stream).
 */
export function segmenterFinish(state: SegmenterState, totalSamples?: number): SegmenterStep {
  const o = state.opts;
  const total = totalSamples ?? (state.lastFrameIndex + 1) * o.frameSamples;
  const events: SegmenterEvent[] = [];
  if (!state.triggered) return { state: { ...state, recent: [] }, events };
  const rawEnd = Math.min(total, state.tempEnd ?? total);
  let s = state;
  if (!s.confirmed) {
    if (!(rawEnd - s.speechStart > o.minSpeechSamples)) {
      return { state: { ...s, triggered: false, confirmed: false, tempEnd: null, recent: [] }, events };
    }
    const sample = Math.max(0, s.lastEnd, s.speechStart - o.padSamples);
    events.push({ type: 'speech_start', sample, frameIndex: s.lastFrameIndex });
    s = { ...s, confirmed: true, segStart: sample };
  }
  const endPad = Math.max(0, Math.min(o.padSamples, total - rawEnd));
  s = closeSegment(s, rawEnd, endPad, 'end_of_stream', s.lastFrameIndex, events);
  return { state: { ...s, recent: [] }, events };
}

/**
 * The (padded) start sample of a segment that is not confirmed yet but has been speech for at least
 * `minMs` (live partials may start on it, before `speech_start`); null otherwise. It is the sample
 * `speech_start` will carry if the segment is confirmed. Pure.
 */
export function tentativeStart(s: SegmenterState, minMs: number): number | null {
  if (!s.triggered || s.confirmed) return null;
  const o = s.opts;
  const heard = (s.tempEnd ?? (s.lastFrameIndex + 1) * o.frameSamples) - s.speechStart;
  if (heard < (minMs * o.sampleRate) / 1000) return null;
  return Math.max(0, s.lastEnd, s.speechStart - o.padSamples);
}

/** Emit speech_start once the segment will certainly be longer than minSpeechMs. */
function maybeConfirm(s: SegmenterState, i: number, events: SegmenterEvent[]): SegmenterState {
  const o = s.opts;
  // The segment's final end is >= tempEnd if in a silence candidate, else >= the end of this frame.
  const knownEnd = s.tempEnd ?? (i + 1) * o.frameSamples;
  if (!(knownEnd - s.speechStart > o.minSpeechSamples)) return s;
  const sample = Math.max(0, s.lastEnd, s.speechStart - o.padSamples);
  events.push({ type: 'speech_start', sample, frameIndex: i });
  return { ...s, confirmed: true, segStart: sample };
}

function closeSegment(s: SegmenterState, rawEnd: number, endPad: number, reason: 'silence' | 'end_of_stream' | 'max_length', i: number, events: SegmenterEvent[]): SegmenterState {
  const o = s.opts;
  if (s.confirmed) {
    const endSample = Math.min(rawEnd + Math.max(0, endPad), s.segStart + o.maxSamples);
    events.push({ type: 'speech_end', startSample: s.segStart, endSample, reason, frameIndex: i });
    return { ...s, triggered: false, confirmed: false, tempEnd: null, lastEnd: endSample };
  }
  // Unconfirmed => shorter than minSpeech: dropped silently.
  return { ...s, triggered: false, confirmed: false, tempEnd: null };
}

function forceCut(s: SegmenterState, i: number, events: SegmenterEvent[]): SegmenterState {
  const o = s.opts;
  const W = o.frameSamples;
  if (s.tempEnd !== null) {
    // Already in a silence candidate: end the utterance there (no need to cut speech).
    return closeSegment(s, s.tempEnd, o.padSamples, 'max_length', i, events);
  }
  // Lowest-probability frame among the recent ones that belong to this segment (ties: latest).
  const firstFrameOfSegment = Math.ceil(s.speechStart / W) + 1;
  let best = i;
  let bestP = Infinity;
  for (let k = s.recent.length - 1; k >= 0; k--) {
    const { frameIndex: f, prob } = s.recent[k];
    if (f < firstFrameOfSegment) break;
    if (prob < bestP) {
      bestP = prob;
      best = f;
    }
  }
  const cut = Math.min(best * W + Math.floor(W / 2), s.segStart + o.maxSamples);
  events.push({ type: 'speech_end', startSample: s.segStart, endSample: cut, reason: 'max_length', frameIndex: i });
  events.push({ type: 'speech_start', sample: cut, frameIndex: i });
  return { ...s, triggered: true, confirmed: true, speechStart: cut, segStart: cut, tempEnd: null, lastEnd: cut };
}

/** Fold a whole probability sequence; returns padded [startSample, endSample) segments. */
export function segmentProbabilities(
  probs: ArrayLike<number>,
  opts: SegmenterOptions = {},
  totalSamples?: number,
): Array<{ startSample: number; endSample: number; reason: 'silence' | 'max_length' | 'end_of_stream' }> {
  let s = createSegmenterState(opts);
  const out: Array<{ startSample: number; endSample: number; reason: 'silence' | 'max_length' | 'end_of_stream' }> = [];
  const collect = (events: SegmenterEvent[]) => {
    for (const e of events) if (e.type === 'speech_end') out.push({ startSample: e.startSample, endSample: e.endSample, reason: e.reason });
  };
  for (let i = 0; i < probs.length; i++) {
    const step = segmenterReducer(s, { prob: probs[i], frameIndex: i });
    s = step.state;
    collect(step.events);
  }
  collect(segmenterFinish(s, totalSamples ?? probs.length * s.opts.frameSamples).events);
  return out;
}
