/**
 * The AI models of the server, loaded on first use (the server starts without them; a model pulled while
 * it runs is picked up) and shared by every request: one chat backend (local GGUF or LLM_BASE_URL), one
 * EmbeddingService per embedding model, one audio enhancer. A registry model that is not installed is pulled
 * on first use when AUTO_PULL is on (ModelInstaller), else fails the request with the registry's 503 (message
 * with the pull command); nothing is cached after a failed load.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { DomainError } from '../errors.ts';
import { EmbeddingService } from '../pipeline/embedding-service.ts';
import { AudioEnhancer, type AudioEnhancerOptions } from '../engines/enhance/audio-enhancer.ts';
import type { ChatBackend } from '../engines/llm/chat-backend.ts';
import { LocalLlm } from '../engines/llm/local-llm.ts';
import { OpenAiChatBackend } from '../engines/llm/openai-backend.ts';
import { EspeakSynthesizer } from '../engines/tts/espeak-synthesizer.ts';
import { TranslationEngine } from '../engines/translation/index.ts';
import { Seq2SeqTranslator } from './seq2seq-translator.ts';
import { ModelInstaller } from '../models/model-installer.ts';
import type { ModelRegistry } from '../models/registry.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { AiConfig } from '../../config/ai.ts';

export interface AiModelsOptions {
  registry: ModelRegistry;
  /** Pulls a missing registry model on first use (AUTO_PULL); without it a missing model is a 503. */
  installer?: ModelInstaller;
  config: AiConfig;
  logger?: Logger;
  executionProvider?: 'cpu' | 'cuda';
  /** onnxruntime intra-op threads for the embedder (0 = all cores). */
  intraOpThreads?: number;
  enhance?: Omit<AudioEnhancerOptions, 'targetLufs'>;
  /** LLM request, token and queue metrics (stt_llm_*); none recorded without it. */
  metrics?: Metrics;
}

/** The .gguf file of an LLM model folder (the largest one when several: a split or mmproj file is smaller). */
export function findGguf(dir: string): string {
  const files = readdirSync(dir).filter((f) => f.endsWith('.gguf'));
  if (files.length === 0) throw new DomainError('unavailable', `No .gguf file in ${dir}`, { expected: false });
  files.sort((a, b) => statSync(join(dir, b)).size - statSync(join(dir, a)).size);
  return join(dir, files[0]);
}

export class AiModels {
  private llmPromise: Promise<ChatBackend> | null = null;
  private readonly embedders = new Map<string, Promise<EmbeddingService>>();
  private enhancerPromise: Promise<AudioEnhancer> | null = null;
  private synthesizerPromise: Promise<EspeakSynthesizer> | null = null;
  private readonly translators = new Map<string, Promise<Seq2SeqTranslator>>();
  private closed = false;
  private readonly installer: ModelInstaller;

  constructor(private readonly opts: AiModelsOptions) {
    this.installer = opts.installer ?? new ModelInstaller({ registry: opts.registry, autoPull: false });
  }

  get config(): AiConfig {
    return this.opts.config;
  }

