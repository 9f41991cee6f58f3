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
import { assignSpeakers, type Diarizer, type SpeakerTurn } from '../engines/diarization/index.ts';
import type { SileroVad } from '../engines/vad/silero-vad.ts';
import type { TranscribeOptions, TranscribeResult } from '../engines/whisper/index.ts';
import type { Segment, Transcript } from '../formats/transcript.ts';
import { speechModelInfo, type FileSpeechModel } from './speech-models.ts';
import { LocalSpeechWork, type SpeechWork } from './speech-work.ts';
import { splitFileIntoSpeechChunks } from './vad-chunker.ts';

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

  constructor(private readonly deps: { vad: SileroVad; diarizer?: Diarizer; work?: SpeechWork }) {
    this.work = deps.work ?? new LocalSpeechWork();
  }

  /** Whether `transcribe` needs a loaded model (SpeechModels.get); false: a descriptor (SpeechModels.describe) is enough. */
  get decodesLocally(): boolean {
    return this.work.decodesLocally;
  }

  /** Rejects (503) when no one can decode `model` now (SpeechWork.ensureAvailable): check before charging. */
  async ensureAvailable(model: FileSpeechModel): Promise<void> {
    await this.work.ensureAvailable?.(model);
  }

  async transcribe(model: FileSpeechModel, samples: Float32Array, opts: FileTranscribeOptions, ctl: FileControl = {}): Promise<FileTranscription> {
    const sr = speechModelInfo(model).samplingRate;
    const duration = samples.length / sr;
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

    let pieces: Array<{ offset: number; audio: Float32Array }>;
    let speech: Array<{ start: number; end: number }> | undefined;
    if (opts.vad ?? true) {
      report({ stage: 'vad', fraction: 0, processedSeconds: 0, totalSeconds: duration });
      const chunks = await splitFileIntoSpeechChunks(samples, this.deps.vad, { signal: ctl.signal });
      pieces = chunks.map((c) => ({ offset: c.start, audio: c.audio }));
      speech = chunks.flatMap((c) => c.segments.map((g) => ({ start: g.startSample / sr, end: g.endSample / sr })));
    } else {
      pieces = samples.length ? [{ offset: 0, audio: samples }] : [];
    }
    ctl.signal?.throwIfAborted();

    // One language for the whole file: the one detected on its first speech.
    let language = opts.language;
    if (language === 'auto' && pieces.length) {
      language = await this.work.detectLanguage(model, pieces[0].audio.subarray(0, 30 * sr), { key, signal: ctl.signal });
    }

    // Diarization runs beside transcription (different model, other core when there is one).
    const diarizer = opts.diarize && pieces.length ? this.deps.diarizer : undefined;
    const turns: Promise<SpeakerTurn[]> | null = diarizer ? diarizer.diarize(samples, { speakers: opts.speakers ?? 0, signal: ctl.signal, speech }) : null;
    turns?.catch(() => {}); // awaited below; avoid an unhandled rejection if transcription fails first

    const total = pieces.reduce((s, p) => s + p.audio.length / sr, 0);
    let done = 0;
    report({ stage: 'transcribing', fraction: 0, processedSeconds: 0, totalSeconds: duration });
    const results = await Promise.all(
      pieces.map(async (p) => {
        const options: TranscribeOptions = { ...base, language, conditionOnPrevious: !(opts.vad ?? true) };
        const r = await this.work.transcribe(model, { audio: p.audio, options }, { key, signal: ctl.signal });
        done += p.audio.length / sr;
        report({ stage: 'transcribing', fraction: total ? done / total : 1, processedSeconds: done, totalSeconds: total });
        return { offset: p.offset, r };
      }),
    );

    const segments: Segment[] = [];
    const detailed: FileTranscription['detailed'] = [];
    const tokens: number[][] = [];
    let wordMethod: FileTranscription['wordTimestamps'] = 'none';
    for (const { offset, r } of results) {
      tokens.push(...r.tokensPerWindow);
      if (r.wordTimestamps && base.wordTimestamps) wordMethod = r.wordTimestamps;
      for (const s of r.segments) {
        const text = s.text.trim();
        if (!text) continue;
        const seg: Segment = {
          start: round(s.start + offset),
          end: round(Math.min(duration, s.end + offset)),
          text,
          speaker: null,
          confidence: round(Math.min(1, Math.max(0, Math.exp(s.avgLogprob))), 3),
          words: (s.words ?? []).map((w) => ({ word: w.word.trim(), start: round(w.start + offset), end: round(w.end + offset) })).filter((w) => w.word),
        };
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
      text: labelled.segments.map((s) => s.text).join(' '),
      language: language === 'auto' ? (results[0]?.r.language ?? 'en') : language,
      duration: round(duration, 3),
      segments: labelled.segments,
      speakers: labelled.speakers,
      diarization: turns ? diarizer!.method : null,
      model: model.id,
      tokens,
      wordTimestamps: wordMethod,
      detailed,
    };
  }
}

function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
