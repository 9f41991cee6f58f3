/**
 * Where the model work of file transcription runs. `LocalSpeechWork` is the single-server path:
 * the model's own BatchScheduler (priority `file`). `QueuedSpeechWork` (WORK_QUEUE=nats) sends each
 * chunk through the JetStream work queue to whichever worker takes it and waits for the result;
 * `speechWorkHandler` is the worker's side: it submits what it takes to its local scheduler with
 * priority `file`, so live finals on every worker keep their priority over file chunks.
 */
import type { TranscribeRequest, TranscribeResult } from '../engines/whisper/index.ts';
import type { NatsWorkQueue, WorkHandler } from '../bus/work-queue.ts';
import type { LoadedSpeechModel, SpeechModels } from './speech-models.ts';

export interface SpeechWorkControl {
  /** Fairness key (job id): round-robin between jobs in the scheduler. */
  key: string;
  signal?: AbortSignal;
}

export interface SpeechWork {
  /** Transcribes one piece (a VAD chunk, or the whole file with VAD off). */
  transcribe(model: LoadedSpeechModel, req: TranscribeRequest, ctl: SpeechWorkControl): Promise<TranscribeResult>;
  /** The language spoken in `audio` (its first 30 s). */
  detectLanguage(model: LoadedSpeechModel, audio: Float32Array, ctl: SpeechWorkControl): Promise<string>;
}

/** This server's scheduler and engine: exactly what FileTranscriber always did. */
export class LocalSpeechWork implements SpeechWork {
  transcribe(model: LoadedSpeechModel, req: TranscribeRequest, ctl: SpeechWorkControl): Promise<TranscribeResult> {
    return model.scheduler.submit(req, { priority: 'file', key: ctl.key, signal: ctl.signal });
  }

  async detectLanguage(model: LoadedSpeechModel, audio: Float32Array): Promise<string> {
    const [det] = await model.engine.detectLanguage([audio]);
    return det.language;
  }
}

/**
 * Chunks go to the work queue. A piece too large for one NATS message (VAD off on a long file)
 * runs on `fallback` when this server is itself a worker, else fails with a message naming
 * max_payload.
 */
export class QueuedSpeechWork implements SpeechWork {
  constructor(
    private readonly queue: NatsWorkQueue,
    private readonly fallback: SpeechWork | null,
  ) {}

  transcribe(model: LoadedSpeechModel, req: TranscribeRequest, ctl: SpeechWorkControl): Promise<TranscribeResult> {
    if (this.fallback && !this.queue.fits(req.audio.length)) return this.fallback.transcribe(model, req, ctl);
    return this.queue.dispatch<TranscribeResult>('transcribe', model.id, req.audio, { jobId: ctl.key, options: req.options, signal: ctl.signal });
  }

  detectLanguage(model: LoadedSpeechModel, audio: Float32Array, ctl: SpeechWorkControl): Promise<string> {
    return this.queue.dispatch<string>('detect', model.id, audio.subarray(0, 30 * model.engine.info.samplingRate), { jobId: ctl.key, signal: ctl.signal });
  }
}

/** The worker's handler: work items of any served model go to this server's models. */
export function speechWorkHandler(models: SpeechModels): WorkHandler {
  return async ({ head, audio }) => {
    const model = await models.get(head.model);
    if (head.op === 'detect') {
      const [det] = await model.engine.detectLanguage([audio]);
      return det.language;
    }
    return model.scheduler.submit({ audio, options: head.options as TranscribeRequest['options'] }, { priority: 'file', key: head.jobId });
  };
}
