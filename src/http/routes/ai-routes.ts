/**
 * AI endpoints: POST /v1/summarize, /v1/analyze, /v1/generate, /v1/translate, /v1/embed, /v1/enhance-audio,
 * /v1/tts
 * (the API reference's shapes; see docs/ai-endpoints.md for what the reference leaves open) and
 * POST /v1/chat/completions (OpenAI-compatible, `stream: true` as server-sent events). Parse, validate,
 * call the services in src/ai and the engines, format. Models load on first use (AiModels).
 */
import { randomUUID } from 'node:crypto';
import type { AccessControl } from '../../auth/index.ts';
import type { Method } from '../router.ts';
import { languageField, maxNewTokensField, maxTokensField } from '../form-fields.ts';
import { z } from 'zod';
import type { AiModels } from '../../ai/ai-models.ts';
import type { LlmServices } from '../../ai/llm-services.ts';
import { ANALYSIS_TYPES, GENERATE_TYPES, SUMMARY_STYLES } from '../../ai/prompts.ts';
import { LlmAbortedError, LlmQueueFullError, type ChatMessage, type ChatOptions } from '../../engines/llm/chat-backend.ts';
import { withLlmTenant } from '../../engines/llm/tenant.ts';
import { receiveMultipart } from '../multipart-upload.ts';
import { decodeToPcm16k } from '../../audio/ffmpeg.ts';
import { encodeWav } from '../../audio/pcm.ts';
import { ApiError } from '../api-error.ts';
import { OpenAiError, openAiErrorBody } from '../openai-errors.ts';
import { formatBytes } from '../../formats/bytes.ts';
import type { HttpContext, Reply } from '../http-context.ts';
import type { Handler, HttpServer, RouteOptions } from '../http-server.ts';

export interface AiRouteDeps {
  /** Lazily loaded models (chat backend, embedders, enhancer). */
  models: Pick<AiModels, 'llm' | 'embedder' | 'enhancer' | 'synthesizer'>;
  /** Summaries, analyses, generation and translation on the chat model (built by the composition root). */
  services: Pick<LlmServices, 'ai' | 'translator'>;
  /** Longest accepted `text` (characters); longer → 413. */
  maxTextChars: number;
  /** Output cap per model call; requests may ask for less with `max_tokens`. */
  maxTokens: number;
  /** Most texts per /v1/embed or batch /v1/translate request. */
  maxTexts?: number;
  /** Upload limit and temp folder for /v1/enhance-audio. */
  maxUploadBytes: number;
  tmpDir: string;
  /** /v1/tts: longest text in characters (default 5000). */
  maxTtsChars?: number;
  /** Same keys, tiers and concurrency limits as /v1/transcribe (AI calls are counted, not billed by the minute). */
  access?: AccessControl;
}

type Parsed<T extends z.ZodType> = z.infer<T>;

function parse<T extends z.ZodType>(schema: T, body: unknown): Parsed<T> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ApiError(400, 'Request body must be a JSON object.');
  const r = schema.safeParse(body);
  if (!r.success) {
    const tooLong = r.error.issues.find((i) => i.code === 'custom' && (i.params as { status?: number } | undefined)?.status === 413);
    const msg = r.error.issues.map((i) => i.message).join('; ');
    // The field at fault, for OpenAI clients (`err.param`); the reference routes show only the message.
    const param = r.error.issues[0]?.path.map(String).join('.') || null;
    throw new OpenAiError(tooLong ? 413 : 400, msg, { param });
  }
  return r.data;
}

const enumOf = <T extends readonly [string, ...string[]]>(name: string, values: T, dflt?: T[number]) =>
  z
    .unknown()
    .optional()
    .transform((v, ctx): T[number] => {
      if ((v === undefined || v === null || v === '') && dflt !== undefined) return dflt;
      if (typeof v === 'string' && (values as readonly string[]).includes(v)) return v;
      ctx.addIssue({ code: 'custom', message: `${name} must be one of ${values.join(', ')} (got ${v === undefined ? 'nothing' : JSON.stringify(v)})` });
      return z.NEVER;
    });

