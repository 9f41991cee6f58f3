/**
 * POST /v1/transcribe (the API reference's shape), POST /v1/audio/transcriptions and /v1/audio/translations (OpenAI-compatible),
 * GET/DELETE /v1/jobs/:id (progress of a running transcription). Parse, validate, call the
 * TranscriptionService, format. No model code here.
 */
import { WHISPER_MAX_TOKENS } from '../../engines/whisper/config.ts';
import path from 'node:path';
import { z } from 'zod';
import { toSrt, toTxt, toVtt } from '../../formats/captions.ts';
import type { Transcript } from '../../formats/transcript.ts';
import { receiveMultipart, type Upload } from '../multipart-upload.ts';
import { WHISPER_LANGUAGES, isWhisperLanguage } from '../../languages.ts';
import type { FileTranscription } from '../../pipeline/file-transcriber.ts';
import { jobOwner, type JobRegistry } from '../../pipeline/job-registry.ts';
import type { TranscriptionService } from '../../pipeline/transcription-service.ts';
import type { AccessControl, Grant } from '../../auth/index.ts';
import { ApiError } from '../api-error.ts';
import { OpenAiError, openAiErrorBody } from '../openai-errors.ts';
import { boolField, enumField, intField } from '../form-fields.ts';
import { formatBytes } from '../../formats/bytes.ts';
import type { HttpContext, Reply } from '../http-context.ts';
import type { HttpServer } from '../http-server.ts';

export interface TranscribeRouteDeps {
  service: TranscriptionService;
  /** Who may transcribe, how much, and what it costs (tiers, keys, credits). */
  access: AccessControl;
  jobs: JobRegistry;
  tmpDir: string;
  maxUploadBytes: number;
  defaultModel: string;
}

const JOB_ID = /^[A-Za-z0-9_-]{8,64}$/;
const FORMATS = ['json', 'txt', 'srt', 'vtt'] as const;
const OPENAI_FORMATS = ['json', 'text', 'srt', 'verbose_json', 'vtt'] as const;

const languageField = z
  .string()
  .optional()
  .transform((v, ctx) => {
    const code = (v ?? '').trim().toLowerCase();
    if (!code || code === 'auto') return 'auto';
    if (isWhisperLanguage(code) || code === 'yue') return code;
    ctx.addIssue({
      code: 'custom',
      message: `language must be 'auto' or a language code from GET /v1/languages, such as ${WHISPER_LANGUAGES.slice(0, 5)
        .map(([c]) => c)
        .join(', ')} (got '${v}')`,
    });
    return z.NEVER;
  });

const temperatureField = z
  .string()
  .optional()
  .transform((v, ctx) => {
    if (v === undefined || v === '') return undefined;
    const t = Number(v);
    if (!Number.isFinite(t) || t < 0 || t > 1) {
      ctx.addIssue({ code: 'custom', message: `temperature must be a number from 0 to 1 (got '${v}')` });
      return z.NEVER;
    }
    return t;
  });

const transcribeFields = z.object({
  model: z.string().optional(),
  language: languageField,
  diarize: boolField('diarize', true),
  speakers: intField('speakers', 0, 32),
  response_format: enumField('response_format', FORMATS, 'json'),
  // Extensions (documented in the README): VAD chunking, word timestamps, decoding controls.
  vad: boolField('vad', true),
  word_timestamps: boolField('word_timestamps', true),
  timestamps: boolField('timestamps', true),
  task: enumField('task', ['transcribe', 'translate'] as const, 'transcribe'),
  beam_size: intField('beam_size', 1, 16),
  max_new_tokens: intField('max_new_tokens', 1, WHISPER_MAX_TOKENS),
  /** A fixed temperature (0 = greedy, no fallback); default: the fallback schedule 0, 0.2 … 1. */
  temperature: temperatureField,
  job_id: z.string().optional(),
});

const openAiFields = z.object({
  model: z.string().optional(),
  language: languageField,
  prompt: z.string().max(4000, 'prompt must be at most 4000 characters').optional(),
  response_format: enumField('response_format', OPENAI_FORMATS, 'json'),
  temperature: temperatureField,
  'timestamp_granularities[]': z.union([z.string(), z.array(z.string())]).optional(),
  timestamp_granularities: z.union([z.string(), z.array(z.string())]).optional(),
});

/** Text fields must be single values except the granularity list. */
function parseFields<T extends z.ZodType>(schema: T, fields: Upload['fields']): z.infer<T> {
  const single: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) single[k] = Array.isArray(v) && !k.startsWith('timestamp_granularities') ? v[v.length - 1] : v;
  const r = schema.safeParse(single);
  if (!r.success) throw new OpenAiError(400, r.error.issues.map((i) => i.message).join('; '), { param: r.error.issues[0]?.path.map(String).join('.') || null });
  return r.data;
}