  private cached<T>(get: () => Promise<T> | null, set: (p: Promise<T> | null) => void, load: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new DomainError('unavailable', 'The server is shutting down.', { expected: false }));
    const existing = get();
    if (existing) return existing;
    const p = load();
    set(p);
    p.catch(() => set(null));
    return p;
  }

  /** The chat backend: LLM_BASE_URL when set, else the local GGUF model (loaded on first call). */
  llm(): Promise<ChatBackend> {
    return this.cached(
      () => this.llmPromise,
      (p) => (this.llmPromise = p),
      async () => {
        const c = this.opts.config.llm;
        if (c.baseUrl) {
          return new OpenAiChatBackend({
            baseUrl: c.baseUrl,
            model: c.model,
            apiKey: c.apiKey ?? undefined,
            contextSize: c.contextSize,
            observer: this.opts.metrics?.llmObserver(c.model, 'remote'),
          });
        }
        const entry = await this.installer.ensure(c.model, 'llm');
        const t0 = performance.now();
        const llm = await LocalLlm.load({
          modelPath: findGguf(entry.path!),
          modelId: entry.id,
          contextSize: c.contextSize,
          sequences: c.sequences,
          maxQueue: c.maxQueue,
          threads: c.threads,
          gpu: c.gpu,
          log: (level, message) => this.opts.logger?.[level]({ component: 'llama.cpp' }, message.trim()),
          observer: this.opts.metrics?.llmObserver(entry.id, 'local'),
        });
        this.opts.logger?.info({ model: entry.id, ms: Math.round(performance.now() - t0), contextSize: llm.contextSize, sequences: llm.sequences }, 'LLM loaded');
        return llm;
      },
    );
  }

  /**
   * The embedding service of a model id or folder (default EMBED_MODEL). Unknown → 400; a missing registry model is
   * pulled first with AUTO_PULL, else 503.
   */
  embedder(model?: string): Promise<EmbeddingService> {
    const id = model || this.opts.config.embedding.model;
    this.installer.check(id, 'embedding');
    return this.cached(
      () => this.embedders.get(id) ?? null,
      (p) => (p ? this.embedders.set(id, p) : this.embedders.delete(id)),
      async () => {
        const entry = await this.installer.ensure(id, 'embedding');
        return EmbeddingService.load({
          dir: entry.path!,
          modelId: entry.id,
          quantized: this.opts.config.embedding.quantized,
          executionProvider: this.opts.executionProvider,
          intraOpThreads: this.opts.intraOpThreads || undefined,
        });
      },
    );
  }

  /**
   * The seq2seq translator of a translation model id or folder (default TRANSLATE_MODEL; null when neither is set:
   * translation then runs on the chat LLM). Unknown or another kind → 400; a missing registry model is pulled first
   * with AUTO_PULL, else 503.
   */
  translator(model?: string): Promise<Seq2SeqTranslator> | null {
    const id = model || this.opts.config.translation.model;
    if (!id) return null;
    this.installer.check(id, 'translation');
    return this.cached(
      () => this.translators.get(id) ?? null,
      (p) => (p ? this.translators.set(id, p) : this.translators.delete(id)),
      async () => {
        const entry = await this.installer.ensure(id, 'translation');
        const engine = await TranslationEngine.load(entry.path!, { id: entry.id, executionProvider: this.opts.executionProvider, intraOpThreads: this.opts.intraOpThreads || undefined });
        this.opts.logger?.info({ model: entry.id, layout: engine.info.layout, targets: engine.targets.length }, 'translation model loaded');
        return new Seq2SeqTranslator(engine);
      },
    );
  }

  enhancer(): Promise<AudioEnhancer> {
    return this.cached(
      () => this.enhancerPromise,
      (p) => (this.enhancerPromise = p),
      () => AudioEnhancer.load({ ...this.opts.enhance, targetLufs: this.opts.config.enhance.targetLufs }),
    );
  }

  /** Text to speech (espeak-ng matched to the reference voice; see EspeakSynthesizer). */
  synthesizer(): Promise<EspeakSynthesizer> {
    return this.cached(
      () => this.synthesizerPromise,
      (p) => (this.synthesizerPromise = p),
      () => EspeakSynthesizer.load(),
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    const all: Promise<{ close(): Promise<void> }>[] = [];
    if (this.llmPromise) all.push(this.llmPromise);
    all.push(...this.embedders.values());
    if (this.enhancerPromise) all.push(this.enhancerPromise);
    if (this.synthesizerPromise) all.push(this.synthesizerPromise);
    all.push(...this.translators.values());
    await Promise.all(
      all.map((p) =>
        p.then(
          (m) => m.close(),
          () => {},
        ),
      ),
    );
  }
}