function textField(name: string, maxChars: number) {
  return z
    .unknown()
    .optional()
    .transform((v, ctx): string => {
      if (typeof v !== 'string' || v.trim() === '') {
        ctx.addIssue({ code: 'custom', message: `${name} is required: a non-empty string${v === undefined ? '' : ` (got ${v === '' ? 'an empty string' : typeof v})`}` });
        return z.NEVER;
      }
      if (v.length > maxChars) {
        ctx.addIssue({ code: 'custom', message: `${name} is ${v.length} characters long; the limit is ${maxChars}`, params: { status: 413 } });
        return z.NEVER;
      }
      return v;
    });
}

/** Maps engine errors that carry extra headers; everything else goes to HttpServer's mapping. */
function mapError(err: unknown): never {
  if (err instanceof LlmQueueFullError) throw new ApiError(429, err.message, { 'retry-after': String(err.retryAfterS) });
  throw err;
}

export function registerAiRoutes(server: HttpServer, deps: AiRouteDeps): void {
  // Every AI route passes the same admission as /v1/transcribe: key, tier, concurrency slot, and
  // for anonymous clients their daily AI allowance and a smaller body (`anonBody`: JSON or upload).
  const route = (method: Method, pattern: string, handler: Handler, opts?: RouteOptions, anonBody: AnonBody = 'json') =>
    server.route(method, pattern, deps.access ? guarded(deps.access, handler, anonBody) : handler, opts);

  const maxTexts = deps.maxTexts ?? 256;
  const ai = () => deps.services.ai();
  const translator = (model?: string) => deps.services.translator(model);
  const run = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      return mapError(err);
    }
  };

  const text = textField('text', deps.maxTextChars);
  const maxTokens = maxTokensField(deps.maxTokens);

  const summarizeBody = z.object({ text, style: enumOf('style', SUMMARY_STYLES, 'brief'), max_tokens: maxTokens });
  route('POST', '/v1/summarize', async (ctx) => {
    const b = parse(summarizeBody, await ctx.readJson());
    return { body: await run(async () => (await ai()).summarize(b.text, b.style, { signal: ctx.signal, maxTokens: b.max_tokens })) };
  });

  const analyzeBody = z.object({ text, type: enumOf('type', ANALYSIS_TYPES), max_tokens: maxTokens });
  route('POST', '/v1/analyze', async (ctx) => {
    const b = parse(analyzeBody, await ctx.readJson());
    return { body: await run(async () => (await ai()).analyze(b.text, b.type, { signal: ctx.signal, maxTokens: b.max_tokens })) };
  });

  const generateBody = z.object({ text, type: enumOf('type', GENERATE_TYPES), max_tokens: maxTokens });
  route('POST', '/v1/generate', async (ctx) => {
    const b = parse(generateBody, await ctx.readJson());
    return { body: await run(async () => (await ai()).generate(b.text, b.type, { signal: ctx.signal, maxTokens: b.max_tokens })) };
  });

  const translateBody = z
    .object({
      text: z.unknown().optional(),
      texts: z.unknown().optional(),
      target: languageField('target'),
      source: languageField('source', 'en'),
      // extensions: the translation model (id or folder; default TRANSLATE_MODEL, else the chat model) and the token
      // budget per sentence of a seq2seq model (random-weight models never emit </s>)
      model: z.string({ error: 'model must be a string naming a translation model' }).min(1).optional(),
      max_new_tokens: maxNewTokensField(),
    })
    .transform((b, ctx) => {
      if (b.texts !== undefined && b.text !== undefined) {
        ctx.addIssue({ code: 'custom', message: 'send either text (one string) or texts (an array of strings), not both' });
        return z.NEVER;
      }
      if (b.texts !== undefined) {
        if (!Array.isArray(b.texts) || b.texts.length === 0 || b.texts.some((t) => typeof t !== 'string')) {
          ctx.addIssue({ code: 'custom', message: 'texts must be a non-empty array of strings' });
          return z.NEVER;
        }
        if (b.texts.length > maxTexts) {
          ctx.addIssue({ code: 'custom', message: `texts has ${b.texts.length} items; the limit is ${maxTexts}`, params: { status: 413 } });
          return z.NEVER;
        }
        const total = (b.texts as string[]).reduce((n, t) => n + t.length, 0);
        if (total > deps.maxTextChars) {
          ctx.addIssue({ code: 'custom', message: `texts total ${total} characters; the limit is ${deps.maxTextChars}`, params: { status: 413 } });
          return z.NEVER;
        }
        return { batch: true as const, texts: b.texts as string[], target: b.target, source: b.source, model: b.model, maxNewTokens: b.max_new_tokens };
      }
      const t = textField('text', deps.maxTextChars).safeParse(b.text);
      if (!t.success) {
        for (const i of t.error.issues) ctx.addIssue({ ...i, code: 'custom', message: i.message.replace('text is required', 'text (or texts) is required') } as never);
        return z.NEVER;
      }
      return { batch: false as const, texts: [t.data], target: b.target, source: b.source, model: b.model, maxNewTokens: b.max_new_tokens };
    });
  route('POST', '/v1/translate', async (ctx) => {
    const b = parse(translateBody, await ctx.readJson());
    const out = await run(async () => (await translator(b.model)).translate(b.texts, b.source, b.target, ctx.signal, { maxNewTokens: b.maxNewTokens }));
    if (b.batch) return { body: { translations: out.map((t) => ({ translated_text: t })) } };
    return { body: { translated_text: out[0], source_language: b.source.code, target_language: b.target.code } };
  });

  // The target languages of a translation model (default TRANSLATE_MODEL): its <2xx> tags. No key, like /v1/languages.
  server.route('GET', '/v1/translate/languages', async (ctx) => {
    const t = await run(async () => translator(ctx.query.get('model') ?? undefined));
    if (!t.targets)
      throw new ApiError(400, `translation runs on the chat model ${t.model}, which takes any language code; set TRANSLATE_MODEL or pass ?model= to list a translation model's languages`);
    return { body: { model: t.model, languages: t.targets } };
  });

  const embedBody = z.object({
    texts: z
      .unknown()
      .optional()
      .transform((v, ctx): string[] => {
        const arr = typeof v === 'string' ? [v] : v;
        if (!Array.isArray(arr) || arr.length === 0 || arr.some((t) => typeof t !== 'string')) {
          ctx.addIssue({ code: 'custom', message: 'texts is required: a non-empty array of strings' });
          return z.NEVER;
        }
        if (arr.length > maxTexts) {
          ctx.addIssue({ code: 'custom', message: `texts has ${arr.length} items; the limit is ${maxTexts}`, params: { status: 413 } });
          return z.NEVER;
        }
        const total = (arr as string[]).reduce((n, t) => n + t.length, 0);
        if (total > deps.maxTextChars) {
          ctx.addIssue({ code: 'custom', message: `texts total ${total} characters; the limit is ${deps.maxTextChars}`, params: { status: 413 } });
          return z.NEVER;
        }
        return arr as string[];
      }),
    model: z.string().optional(),
  });
  route('POST', '/v1/embed', async (ctx) => {
    const b = parse(embedBody, await ctx.readJson());
    const embedder = await deps.models.embedder(b.model);
    const vectors = await embedder.embed(b.texts, ctx.signal);
    return { body: { embeddings: vectors.map((v) => Array.from(v)), dimensions: embedder.dimensions, model: embedder.modelId } };
  });

  // OpenAI-compatible twin of /v1/embed: same model, limits and admission; the SDK's shapes and errors.
  const embeddingsBody = z.object({
    input: z
      .unknown()
      .optional()
      .transform((v, ctx): string[] => {
        const arr = typeof v === 'string' ? [v] : v;
        if (Array.isArray(arr) && arr.length > 0 && arr.every((t) => typeof t === 'number' || Array.isArray(t))) {
          ctx.addIssue({ code: 'custom', message: 'input as token ids is not supported: send a string or an array of strings' });
          return z.NEVER;
        }
        if (!Array.isArray(arr) || arr.length === 0 || arr.some((t) => typeof t !== 'string' || t === '')) {
          ctx.addIssue({ code: 'custom', message: 'input is required: a non-empty string or a non-empty array of non-empty strings' });
          return z.NEVER;
        }
        if (arr.length > maxTexts) {
          ctx.addIssue({ code: 'custom', message: `input has ${arr.length} items; the limit is ${maxTexts}`, params: { status: 413 } });
          return z.NEVER;
        }
        const total = (arr as string[]).reduce((n, t) => n + t.length, 0);
        if (total > deps.maxTextChars) {
          ctx.addIssue({ code: 'custom', message: `input totals ${total} characters; the limit is ${deps.maxTextChars}`, params: { status: 413 } });
          return z.NEVER;
        }
        return arr as string[];
      }),
    model: z.string().optional(),
    encoding_format: enumOf('encoding_format', ['float', 'base64'] as const, 'float'),
    dimensions: z.number({ message: 'dimensions must be a positive integer' }).int('dimensions must be a positive integer').positive('dimensions must be a positive integer').optional(),
    user: z.string().optional(),
  });
  route(
    'POST',
    '/v1/embeddings',
    async (ctx) => {
      const b = parse(embeddingsBody, await ctx.readJson());
      // OpenAI clients name OpenAI's models (text-embedding-3-small, …): that means "this server's embedding model".
      const embedder = await deps.models.embedder(b.model === undefined || /^text-embedding-/.test(b.model) ? undefined : b.model);
      if (b.dimensions !== undefined && b.dimensions !== embedder.dimensions) {
        throw new OpenAiError(400, `dimensions must be ${embedder.dimensions} for ${embedder.modelId} (this server does not shorten embeddings); leave it out`, {
          param: 'dimensions',
          code: 'unsupported_value',
        });
      }
      const vectors = await embedder.embed(b.input, ctx.signal);
      // Tokens the model read (with [CLS]/[SEP], after truncation to its sequence length).
      const tokens = b.input.reduce((n, t) => n + embedder.embedder.tokenize(t).length, 0);
      return {
        body: {
          object: 'list',
          data: vectors.map((v, index) => ({ object: 'embedding', index, embedding: b.encoding_format === 'base64' ? float32Base64(v) : Array.from(v) })),
          model: embedder.modelId,
          usage: { prompt_tokens: tokens, total_tokens: tokens },
        },
      };
    },
    { errorBody: openAiErrorBody },
  );

  route(
    'POST',
    '/v1/enhance-audio',
    async (ctx) => {
      const upload = await receiveMultipart(ctx, { tmpDir: deps.tmpDir, maxFileBytes: deps.maxUploadBytes });
      try {
        if (!upload.file) throw new ApiError(400, "Missing file: send the audio as a multipart field named 'file'.");
        const enhancer = await deps.models.enhancer();
        const r = await enhancer.enhanceFile(upload.file.path, ctx.signal);
        return {
          headers: {
            'content-type': 'audio/wav',
            'content-disposition': 'attachment; filename="enhanced.wav"',
            'x-duration': r.durationS.toFixed(3),
            'x-input-loudness-lufs': Number.isFinite(r.inputLufs) ? r.inputLufs.toFixed(1) : 'silence',
            'x-output-loudness-lufs': Number.isFinite(r.outputLufs) ? r.outputLufs.toFixed(1) : 'silence',
          },
          body: r.wav,
        };
      } finally {
        await upload.cleanup();
      }
    },
    { maxBodyBytes: deps.maxUploadBytes + 1024 * 1024, tooLargeMessage: `File is larger than the limit of ${formatBytes(deps.maxUploadBytes)}.` },
    'upload',
  );

  // Spec: multipart `reference` (3–10 s of the voice) + `text` → audio/wav, X-Duration, X-Generation-Time.
  const maxTtsChars = deps.maxTtsChars ?? 5000;
  const maxReferenceBytes = Math.min(deps.maxUploadBytes, 50 * 1024 * 1024);
  route(
    'POST',
    '/v1/tts',
    async (ctx) => {
      const t0 = performance.now();
      const upload = await receiveMultipart(ctx, { tmpDir: deps.tmpDir, maxFileBytes: maxReferenceBytes, fileField: 'reference' });
      try {
        const field = (name: string) => {
          const v = upload.fields[name];
          return Array.isArray(v) ? v[0] : v;
        };
        const text = field('text');
        if (text === undefined || text.trim() === '') throw new ApiError(400, "Missing text: send the words to speak as a multipart field named 'text'.");
        if (text.length > maxTtsChars) throw new ApiError(413, `text is ${text.length} characters long; the limit is ${maxTtsChars}. Split it into several requests.`);
        if (!upload.file) throw new ApiError(400, "Missing reference: send 3–10 s of the voice to imitate as a multipart file field named 'reference'.");
        const language = field('language') || 'en';
        const pcm = await decodeToPcm16k(upload.file.path, { signal: ctx.signal });
        const seconds = pcm.length / 16_000;
        if (seconds < TTS_REFERENCE_MIN_S) throw new ApiError(400, `reference is ${seconds.toFixed(1)} s long; send ${TTS_REFERENCE_MIN_S}–10 s of clear speech.`);
        if (seconds > TTS_REFERENCE_MAX_S)
          throw new ApiError(400, `reference is ${seconds.toFixed(1)} s long; send 3–10 s of clear speech (at most ${TTS_REFERENCE_MAX_S} s are accepted; the first 10 s are used).`);
        const reference = pcm.subarray(0, 10 * 16_000);
        const synth = await deps.models.synthesizer();
        const r = await synth.synthesize(text, reference, { language, signal: ctx.signal });
        const durationS = r.samples.length / r.sampleRate;
        return {
          headers: {
            'content-type': 'audio/wav',
            'content-disposition': 'attachment; filename="speech.wav"',
            'x-duration': durationS.toFixed(3),
            'x-generation-time': ((performance.now() - t0) / 1000).toFixed(3),
            'x-tts-engine': `espeak-ng voice ${r.voice} pitch ${r.pitch} (matched to the reference: pitch ${r.referenceF0Hz.toFixed(0)} Hz, loudness; not a voice clone)`,
          },
          body: encodeWav(r.samples, r.sampleRate),
        };
      } finally {
        await upload.cleanup();
      }
    },
    { maxBodyBytes: maxReferenceBytes + 1024 * 1024, tooLargeMessage: `reference is larger than ${formatBytes(maxReferenceBytes)}: send 3–10 s of speech.` },
    'upload',
  );

  registerChatCompletions(server, deps, run);
}

