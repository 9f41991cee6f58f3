/**
 * One live stream's pipeline: PCM frames → Silero VAD (32 ms frames) → segmenter (pure reducer) →
 * partial decodes at an adaptive interval while speech goes on (stabilised with LocalAgreement) →
 * a final decode at the end of each utterance. Decodes go through the model's BatchScheduler
 * (finals before partials, stale partials dropped), so all streams share its batches.
 *
 * Partials are incremental and cheap: one is decoded only when the VAD heard speech since the last
 * (silence before the endpoint costs nothing), on the trimmed encoder, with the words the stabilizer
 * has committed forced as the prefix and a small token budget for what follows; their interval
 * widens with this stream's last decode time and with the scheduler's partial backlog
 * ({@link partialIntervalMs}), so load thins partials out before the scheduler drops any.
 *
 * In: `push(pcm)` / `stop()` (or the `streamEvents(frames$)` operator); out: `events$`.
 * Memory is bounded: audio older than the open utterance (minus a short pre-roll) is dropped, and
 * an utterance is cut at `maxUtteranceS` by the segmenter.
 */
import { Observable, Subject } from 'rxjs';
import type { SileroVad, VadStream } from '../engines/vad/silero-vad.ts';
import type { TranscribeOptions } from '../engines/whisper/index.ts';
import { PcmBuffer } from '../audio/pcm-buffer.ts';
import { mergeSegments, toSegments, type Segment } from '../formats/transcript.ts';
import { DroppedError } from './batch-scheduler.ts';
import { createSegmenterState, segmenterFinish, segmenterReducer, tentativeStart, type SegmenterEvent, type SegmenterState } from './segmenter.ts';
import type { LoadedSpeechModel } from './speech-models.ts';
import { createStabilizer } from './stabilizer.ts';

const SR = 16_000;
const FRAME = 512;
/** Speech this long (3 VAD frames) may get a partial before the segmenter confirms it (minSpeechMs, 250 ms). */
const TENTATIVE_PARTIAL_MS = 96;

/**
 * A final: one utterance as one result {@link Segment} ({@link mergeSegments}: start/end are the
 * utterance's audio, text/words/confidence those of its decode), and `segments`, the decode's own
 * segments as a file gives them ({@link toSegments}: the same numbers for the same audio).
 */
export type FinalEvent = { type: 'final'; segments: Segment[] } & Segment;

export type StreamEvent = { type: 'partial'; text: string; stable: string } | FinalEvent | { type: 'end' } | { type: 'error'; message: string };

export interface StreamSessionOptions {
  id: string;
  /** The model of partials (and of finals unless `finalModel` is set). */
  model: LoadedSpeechModel;
  /**
   * Two-pass mode: finals and language detection on this model (e.g. Whisper, for accuracy and languages) while
   * partials stay on `model` (e.g. Moonshine, for speed). Partials pause while the stream's language is one the
   * partials model does not speak.
   */
  finalModel?: LoadedSpeechModel;
  vad: SileroVad;
  /** Language code, or 'auto' (detected on the first utterance, then kept). */
  language: string;
  interimResults?: boolean;
  /** Smallest interval between partial decodes; grows when decoding is slower than that. */
  partialIntervalMs?: number;
  /** Token budget per decode (random-weight models never stop early; real ones stop at end-of-text). */
  maxNewTokens?: number;
  /** Token budget of a partial beyond its committed prefix (default 8; never above `maxNewTokens`). */
  partialMaxNewTokens?: number;
  /** Encoder of finals: 'full' (default: the padded 30 s window the model was trained on) or 'trimmed'. Partials always use 'trimmed'. */
  finalEncoder?: 'full' | 'trimmed';
  /** Clock of the partial cadence, in ms (default performance.now; tests replay audio on its own time). */
  clock?: () => number;
  maxUtteranceS?: number;
  minSilenceMs?: number;
  /** Audio kept before a detected speech start (the segmenter pads starts). */
  preRollS?: number;
  /** Error out when this much audio is waiting for VAD (client sends much faster than we process). */
  maxBacklogS?: number;
}

export class StreamSession {
  readonly id: string;
  private readonly events = new Subject<StreamEvent>();
  readonly events$: Observable<StreamEvent> = this.events.asObservable();

