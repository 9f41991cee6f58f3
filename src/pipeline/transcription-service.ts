/**
 * Uploaded file → transcript, as a job with progress: probe, meter the declared duration (before
 * decoding anything), then decode as a PCM stream (ffmpeg, from the file) into the FileTranscriber
 * on the model's shared scheduler, metering more if the audio runs past what was declared. The HTTP routes and anything else that takes
 * files (the account API's saved uploads later) call this; it knows nothing of HTTP.
 *
 * Where chunks are decoded elsewhere (WORK_QUEUE=nats, WORKER=false) the model is only described
 * (config files: id, languages, sampling rate), never loaded here.
 */
import { DomainError } from '../errors.ts';
import { AudioDecodeError, audioDurationS, decodeStream, probeAudio } from '../audio/ffmpeg.ts';
import { DIARIZE_MAX_SECONDS, diarizationSkipReason, diarizationTooLong, type FileTranscribeOptions, type FileTranscriber, type FileTranscription } from './file-transcriber.ts';
import type { JobRegistry } from './job-registry.ts';
import type { TranscriptStore } from '../store/transcripts.ts';
import { speechModelInfo, type FileSpeechModel, type ModelWait, type SpeechModels } from './speech-models.ts';

export interface TranscribeFileRequest extends FileTranscribeOptions {
  path: string;
  model: string;
  /** Client-chosen job id (to poll progress while the request runs); generated otherwise. */
  jobId?: string;
  /** Who may see and cancel the job (job-registry's jobOwner()); ids are scoped per owner. */
  jobOwner?: string;
  /**
   * Metering, called once with the duration the container declares (or a packet scan finds),
   * BEFORE any audio is decoded: throw (402/429) to refuse, and nothing is decoded.
   */
  beforeTranscribe?: (audioSeconds: number) => Promise<void>;
  /**
   * Called while decoding when the audio turns out longer than metered so far (+ {@link METER_TOLERANCE_S}),
   * with the extra seconds to meter ({@link METER_STEP_S} at least) before any of them is transcribed;
   * throw to refuse and the job stops with that error. Defaults to `beforeTranscribe`.
   */
  meterMore?: (extraSeconds: number) => Promise<void>;
  /** Save the result (with this owner; null = anonymous) when a store is configured. */
  ownerId?: string | null;
  filename?: string;
}

/** Audio decoded beyond what was metered that is let through without metering more (container rounding, Opus pre-skip). */
export const METER_TOLERANCE_S = 2;
/** Least extra seconds metered at once when the decoded audio passes what was metered. */
export const METER_STEP_S = 60;

export interface TranscribeFileResult extends FileTranscription {
  jobId: string;
  transcriptId: string | null;
  /** Seconds of audio decoded and transcribed (= duration): what to settle the charge on. */
  deliveredSeconds: number;
  /** Seconds metered through beforeTranscribe + meterMore (≥ deliveredSeconds - METER_TOLERANCE_S). */
  meteredSeconds: number;
}

/**
 * Passes PCM through while metering it: whenever the decoded length passes `metered` + tolerance,
 * meters the excess (at least METER_STEP_S) before letting those samples on. Never lets more
 * than metered + tolerance through; a refusal ends the stream with its error.
 */
export async function* meteredPcm(source: AsyncIterable<Float32Array>, sampleRate: number, meter: { metered: number; more: (extraSeconds: number) => Promise<void> }): AsyncGenerator<Float32Array> {
  let samples = 0;
  for await (const x of source) {
    samples += x.length;
    const over = samples / sampleRate - (meter.metered + METER_TOLERANCE_S);
    if (over > 0) {
      const extra = Math.max(METER_STEP_S, Math.ceil(over));
      await meter.more(extra);
      meter.metered += extra;
    }
    yield x;
  }
}

export class TranscriptionService {
  constructor(private readonly deps: { models: SpeechModels; transcriber: FileTranscriber; jobs: JobRegistry; transcripts?: TranscriptStore }) {}

