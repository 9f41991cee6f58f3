/**
 * AI over stored transcripts (issue 9), owner-scoped like the account API (another account's
 * transcript answers 404):
 *   POST /api/v1/transcripts/:id/chat/      {question, session_id?} → {answer, sources, session_id}
 *   POST /api/v1/transcripts/:id/analyze/   {type, max_tokens?}     → same shape as /v1/analyze
 *   POST /api/v1/transcripts/:id/generate/  {type, max_tokens?}     → same shape as /v1/generate
 *   POST /api/v1/transcripts/:id/translate/ {target, format?, max_new_tokens?} → the segments translated one by
 *        one with their times kept (words are dropped: their times do not carry over), as json, srt, vtt or txt
 * Chat embeds the transcript's segments on the first question (cached in the database per embedding
 * model), retrieves the top segments by cosine and answers with the session's earlier turns.
 * Models load on first use; one that is not installed answers 503 with the pull command (AiModels).
 */
import { languageField, maxNewTokensField, maxTokensField } from '../form-fields.ts';
import { z } from 'zod';
import type { AccessControl } from '../../auth/access-control.ts';
import type { AiModels } from '../../ai/ai-models.ts';
import type { LlmServices } from '../../ai/llm-services.ts';
import { parseLanguageCode } from '../../ai/languages.ts';
import { ANALYSIS_TYPES, GENERATE_TYPES } from '../../ai/prompts.ts';
import { toSrt, toTxt, toVtt } from '../../formats/captions.ts';
import type { Transcript } from '../../formats/transcript.ts';
import { chatOverTranscript, embedSegments, type TranscriptSegment } from '../../ai/transcript-chat.ts';
import { LlmQueueFullError } from '../../engines/llm/chat-backend.ts';
import { withLlmTenant } from '../../engines/llm/tenant.ts';
import type { Account } from '../../store/accounts.ts';
import type { TranscriptChatStore } from '../../store/transcript-chat.ts';
import type { TranscriptRecord, TranscriptStore } from '../../store/transcripts.ts';
import { ApiError } from '../api-error.ts';
import type { HttpContext, Reply } from '../http-context.ts';
import type { HttpServer } from '../http-server.ts';

export interface TranscriptAiRouteDeps {
  access: AccessControl;
  transcripts: TranscriptStore;
  chat: TranscriptChatStore;
  ai: Pick<AiModels, 'llm' | 'embedder' | 'config'>;
  /** Analyses and generated documents on the chat model, translation on TRANSLATE_MODEL or the chat model (built by the composition root). */
  services: Pick<LlmServices, 'ai' | 'translator'>;
}

/** Longest accepted question (characters). */
export const MAX_QUESTION_CHARS = 4000;
/** Segments retrieved per question. */
const TOP_K = 5;
/** Earlier turns loaded per question (chatOverTranscript trims further to fit the context). */
const HISTORY_TURNS = 20;

function badRequest(error: z.ZodError): ApiError {
  return new ApiError(400, error.issues.map((i) => i.message).join('; '));
}

function body(raw: unknown): Record<string, unknown> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ApiError(400, 'Request body must be a JSON object.');
  return raw as Record<string, unknown>;
}

const typeField = <T extends readonly [string, ...string[]]>(values: T) =>
  z
    .unknown()
    .optional()
    .transform((v, ctx): T[number] => {
      if (typeof v === 'string' && (values as readonly string[]).includes(v)) return v;
      ctx.addIssue({ code: 'custom', message: `type must be one of ${values.join(', ')} (got ${v === undefined ? 'nothing' : JSON.stringify(v)})` });
      return z.NEVER;
    });

