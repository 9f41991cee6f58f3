/**
 * What the AI services need from a chat model, whoever runs it: the local llama.cpp model (LocalLlm) or an
 * external server speaking the OpenAI chat-completions protocol (OpenAiChatBackend, LLM_BASE_URL).
 */
import { DomainError } from '../../errors.ts';
import type { LlmOutcome } from '../../observability/llm-observer.ts';

// The observer's shape belongs to observability (below the engines); backends import it from here.
export type { LlmObserver, LlmOutcome, LlmRequestRecord } from '../../observability/llm-observer.ts';

export type ChatRole = 'system' | 'user' | 'assistant';

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

/** A JSON schema in the subset that node-llama-cpp turns into a grammar (type, properties, required, items, enum, maxLength, maxItems …). */
export type JsonSchema = Record<string, unknown>;

export interface ChatOptions {
  /** Hard cap on generated tokens (required: the fixture model rarely stops by itself). */
  maxTokens: number;
  /** 0 (default) = greedy. */
  temperature?: number;
  topP?: number;
  seed?: number;
  /** Constrain the output to JSON of this schema (grammar locally, response_format json_schema remotely). */
  jsonSchema?: JsonSchema;
  stop?: string[];
  signal?: AbortSignal;
  /** Fairness key of the wait queue (see tenant.ts); default: the request's tenant from the async context. */
  tenant?: string;
  /** Streaming: called with each new piece of text as it is generated. */
  onText?: (delta: string) => void;
}

export interface ChatResult {
  text: string;
  /** 'stop': end of turn, stop string or complete JSON; 'length': maxTokens reached. */
  finishReason: 'stop' | 'length';
  promptTokens: number;
  completionTokens: number;
  model: string;
  /** The generated token ids (local backend only). */
  tokens?: number[];
}

export interface ChatBackend {
  /** The model id reported in responses. */
  readonly model: string;
  /** Tokens one request may use (prompt + completion). */
  readonly contextSize: number;
  /** Tokens of a piece of text (exact locally, an estimate for external servers). */
  countTokens(text: string): number;
  chat(messages: ChatMessage[], opts: ChatOptions): Promise<ChatResult>;
  close(): Promise<void>;
}

/** All sequences busy and the caller's share of the wait queue (or the whole queue) full: 'rate_limited' (HTTP 429 with Retry-After). */
export class LlmQueueFullError extends DomainError {
  override name = 'LlmQueueFullError';
  declare readonly retryAfterS: number;
  constructor(retryAfterS: number, limit: number) {
    super('rate_limited', `The language model is busy${limit > 0 ? ` (${limit} of your requests already waiting, or the queue is full)` : ''}. Retry in ${retryAfterS} s.`, { retryAfterS });
  }
}

/** The prompt does not leave room for the requested completion in the context window: 'too_large'. */
export class PromptTooLongError extends DomainError {
  override name = 'PromptTooLongError';
  constructor(
    readonly promptTokens: number,
    readonly maxTokens: number,
    readonly contextSize: number,
  ) {
    super('too_large', `The prompt is ${promptTokens} tokens; with max_tokens ${maxTokens} it does not fit the model's context of ${contextSize} tokens. Shorten the input or lower max_tokens.`);
  }
}

/** The LLM runtime or server cannot be used (binary missing, external server down, shutting down): 'unavailable', logged. */
export class LlmUnavailableError extends DomainError {
  override name = 'LlmUnavailableError';
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super('unavailable', message, { expected: false, cause: opts.cause });
  }
}

/** The request was cancelled (client went away): 'cancelled'. */
export class LlmAbortedError extends DomainError {
  override name = 'LlmAbortedError';
  constructor() {
    super('cancelled', 'generation cancelled');
  }
}

export function llmOutcome(err: unknown): LlmOutcome {
  if (err instanceof LlmAbortedError) return 'aborted';
  if (err instanceof LlmQueueFullError) return 'rejected';
  return 'error';
}
