/**
 * Loaded speech models: one engine (Whisper or Moonshine, by the folder's config) and one BatchScheduler per model, loaded on first use
 * (single-flight: concurrent first requests share one load) and closed with the app. Every stream
 * and file job submits its windows here, so all of them share the model's batches. Every decode goes
 * through the scheduler, language detection included (`op: 'detect'`): it is queued, prioritised,
 * cancelled with its stream or job, and batched with other detections (never with transcriptions).
 *
 * `describe` answers what a model is (id, languages, sampling rate) from its config files alone,
 * without ONNX sessions: what an API-only server (WORK_QUEUE=nats, WORKER=false) needs for files,
 * whose chunks are decoded by workers.
 */
import type { Logger } from 'pino';
import type { LanguageProbs, SpeechEngine, TranscribeRequest, TranscribeResult } from '../engines/speech-engine.ts';
import { describeSpeechFolder, loadSpeechEngine, type SpeechEngineOptions, type SpeechFamily } from '../engines/speech-engines.ts';
import { ModelInstaller } from '../models/model-installer.ts';
import type { ModelRegistry } from '../models/registry.ts';
import type { Metrics } from '../observability/metrics.ts';
import { BatchScheduler, type Priority } from './batch-scheduler.ts';
import { RecentWindow } from './recent-window.ts';
import { ThreadShare } from './thread-share.ts';

/** How late live finals are, per model: what admission control and `stt_final_lag_seconds` see. */
export interface LiveLag {
  /** A live final reached its stream `ms` after the audio that ended its utterance had arrived. */
  record(ms: number): void;
  /** 90th percentile over the last 10 s (0 when none). */
  p90Ms(): number;
}

/** One decode of a speech model: a transcription (`op` may be left out) or a language detection. */
export type SpeechRequest = (TranscribeRequest & { op?: 'transcribe' }) | DetectRequest;
export interface DetectRequest {
  op: 'detect';
  /** Detection looks at the first 30 s only. */
  audio: Float32Array;
}
export type SpeechResult = TranscribeResult | LanguageProbs;
export type SpeechOp = 'transcribe' | 'detect';

/** How a decode is queued: its priority, fairness key (stream or job id) and cancellation. */
export interface DecodeControl {
  priority: Priority;
  key: string;
  signal?: AbortSignal;
}

export interface LoadedSpeechModel {
  id: string;
  engine: SpeechEngine;
  /** Takes every decode of this model; batches per model call shape ({@link speechGroup}: `stats.byGroup.transcribe` / `.detect` / `transcribe/trimmed@…`). */
  scheduler: BatchScheduler<SpeechRequest, SpeechResult>;
  liveLag: LiveLag;
  /** Transcribes through the scheduler. */
  transcribe(req: TranscribeRequest, ctl: DecodeControl): Promise<TranscribeResult>;
  /** Detects the language of the first 30 s of `audio` through the scheduler. */
  detectLanguage(audio: Float32Array, ctl: DecodeControl): Promise<LanguageProbs>;
}

/** The engine's shape key of a request (SpeechEngine.shapeKey): '' when it batches with any other. */
export type ShapeKey = (samples: number, mode: 'full' | 'trimmed' | undefined) => string;

/**
 * Which requests can share one model call: language detections; transcriptions the engine batches as they come
 * (finals, file chunks: it groups their windows by shape itself); and transcriptions of one input shape each
 * (`transcribe/<key>`: Whisper's trimmed-encoder bucket `trimmed@<frames>`, Moonshine's padded length `padded@<samples>`),
 * so that a batch's encoder input has one shape.
 */
export function speechGroup(req: SpeechRequest, shapeKey: ShapeKey): string {
  if (req.op === 'detect') return 'detect';
  const key = shapeKey(req.audio.length, req.options?.encoder);
  return key ? `transcribe/${key}` : 'transcribe';
}

/** Runs one batch (all of one op, as the scheduler groups them) on the engine. */
export async function runSpeechBatch(engine: SpeechEngine, reqs: SpeechRequest[]): Promise<SpeechResult[]> {
  const detects = reqs.filter((r): r is DetectRequest => r.op === 'detect');
  if (detects.length === reqs.length) return engine.detectLanguage(detects.map((r) => r.audio));
  if (detects.length) throw new Error('a batch mixes transcription and language detection (the scheduler groups by op)');
  return engine.transcribe(reqs as TranscribeRequest[]);
}

