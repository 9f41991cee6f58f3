/**
 * Uploaded file → transcript, as a job with progress: probe, decode (ffmpeg, from the file), then
 * the FileTranscriber on the model's shared scheduler. The HTTP routes and anything else that takes
 * files (the account API's saved uploads later) call this; it knows nothing of HTTP.
 *
 * Where chunks are decoded elsewhere (WORK_QUEUE=nats, WORKER=false) the model is only described
 * (config files: id, languages, sampling rate), never loaded here.
 */
import { AudioDecodeError, decodeToPcm16k, probeAudio } from '../audio/ffmpeg.ts';
import type { FileTranscribeOptions, FileTranscriber, FileTranscription } from './file-transcriber.ts';
import type { JobRegistry } from './job-registry.ts';
import type { TranscriptStore } from '../store/transcripts.ts';
import { speechModelInfo, type FileSpeechModel, type SpeechModels } from './speech-models.ts';

export interface TranscribeFileRequest extends FileTranscribeOptions {
  path: string;
  model: string;
  /** Client-chosen job id (to poll progress while the request runs); generated otherwise. */
  jobId?: string;
  /** Who may see and cancel the job (job-registry's jobOwner()); ids are scoped per owner. */
  jobOwner?: string;
  /** Called once the audio's duration is known, before any model work: metering (throws 402/429 to refuse). */
  beforeTranscribe?: (audioSeconds: number) => Promise<void>;
  /** Save the result (with this owner; null = anonymous) when a store is configured. */
  ownerId?: string | null;
  filename?: string;
}

export class TranscriptionService {
  constructor(
    private readonly deps: { models: SpeechModels; transcriber: FileTranscriber; jobs: JobRegistry; transcripts?: TranscriptStore },
  ) {}

  /** Resolves the model first (fast 400/503), then runs the job. `signal` cancels it (client gone). */
  async transcribeFile(req: TranscribeFileRequest, signal?: AbortSignal): Promise<FileTranscription & { jobId: string; transcriptId: string | null }> {
    const model: FileSpeechModel = this.deps.transcriber.decodesLocally ? await this.deps.models.get(req.model) : await this.deps.models.describe(req.model);
    const info = speechModelInfo(model);
    if (req.language !== 'auto' && !info.languages.includes(req.language)) {
      throw Object.assign(new Error(`Model '${info.id}' does not support language '${req.language}'. Use 'auto' or a code from GET /v1/languages.`), { status: 400 });
    }
    const job = this.deps.jobs.create(req.jobId, req.jobOwner);
    const onAbort = () => this.deps.jobs.cancel(job.id, 'client disconnected');
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      this.deps.jobs.progress(job.id, { stage: 'decoding', fraction: 0 });
      const probe = await probeAudio(req.path, { signal: job.signal });
      if (!probe.hasAudio) {
        throw new AudioDecodeError('no_audio_stream', 'The file has no audio stream (a video without sound?). Upload a file that contains audio.');
      }
      const samples = await decodeToPcm16k(req.path, { signal: job.signal });
      await req.beforeTranscribe?.(samples.length / info.samplingRate);
      const result = await this.deps.transcriber.transcribe(model, samples, req, {
        signal: job.signal,
        key: job.id,
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
      return { ...result, jobId: job.publicId, transcriptId: saved?.id ?? null };
    } catch (err) {
      this.deps.jobs.fail(job.id, (err as Error).message);
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }
}