const chatBody = z.object({
  question: z
    .unknown()
    .optional()
    .transform((v, ctx): string => {
      if (typeof v !== 'string' || v.trim() === '') {
        ctx.addIssue({ code: 'custom', message: 'question is required: a non-empty string' });
        return z.NEVER;
      }
      if (v.length > MAX_QUESTION_CHARS) {
        ctx.addIssue({ code: 'custom', message: `question is ${v.length} characters long; the limit is ${MAX_QUESTION_CHARS}` });
        return z.NEVER;
      }
      return v.trim();
    }),
  session_id: z
    .unknown()
    .optional()
    .transform((v, ctx): string | undefined => {
      if (v === undefined || v === null) return undefined;
      if (typeof v !== 'string' || v === '') {
        ctx.addIssue({ code: 'custom', message: 'session_id must be a string (the session_id of an earlier answer)' });
        return z.NEVER;
      }
      return v;
    }),
});

const analyzeBody = z.object({ type: typeField(ANALYSIS_TYPES), max_tokens: maxTokensField() });
const TRANSLATE_FORMATS = ['json', 'srt', 'vtt', 'txt'] as const;
const translateBody = z.object({
  target: languageField('target'),
  format: z.enum(TRANSLATE_FORMATS, { error: `format must be one of ${TRANSLATE_FORMATS.join(', ')}` }).default('json'),
  max_new_tokens: maxNewTokensField(),
});
const generateBody = z.object({ type: typeField(GENERATE_TYPES), max_tokens: maxTokensField() });

/** Engine errors with extra headers; everything else goes to HttpServer's mapping (status, 503 with pull command …). */
async function run<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof LlmQueueFullError) throw new ApiError(429, err.message, { 'retry-after': String(err.retryAfterS) });
    throw err;
  }
}