function jobIdOf(ctx: HttpContext, field: string | undefined): string | undefined {
  const id = ctx.headers['x-job-id'] || field;
  if (id === undefined || id === '') return undefined;
  if (!JOB_ID.test(id)) throw new ApiError(400, `job id must be 8-64 characters of letters, digits, '-' or '_' (a UUID works)`);
  return id;
}

export function publicTranscript(r: FileTranscription): Transcript {
  return { text: r.text, language: r.language, duration: r.duration, segments: r.segments, speakers: r.speakers };
}

export function registerTranscribeRoutes(server: HttpServer, deps: TranscribeRouteDeps): void {
  // The body may exceed the file by the multipart framing and text fields; busboy enforces the file limit itself.
  const maxBodyBytes = deps.maxUploadBytes + 1024 * 1024;
  const tooLargeMessage = `File is larger than the limit of ${formatBytes(deps.maxUploadBytes)}.`;
  const tmpDir = deps.tmpDir;

  /**
   * Admission (key, tier, concurrency, quota) before a byte of the upload is read; the slot is freed
   * at the end. Money: the service's hook reserves what the audio may cost before the model work;
   * the route settles what was delivered once the transcript is ready. Any other ending (error,
   * cancellation, client gone, no worker) reaches release() unsettled, which refunds everything.
   */
  /** What every upload's transcription carries for its owner: the job's owner, credits reserved as the length becomes known, the saved transcript's owner and name. */
  function ownedBy(ctx: HttpContext, grant: Grant, upload: Upload & { file: NonNullable<Upload['file']> }) {
    return {
      jobOwner: jobOwner(grant.account?.id, ctx.remoteAddress),
      beforeTranscribe: (seconds: number) => grant.reserve(seconds),
      meterMore: (extraSeconds: number) => grant.reserve(extraSeconds),
      ownerId: grant.account?.id ?? null,
      filename: upload.file.filename,
    };
  }

  async function withUpload(ctx: HttpContext, fn: (u: Upload & { file: NonNullable<Upload['file']> }, grant: Grant) => Promise<Reply>): Promise<Reply> {
    const declared = Number(ctx.headers['content-length']);
    const grant = await deps.access.admit({
      authorization: ctx.headers.authorization,
      ip: ctx.remoteAddress,
      kind: 'transcribe',
      declaredBytes: Number.isFinite(declared) ? Math.max(0, declared - 64 * 1024) : undefined,
    });
    try {
      const maxFileBytes = Math.min(grant.maxFileBytes, deps.maxUploadBytes);
      const upload = await receiveMultipart(ctx, { tmpDir, maxFileBytes });
      try {
        if (!upload.file) throw new ApiError(400, "Missing file: send the audio or video as a multipart field named 'file'.");
        return await fn(upload as Upload & { file: NonNullable<Upload['file']> }, grant);
      } finally {
        await upload.cleanup();
      }
    } finally {
      grant.release();
    }
  }

  server.route(
    'POST',
    '/v1/transcribe',
    (ctx) =>
      withUpload(ctx, async (upload, grant) => {
        const f = parseFields(transcribeFields, upload.fields);
        const result = await deps.service.transcribeFile(
          {
            path: upload.file.path,
            model: f.model || deps.defaultModel,
            language: f.language,
            task: f.task,
            vad: f.vad,
            timestamps: f.timestamps,
            wordTimestamps: f.word_timestamps,
            beamSize: f.beam_size,
            maxNewTokens: f.max_new_tokens,
            temperature: f.temperature,
            diarize: f.diarize,
            // Speaker labels by default, but a long file still gets its transcript (X-Diarization says so); asked for by name, too long is a 413.
            diarizeBestEffort: upload.fields.diarize === undefined,
            speakers: f.speakers ?? 0,
            jobId: jobIdOf(ctx, f.job_id),
            ...ownedBy(ctx, grant, upload),
          },
          ctx.signal,
        );
        await grant.settle(result.deliveredSeconds);
        const headers: Record<string, string> = { 'x-job-id': result.jobId, 'x-word-timestamps': result.wordTimestamps };
        if (result.diarization) headers['x-diarization'] = result.diarization;
        else if (result.diarizationSkipped) headers['x-diarization'] = result.diarizationSkipped;
        if (result.transcriptId) headers['x-transcript-id'] = result.transcriptId;
        const t = publicTranscript(result);
        switch (f.response_format) {
          case 'txt':
            return { headers: { ...headers, 'content-type': 'text/plain; charset=utf-8' }, body: toTxt(t) };
          case 'srt':
            return { headers: { ...headers, 'content-type': 'application/x-subrip; charset=utf-8' }, body: toSrt(t) };
          case 'vtt':
            return { headers: { ...headers, 'content-type': 'text/vtt; charset=utf-8' }, body: toVtt(t) };
          default:
            return { headers, body: t };
        }
      }),
    { maxBodyBytes, tooLargeMessage },
  );

  // OpenAI-compatible: transcriptions keep the spoken language; translations (Whisper's translate
  // task) turn speech in any language into English text. Same fields and response formats.
  const openAiAudio = (task: 'transcribe' | 'translate') => (ctx: HttpContext) =>
    withUpload(ctx, async (upload, grant) => {
      const f = parseFields(openAiFields, upload.fields);
      const granularities = [f['timestamp_granularities[]'] ?? f.timestamp_granularities ?? []].flat();
      for (const g of granularities) {
        if (g !== 'word' && g !== 'segment') throw new OpenAiError(400, `timestamp_granularities must be word and/or segment (got '${g}')`, { param: 'timestamp_granularities' });
      }
      const words = granularities.includes('word');
      // OpenAI clients send model=whisper-1: that means "this server's default model".
      const model = !f.model || f.model === 'whisper-1' ? deps.defaultModel : f.model;
      const result = await deps.service.transcribeFile(
        {
          path: upload.file.path,
          model,
          language: f.language,
          task,
          wordTimestamps: words,
          temperature: f.temperature,
          initialPrompt: f.prompt,
          jobId: jobIdOf(ctx, undefined),
          ...ownedBy(ctx, grant, upload),
        },
        ctx.signal,
      );
      await grant.settle(result.deliveredSeconds);
      const t = publicTranscript(result);
      switch (f.response_format) {
        case 'text':
          return { headers: { 'content-type': 'text/plain; charset=utf-8' }, body: t.text + '\n' };
        case 'srt':
          return { headers: { 'content-type': 'application/x-subrip; charset=utf-8' }, body: toSrt(t) };
        case 'vtt':
          return { headers: { 'content-type': 'text/vtt; charset=utf-8' }, body: toVtt(t) };
        case 'verbose_json': {
          // A translation's language is the output's (always English, as OpenAI answers); a transcription's the one spoken.
          const name = task === 'translate' ? 'english' : (WHISPER_LANGUAGES.find(([c]) => c === t.language)?.[1] ?? t.language);
          return {
            body: {
              task,
              language: name,
              duration: t.duration,
              text: t.text,
              segments: result.detailed.map((s) => ({
                id: s.id,
                seek: s.seek,
                start: s.start,
                end: s.end,
                text: s.text,
                tokens: s.tokens,
                temperature: s.temperature,
                avg_logprob: s.avgLogprob,
                compression_ratio: s.compressionRatio,
                no_speech_prob: s.noSpeechProb,
              })),
              ...(words ? { words: t.segments.flatMap((s) => s.words.map((w) => ({ word: w.word, start: w.start, end: w.end }))) } : {}),
            },
          };
        }
        default:
          return { body: { text: t.text } };
      }
    });
  server.route('POST', '/v1/audio/transcriptions', openAiAudio('transcribe'), { maxBodyBytes, tooLargeMessage, errorBody: openAiErrorBody });
  server.route('POST', '/v1/audio/translations', openAiAudio('translate'), { maxBodyBytes, tooLargeMessage, errorBody: openAiErrorBody });

  // Jobs are their owner's: the key's account, or the client address without a key. Anyone else gets
  // the same 404 as for an unknown id, so that job ids cannot be probed.
  const ownerOf = async (ctx: HttpContext) => jobOwner((await deps.access.authenticate(ctx.headers.authorization))?.id, ctx.remoteAddress);
  const noJob = (id: string) => new ApiError(404, `No job '${id}' of yours (send the API key that started it; finished jobs are kept for 10 minutes).`);

  server.route('GET', '/v1/jobs/:id', async (ctx) => {
    const job = deps.jobs.find(await ownerOf(ctx), ctx.params.id);
    if (!job) throw noJob(ctx.params.id);
    const { result: _r, ...view } = job;
    return { body: view };
  });

  server.route('DELETE', '/v1/jobs/:id', async (ctx) => {
    const cancelled = deps.jobs.cancelOwned(await ownerOf(ctx), ctx.params.id, 'cancelled by request');
    if (cancelled === undefined) throw noJob(ctx.params.id);
    return { body: { id: ctx.params.id, cancelled } };
  });
}

export const UPLOAD_TMP_SUBDIR = path.join('tmp', 'uploads');