/** OpenAI's `encoding_format: 'base64'`: the little-endian float32 bytes of the vector, base64-encoded. */
function float32Base64(v: Float32Array): string {
  const le = new Float32Array(v); // a copy that owns its whole buffer (v may be a view)
  return Buffer.from(le.buffer, le.byteOffset, le.byteLength).toString('base64');
}

/** Shortest and longest reference the TTS accepts (the spec asks for 3–10 s; up to 30 s are taken, the first 10 s used). */
const TTS_REFERENCE_MIN_S = 3;
const TTS_REFERENCE_MAX_S = 30;

const chatBody = (cap: number, maxChars: number) =>
  z
    .object({
      model: z.string().optional(),
      messages: z
        .array(
          z.object({
            role: z.enum(['system', 'user', 'assistant', 'developer'], { message: 'messages[].role must be system, user or assistant' }),
            content: z.union([z.string(), z.array(z.object({ type: z.string(), text: z.string().optional() }))], { message: 'messages[].content must be a string or an array of text parts' }),
          }),
          { message: 'messages is required: an array of {role, content}' },
        )
        .min(1, 'messages must not be empty'),
      max_tokens: maxTokensField(cap),
      max_completion_tokens: maxTokensField(cap),
      temperature: z.number().min(0).max(2).optional(),
      top_p: z.number().gt(0).max(1).optional(),
      seed: z.number().int().optional(),
      stop: z.union([z.string(), z.array(z.string()).max(4)]).optional(),
      stream: z.boolean().optional(),
      stream_options: z.object({ include_usage: z.boolean().optional() }).optional(),
      n: z.unknown().optional(), // checked before parsing (rejectUnsupported)
      response_format: z
        .union([
          z.object({ type: z.literal('text') }),
          z.object({ type: z.literal('json_object') }),
          z.object({ type: z.literal('json_schema'), json_schema: z.object({ name: z.string().optional(), schema: z.record(z.string(), z.unknown()), strict: z.boolean().optional() }) }),
        ])
        .optional(),
    })
    .superRefine((b, ctx) => {
      const chars = b.messages.reduce((n, m) => n + (typeof m.content === 'string' ? m.content.length : m.content.reduce((k, p) => k + (p.text?.length ?? 0), 0)), 0);
      if (chars > maxChars) ctx.addIssue({ code: 'custom', message: `messages total ${chars} characters; the limit is ${maxChars}`, params: { status: 413 } });
    });

