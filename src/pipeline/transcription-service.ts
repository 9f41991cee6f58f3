/**
 * Uploaded file → transcript, as a job with progress: probe, decode (ffmpeg, from the file), then
 * the FileTranscriber on the model's shared scheduler. The HTTP routes and anything else that takes
 * files (the account API's saved uploads later) call this; it knows nothing of HTTP.
 */
import { AudioDecodeError, decodeToPcm16k, probeAudio } from '../audio/ffmpeg.ts';
import type { FileTranscribeOptions, FileTranscriber, FileTranscription } from './file-transcriber.ts';
import type { JobRegistry } from './job-registry.ts';
import type { SpeechModels } from './speech-models.ts';

export interface TranscribeFileRequest extends FileTranscribeOptions {
  path: string;
  model: string;
  /** Client-chosen job id (to poll progress while the request runs); generated otherwise. */
  jobId?: string;
}

export class TranscriptionService {
  constructor(
    private readonly deps: { models: SpeechModels; transcriber: FileTranscriber; jobs: JobRegistry },
  ) {}

  /** Resolves the model first (fast 400/503), then runs the job. `signal` cancels it (client gone). */
  async transcribeFile(req: TranscribeFileRequest, signal?: AbortSignal): Promise<FileTranscription & { jobId: string }> {
    const model = await this.deps.models.get(req.model);
    if (req.language !== 'auto' && !model.engine.info.languages.includes(req.language)) {
      throw Object.assign(new Error(`Model '${model.id}' does not support language '${req.language}'. Use 'auto' or a code from GET /v1/languages.`), { status: 400 });
    }
    const job = this.deps.jobs.create(req.jobId);
    const onAbort = () => this.deps.jobs.cancel(job.id, 'client disconnected');
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      this.deps.jobs.progress(job.id, { stage: 'decoding', fraction: 0 });
      const probe = await probeAudio(req.path, { signal: job.signal });
      if (!probe.hasAudio) {
        throw new AudioDecodeError('no_audio_stream', 'The file has no audio stream (a video without sound?). Upload a file that contains audio.');
      }
      const samples = await decodeToPcm16k(req.path, { signal: job.signal });
      const result = await this.deps.transcriber.transcribe(model, samples, req, {
        signal: job.signal,
        key: job.id,
        onProgress: (p) => this.deps.jobs.progress(job.id, { stage: p.stage, fraction: p.fraction, processedSeconds: p.processedSeconds, totalSeconds: p.totalSeconds }),
      });
      this.deps.jobs.complete(job.id);
      return { ...result, jobId: job.id };
    } catch (err) {
      this.deps.jobs.fail(job.id, (err as Error).message);
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }
}
