/**
 * The file path of the pipeline: decoded samples → Silero VAD → speech chunks (≤ 30 s, silence
 * skipped) → the model's BatchScheduler (priority `file`, so chunks of many uploads share batches)
 * → one transcript. With VAD off, the whole signal goes to the engine's long-form path (30 s
 * windows seeking by the last timestamp, as OpenAI's transcribe()).
 *
 * The model work (chunks, language detection) goes through a SpeechWork: this server's scheduler by
 * default, or the NATS work queue (WORK_QUEUE=nats) so that workers elsewhere decode the chunks.
 * The model is a loaded one where chunks may be decoded here (`decodesLocally`), else only its
 * descriptor (id, sampling rate): an API-only server loads no engine for files.
 */
import { PcmBuffer } from '../audio/pcm-buffer.ts';
import { DomainError } from '../errors.ts';
import { assignSpeakers, type Diarizer, type SpeakerTurn } from '../engines/diarization/index.ts';
import type { SileroVad } from '../engines/vad/silero-vad.ts';
import type { TranscribeOptions, TranscribeRequest, TranscribeResult } from '../engines/whisper/index.ts';
import { toSegment, transcriptText, type Segment, type Transcript } from '../formats/transcript.ts';
import { speechModelInfo, type FileSpeechModel } from './speech-models.ts';
import { LocalSpeechWork, type SpeechWork } from './speech-work.ts';
import { TranscriptionProgress } from './transcription-progress.ts';
import { streamSpeechChunks } from './vad-chunker.ts';

/** Speech chunks (≤ 30 s each) given to the model and not yet answered, at most. */
export const MAX_CHUNKS_IN_FLIGHT = 16;
/** With VAD off, long-form transcription runs over pieces of this many seconds. */
export const LONG_FORM_PIECE_S = 600;
/** Least rise of the fraction that is reported while transcribing (the decoder reports every step). */
export const PROGRESS_STEP = 0.002;
/** Characters of the previous piece's text that condition the next piece (VAD off). */
const PROMPT_TAIL_CHARS = 400;
/**
 * Longest audio that can be diarized (s): the diarizer works on the whole signal in memory
 * (float32, 64 kB/s, plus its features), so its memory grows with the file. Beyond: 413.
 */
export const DIARIZE_MAX_SECONDS = 2 * 3600;

/** What a transcript that skipped diarization for its length says (X-Diarization header). */
export function diarizationSkipReason(): string {
  return `skipped: audio longer than ${DIARIZE_MAX_SECONDS / 3600} h (send diarize=true to be refused instead, or split the file)`;
}

export function diarizationTooLong(seconds: number): DomainError {
  return new DomainError(
    'too_large',
    `Speaker labels (diarize=true) are available for audio up to ${DIARIZE_MAX_SECONDS / 3600} h; this file has ${(seconds / 3600).toFixed(1)} h. ` +
      'Send diarize=false to transcribe it without speaker labels, or split it.',
  );
}

export interface FileTranscribeOptions {
  language: string; // 'auto' or a language code
  task?: 'transcribe' | 'translate';
  /** Split at pauses with Silero VAD (default true). */
  vad?: boolean;
  /** Timestamp tokens (segment times); default true. Without them a window is one segment. */
  timestamps?: boolean;
  wordTimestamps?: boolean;
  beamSize?: number;
  /** Token budget per 30 s window. */
  maxNewTokens?: number;
  temperature?: number | number[];
  initialPrompt?: string;
  /** Label speakers (default false here; the HTTP API defaults to true). */
  diarize?: boolean;
  /**
   * With diarize: when the audio is longer than DIARIZE_MAX_SECONDS, transcribe without speaker
   * labels (result.diarizationSkipped says why) instead of failing with 413. For diarization the
   * client did not ask for by name (the HTTP default), so that a long file still gets its transcript.
   */
  diarizeBestEffort?: boolean;
  /** Expected number of speakers; 0 = detect. */
  speakers?: number;
}

