/**
 * What every speech-to-text engine offers the pipeline (Whisper, Moonshine): the request and result types, and
 * the {@link SpeechEngine} contract the scheduler, file transcription, live streams and the CLI call. The engines
 * differ inside (log-mel + 30 s windows vs raw samples); the pipeline does not look inside.
 */
import type { DecoderLayout } from './seq2seq/kv-decoder.ts';
import type { WordTimestampMethod, WordTiming } from './whisper/word-timestamps.ts';

/** Language probabilities of one audio, most likely first. */
export interface LanguageProbs {
  /** language code -> probability, sorted descending */
  probs: [string, number][];
  language: string;
}

/** One measured ONNX variant (precision × decoder layout) when the fastest was chosen at load. */
export interface VariantTiming {
  quantized: boolean;
  layout: DecoderLayout;
  /** One encoder run on a 10 s input (Whisper: a 10 s bucket, or 30 s when the encoder cannot be trimmed). */
  encoderMs: number;
  /** Mean of the timed cached decoder steps at batch 1. */
  stepMs: number;
  /** encoderMs + 16 × stepMs: what one live decode costs. */
  score: number;
}

/** Cumulative counters since load (a request's share is a difference): `stt transcribe --json` timing. */
export interface EngineCounters {
  featuresMs: number;
  encoderMs: number;
  decodeMs: number;
  decoderRunMs: number;
  decoderRuns: number;
}

export interface TranscribeOptions {
  /** Language code ('en'), or 'auto' (default) to detect it on the first 30 s. */
  language?: string;
  task?: 'transcribe' | 'translate';
  /** Generate timestamp tokens (default true; long-form seeking uses them). */
  timestamps?: boolean;
  wordTimestamps?: boolean;
  /** 1 = greedy (default). > 1 = beam search at temperature 0. */
  beamSize?: number;
  patience?: number;
  lengthPenalty?: number | null;
  /** A temperature or the fallback schedule (default [0, 0.2, 0.4, 0.6, 0.8, 1.0]). */
  temperature?: number | number[];
  /** New-token budget per 30 s window (default 224 = n_ctx/2, capped by the decoder context). */
  maxNewTokens?: number;
  conditionOnPrevious?: boolean;
  initialPrompt?: string;
  compressionRatioThreshold?: number | null;
  logprobThreshold?: number | null;
  noSpeechThreshold?: number | null;
  /** Seed for sampling fallbacks (reproducible runs). */
  seed?: number;
  /**
   * Encoder input for audio of ≤ 30 s: 'full' (default) pads to 30 s as the model was trained; 'trimmed'
   * runs the encoder on the audio's length rounded up to a bucket ({@link ENCODER_BUCKETS}), as whisper.cpp's
   * audio_ctx does: much cheaper for short audio. Longer audio always uses full windows.
   */
  encoder?: 'full' | 'trimmed';
  /**
   * Text the transcription is known to start with (OpenAI's `prefix`): forced after the start-of-transcript
   * sequence in the same prefill, so only what follows is decoded. The result (text, tokens, segments) holds
   * only what follows the prefix. Used for incremental live partials (the words already agreed on).
   */
  prefix?: string;
  /**
   * Per-token log-probabilities (default true). false skips the log-softmax over the vocabulary at every step —
   * for live partials, which show only text: avgLogprob (confidence) is then NaN, so no logprob-based fallback.
   */
  tokenLogprobs?: boolean;
}

/** How far the decoding of one request has got (TranscribeRequest.onProgress). */
export interface DecodeProgress {
  /** The window being decoded (Whisper: 30 s windows by seek; Moonshine: its windows), 0-based. */
  window: number;
  /** Tokens generated in that window so far (this attempt: a temperature fallback starts again from 0), and its budget. */
  tokens: number;
  maxTokens: number;
  /**
   * Seconds of the request's audio decoded so far, an estimate: the windows before this one, plus the position in
   * this one (Whisper: its last timestamp token, or tokens / budget of the window when larger; Moonshine: tokens /
   * budget, which follows the audio's length). Not monotonic across fallbacks; at most the audio's length.
   */
  seconds: number;
}

export interface TranscribeRequest {
  /** Mono PCM at 16 kHz (the model's sampling_rate), float32 in [-1, 1]. */
  audio: Float32Array;
  options?: TranscribeOptions;
  /**
   * Called at every decoding step of this request (job progress): keep it cheap. Not part of `options` because it
   * does not travel (the work queue serializes options; a chunk decoded elsewhere reports only when it is done).
   */
  onProgress?: (p: DecodeProgress) => void;
}

export interface TranscriptSegment {
  id: number;
  /** mel frame where the window of this segment started */
  seek: number;
  start: number;
  end: number;
  text: string;
  /** token ids of the segment, timestamp tokens included */
  tokens: number[];
  avgLogprob: number;
  noSpeechProb: number;
  compressionRatio: number;
  temperature: number;
  words?: WordTiming[];
}

export interface TranscribeResult {
  text: string;
  language: string;
  languageProbs?: [string, number][];
  segments: TranscriptSegment[];
  /** generated ids of each window (Whisper: 30 s, prompt excluded, timestamp tokens included; EOT excluded) */
  tokensPerWindow: number[][];
  /** set when word timestamps were requested */
  wordTimestamps?: WordTimestampMethod;
  duration: number;
}

export interface EngineInfo {
  /** The model family, which says how `encoder` modes and word timings behave. */
  family: 'whisper' | 'moonshine';
  id: string;
  dir: string;
  languages: string[];
  multilingual: boolean;
  layout: DecoderLayout;
  /** The int8 files were loaded (`precision` 'int8'). */
  quantized: boolean;
  /** The weights that run: fp32 files, int8 files, or the fp32 decoder rewritten to 8-bit blocks at load ('q8'). */
  precision: 'fp32' | 'int8' | 'q8';
  crossAttentions: boolean;
  vocabSize: number;
  samplingRate: number;
  /** Whisper: the encoder runs on shorter audio too (`encoder: 'trimmed'`). Moonshine: always (its cost follows the audio). */
  trimmableEncoder: boolean;
  /** Tasks the model can do ('translate' = to English, Whisper's multilingual models only). */
  tasks: ('transcribe' | 'translate')[];
  /** When the variant was measured at load: every candidate's timing (the chosen one has the lowest score). */
  variantTimings?: VariantTiming[];
}

export interface SpeechEngine {
  readonly info: EngineInfo;
  /** Transcribe a batch of requests; the engine batches their model calls. */
  transcribe(reqs: TranscribeRequest[]): Promise<TranscribeResult[]>;
  /** Language of each audio (first 30 s); single-language models answer their language with probability 1. */
  detectLanguage(batch: Float32Array[]): Promise<LanguageProbs[]>;
  /**
   * Which requests can share one model call, beyond the op: '' for requests the engine batches as they come
   * (it groups windows by shape itself), else a key per input shape (Whisper: the trimmed encoder's bucket).
   */
  shapeKey(samples: number, mode: TranscribeOptions['encoder']): string;
  counters(): EngineCounters;
  close(): Promise<void>;
}