function registerChatCompletions(server: HttpServer, deps: AiRouteDeps, run: <T>(fn: () => Promise<T>) => Promise<T>): void {
  const schema = chatBody(deps.maxTokens, deps.maxTextChars);
  const handler: Handler = async (ctx) => chatCompletion(ctx);
  server.route('POST', '/v1/chat/completions', deps.access ? guarded(deps.access, handler, 'json') : handler, { errorBody: openAiErrorBody });
  async function chatCompletion(ctx: HttpContext): Promise<Reply | void> {
    const raw = await ctx.readJson();
    rejectUnsupported(raw);
    const b = parse(schema, raw);
    const backend = await deps.models.llm();
    const messages: ChatMessage[] = b.messages.map((m) => ({
      role: m.role === 'developer' ? 'system' : m.role,
      content: typeof m.content === 'string' ? m.content : m.content.map((p) => p.text ?? '').join(''),
    }));
    const id = `chatcmpl-${randomUUID().replace(/-/g, '')}`;
    const created = Math.floor(Date.now() / 1000);
    const opts: ChatOptions = {
      maxTokens: b.max_completion_tokens ?? b.max_tokens ?? deps.maxTokens,
      temperature: b.temperature ?? 0,
      topP: b.top_p,
      seed: b.seed,
      stop: typeof b.stop === 'string' ? [b.stop] : b.stop,
      signal: ctx.signal,
    };
    if (b.response_format?.type === 'json_schema') opts.jsonSchema = b.response_format.json_schema.schema;
    else if (b.response_format?.type === 'json_object') opts.jsonSchema = { type: 'object' };
    const usage = (r: { promptTokens: number; completionTokens: number }) => ({
      prompt_tokens: r.promptTokens,
      completion_tokens: r.completionTokens,
      total_tokens: r.promptTokens + r.completionTokens,
    });

    if (!b.stream) {
      const r = await run(() => backend.chat(messages, opts));
      return {
        body: {
          id,
          object: 'chat.completion',
          created,
          model: backend.model,
          choices: [{ index: 0, message: { role: 'assistant', content: r.text }, finish_reason: r.finishReason, logprobs: null }],
          usage: usage(r),
        },
      };
    }

    // Stream: the HTTP status is sent with the first token, so a queue-full or bad request still gets a proper error status.
    let out: ReturnType<HttpContext['beginStream']> | null = null;
    const chunk = (delta: Record<string, unknown>, finish: string | null) =>
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: backend.model, choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }] })}\n\n`;
    const open = () => {
      if (!out) {
        out = ctx.beginStream(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
        out.write(chunk({ role: 'assistant', content: '' }, null));
      }
      return out;
    };
    try {
      const r = await run(() => backend.chat(messages, { ...opts, onText: (d) => open().write(chunk({ content: d }, null)) }));
      const s = open();
      s.write(chunk({}, r.finishReason));
      if (b.stream_options?.include_usage) s.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: backend.model, choices: [], usage: usage(r) })}\n\n`);
      s.write('data: [DONE]\n\n');
      s.end();
    } catch (err) {
      if (!out) throw err;
      if (!(err instanceof LlmAbortedError)) {
        const s = out as ReturnType<HttpContext['beginStream']>;
        s.write(`data: ${JSON.stringify({ error: { message: (err as Error).message, type: 'server_error', param: null, code: 'server_error' } })}\n\n`);
        s.end();
      }
    }
  }
}

