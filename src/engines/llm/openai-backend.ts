/**
 * ChatBackend for an external server speaking the OpenAI chat-completions protocol (LLM_BASE_URL, e.g.
 * http://gpu-box:8000/v1 for vLLM, llama-server, Ollama, or another instance of this server). JSON output
 * is requested with `response_format: {type: "json_schema"}`; streaming uses server-sent events.
 */
import { DomainError } from '../../errors.ts';
import { LlmAbortedError, LlmQueueFullError, llmOutcome, LlmUnavailableError, type ChatBackend, type ChatMessage, type ChatOptions, type ChatResult, type LlmObserver } from './chat-backend.ts';

export interface OpenAiBackendOptions {
  /** Base URL including the version path, e.g. http://127.0.0.1:8080/v1. */
  baseUrl: string;
  /** Model name sent to the server (and reported in responses). */
  model: string;
  apiKey?: string;
  /** The server's context window per request (tokens); used to size chunks. Default 8192. */
  contextSize?: number;
  /** Per-request timeout (ms). Default 10 minutes. */
  timeoutMs?: number;
  /** Receives every finished request (metrics). */
  observer?: LlmObserver;
}

interface CompletionBody {
  choices?: { message?: { content?: string | null }; delta?: { content?: string | null }; finish_reason?: string | null }[];
  usage?: { prompt_tokens?: number; completion_tokens?: number };
  model?: string;
  error?: { message?: string } | string;
}

export class OpenAiChatBackend implements ChatBackend {
  readonly model: string;
  readonly contextSize: number;
  private readonly url: string;

  constructor(private readonly opts: OpenAiBackendOptions) {
    this.model = opts.model;
    this.contextSize = opts.contextSize ?? 8192;
    this.url = `${opts.baseUrl.replace(/\/+$/, '')}/chat/completions`;
  }

  /** An estimate (no tokenizer for a remote model): about 3 characters per token, rounded up. */
  countTokens(text: string): number {
    return Math.ceil(text.length / 3);
  }

  async chat(messages: ChatMessage[], opts: ChatOptions): Promise<ChatResult> {
    const t0 = performance.now();
    let r: ChatResult;
    try {
      r = await this.request(messages, opts);
    } catch (err) {
      this.opts.observer?.request?.({ outcome: llmOutcome(err), seconds: (performance.now() - t0) / 1000 });
      throw err;
    }
    // Token counts only where the server reported usage (0 = not reported).
    this.opts.observer?.request?.({
      outcome: 'ok',
      seconds: (performance.now() - t0) / 1000,
      promptTokens: r.promptTokens || undefined,
      completionTokens: r.completionTokens || undefined,
    });
    return r;
  }

  private async request(messages: ChatMessage[], opts: ChatOptions): Promise<ChatResult> {
    const stream = opts.onText !== undefined;
    const body: Record<string, unknown> = {
      model: this.model,
      messages,
      max_tokens: opts.maxTokens,
      temperature: opts.temperature ?? 0,
      stream,
    };
    if (opts.topP !== undefined) body.top_p = opts.topP;
    if (opts.seed !== undefined) body.seed = opts.seed;
    if (opts.stop?.length) body.stop = opts.stop;
    if (opts.jsonSchema) body.response_format = { type: 'json_schema', json_schema: { name: 'output', schema: opts.jsonSchema, strict: true } };
    if (stream) body.stream_options = { include_usage: true };
    const signals = [AbortSignal.timeout(this.opts.timeoutMs ?? 600_000), ...(opts.signal ? [opts.signal] : [])];
    let res: Response;
    try {
      res = await fetch(this.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(this.opts.apiKey ? { authorization: `Bearer ${this.opts.apiKey}` } : {}) },
        body: JSON.stringify(body),
        signal: AbortSignal.any(signals),
      });
    } catch (err) {
      if (opts.signal?.aborted) throw new LlmAbortedError();
      throw new LlmUnavailableError(`The LLM server at ${this.url} cannot be reached (${(err as Error).message}). Check LLM_BASE_URL.`);
    }
    if (!res.ok) {
      const text = await res.text().catch(() => '');
      let message = text.slice(0, 500);
      try {
        const j = JSON.parse(text) as CompletionBody;
        message = typeof j.error === 'string' ? j.error : (j.error?.message ?? message);
      } catch {
        /* not JSON */
      }
      if (res.status === 429) throw new LlmQueueFullError(Number(res.headers.get('retry-after')) || 5, 0);
      // Its 400 / 413 are the caller's (a bad or too long request); anything else is the server's fault.
      const kind = res.status === 400 ? 'invalid' : res.status === 413 ? 'too_large' : 'upstream';
      throw new DomainError(kind, `The LLM server at ${this.url} answered ${res.status}: ${message}`, { expected: false });
    }
    try {
      return stream ? await this.readStream(res, opts) : this.readJson((await res.json()) as CompletionBody);
    } catch (err) {
      if (opts.signal?.aborted) throw new LlmAbortedError();
      throw err;
    }
  }

  private readJson(j: CompletionBody): ChatResult {
    const choice = j.choices?.[0];
    return {
      text: choice?.message?.content ?? '',
      finishReason: choice?.finish_reason === 'length' ? 'length' : 'stop',
      promptTokens: j.usage?.prompt_tokens ?? 0,
      completionTokens: j.usage?.completion_tokens ?? 0,
      model: this.model,
    };
  }

  private async readStream(res: Response, opts: ChatOptions): Promise<ChatResult> {
    let text = '';
    let finish: ChatResult['finishReason'] = 'stop';
    let usage: CompletionBody['usage'];
    let buf = '';
    const decoder = new TextDecoder();
    const handle = (line: string) => {
      if (!line.startsWith('data:')) return;
      const data = line.slice(5).trim();
      if (!data || data === '[DONE]') return;
      const j = JSON.parse(data) as CompletionBody;
      if (j.error) throw new LlmUnavailableError(`The LLM server failed mid-stream: ${typeof j.error === 'string' ? j.error : j.error.message}`);
      const c = j.choices?.[0];
      const delta = c?.delta?.content;
      if (delta) {
        text += delta;
        opts.onText?.(delta);
      }
      if (c?.finish_reason) finish = c.finish_reason === 'length' ? 'length' : 'stop';
      if (j.usage) usage = j.usage;
    };
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        handle(buf.slice(0, nl).replace(/\r$/, ''));
        buf = buf.slice(nl + 1);
      }
    }
    handle(buf);
    return { text, finishReason: finish, promptTokens: usage?.prompt_tokens ?? 0, completionTokens: usage?.completion_tokens ?? 0, model: this.model };
  }

  async close(): Promise<void> {}
}