  private readonly vadStream: VadStream;
  private seg: SegmenterState;
  private readonly stabilizer = createStabilizer(2);
  /** Audio kept in memory: the open utterance, or a short pre-roll in silence. */
  private readonly buf = new PcmBuffer();
  /** Samples not yet a whole VAD frame. */
  private pending: Float32Array = new Float32Array(0);
  private frameIndex = 0;
  private totalSamples = 0;
  /** Start sample of the open utterance, or null in silence. */
  private uttStart: number | null = null;
  /** The segment (its raw speech start) whose hypotheses the stabilizer holds, or null. */
  private stabilizerSegment: number | null = null;
  private language: string;
  private closed = false;
  private stopping = false;
  /** Serialises VAD work and orders finals. */
  private work: Promise<void> = Promise.resolve();
  private finals: Promise<void> = Promise.resolve();
  private partialInFlight = false;
  private lastPartialAt = Number.NEGATIVE_INFINITY;
  /** How long the last partial took, submit to result (queue wait included). */
  private lastPartialMs = 0;
  /** VAD frames at or above the speech threshold so far, and their count when the last partial was taken (-1: none this utterance). */
  private speechFrames = 0;
  private speechFramesAtPartial = -1;
  private readonly clock: () => number;
  private readonly abort = new AbortController();
  /** When received audio arrived: [end sample (exclusive), performance.now()] per push, oldest first. */
  private readonly arrivals: Array<[number, number]> = [];
  /** partialDecodes: partials sent to the scheduler; partials: partial events emitted. */
  readonly stats = { partials: 0, partialDecodes: 0, finals: 0, droppedPartials: 0 };

  constructor(private readonly opts: StreamSessionOptions) {
    this.id = opts.id;
    this.language = opts.language;
    this.vadStream = opts.vad.createStream();
    this.clock = opts.clock ?? (() => performance.now());
    this.seg = createSegmenterState({ maxUtteranceS: opts.maxUtteranceS ?? 30, minSilenceMs: opts.minSilenceMs ?? 500 });
  }

  /** Seconds of audio received so far. */
  get receivedSeconds(): number {
    return (this.totalSamples + this.pending.length) / SR;
  }

  /** Feeds 16 kHz mono PCM (any length). */
  push(pcm: Float32Array): void {
    if (this.closed || this.stopping) return;
    const backlog = this.pending.length + pcm.length;
    if (backlog > (this.opts.maxBacklogS ?? 60) * SR) {
      this.fail('audio arrives much faster than it can be processed; send it at real-time pace');
      return;
    }
    this.pending = concat(this.pending, pcm);
    this.arrivals.push([this.totalSamples + this.pending.length, performance.now()]);
    this.work = this.work.then(() => this.drainFrames()).catch((err) => this.fail(errorMessage(err)));
  }

  /** Resolves once every whole frame pushed so far has been through the VAD and the segmenter (replays, tests). */
  processed(): Promise<void> {
    return this.work;
  }

  /** Flushes: closes the open utterance, waits for every final, emits `end`, completes. */
  async stop(): Promise<void> {
    if (this.closed || this.stopping) return;
    this.stopping = true;
    try {
      await this.work;
      // The last partial frame (< 32 ms) still counts as audio for the segmenter's end.
      const step = segmenterFinish(this.seg, this.totalSamples + this.pending.length);
      this.seg = step.state;
      this.appendAudio(this.pending);
      this.pending = new Float32Array(0);
      this.handle(step.events, this.arrivalOf(this.totalSamples));
      await this.finals;
      if (!this.closed) {
        this.events.next({ type: 'end' });
        this.close();
      }
    } catch (err) {
      this.fail(errorMessage(err));
    }
  }

  /** Frees everything at once (client gone): queued decodes are cancelled, nothing more is emitted. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort(new Error('stream closed'));
    this.buf.clear();
    this.pending = new Float32Array(0);
    this.events.complete();
  }

  private fail(message: string): void {
    if (this.closed) return;
    this.events.next({ type: 'error', message });
    this.close();
  }

  private async drainFrames(): Promise<void> {
    while (this.pending.length >= FRAME && !this.closed) {
      const frame = this.pending.subarray(0, FRAME);
      const prob = await this.opts.vad.process(this.vadStream, frame);
      if (this.closed) return;
      this.appendAudio(frame);
      this.pending = this.pending.slice(FRAME);
      const step = segmenterReducer(this.seg, { prob, frameIndex: this.frameIndex++ });
      this.seg = step.state;
      if (prob >= this.seg.opts.threshold) this.speechFrames++;
      this.handle(step.events, this.arrivalOf(this.totalSamples));
      this.maybePartial();
    }
  }

  private appendAudio(frame: Float32Array): void {
    this.buf.append(frame);
    this.totalSamples += frame.length;
    // Keep only the open utterance (or the pre-roll in silence: the segmenter pads starts backwards).
    this.buf.dropBefore(this.uttStart ?? this.totalSamples - Math.round((this.opts.preRollS ?? 1) * SR));
  }

  private audio(start: number, end: number): Float32Array {
    return this.buf.read(start, end);
  }

  /** When the audio up to `sample` had arrived (performance.now()); forgets older pushes. */
  private arrivalOf(sample: number): number {
    while (this.arrivals.length > 1 && this.arrivals[0][0] < sample) this.arrivals.shift();
    return this.arrivals[0]?.[1] ?? performance.now();
  }