/** What a model is, without loading it: read from the folder's config files. */
export interface SpeechModelInfo {
  id: string;
  dir: string;
  family: SpeechFamily;
  /** 'translate' (to English) only for multilingual Whisper models. */
  tasks: ('transcribe' | 'translate')[];
  /** Language codes the model accepts ("en", …), as the engine's tokenizer lists them. */
  languages: string[];
  multilingual: boolean;
  samplingRate: number;
}

/** A model as file transcription takes it: loaded (decoded on this server) or only described (decoded by workers). */
export type FileSpeechModel = LoadedSpeechModel | SpeechModelInfo;

/** The descriptor of either form (a loaded model's comes from its engine). */
export function speechModelInfo(m: FileSpeechModel): SpeechModelInfo {
  if (!('engine' in m)) return m;
  const i = m.engine.info;
  return { id: m.id, dir: i.dir, family: i.family, tasks: i.tasks, languages: i.languages, multilingual: i.multilingual, samplingRate: i.samplingRate };
}

/** The loaded model, or null for a descriptor. */
export function loadedSpeechModel(m: FileSpeechModel): LoadedSpeechModel | null {
  return 'engine' in m ? m : null;
}

/** What a request sees while its model is made ready: a download (AUTO_PULL; fraction null while sizes are unknown), then the load. */
export interface ModelWaitProgress {
  stage: 'downloading' | 'loading';
  fraction: number | null;
}

/** How a request waits for its model: progress while it is downloaded or loaded, and when to stop waiting. */
export interface ModelWait {
  onProgress?: (p: ModelWaitProgress) => void;
  signal?: AbortSignal;
}

export interface SpeechModelsOptions {
  registry: ModelRegistry;
  /** Pulls a missing registry model on first use (AUTO_PULL); without it a missing model is a 503. */
  installer?: ModelInstaller;
  logger: Logger;
  metrics?: Metrics;
  inference: Pick<
    SpeechEngineOptions,
    | 'executionProvider'
    | 'intraOpThreads'
    | 'interOpThreads'
    | 'allowSpinning'
    | 'graphCacheDir'
    | 'quantized'
    | 'graphOptimizationLevel'
    | 'precision'
    | 'decoderLayout'
    | 'prepackDecoder'
    | 'padQuantumS'
  >;
  /** Largest batch of 30 s windows per model call. */
  maxBatch?: number;
  /** How long the first request of a batch waits for company. */
  batchWindowMs?: number;
  /** Wall clock of the schedulers (default Date.now): queue waits and busy time. */
  clock?: () => number;
}

export class SpeechModels {
  private readonly loaded = new Map<string, Promise<LoadedSpeechModel>>();
  private readonly described = new Map<string, Promise<SpeechModelInfo>>();
  /** Folders whose load has finished (a request joining an unfinished load is told it is loading). */
  private readonly ready = new Set<string>();
  private readonly installer: ModelInstaller;
  /** The JavaScript thread all their sessions run on: overlapping batches of two models are each charged their share. */
  private readonly thread = new ThreadShare();

  constructor(private readonly opts: SpeechModelsOptions) {
    this.installer = opts.installer ?? new ModelInstaller({ registry: opts.registry, autoPull: false });
  }

  /**
   * Fails now for what no wait can fix: an unknown id, a model of another kind, or one not installed while
   * AUTO_PULL is off (400 / 503), so that a route answers before it starts a job.
   */
  check(idOrFolder: string): void {
    this.installer.check(idOrFolder, 'asr');
  }

  /** Models loaded or loading (engines with ONNX sessions). */
  get loadedCount(): number {
    return this.loaded.size;
  }

  /**
   * Resolves an id or folder name (400 unknown; a missing registry model is pulled first with AUTO_PULL, else 503)
   * and reads its descriptor from the config files (once per folder); creates no ONNX session.
   */
  async describe(idOrFolder: string, wait: ModelWait = {}): Promise<SpeechModelInfo> {
    const entry = await this.install(idOrFolder, wait);
    const key = entry.path!;
    let p = this.described.get(key);
    if (!p) {
      p = describeSpeechFolder(key).then((d) => ({ id: entry.id, dir: key, ...d }));
      this.described.set(key, p);
      p.catch(() => this.described.delete(key));
    }
    return p;
  }

