/**
 * The local chat model: a GGUF file on llama.cpp through node-llama-cpp's prebuilt binaries (never built
 * from source). One model, one context with `sequences` slots: concurrent requests each get a sequence and
 * llama.cpp evaluates them in shared batches. Requests beyond the slots wait in a queue that is fair
 * between tenants (FairQueue: the least recently served tenant goes next) and bounded per tenant
 * (LlmQueueFullError → 429 when a tenant's share is full, so one client cannot fill it for all);
 * an AbortSignal cancels a queued or running request.
 *
 * The prompt is the model's own chat template (GGUF `tokenizer.chat_template`, rendered with Jinja),
 * tokenized with special tokens parsed; special-token text inside message contents is defused first so a
 * transcript cannot inject turns.
 */
import { Template } from '@huggingface/jinja';
import {
  getLlama,
  LlamaGrammarEvaluationState,
  LlamaLogLevel,
  type GbnfJsonSchema,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaGrammar,
  type LlamaModel,
  type Token,
} from 'node-llama-cpp';
import {
  LlmAbortedError,
  LlmQueueFullError,
  llmOutcome,
  LlmUnavailableError,
  PromptTooLongError,
  type ChatBackend,
  type ChatMessage,
  type ChatOptions,
  type ChatResult,
  type JsonSchema,
  type LlmObserver,
} from './chat-backend.ts';
import { FairQueue } from './fair-queue.ts';
import { currentLlmTenant, DEFAULT_TENANT } from './tenant.ts';

/** Tenants' worth of waiting requests the whole queue holds (a bound on memory, whoever asks). */
export const MAX_QUEUED_TENANTS = 16;

export interface LocalLlmOptions {
  /** Path of the .gguf file. */
  modelPath: string;
  /** Model id reported to clients. */
  modelId: string;
  /** Tokens per sequence (prompt + completion). Default 4096, capped at the model's training context. */
  contextSize?: number;
  /** Concurrent generations (sequences of the one context). Default 4. */
  sequences?: number;
  /** Requests one tenant may have waiting for a free sequence; more → 429. Default 32. The whole queue holds at most MAX_QUEUED_TENANTS times that. */
  maxQueue?: number;
  /** CPU threads for evaluation. 0/undefined = node-llama-cpp's default (all math cores). On shared or busy machines set it: spinning threads collapse throughput. */
  threads?: number;
  /** 'auto' tries CUDA/Vulkan/Metal prebuilt binaries; false = CPU only (default). */
  gpu?: 'auto' | false;
  /** Receives llama.cpp's warnings and errors (default: dropped). */
  log?: (level: 'warn' | 'error', message: string) => void;
  /** Receives every finished request and every queue change (metrics). */
  observer?: LlmObserver;
}

const CHATML_TEMPLATE =
  "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/** Loads node-llama-cpp's prebuilt binary or says exactly what is missing. */
export async function loadLlamaRuntime(opts: { gpu?: 'auto' | false; log?: LocalLlmOptions['log'] } = {}): Promise<Llama> {
  try {
    return await getLlama({
      build: 'never',
      gpu: opts.gpu ?? false,
      progressLogs: false,
      skipDownload: true,
      logLevel: LlamaLogLevel.warn,
      logger: (level, message) => {
        if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) opts.log?.('error', message);
        else if (level === LlamaLogLevel.warn) opts.log?.('warn', message);
      },
    });
  } catch (err) {
    throw runtimeMissingError(err);
  }
}

export function runtimeMissingError(err: unknown): LlmUnavailableError {
  const platform = `${process.platform}-${process.arch}`;
  const e = new LlmUnavailableError(
    `The local LLM runtime (node-llama-cpp) has no usable prebuilt binary for ${platform}: ${(err as Error)?.message ?? err}. ` +
      `It ships in the optional npm package @node-llama-cpp/${platform === 'darwin-arm64' ? 'mac-arm64-metal' : platform.replace('darwin', 'mac')}: ` +
      `run \`npm ci\` without --omit=optional (this server never builds llama.cpp from source), or set LLM_BASE_URL to use an external OpenAI-compatible server.`,
    { cause: err },
  );
  return e;
}

/** Makes special-token text in user content plain text: `<|im_end|>` → `<\u200b|im_end|>`. */
export function defuseSpecialTokens(text: string): string {
  return text.replace(/<(\|[A-Za-z0-9_]+\|)>/g, '<\u200b$1>').replace(/<(\/?s)>/g, '<\u200b$1>');
}