export interface FileTranscription extends Transcript {
  model: string;
  /** Generated token ids of each 30 s window / chunk, prompt excluded, timestamp tokens included. */
  tokens: number[][];
  wordTimestamps: 'cross-attention-dtw' | 'proportional' | 'none';
  /** How speakers were found (null: not diarized). */
  diarization: Diarizer['method'] | null;
  /** Why speakers were not labelled although diarization was on (diarizeBestEffort), else null. */
  diarizationSkipped: string | null;
  /** Engine segments with decoding details (OpenAI verbose_json). */
  detailed: Array<TranscribeResult['segments'][number]>;
}

export interface FileProgress {
  stage: 'vad' | 'transcribing' | 'diarizing' | 'done';
  fraction: number;
  processedSeconds: number;
  totalSeconds: number;
}

export interface FileControl {
  signal?: AbortSignal;
  /** Scheduler fairness key (job id). */
  key?: string;
  onProgress?: (p: FileProgress) => void;
}

export class FileTranscriber {
  private readonly work: SpeechWork;

  constructor(private readonly deps: { vad?: SileroVad; diarizer?: Diarizer; work?: SpeechWork }) {
    this.work = deps.work ?? new LocalSpeechWork();
  }

  /** Whether diarize=true labels speakers here (a diarizer is configured). */
  get diarizes(): boolean {
    return Boolean(this.deps.diarizer);
  }

  /** Whether `transcribe` needs a loaded model (SpeechModels.get); false: a descriptor (SpeechModels.describe) is enough. */
  get decodesLocally(): boolean {
    return this.work.decodesLocally;
  }

  /** Rejects (503) when no one can decode `model` now (SpeechWork.ensureAvailable): check before charging. */
  async ensureAvailable(model: FileSpeechModel): Promise<void> {
    await this.work.ensureAvailable?.(model);
  }

  /** A decoded signal in memory: {@link transcribeStream} over it (same results). */
  async transcribe(model: FileSpeechModel, samples: Float32Array, opts: FileTranscribeOptions, ctl: FileControl = {}): Promise<FileTranscription> {
    const sr = speechModelInfo(model).samplingRate;
    return this.transcribeStream(model, once(samples), opts, { ...ctl, expectedSeconds: samples.length / sr });
  }