/**
 * Chat parameters this server does not implement answer 400 instead of being ignored: a client that
 * sends tools expects tool calls, and one that asks for n choices expects n.
 */
function rejectUnsupported(body: unknown): void {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return; // parse() answers
  const b = body as Record<string, unknown>;
  const unsupported = (param: string, message: string) => new OpenAiError(400, message, { param, code: 'unsupported_parameter' });
  for (const param of ['tools', 'functions'] as const) {
    if (b[param] !== undefined && b[param] !== null && !(Array.isArray(b[param]) && b[param].length === 0)) {
      throw unsupported(
        param,
        `${param} is not supported: this server's chat model does not call tools or functions. Remove '${param}' (and tool_choice) and put what the model needs into the messages.`,
      );
    }
  }
  for (const param of ['tool_choice', 'function_call'] as const) {
    if (b[param] !== undefined && b[param] !== null && b[param] !== 'none' && b[param] !== 'auto') {
      throw unsupported(param, `${param} is not supported: this server's chat model does not call tools or functions. Remove '${param}'.`);
    }
  }
  if (b.n !== undefined && b.n !== null && b.n !== 1) {
    throw new OpenAiError(
      400,
      `n must be 1 (got ${JSON.stringify(b.n)}): this server returns one choice per request; send ${typeof b.n === 'number' && b.n > 1 ? b.n : 'several'} requests for more.`,
      {
        param: 'n',
        code: 'unsupported_value',
      },
    );
  }
}

