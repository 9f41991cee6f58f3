/**
 * The embedding model as a shared service: every text of every request goes through one BatchScheduler,
 * so concurrent /v1/embed calls (and transcript indexing) share padded batches. Like SpeechModels for
 * Whisper, the pipeline wraps the engine's per-batch call (`SentenceEmbedder.embedIds`) in the
 * scheduler; the engine knows nothing of batching policy.
 */
import { SentenceEmbedder, type SentenceEmbedderOptions } from '../engines/embedding/sentence-embedder.ts';
import { BatchScheduler } from './batch-scheduler.ts';

export interface EmbeddingServiceOptions extends SentenceEmbedderOptions {
  /** Model folder (registry-resolved). */
  dir: string;
  /** Public id reported to clients (e.g. all-minilm-l6-v2). */
  modelId: string;
  maxBatch?: number;
  windowMs?: number;
}

export interface Embedder {
  readonly modelId: string;
  readonly dimensions: number;
  embed(texts: string[], signal?: AbortSignal): Promise<Float32Array[]>;
}

let keySeq = 0;

export class EmbeddingService implements Embedder {
  private constructor(
    readonly embedder: SentenceEmbedder,
    readonly modelId: string,
    private readonly scheduler: BatchScheduler<number[], Float32Array>,
  ) {}

  static async load(opts: EmbeddingServiceOptions): Promise<EmbeddingService> {
    const embedder = await SentenceEmbedder.load(opts.dir, opts);
    const scheduler = new BatchScheduler<number[], Float32Array>({
      name: opts.modelId,
      maxBatch: opts.maxBatch ?? 32,
      windowMs: opts.windowMs ?? 5,
      run: (batch) => embedder.embedIds(batch),
    });
    return new EmbeddingService(embedder, opts.modelId, scheduler);
  }

  get dimensions(): number {
    return this.embedder.dimensions;
  }

  get stats(): { batches: number; requests: number; maxBatchSize: number } {
    return this.scheduler.stats;
  }

  /** Embeds texts; each text is one row of a shared batch. */
  embed(texts: string[], signal?: AbortSignal): Promise<Float32Array[]> {
    const key = `e${++keySeq}`;
    return Promise.all(texts.map((t) => this.scheduler.submit(this.embedder.tokenize(t), { priority: 'file', key, signal })));
  }

  async close(): Promise<void> {
    await this.scheduler.close();
    await this.embedder.close();
  }
}