  /**
   * Checks the model first (fast 400, or 503 when it is missing and AUTO_PULL is off), then runs the job: the
   * model's download (AUTO_PULL, stage `downloading model`) and load (`loading model`) are its first stages.
   * `signal` cancels it (client gone).
   */
  async transcribeFile(req: TranscribeFileRequest, signal?: AbortSignal): Promise<TranscribeFileResult> {
    this.deps.models.check(req.model);
    const job = this.deps.jobs.create(req.jobId, req.jobOwner);
    const onAbort = () => this.deps.jobs.cancel(job.id, 'client disconnected');
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const wait: ModelWait = {
        signal: job.signal,
        onProgress: (p) => this.deps.jobs.progress(job.id, { stage: p.stage === 'downloading' ? 'downloading model' : 'loading model', fraction: p.fraction ?? 0 }),
      };
      const model: FileSpeechModel = this.deps.transcriber.decodesLocally ? await this.deps.models.get(req.model, wait) : await this.deps.models.describe(req.model, wait);
      const info = speechModelInfo(model);
      if (req.language !== 'auto' && !info.languages.includes(req.language)) {
        const codes = info.languages.length <= 5 ? `one of: ${info.languages.join(', ')}` : 'a code from GET /v1/languages';
        throw new DomainError('invalid', `Model '${info.id}' does not support language '${req.language}'. Use 'auto' or ${codes}.`);
      }
      if (req.task === 'translate' && !info.tasks.includes('translate')) {
        throw new DomainError('invalid', `Model '${info.id}' cannot translate: task=translate needs a multilingual Whisper model. Use task=transcribe, or pick such a model (GET /v1/models).`);
      }
      // No live worker (WORK_QUEUE=nats): 503 now, before decoding and before the metering hook charges.
      await this.deps.transcriber.ensureAvailable(model);
      this.deps.jobs.progress(job.id, { stage: 'decoding', fraction: 0 });
      const probe = await probeAudio(req.path, { signal: job.signal });
      if (!probe.hasAudio) {
        throw new AudioDecodeError('no_audio_stream', 'The file has no audio stream (a video without sound?). Upload a file that contains audio.');
      }
      // Meter before decoding anything: the duration the container declares (or a packet scan).
      const declared = await audioDurationS(req.path, probe, { signal: job.signal });
      let opts: TranscribeFileRequest = req;
      let diarizationSkipped: string | null = null;
      if (req.diarize && this.deps.transcriber.diarizes && declared > DIARIZE_MAX_SECONDS) {
        if (!req.diarizeBestEffort) throw diarizationTooLong(declared);
        opts = { ...req, diarize: false };
        diarizationSkipped = diarizationSkipReason();
      }
      await req.beforeTranscribe?.(declared);
      const meter = { metered: declared, more: req.meterMore ?? req.beforeTranscribe ?? (async () => {}) };
      // Then decode as a stream; the decoded length is the truth, metered as it passes the declared one.
      const pcm = meteredPcm(decodeStream(req.path, { signal: job.signal }), info.samplingRate, meter);
      const result = await this.deps.transcriber.transcribeStream(model, pcm, opts, {
        signal: job.signal,
        key: job.id,
        expectedSeconds: declared,
        onProgress: (p) => this.deps.jobs.progress(job.id, { stage: p.stage, fraction: p.fraction, processedSeconds: p.processedSeconds, totalSeconds: p.totalSeconds }),
      });
      const saved = this.deps.transcripts
        ? await this.deps.transcripts.save({
            ownerId: req.ownerId ?? null,
            model: result.model,
            language: result.language,
            duration: result.duration,
            source: 'file',
            filename: req.filename,
            segments: result.segments,
            speakers: result.speakers,
            text: result.text,
          })
        : null;
      this.deps.jobs.complete(job.id);
      return {
        ...result,
        diarizationSkipped: result.diarizationSkipped ?? diarizationSkipped,
        jobId: job.publicId,
        transcriptId: saved?.id ?? null,
        deliveredSeconds: result.duration,
        meteredSeconds: meter.metered,
      };
    } catch (err) {
      this.deps.jobs.fail(job.id, (err as Error).message);
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }
}