  /**
   * 16 kHz PCM pieces (e.g. ffmpeg's {@link decodeStream}) → transcript, with memory bounded by
   * one VAD block (~17.5 min), {@link MAX_CHUNKS_IN_FLIGHT} chunks and one VAD-off piece, whatever
   * the length of the stream: speech chunks go to the model as the VAD finds them, and `source` is
   * pulled only while fewer than MAX_CHUNKS_IN_FLIGHT chunks wait (back-pressure down to ffmpeg).
   * Diarization needs the whole signal: it keeps it (float32) up to {@link DIARIZE_MAX_SECONDS},
   * and fails with 413 beyond. Breaking off (error, abort) returns `source`, which kills ffmpeg.
   */
  async transcribeStream(model: FileSpeechModel, source: AsyncIterable<Float32Array>, opts: FileTranscribeOptions, ctl: FileControl & { expectedSeconds?: number } = {}): Promise<FileTranscription> {
    const sr = speechModelInfo(model).samplingRate;
    const key = ctl.key ?? 'file';
    const report = (p: FileProgress) => ctl.onProgress?.(p);
    const base: TranscribeOptions = {
      task: opts.task ?? 'transcribe',
      timestamps: opts.timestamps ?? true,
      wordTimestamps: opts.wordTimestamps ?? true,
      beamSize: opts.beamSize,
      maxNewTokens: opts.maxNewTokens,
      temperature: opts.temperature,
      initialPrompt: opts.initialPrompt,
    };
    const vadOn = opts.vad ?? true;
    const expected = ctl.expectedSeconds ?? 0;
    const wantDiarization = Boolean(opts.diarize && this.deps.diarizer);

    // Counts the delivered samples; keeps them for the diarizer when asked (capped).
    let delivered = 0;
    let diarizationSkipped: string | null = null;
    // Sized from the probe; grows by half (not ×2) if the file is longer than it said.
    let kept = wantDiarization ? new PcmBuffer(Math.min(DIARIZE_MAX_SECONDS, Math.max(expected, 1)) * sr, { growth: 1.5 }) : null;
    async function* counted(): AsyncGenerator<Float32Array> {
      for await (const x of source) {
        delivered += x.length;
        if (kept) {
          if (delivered > DIARIZE_MAX_SECONDS * sr) {
            if (!opts.diarizeBestEffort) throw diarizationTooLong(delivered / sr);
            kept = null; // let the kept signal go: the transcript goes on without speakers
            diarizationSkipped = diarizationSkipReason();
          } else kept.append(x);
        }
        yield x;
      }
    }

    let language = opts.language;
    const detect = async (audio: Float32Array) => {
      if (language === 'auto') language = await this.work.detectLanguage(model, audio.subarray(0, 30 * sr), { key, signal: ctl.signal });
    };
    const results: Array<{ offset: number; r: TranscribeResult }> = [];
    const speech: Array<{ start: number; end: number }> = [];
    // Progress through decoding: every piece sent reports each decoding step (TranscribeRequest.onProgress).
    const progress = new TranscriptionProgress(expected);
    let reported = -1;
    const transcribing = (force = false) => {
      progress.setTotal(delivered / sr);
      const fraction = progress.fraction();
      if (!force && fraction < reported + PROGRESS_STEP) return;
      reported = fraction;
      const totalSeconds = progress.totalSeconds;
      // A throwing listener must not fail the batch it is called from (other jobs' chunks share it).
      try {
        report({ stage: 'transcribing', fraction, processedSeconds: Math.min(totalSeconds, progress.coveredSeconds), totalSeconds });
      } catch {}
    };
    /** A request for piece `id` ([start, end) s of the file) whose decoding steps move the progress. */
    const piece = (id: number, start: number, audio: Float32Array, options: TranscribeOptions): TranscribeRequest => {
      progress.start(id, start, start + audio.length / sr);
      return {
        audio,
        options,
        onProgress: (p) => {
          progress.advance(id, p.seconds);
          transcribing();
        },
      };
    };
    report({ stage: vadOn ? 'vad' : 'transcribing', fraction: 0, processedSeconds: 0, totalSeconds: expected });

    if (vadOn) {
      // Chunks run concurrently (they share batches in the scheduler); at most MAX_CHUNKS_IN_FLIGHT wait.
      const inFlight = new Set<Promise<void>>();
      let failure = null as { err: unknown } | null; // set from the chunks' callbacks
      if (!this.deps.vad) throw new Error('FileTranscriber: VAD chunking was asked for, but no VAD was given');
      for await (const c of streamSpeechChunks(counted(), this.deps.vad, { signal: ctl.signal })) {
        if (failure) throw failure.err;
        if (c.index === 0) {
          await detect(c.audio);
          transcribing(true);
        }
        for (const g of c.segments) speech.push({ start: g.startSample / sr, end: g.endSample / sr });
        const slot = results.length;
        results.push(null as never);
        const options: TranscribeOptions = { ...base, language, conditionOnPrevious: false };
        const p = this.work
          .transcribe(model, piece(slot, c.start, c.audio, options), { key, signal: ctl.signal })
          .then((r) => {
            results[slot] = { offset: c.start, r };
            progress.finish(slot);
            transcribing(true);
          })
          .catch((err) => void (failure ??= { err }))
          .finally(() => inFlight.delete(p));
        inFlight.add(p);
        while (inFlight.size >= MAX_CHUNKS_IN_FLIGHT && !failure) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
      if (failure) throw failure.err;
    } else {
      // Long-form (30 s windows seeking by timestamps) over pieces of LONG_FORM_PIECE_S, one after
      // the other: a file up to one piece is exactly one long-form request, as before; later pieces
      // are conditioned on the end of the previous piece's text (as Whisper conditions windows).
      const pieceSamples = LONG_FORM_PIECE_S * sr;
      let buf = new PcmBuffer(Math.min(pieceSamples, Math.max(1, expected * sr)), { growth: 1.5 });
      let offset = 0;
      let prompt = base.initialPrompt;
      const flush = async () => {
        const audio = buf.view(0, buf.end);
        if (!audio.length) return;
        if (offset === 0) await detect(audio);
        const options: TranscribeOptions = { ...base, initialPrompt: prompt, language, conditionOnPrevious: true };
        const id = results.length;
        const r = await this.work.transcribe(model, piece(id, offset, audio, options), { key, signal: ctl.signal });
        results.push({ offset, r });
        progress.finish(id);
        offset += audio.length / sr;
        prompt = r.text.trim() ? r.text.trim().slice(-PROMPT_TAIL_CHARS) : prompt;
        transcribing(true);
      };
      for await (const x of counted()) {
        let rest = x;
        while (rest.length) {
          const take = Math.min(rest.length, pieceSamples - buf.held);
          buf.append(rest.subarray(0, take));
          rest = rest.subarray(take);
          if (buf.held >= pieceSamples) {
            await flush();
            buf = new PcmBuffer(pieceSamples, { growth: 1.5 });
          }
        }
      }
      await flush();
    }
    ctl.signal?.throwIfAborted();
    if (delivered === 0) throw new DomainError('invalid', 'The file decoded to zero audio samples.');
    const duration = delivered / sr;
    const total = duration;

    // Diarization needs the whole signal: it starts once decoding is over.
    const diarizer = kept && results.length ? this.deps.diarizer : undefined;
    const turns: Promise<SpeakerTurn[]> | null = diarizer ? diarizer.diarize(kept!.view(0, kept!.end), { speakers: opts.speakers ?? 0, signal: ctl.signal, speech: vadOn ? speech : undefined }) : null;

    const segments: Segment[] = [];
    const detailed: FileTranscription['detailed'] = [];
    const tokens: number[][] = [];
    let wordMethod: FileTranscription['wordTimestamps'] = 'none';
    for (const { offset, r } of results) {
      tokens.push(...r.tokensPerWindow);
      if (r.wordTimestamps && base.wordTimestamps) wordMethod = r.wordTimestamps;
      // The one decode → segment mapping (formats/transcript.ts), which stream finals use too;
      // segment by segment here because verbose_json keeps each segment's decoding details.
      for (const s of r.segments) {
        const seg = toSegment(s, offset, duration);
        if (!seg) continue;
        segments.push(seg);
        detailed.push({ ...s, start: seg.start, end: seg.end, id: detailed.length });
      }
    }
    let labelled: { segments: Segment[]; speakers: string[] } = { segments, speakers: [] };
    if (turns) {
      report({ stage: 'diarizing', fraction: 1, processedSeconds: total, totalSeconds: total });
      labelled = assignSpeakers(segments, await turns);
    }
    report({ stage: 'done', fraction: 1, processedSeconds: total, totalSeconds: total });
    return {
      text: transcriptText(labelled.segments),
      language: language === 'auto' ? (results[0]?.r.language ?? 'en') : language,
      duration: Math.round(duration * 1000) / 1000, // the audio's length (billing, ms), not a result time
      segments: labelled.segments,
      speakers: labelled.speakers,
      diarization: turns ? diarizer!.method : null,
      diarizationSkipped,
      model: model.id,
      tokens,
      wordTimestamps: wordMethod,
      detailed,
    };
  }
}

async function* once(x: Float32Array): AsyncGenerator<Float32Array> {
  if (x.length) yield x;
}
