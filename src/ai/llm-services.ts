/**
 * The services that run on the chat model: AiService (summarize, analyze, generate) and the
 * translator. Built once by the composition root and handed to the routes. The chat model itself
 * loads on first use (AiModels.llm(), which fails with 503 while it is not installed), so each
 * service is created on the backend it gets and created anew if AiModels hands out another one.
 */
import type { ChatBackend } from '../engines/llm/chat-backend.ts';
import { AiService } from './ai-service.ts';
import { LlmTranslator, type Translator } from './translate.ts';

export interface LlmServicesOptions {
  /** The chat backend, loaded on first use. */
  llm: () => Promise<ChatBackend>;
  /** Output cap per model call (LLM_MAX_TOKENS); requests may ask for less. */
  maxTokens: number;
  /** The seq2seq translator (TRANSLATE_MODEL), or null: translation then runs on the chat model. */
  seq2seqTranslator?: () => Promise<Translator> | null;
}

export class LlmServices {
  private service: { backend: ChatBackend; ai: AiService; translator: LlmTranslator } | null = null;

  constructor(private readonly opts: LlmServicesOptions) {}

  /** Summaries, analyses and generated documents on the current backend. */
  async ai(): Promise<AiService> {
    return (await this.current()).ai;
  }

  /** Translation on the seq2seq model when one is configured, else on the current chat backend. */
  async translator(): Promise<Translator> {
    const seq2seq = this.opts.seq2seqTranslator?.();
    if (seq2seq) return seq2seq;
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