/** What an anonymous request may send: a JSON body (ANON_AI_MAX_REQUEST_KB) or an upload (ANON_AI_MAX_UPLOAD_MB). */
type AnonBody = 'json' | 'upload';

/**
 * Anonymous calls are checked on their declared size before admission (so a refused one spends no
 * daily unit) and before a byte is read: bytes bound characters, so the JSON cap bounds the text.
 */
function checkAnonymousSize(access: AccessControl, ctx: HttpContext, body: AnonBody): void {
  const limit = body === 'json' ? access.config.anonAiMaxRequestBytes : access.config.anonAiMaxUploadBytes;
  const declared = Number(ctx.headers['content-length']);
  if (ctx.headers['content-length'] === undefined || !Number.isFinite(declared)) {
    if (ctx.headers['transfer-encoding'] === undefined) return; // no body: the handler answers 400
    throw new ApiError(411, 'Anonymous AI requests must declare Content-Length (or send an API key).');
  }
  if (declared > limit) {
    const what = body === 'json' ? 'request bodies of' : 'uploads of';
    throw new ApiError(
      413,
      `Anonymous AI requests are limited to ${what} ${formatBytes(limit)} (this one is ${formatBytes(declared)}): shorten the input or send an API key ('Authorization: Bearer YOUR_API_KEY') for the full limits.`,
    );
  }
}

function guarded(access: AccessControl, handler: Handler, anonBody: AnonBody): Handler {
  return async (ctx) => {
    if (ctx.headers.authorization === undefined) checkAnonymousSize(access, ctx, anonBody);
    const grant = await access.admit({ authorization: ctx.headers.authorization, ip: ctx.remoteAddress, kind: 'ai' });
    try {
      await grant.charge(0);
      // Model calls of this request queue as its tenant (the LLM serves tenants in turn).
      const tenant = grant.account ? `account:${grant.account.id}` : `ip:${ctx.remoteAddress}`;
      return await withLlmTenant(tenant, () => handler(ctx));
    } finally {
      grant.release();
    }
  };
}
