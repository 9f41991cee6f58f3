/**
 * Where the model work of file transcription runs. `LocalSpeechWork` is the single-server path:
 * the model's own BatchScheduler (priority `file`, language detection included). `QueuedSpeechWork` (WORK_QUEUE=nats) sends each
 * chunk through the JetStream work queue to whichever worker takes it and waits for the result;
 * `speechWorkHandler` is the worker's side: it submits what it takes to its local scheduler with
 * priority `file`, so live finals on every worker keep their priority over file chunks.
 */
import type { TranscribeRequest, TranscribeResult } from '../engines/whisper/index.ts';
import type { NatsWorkQueue, WorkHandler } from '../bus/work-queue.ts';
import { loadedSpeechModel, speechModelInfo, type FileSpeechModel, type LoadedSpeechModel, type SpeechModels } from './speech-models.ts';

export interface SpeechWorkControl {
  /** Fairness key (job id): round-robin between jobs in the scheduler. */
  key: string;
  signal?: AbortSignal;
}

export interface SpeechWork {
  /**
   * Whether pieces may be decoded on this server's engine: then callers pass a loaded model; when
   * false (API-only server) a descriptor (`SpeechModels.describe`) is enough and nothing is loaded.
   */
  readonly decodesLocally: boolean;
  /**
   * Resolves when pieces of `model` can be decoded now; rejects (503 + Retry-After) when nobody can,
   * e.g. no live worker on the work queue. Called before the request is charged. Absent = always available.
   */
  ensureAvailable?(model: FileSpeechModel): Promise<void>;
  /** Transcribes one piece (a VAD chunk, or the whole file with VAD off). */
  transcribe(model: FileSpeechModel, req: TranscribeRequest, ctl: SpeechWorkControl): Promise<TranscribeResult>;
  /** The language spoken in `audio` (its first 30 s). */
  detectLanguage(model: FileSpeechModel, audio: Float32Array, ctl: SpeechWorkControl): Promise<string>;
}

/** This server's scheduler and engine: exactly what FileTranscriber always did. */
export class LocalSpeechWork implements SpeechWork {
  readonly decodesLocally = true;

  /** The model is here (loaded or described by the caller): always available. */
  async ensureAvailable(): Promise<void> {}

  transcribe(model: FileSpeechModel, req: TranscribeRequest, ctl: SpeechWorkControl): Promise<TranscribeResult> {
    return loaded(model).transcribe(req, { priority: 'file', key: ctl.key, signal: ctl.signal });
  }

  /** Through the scheduler too (priority `file`): queued, batched with other detections, cancellable. */
  async detectLanguage(model: FileSpeechModel, audio: Float32Array, ctl: SpeechWorkControl): Promise<string> {
    const det = await loaded(model).detectLanguage(audio, { priority: 'file', key: ctl.key, signal: ctl.signal });
    return det.language;
  }
}

function loaded(model: FileSpeechModel): LoadedSpeechModel {
  const m = loadedSpeechModel(model);
  if (!m) throw new Error(`Model '${model.id}' is not loaded on this server: local decoding needs SpeechModels.get, not describe`);
  return m;
}

/**
 * Chunks go to the work queue. A piece too large for one NATS message (VAD off on a long file)
 * runs on `fallback` when this server is itself a worker, else fails with a message naming
 * max_payload.
 */
export class QueuedSpeechWork implements SpeechWork {
  readonly decodesLocally: boolean;

  constructor(
    private readonly queue: NatsWorkQueue,
    private readonly fallback: SpeechWork | null,
  ) {
    this.decodesLocally = fallback?.decodesLocally ?? false;
  }

  /** A live worker for the model (this server counts when it is one): else 503 before any charge. */
  ensureAvailable(model: FileSpeechModel): Promise<void> {
    return this.queue.ensureWorker(speechModelInfo(model).id);
  }

  transcribe(model: FileSpeechModel, req: TranscribeRequest, ctl: SpeechWorkControl): Promise<TranscribeResult> {
    if (this.fallback && !this.queue.fits(req.audio.length)) return this.fallback.transcribe(model, req, ctl);
    return this.queue.dispatch<TranscribeResult>('transcribe', model.id, req.audio, { jobId: ctl.key, options: req.options, signal: ctl.signal });
  }

  detectLanguage(model: FileSpeechModel, audio: Float32Array, ctl: SpeechWorkControl): Promise<string> {
    return this.queue.dispatch<string>('detect', model.id, audio.subarray(0, 30 * speechModelInfo(model).samplingRate), { jobId: ctl.key, signal: ctl.signal });
  }
}

/** The worker's handler: work items of any served model go to this server's models. */
export function speechWorkHandler(models: SpeechModels): WorkHandler {
  const local = new LocalSpeechWork();
  return async ({ head, audio }) => {
    const model = await models.get(head.model);
    const ctl = { key: head.jobId };
    if (head.op === 'detect') return local.detectLanguage(model, audio, ctl);
    return local.transcribe(model, { audio, options: head.options as TranscribeRequest['options'] }, ctl);
  };
}
