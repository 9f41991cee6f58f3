/**
 * The services that run on the chat model: AiService (summarize, analyze, generate) and the
 * translator. Built once by the composition root and handed to the routes. The chat model itself
 * loads on first use (AiModels.llm(), which fails with 503 while it is not installed), so each
 * service is created on the backend it gets and created anew if AiModels hands out another one.
 */
import type { ChatBackend } from '../engines/llm/chat-backend.ts';
import { DomainError } from '../errors.ts';
import { AiService } from './ai-service.ts';
import { LlmTranslator, type Translator } from './translate.ts';

export interface LlmServicesOptions {
  /** The chat backend, loaded on first use. */
  llm: () => Promise<ChatBackend>;
  /** Output cap per model call (LLM_MAX_TOKENS); requests may ask for less. */
  maxTokens: number;
  /** The seq2seq translator of a model (default TRANSLATE_MODEL), or null: translation then runs on the chat model. */
  seq2seqTranslator?: (model?: string) => Promise<Translator> | null;
}

export class LlmServices {
  private service: { backend: ChatBackend; ai: AiService; translator: LlmTranslator } | null = null;

  constructor(private readonly opts: LlmServicesOptions) {}

  /** Summaries, analyses and generated documents on the current backend. */
  async ai(): Promise<AiService> {
    return (await this.current()).ai;
  }

  /**
   * Translation on `model` (a translation model id or folder) or the configured seq2seq model, else on the current
   * chat backend.
   */
  async translator(model?: string): Promise<Translator> {
    const seq2seq = this.opts.seq2seqTranslator?.(model);
    if (seq2seq) return seq2seq;
    if (model) throw new DomainError('invalid', `model: '${model}' cannot translate here: no translation models are served (TRANSLATE_MODEL)`);
    return (await this.current()).translator;
  }

  private async current(): Promise<{ ai: AiService; translator: LlmTranslator }> {
    const backend = await this.opts.llm();
    const maxTokens = this.opts.maxTokens;
    if (this.service?.backend !== backend) {
      this.service = { backend, ai: new AiService({ backend, maxTokens }), translator: new LlmTranslator(backend, maxTokens) };
    }
    return this.service;
  }
}