  /** Resolves an id or folder name (400 unknown; a missing registry model is pulled first with AUTO_PULL, else 503) and loads it once. */
  async get(idOrFolder: string, wait: ModelWait = {}): Promise<LoadedSpeechModel> {
    const entry = await this.install(idOrFolder, wait);
    const key = entry.path!;
    let p = this.loaded.get(key);
    if (!p) {
      p = this.load(entry.id, key);
      this.loaded.set(key, p);
      p.then(
        () => this.ready.add(key),
        () => this.loaded.delete(key),
      );
    }
    if (!this.ready.has(key)) wait.onProgress?.({ stage: 'loading', fraction: null });
    return p;
  }

  private install(idOrFolder: string, wait: ModelWait) {
    const onProgress = wait.onProgress;
    return this.installer.ensure(idOrFolder, 'asr', { signal: wait.signal, onProgress: onProgress && ((p) => onProgress({ stage: 'downloading', fraction: p.fraction })) });
  }

  /** Loads a model from a folder path (CLI: `--model ./some/folder`). */
  getByPath(dir: string): Promise<LoadedSpeechModel> {
    let p = this.loaded.get(dir);
    if (!p) {
      p = this.load(dir.split('/').filter(Boolean).pop() ?? dir, dir);
      this.loaded.set(dir, p);
      p.catch(() => this.loaded.delete(dir));
    }
    return p;
  }

  private async load(id: string, dir: string): Promise<LoadedSpeechModel> {
    const t0 = performance.now();
    const engine = await loadSpeechEngine(dir, { ...this.opts.inference, id });
    const metrics = this.opts.metrics;
    const scheduler = new BatchScheduler<SpeechRequest, SpeechResult>({
      name: id,
      run: (reqs) => runSpeechBatch(engine, reqs),
      group: (req) => speechGroup(req, (samples, mode) => engine.shapeKey(samples, mode)),
      maxBatch: this.opts.maxBatch ?? 8,
      windowMs: this.opts.batchWindowMs ?? 10,
      clock: this.opts.clock,
      share: this.thread,
      onDrop: (reason) => metrics?.droppedPartials.inc({ model: id, reason }),
      onBatch: ({ size, ms }) => {
        metrics?.batchSize.observe({ model: id }, size);
        metrics?.batchSeconds.observe({ model: id }, ms / 1000);
        metrics?.finalWait.set({ model: id }, scheduler.finalWaitMs() / 1000);
      },
      onDepth: (d) => {
        for (const [priority, n] of Object.entries(d)) metrics?.queueDepth.set({ model: id, priority }, n);
      },
    });
    metrics?.modelLoaded.set({ model: id, kind: 'asr' }, 1);
    metrics?.watchSchedulerLoad(id, () => {
      const l = scheduler.load();
      return { final: l.finalBusyFraction, file: l.fileBusyFraction, partial: l.partialBusyFraction };
    });
    const measured = engine.info.variantTimings?.map((t) => ({
      variant: `${t.quantized ? 'int8' : 'fp32'}/${t.layout}`,
      encoderMs: Math.round(t.encoderMs),
      stepMs: +t.stepMs.toFixed(2),
      score: Math.round(t.score),
    }));
    this.opts.logger.info(
      {
        model: id,
        dir,
        family: engine.info.family,
        layout: engine.info.layout,
        quantized: engine.info.quantized,
        trimmableEncoder: engine.info.trimmableEncoder,
        measured,
        ms: Math.round(performance.now() - t0),
      },
      measured?.length ? 'speech model loaded (fastest variant measured)' : 'speech model loaded',
    );
    const lags = new RecentWindow(10_000);
    const liveLag: LiveLag = {
      record: (ms) => {
        lags.add(ms);
        metrics?.finalLag.observe({ model: id }, ms / 1000);
      },
      p90Ms: () => lags.quantile(0.9),
    };
    const samplingRate = engine.info.samplingRate;
    return {
      id,
      engine,
      scheduler,
      liveLag,
      // Each op's batch answers with that op's result type (runSpeechBatch).
      transcribe: (req, ctl) => scheduler.submit({ ...req, op: 'transcribe' }, ctl) as Promise<TranscribeResult>,
      detectLanguage: (audio, ctl) => scheduler.submit({ op: 'detect', audio: audio.subarray(0, 30 * samplingRate) }, ctl) as Promise<LanguageProbs>,
    };
  }

  async close(): Promise<void> {
    const all = [...this.loaded.values()];
    this.loaded.clear();
    this.ready.clear();
    this.described.clear();
    for (const p of all) {
      try {
        const m = await p;
        await m.scheduler.close();
        await m.engine.close();
        this.opts.metrics?.modelLoaded.set({ model: m.id, kind: 'asr' }, 0);
      } catch {
        /* a failed load has nothing to close */
      }
    }
  }
}