  /** `decidedAt`: when the audio that completed these events had arrived (for the live-lag measure). */
  private handle(events: SegmenterEvent[], decidedAt: number): void {
    for (const e of events) {
      if (e.type === 'speech_start') {
        // The stabilizer is kept when tentative partials of this same segment already fed it.
        this.uttStart = e.sample;
        this.speechFramesAtPartial = -1;
      } else {
        const audio = this.audio(e.startSample, e.endSample);
        this.uttStart = null;
        this.stabilizer.reset();
        this.stabilizerSegment = null;
        this.finalize(audio, e.startSample, decidedAt);
      }
    }
  }

  /** Decodes a finished utterance; finals are emitted in order. */
  private finalize(audio: Float32Array, startSample: number, decidedAt: number): void {
    if (audio.length < FRAME) return;
    const decode = this.decode(audio, 'final', { timestamps: true, wordTimestamps: true, encoder: this.opts.finalEncoder ?? 'full' });
    this.finals = this.finals.then(async () => {
      let r;
      try {
        r = await decode;
      } catch (err) {
        if (this.closed) return;
        throw err;
      }
      if (this.closed) return;
      const start = startSample / SR;
      const end = start + audio.length / SR;
      const segments = toSegments(r, start, end);
      if (!segments.length) return;
      this.stats.finals++;
      this.finalModel.liveLag.record(performance.now() - decidedAt);
      this.events.next({ type: 'final', ...mergeSegments(segments, { start, end }), segments });
    });
    this.finals.catch((err) => this.fail(errorMessage(err)));
  }

  /**
   * Adaptive incremental partials: at most one in flight per stream; none without new speech since
   * the last; spaced by {@link partialIntervalMs}; decoding only what follows the committed words.
   */
  private maybePartial(): void {
    if (!(this.opts.interimResults ?? true) || this.partialInFlight || this.stopping) return;
    // A confirmed utterance, or speech not yet long enough for one (minSpeechMs) but already TENTATIVE_PARTIAL_MS
    // long: its first partial need not wait for the confirmation (a segment dropped as too short ends with no final).
    const start = this.uttStart ?? tentativeStart(this.seg, TENTATIVE_PARTIAL_MS);
    if (start === null) return;
    // Only silence since the last partial (a pause before the endpoint): it would decode the same speech again.
    if (this.speechFrames === this.speechFramesAtPartial) return;
    // Two-pass: no partial in a language the partials model does not speak (known once detected or configured).
    if (this.language !== 'auto' && !this.opts.model.engine.info.languages.includes(this.language)) return;
    const now = this.clock();
    const minMs = this.opts.partialIntervalMs ?? 500;
    if (now - this.lastPartialAt < minMs) return;
    const interval = partialIntervalMs({ minMs, lastDecodeMs: this.lastPartialMs, queueWaitMs: this.opts.model.scheduler.partialWaitMs() });
    if (now - this.lastPartialAt < interval) return;
    const audio = this.audio(start, this.totalSamples);
    if (audio.length < SR / 4) return;
    this.partialInFlight = true;
    this.lastPartialAt = now;
    this.speechFramesAtPartial = this.speechFrames;
    this.stats.partialDecodes++;
    // The segment this partial belongs to (its raw speech start); its result is shown only while that segment lasts.
    const segment = this.seg.speechStart;
    const current = () => this.seg.triggered && this.seg.speechStart === segment;
    if (this.stabilizerSegment !== segment) {
      this.stabilizer.reset();
      this.stabilizerSegment = segment;
    }
    // The committed words are final for this utterance: forced as the prefix, only what follows is decoded.
    const committed = this.stabilizer.committed;
    this.decode(audio, 'partial', {
      timestamps: false,
      wordTimestamps: false,
      encoder: 'trimmed',
      // a partial shows only text: no per-token log-softmax over the vocabulary
      tokenLogprobs: false,
      prefix: committed.length ? committed.join(' ') : undefined,
      maxNewTokens: partialTokenBudget(this.opts.partialMaxNewTokens, this.opts.maxNewTokens),
    })
      .then((r) => {
        this.lastPartialMs = this.clock() - now;
        // Skip results of an utterance that has ended (or a tentative segment dropped) meanwhile.
        if (this.closed || !current()) return;
        const out = this.stabilizer.push([...committed, ...r.text.trim().split(/\s+/).filter(Boolean)]);
        this.stats.partials++;
        const stable = out.committed.join(' ');
        this.events.next({ type: 'partial', text: [...out.committed, ...out.tail].join(' '), stable });
      })
      .catch((err) => {
        if (err instanceof DroppedError) {
          this.stats.droppedPartials++;
          // Its speech was never shown: the next frame may ask again.
          if (current()) this.speechFramesAtPartial = -1;
        } else if (!this.closed) this.fail(errorMessage(err));
      })
      .finally(() => {
        this.partialInFlight = false;
      });
  }

