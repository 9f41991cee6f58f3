/**
 * Translation behind a `Translator` interface: the chat LLM (this file), or a seq2seq engine (MADLAD-400,
 * seq2seq-translator.ts) when TRANSLATE_MODEL names one.
 * Texts are translated independently and concurrently (the local model batches them as sequences); a text
 * longer than the context is translated chunk by chunk.
 */
import type { ChatBackend } from '../engines/llm/chat-backend.ts';
import { DomainError } from '../errors.ts';
import { splitByTokens } from './chunking.ts';
import { type LanguageCode, unknownLanguageMessage } from './languages.ts';

export type Language = LanguageCode;

export interface TranslateOptions {
  /** Token budget per sentence (seq2seq engines; random-weight models never emit </s>). The LLM ignores it. */
  maxNewTokens?: number;
}

export interface Translator {
  readonly model: string;
  /** Target codes the model translates into, when it has a fixed set (seq2seq models); undefined for the LLM. */
  readonly targets?: string[];
  translate(texts: string[], source: Language, target: Language, signal?: AbortSignal, opts?: TranslateOptions): Promise<string[]>;
}

export class LlmTranslator implements Translator {
  constructor(
    private readonly backend: ChatBackend,
    /** Output cap per model call. */
    private readonly maxTokens = 512,
  ) {}

  get model(): string {
    return this.backend.model;
  }

  async translate(texts: string[], source: Language, target: Language, signal?: AbortSignal): Promise<string[]> {
    // the prompt names the languages: a code without a name would leave the model guessing
    for (const [field, lang] of [
      ['source', source],
      ['target', target],
    ] as const) {
      if (!lang.known) throw new DomainError('invalid', unknownLanguageMessage(field, lang.raw));
    }
    return Promise.all(texts.map((t) => this.one(t, source, target, signal)));
  }

  private system(source: Language, target: Language): string {
    return `You are a professional translator. Translate the user's text from ${source.name} (${source.code}) to ${target.name} (${target.code}). Reply with the translation only, keeping the meaning, tone and formatting.`;
  }

  private async one(text: string, source: Language, target: Language, signal?: AbortSignal): Promise<string> {
    if (!text.trim()) return text;
    if (source.code === target.code) return text;
    const system = this.system(source, target);
    const fixed = this.backend.countTokens(system) + 32;
    // Output is about as long as the input (up to ~2x in tokens for some scripts): leave room for it.
    const room = Math.floor((this.backend.contextSize - fixed) / 3);
    const chunkTokens = Math.max(16, Math.min(room, Math.floor(this.maxTokens / 2)));
    const chunks = this.backend.countTokens(text) <= chunkTokens ? [text] : splitByTokens(text, chunkTokens, (s) => this.backend.countTokens(s));
    const out = await Promise.all(
      chunks.map(async (c) => {
        const maxTokens = Math.min(this.maxTokens, 2 * this.backend.countTokens(c) + 16);
        const r = await this.backend.chat(
          [
            { role: 'system', content: system },
            { role: 'user', content: c },
          ],
          { maxTokens, signal },
        );
        return r.text.trim();
      }),
    );
    return out.join(' ');
  }
}