export function registerTranscriptAiRoutes(server: HttpServer, deps: TranscriptAiRouteDeps): void {
  const { access, transcripts, chat, ai } = deps;
  const maxTokens = ai.config.llm.maxTokens;

  const aiService = () => deps.services.ai();

  /** A key is required; the account's model calls queue as its tenant (the LLM serves tenants in turn). */
  const route = (pattern: string, handler: (ctx: HttpContext, account: Account) => Promise<Reply>) =>
    server.route('POST', pattern, async (ctx) => {
      const account = await access.requireAccount(ctx.headers['authorization']);
      return withLlmTenant(`account:${account.id}`, () => handler(ctx, account));
    });

  /** The caller's transcript or 404 (another account's is indistinguishable from a missing one). */
  async function ownTranscript(ctx: HttpContext, account: Account): Promise<{ ownerId: string; t: TranscriptRecord }> {
    const t = await transcripts.get(account.id, ctx.params.id);
    if (!t) throw new ApiError(404, 'Transcript not found.');
    return { ownerId: account.id, t };
  }

  function transcriptText(t: TranscriptRecord): string {
    const text =
      t.text.trim() ||
      t.segments
        .map((s) => s.text.trim())
        .filter(Boolean)
        .join(' ');
    if (!text) throw new ApiError(400, 'The transcript has no text.');
    return text;
  }

  route('/api/v1/transcripts/:id/chat/', async (ctx, account) => {
    const { ownerId, t } = await ownTranscript(ctx, account);
    const parsed = chatBody.safeParse(body(await ctx.readJson()));
    if (!parsed.success) throw badRequest(parsed.error);
    const { question, session_id } = parsed.data;
    // An id that names no session of this transcript and owner (the reference's example sends
    // "optional") starts a new one; the answer carries its id, which continues it.
    const continues = session_id !== undefined && (await chat.sessionExists(session_id, t.id, ownerId));
    const sessionId = continues ? session_id : chat.newSessionId();

    const embedder = await ai.embedder();
    const backend = await ai.llm();

    // Segment embeddings: cached per transcript and model; computed on the first question.
    const segments: TranscriptSegment[] = t.segments.map((s, i) => ({ segment_order: i, text: s.text.trim(), start: s.start })).filter((s) => s.text !== '');
    const cached = await chat.embeddings(t.id, embedder.modelId);
    const complete = segments.every((s) => cached.get(s.segment_order)?.length === embedder.dimensions);
    if (complete) {
      for (const s of segments) s.embedding = cached.get(s.segment_order);
    } else if (segments.length > 0) {
      const vectors = await embedSegments(embedder, segments, ctx.signal);
      await chat.saveEmbeddings(
        t.id,
        embedder.modelId,
        vectors,
        segments.map((s) => s.segment_order),
      );
      segments.forEach((s, i) => (s.embedding = vectors[i]));
    }

    const history = continues ? (await chat.turns(sessionId, t.id, ownerId, HISTORY_TURNS)).map((h) => ({ role: h.role, content: h.content })) : [];
    const r = await run(() => chatOverTranscript({ question, segments, history, backend, embedder, k: TOP_K, maxTokens, signal: ctx.signal }));
    await chat.appendExchange({ sessionId, transcriptId: t.id, ownerId, question, answer: r.answer });
    return { body: { answer: r.answer, sources: r.sources, session_id: sessionId } };
  });

  route('/api/v1/transcripts/:id/analyze/', async (ctx, account) => {
    const { t } = await ownTranscript(ctx, account);
    const parsed = analyzeBody.safeParse(body(await ctx.readJson()));
    if (!parsed.success) throw badRequest(parsed.error);
    const b = parsed.data;
    const text = transcriptText(t);
    return { body: await run(async () => (await aiService()).analyze(text, b.type, { signal: ctx.signal, maxTokens: b.max_tokens })) };
  });

  route('/api/v1/transcripts/:id/translate/', async (ctx, account) => {
    const { t } = await ownTranscript(ctx, account);
    const parsed = translateBody.safeParse(body(await ctx.readJson()));
    if (!parsed.success) throw badRequest(parsed.error);
    const b = parsed.data;
    const segments = t.segments.filter((s) => s.text.trim());
    if (!segments.length) throw new ApiError(400, 'The transcript has no text.');
    const translator = await deps.services.translator();
    const detected = parseLanguageCode(t.language);
    // a language the chat model could not name reads as English, as before
    const source = detected?.known ? detected : parseLanguageCode('en')!;
    const texts = await run(() =>
      translator.translate(
        segments.map((s) => s.text.trim()),
        source,
        b.target,
        ctx.signal,
        { maxNewTokens: b.max_new_tokens },
      ),
    );
    const translated: Transcript = {
      text: texts.join(' '),
      language: b.target.code,
      duration: t.duration,
      segments: segments.map((s, i) => ({ start: s.start, end: s.end, text: texts[i], speaker: s.speaker ?? null, confidence: s.confidence, words: [] })),
      speakers: t.speakers,
    };
    if (b.format === 'srt') return { headers: { 'content-type': 'application/x-subrip; charset=utf-8' }, body: toSrt(translated) };
    if (b.format === 'vtt') return { headers: { 'content-type': 'text/vtt; charset=utf-8' }, body: toVtt(translated) };
    if (b.format === 'txt') return { headers: { 'content-type': 'text/plain; charset=utf-8' }, body: toTxt(translated) };
    return {
      body: {
        transcript_id: t.id,
        source_language: t.language,
        target_language: b.target.code,
        model: translator.model,
        text: translated.text,
        segments: translated.segments.map((s) => ({ start: s.start, end: s.end, text: s.text, speaker: s.speaker })),
      },
    };
  });

  route('/api/v1/transcripts/:id/generate/', async (ctx, account) => {
    const { t } = await ownTranscript(ctx, account);
    const parsed = generateBody.safeParse(body(await ctx.readJson()));
    if (!parsed.success) throw badRequest(parsed.error);
    const b = parsed.data;
    const text = transcriptText(t);
    return { body: await run(async () => (await aiService()).generate(text, b.type, { signal: ctx.signal, maxTokens: b.max_tokens })) };
  });
}