interface Waiter {
  tenant: string;
  resolve: () => void;
  reject: (e: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

export class LocalLlm implements ChatBackend {
  private active = 0;
  private readonly waiting = new FairQueue<Waiter>();
  private readonly grammars = new Map<string, Promise<LlamaGrammar>>();
  private readonly template: Template;
  private closed = false;
  private readonly freeSequences: LlamaContextSequence[] = [];
  /** Totals since load (benchmarks, tests). */
  readonly stats = { requests: 0, completionTokens: 0, maxConcurrent: 0 };

  private constructor(
    readonly llama: Llama,
    readonly llamaModel: LlamaModel,
    private readonly context: LlamaContext,
    readonly model: string,
    readonly sequences: number,
    private readonly maxQueue: number,
    templateSource: string,
    private readonly bosToken: string,
    private readonly eosToken: string,
    private readonly observer: LlmObserver | undefined,
  ) {
    this.template = new Template(templateSource);
    // All sequences up front: a disposed sequence frees its slot asynchronously, a pool never races.
    for (let i = 0; i < sequences; i++) this.freeSequences.push(context.getSequence());
    this.notifyQueue();
  }

  static async load(opts: LocalLlmOptions): Promise<LocalLlm> {
    const llama = await loadLlamaRuntime(opts);
    let model: LlamaModel | undefined;
    try {
      model = await llama.loadModel({ modelPath: opts.modelPath });
      const sequences = Math.max(1, opts.sequences ?? 4);
      const contextSize = Math.min(opts.contextSize ?? 4096, model.trainContextSize);
      const context = await model.createContext({
        contextSize,
        sequences,
        threads: opts.threads || undefined,
        batching: { itemPrioritizationStrategy: 'maximumParallelism' },
      });
      const meta = model.fileInfo.metadata as { tokenizer?: { chat_template?: unknown } };
      const tpl = typeof meta.tokenizer?.chat_template === 'string' ? meta.tokenizer.chat_template : CHATML_TEMPLATE;
      const tokText = (t: Token | null) => (t === null ? '' : model!.detokenize([t], true));
      return new LocalLlm(llama, model, context, opts.modelId, sequences, opts.maxQueue ?? 32, tpl, tokText(model.tokens.bos), tokText(model.tokens.eos), opts.observer);
    } catch (err) {
      await model?.dispose().catch(() => {});
      await llama.dispose().catch(() => {});
      throw err;
    }
  }

  get contextSize(): number {
    return this.context.contextSize;
  }

  get queueDepth(): number {
    return this.waiting.size;
  }

  get running(): number {
    return this.active;
  }

  countTokens(text: string): number {
    return this.llamaModel.tokenize(text, false).length;
  }

  /** The prompt text of a conversation (chat template, add_generation_prompt). */
  renderPrompt(messages: ChatMessage[]): string {
    return this.template.render({
      messages: messages.map((m) => ({ role: m.role, content: defuseSpecialTokens(m.content) })),
      add_generation_prompt: true,
      bos_token: this.bosToken,
      eos_token: this.eosToken,
    });
  }

  /** Prompt text → token ids, special tokens parsed (what the model sees). */
  tokenizePrompt(prompt: string): number[] {
    return Array.from(this.llamaModel.tokenize(prompt, true));
  }

  detokenize(tokens: number[]): string {
    return this.llamaModel.detokenize(tokens as Token[]);
  }

  async chat(messages: ChatMessage[], opts: ChatOptions): Promise<ChatResult> {
    return this.generate(this.tokenizePrompt(this.renderPrompt(messages)), opts);
  }

  /** Generates from prompt token ids (the fixture contract is tested through this). */
  async generate(promptIds: number[], opts: ChatOptions): Promise<ChatResult> {
    const t0 = performance.now();
    const progress = { started: false, completionTokens: 0 };
    let r: ChatResult;
    try {
      r = await this.run(promptIds, opts, progress);
    } catch (err) {
      this.observer?.request?.({
        outcome: llmOutcome(err),
        seconds: (performance.now() - t0) / 1000,
        promptTokens: progress.started ? promptIds.length : 0,
        completionTokens: progress.completionTokens,
      });
      throw err;
    }
    this.observer?.request?.({ outcome: 'ok', seconds: (performance.now() - t0) / 1000, promptTokens: r.promptTokens, completionTokens: r.completionTokens });
    return r;
  }

  private async run(promptIds: number[], opts: ChatOptions, progress: { started: boolean; completionTokens: number }): Promise<ChatResult> {
    if (this.closed) throw new LlmUnavailableError('The language model is shutting down; retry shortly.');
    const maxTokens = Math.max(1, Math.floor(opts.maxTokens));
    if (promptIds.length + maxTokens > this.contextSize) throw new PromptTooLongError(promptIds.length, maxTokens, this.contextSize);
    const grammar = opts.jsonSchema ? await this.grammarFor(opts.jsonSchema) : undefined;
    const tenant = opts.tenant ?? currentLlmTenant() ?? DEFAULT_TENANT;
    await this.acquire(tenant, opts.signal);
    this.stats.requests++;
    this.stats.maxConcurrent = Math.max(this.stats.maxConcurrent, this.active);
    const seq = this.freeSequences.pop()!;
    progress.started = true;
    try {
      const out: Token[] = [];
      let text = '';
      let finishReason: ChatResult['finishReason'] = 'stop';
      const grammarEvaluationState = grammar ? new LlamaGrammarEvaluationState({ model: this.llamaModel, grammar }) : undefined;
      const stops = (opts.stop ?? []).filter((s) => s.length > 0);
      let stopped = false;
      const temperature = opts.temperature ?? 0;
      for await (const token of seq.evaluate(promptIds as Token[], {
        temperature,
        topP: temperature > 0 ? opts.topP : undefined,
        seed: opts.seed,
        grammarEvaluationState,
      })) {
        if (opts.signal?.aborted) throw new LlmAbortedError();
        if (this.llamaModel.isEogToken(token)) break;
        out.push(token);
        progress.completionTokens = out.length;
        const full = this.llamaModel.detokenize(out);
        // Hold back an incomplete UTF-8 sequence until the next token completes it.
        if (!full.endsWith('\uFFFD')) {
          let next = full;
          for (const s of stops) {
            const i = next.indexOf(s, Math.max(0, text.length - s.length));
            if (i >= 0) {
              next = next.slice(0, i);
              stopped = true;
            }
          }
          if (next.length > text.length && next.startsWith(text)) opts.onText?.(next.slice(text.length));
          text = next;
        }
        if (stopped) break;
        if (out.length >= maxTokens) {
          finishReason = 'length';
          break;
        }
      }
      if (opts.signal?.aborted) throw new LlmAbortedError();
      if (!stopped) {
        const full = this.llamaModel.detokenize(out);
        if (full.length > text.length && full.startsWith(text)) opts.onText?.(full.slice(text.length));
        text = full;
      }
      this.stats.completionTokens += out.length;
      return { text, finishReason, promptTokens: promptIds.length, completionTokens: out.length, model: this.model, tokens: Array.from(out) };
    } finally {
      try {
        await seq.clearHistory();
        this.freeSequences.push(seq);
      } catch {
        // A sequence that cannot be cleared is replaced by a fresh one when the context has room.
        seq.dispose();
        if (this.context.sequencesLeft > 0) this.freeSequences.push(this.context.getSequence());
      }
      this.release(tenant);
    }
  }

  private grammarFor(schema: JsonSchema): Promise<LlamaGrammar> {
    const key = JSON.stringify(schema);
    let g = this.grammars.get(key);
    if (!g) {
      g = this.llama.createGrammarForJsonSchema(schema as never as GbnfJsonSchema<Record<string, never>> as never);
      g.catch(() => this.grammars.delete(key));
      if (this.grammars.size > 64) this.grammars.delete(this.grammars.keys().next().value!);
      this.grammars.set(key, g);
    }
    return g;
  }

  private acquire(tenant: string, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(new LlmAbortedError());
    if (this.active < this.sequences && this.waiting.size === 0) {
      this.active++;
      this.waiting.started(tenant);
      this.notifyQueue();
      return Promise.resolve();
    }
    if (this.waiting.sizeOf(tenant) >= this.maxQueue || this.waiting.size >= this.maxQueue * MAX_QUEUED_TENANTS) {
      return Promise.reject(new LlmQueueFullError(Math.max(1, Math.ceil(this.waiting.size / this.sequences)), this.maxQueue));
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { tenant, resolve, reject, signal };
      if (signal) {
        w.onAbort = () => {
          this.waiting.remove(tenant, w);
          this.notifyQueue();
          reject(new LlmAbortedError());
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      this.waiting.push(tenant, w);
      this.notifyQueue();
    });
  }

  private release(tenant: string): void {
    this.waiting.finished(tenant);
    const next = this.waiting.shift()?.item;
    if (next) {
      if (next.onAbort) next.signal?.removeEventListener('abort', next.onAbort);
      next.resolve(); // the slot passes to the next request
    } else {
      this.active--;
    }
    this.notifyQueue();
  }

  private notifyQueue(): void {
    this.observer?.queue?.({ waiting: this.waiting.size, busy: this.active });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.waiting.drain()) {
      if (w.onAbort) w.signal?.removeEventListener('abort', w.onAbort);
      w.reject(new LlmUnavailableError('The language model is shutting down; retry shortly.'));
    }
    this.notifyQueue();
    // Let running generations finish (they are bounded by maxTokens), at most 10 s.
    for (let i = 0; i < 200 && this.active > 0; i++) await new Promise((r) => setTimeout(r, 50));
    await this.context.dispose().catch(() => {});
    await this.llamaModel.dispose().catch(() => {});
    await this.llama.dispose().catch(() => {});
  }
}