  /** The model of finals (the partials model unless two-pass). */
  private get finalModel(): LoadedSpeechModel {
    return this.opts.finalModel ?? this.opts.model;
  }

  private async decode(audio: Float32Array, priority: 'final' | 'partial', o: TranscribeOptions) {
    const ctl = { priority, key: this.id, signal: this.abort.signal };
    if (this.language === 'auto') {
      // Detection is a decode like any other: queued with this one's priority, dropped if the stream closes.
      // The finals model detects (two-pass: the multilingual one).
      const det = await this.finalModel.detectLanguage(audio, ctl);
      if (this.language === 'auto') this.language = det.language;
    }
    const model = priority === 'final' ? this.finalModel : this.opts.model;
    if (!model.engine.info.languages.includes(this.language)) {
      // a partial whose stream turned out to speak another language than its model: dropped, not an error
      throw new DroppedError(`model '${model.id}' does not speak '${this.language}'`);
    }
    const options: TranscribeOptions = {
      ...o,
      language: this.language,
      temperature: 0,
      conditionOnPrevious: false,
      maxNewTokens: o.maxNewTokens ?? this.opts.maxNewTokens,
      compressionRatioThreshold: null,
      logprobThreshold: null,
    };
    return model.transcribe({ audio, options }, ctl);
  }
}

/** Default token budget of a partial beyond its committed prefix (see {@link partialTokenBudget}). */
export const DEFAULT_PARTIAL_MAX_NEW_TOKENS = 8;

/**
 * Tokens a partial may generate after its prefix: the setting (default 8), never more than the
 * stream's budget per decode. 8 tokens are about 6 English words, 2 s of speech: more than the
 * uncommitted tail normally holds (LocalAgreement-2 commits what two partials ~0.5 s apart agree on),
 * while each token is a decoder step of every row of the batch.
 */
export function partialTokenBudget(partialMaxNewTokens: number | undefined, maxNewTokens: number | undefined): number {
  return Math.min(partialMaxNewTokens ?? DEFAULT_PARTIAL_MAX_NEW_TOKENS, maxNewTokens ?? Number.POSITIVE_INFINITY);
}

/** Widest partial interval the load can push a stream to (unless its own minimum is wider). */
export const MAX_PARTIAL_INTERVAL_MS = 5000;

/**
 * The partial interval of a stream: at least its minimum; 1.5× its last partial's decode time (a
 * stream never asks faster than it is answered); 2× the scheduler's partial backlog (a partial asked
 * now waits about that long, so asking half as often drains the queue before partials age out and are
 * dropped); at most {@link MAX_PARTIAL_INTERVAL_MS}, or the minimum if that is wider.
 */
export function partialIntervalMs(o: { minMs: number; lastDecodeMs: number; queueWaitMs: number; maxMs?: number }): number {
  const max = Math.max(o.minMs, o.maxMs ?? MAX_PARTIAL_INTERVAL_MS);
  return Math.min(max, Math.max(o.minMs, 1.5 * o.lastDecodeMs, 2 * o.queueWaitMs));
}

/** RxJS operator form: PCM frames in, session events out (stops on completion, closes on unsubscribe). */
export function streamEvents(make: () => StreamSession) {
  return (frames$: Observable<Float32Array>): Observable<StreamEvent> =>
    new Observable<StreamEvent>((sub) => {
      const session = make();
      const out = session.events$.subscribe(sub);
      const input = frames$.subscribe({
        next: (f) => session.push(f),
        complete: () => void session.stop(),
        error: (err) => sub.error(err),
      });
      return () => {
        input.unsubscribe();
        out.unsubscribe();
        session.close();
      };
    });
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  if (!a.length) return b.slice();
  if (!b.length) return a;
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
