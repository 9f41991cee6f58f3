/**
 * The one result model of the server and the one mapping into it.
 *
 * `Segment`/`Word`/`Transcript` are the shapes of the public API (POST /v1/transcribe response),
 * of stored transcripts (store/transcripts.ts), of exports and captions (formats/captions.ts) and
 * of a live stream's finals (pipeline/stream-session.ts). Every one of them is made from an engine
 * decode by {@link toSegments} (plus {@link mergeSegments} for a stream's final), so a file, a
 * WebSocket stream and a WebRTC session give the same numbers for the same audio.
 *
 * This module sits in `formats/` (layer 1) because the store and the caption writers use the model;
 * the mapping therefore reads the decode through the structural {@link DecodedSegment} (what the
 * Whisper engine's `TranscriptSegment` has) instead of importing the engine.
 */
export interface Word {
  word: string;
  start: number;
  end: number;
  probability?: number;
  speaker?: string;
}

export interface Segment {
  start: number;
  end: number;
  text: string;
  speaker?: string | null;
  confidence: number;
  words: Word[];
}

export interface Transcript {
  text: string;
  language: string;
  /** Audio duration in seconds (to the millisecond: a measured length, not a result time). */
  duration: number;
  segments: Segment[];
  speakers: string[];
}

/** A word of a decode: times in seconds from the start of the decoded audio. */
export interface DecodedWord {
  word: string;
  start: number;
  end: number;
}

/** A segment of a decode (the Whisper engine's `TranscriptSegment` is one): times from the start of the decoded audio. */
export interface DecodedSegment {
  start: number;
  end: number;
  text: string;
  /** Mean log-probability of the tokens of the segment's window. */
  avgLogprob: number;
  words?: readonly DecodedWord[];
}

/**
 * Result times are rounded to 0.01 s. Whisper's timestamp tokens step by 0.02 s and its word times
 * come from 20 ms cross-attention frames (the engine already rounds them to 0.01 s, as OpenAI's
 * `round(t, 2)`), so digits below 0.01 s only carry the sample-exact offset of the decoded audio,
 * not information about the speech; the reference API's responses show two decimals at most.
 */
export const TIME_DECIMALS = 2;
/** Confidences are rounded to 0.001. */
export const CONFIDENCE_DECIMALS = 3;

function roundTo(x: number, decimals: number): number {
  const f = 10 ** decimals;
  return Math.round(x * f) / f;
}

/** A result time (seconds) as the API gives it. */
export function roundTime(seconds: number): number {
  return roundTo(seconds, TIME_DECIMALS);
}

/**
 * A segment's confidence: exp(average token log-probability), in [0, 1]. Whisper reports the
 * average per decoded 30 s window, so the segments of one window share it.
 */
export function segmentConfidence(avgLogprob: number): number {
  return roundTo(Math.min(1, Math.max(0, Math.exp(avgLogprob))), CONFIDENCE_DECIMALS);
}

/**
 * One decode segment → a result segment, times shifted by `offset` (where the decoded audio starts
 * in the file or stream, s). Null when it has no text. Words are trimmed and empty ones dropped.
 * `until` (s, absolute) cuts a segment end that overshoots the audio (a safety net: the engine
 * already clamps segments to its window).
 */
export function toSegment(s: DecodedSegment, offset: number, until = Infinity): Segment | null {
  const text = s.text.trim();
  if (!text) return null;
  return {
    start: roundTime(s.start + offset),
    end: roundTime(Math.min(until, s.end + offset)),
    text,
    speaker: null,
    confidence: segmentConfidence(s.avgLogprob),
    words: (s.words ?? []).map((w) => ({ word: w.word.trim(), start: roundTime(w.start + offset), end: roundTime(w.end + offset) })).filter((w) => w.word),
  };
}

/** The one mapping: an engine decode of audio that starts at `offset` s → result segments (see {@link toSegment}). */
export function toSegments(decode: { segments: readonly DecodedSegment[] }, offset: number, until = Infinity): Segment[] {
  return decode.segments.map((s) => toSegment(s, offset, until)).filter((s): s is Segment => s !== null);
}

/** The text of a run of segments (a transcript's `text`, a stream final's `text`). */
export function transcriptText(segments: readonly Pick<Segment, 'text'>[]): string {
  return segments.map((s) => s.text).join(' ');
}

/**
 * Several segments as one (a live stream's final covers one utterance, which a decode may split
 * into several segments): `span` (the utterance's audio, s) gives start and end, the text and
 * words are the segments' in order, and the confidence is the segments' confidences weighted by
 * their text length — every character counts the same, so a one-word segment does not weigh as
 * much as a sentence. Segments of one 30 s window share their window's confidence, so a final
 * decoded in one window (any utterance ≤ 30 s) has exactly that confidence, as a file's segments do.
 */
export function mergeSegments(segments: readonly Segment[], span: { start: number; end: number }): Segment {
  const chars = segments.reduce((n, s) => n + s.text.length, 0);
  const confidence = chars ? segments.reduce((a, s) => a + s.confidence * s.text.length, 0) / chars : 0;
  return {
    start: roundTime(span.start),
    end: roundTime(span.end),
    text: transcriptText(segments),
    speaker: null,
    confidence: roundTo(confidence, CONFIDENCE_DECIMALS),
    words: segments.flatMap((s) => s.words),
  };
}
