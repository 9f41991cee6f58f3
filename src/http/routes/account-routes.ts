/**
 * The account REST API (the reference's Django-style /api/v1/…): account, transcripts with
 * exports, API keys, usage, private cloud; optional sign-up. Every route needs an API key (401
 * without); another account's transcript or key answers 404, never 403, so ids reveal nothing.
 * Lists are paginated like Django REST framework: {count, next, previous, results}.
 */
import { z } from 'zod';
import type { AccessControl } from '../../auth/access-control.ts';
import { issueKey } from '../../auth/keys.ts';
import { toSrt, toTxt, toVtt } from '../../formats/captions.ts';
import { toCsv, toDocx, toPdf } from '../../formats/documents.ts';
import type { Transcript } from '../../formats/transcript.ts';
import type { Account, AccountStore, ApiKeyRecord } from '../../store/accounts.ts';
import { TRANSCRIPT_STATUSES, type TranscriptRecord, type TranscriptStore, type TranscriptSummary } from '../../store/transcripts.ts';
import { utcMonth, type UsageStore } from '../../store/usage.ts';
import { ApiError } from '../api-error.ts';
import { intField } from '../form-fields.ts';
import type { HttpContext, Reply } from '../http-context.ts';
import type { HttpServer } from '../http-server.ts';

export interface CloudInstance {
  id: string;
  name: string;
  region?: string;
  status?: string;
  url?: string;
  [extra: string]: unknown;
}

export interface AccountRouteDeps {
  access: AccessControl;
  accounts: AccountStore;
  usage: UsageStore;
  transcripts: TranscriptStore;
  /** Private Cloud instances listed by GET /api/v1/cloud/ (default: none). */
  cloud?: CloudInstance[];
  /** POST /api/v1/signup (default: AccessControl's config.signupEnabled). */
  signupEnabled?: boolean;
  now?: () => Date;
}

export const EXPORT_FORMATS = ['txt', 'srt', 'vtt', 'json', 'csv', 'docx', 'pdf'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

const CONTENT_TYPES: Record<ExportFormat, string> = {
  txt: 'text/plain; charset=utf-8',
  srt: 'application/x-subrip; charset=utf-8',
  vtt: 'text/vtt; charset=utf-8',
  json: 'application/json; charset=utf-8',
  csv: 'text/csv; charset=utf-8',
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  pdf: 'application/pdf',
};

const DEFAULT_PAGE_SIZE = 20;
const MAX_PAGE_SIZE = 100;
const SIGNUPS_PER_IP_PER_DAY = 5;
/**
 * Without a verification mail, a refused email change (address taken) is observable however it is
 * worded: the message is generic and attempts are counted before the lookup, so that an account can
 * probe at most this many addresses a day (sign-up: SIGNUPS_PER_IP_PER_DAY per address).
 */
const EMAIL_CHANGES_PER_ACCOUNT_PER_DAY = 5;

// ---- JSON shapes ------------------------------------------------------------------------------

function accountJson(a: Account, access: AccessControl, minutesUsed: number | null) {
  const limits = access.tiers[a.plan];
  return {
    id: a.id,
    email: a.email,
    name: a.name,
    plan: a.plan,
    credits: a.credits,
    email_preferences: a.emailPreferences,
    created_at: a.createdAt.toISOString(),
    updated_at: a.updatedAt.toISOString(),
    limits: {
      max_file_mb: Math.round(limits.maxFileBytes / (1024 * 1024)),
      concurrent: limits.concurrent,
      monthly_minutes: a.plan === 'free' ? access.config.freeMonthlyMinutes : null,
      minutes_used_this_month: minutesUsed,
    },
  };
}

function keyJson(k: ApiKeyRecord) {
  return {
    id: k.id,
    name: k.name,
    prefix: k.prefix,
    created_at: k.createdAt.toISOString(),
    last_used_at: k.lastUsedAt?.toISOString() ?? null,
    revoked: k.revokedAt !== null,
    revoked_at: k.revokedAt?.toISOString() ?? null,
  };
}

function summaryJson(t: TranscriptSummary) {
  return {
    id: t.id,
    status: t.status,
    model: t.model,
    language: t.language,
    duration: t.duration,
    source: t.source,
    filename: t.filename,
    created_at: t.createdAt.toISOString(),
  };
}

function detailJson(t: TranscriptRecord) {
  return { ...summaryJson(t), text: t.text, speakers: t.speakers, segments: t.segments };
}

function asTranscript(t: TranscriptRecord): Transcript {
  return { text: t.text, language: t.language, duration: t.duration, segments: t.segments, speakers: t.speakers };
}

// ---- exports ----------------------------------------------------------------------------------

export async function renderExport(t: TranscriptRecord, format: ExportFormat): Promise<string | Buffer> {
  switch (format) {
    case 'txt':
      return toTxt(asTranscript(t));
    case 'srt':
      return toSrt(asTranscript(t));
    case 'vtt':
      return toVtt(asTranscript(t));
    case 'json':
      return JSON.stringify(detailJson(t));
    case 'csv':
      return toCsv(t);
    case 'docx':
      return toDocx(t);
    case 'pdf':
      return toPdf(t);
  }
}

function downloadName(t: TranscriptRecord, format: ExportFormat): string {
  const base =
    (t.filename ?? '')
      .replace(/\.[^.]*$/, '')
      .replace(/[^\w.-]+/g, '_')
      .slice(0, 80) || `transcript-${t.id}`;
  return `${base}.${format}`;
}

// ---- request parsing --------------------------------------------------------------------------

function badRequest(error: z.ZodError): ApiError {
  return new ApiError(400, error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; '));
}

/** A date (YYYY-MM-DD, UTC midnight) or an ISO 8601 date-time. */
const dateField = (name: string) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === '') return undefined;
      const d = /^\d{4}-\d{2}-\d{2}$/.test(v) ? new Date(`${v}T00:00:00Z`) : /^\d{4}-\d{2}-\d{2}T/.test(v) ? new Date(v) : new Date(NaN);
      if (Number.isNaN(d.getTime())) {
        ctx.addIssue({ code: 'custom', message: `${name} must be a date (YYYY-MM-DD) or an ISO 8601 date-time (got '${v}')` });
        return z.NEVER;
      }
      return { date: d, dateOnly: v.length === 10 };
    });

const listQuery = z.object({
  page: intField('page', 1, 1_000_000),
  page_size: intField('page_size', 1, MAX_PAGE_SIZE),
  status: z.enum(TRANSCRIPT_STATUSES as [string, ...string[]], { message: `status must be one of ${TRANSCRIPT_STATUSES.join(', ')}` }).optional(),
  language: z
    .string()
    .regex(/^[a-z]{2,3}$/, 'language must be a language code such as en')
    .optional(),
  created_after: dateField('created_after'),
  created_before: dateField('created_before'),
});

const accountUpdate = z.strictObject(
  {
    name: z.string().max(200, 'name must be at most 200 characters').optional(),
    email: z.email('email must be an email address').max(254).optional(),
    email_preferences: z.record(z.string().max(64), z.boolean(), { message: 'email_preferences must be an object of true/false flags' }).optional(),
  },
  { error: (issue) => (issue.code === 'unrecognized_keys' ? `only name, email and email_preferences can be changed (not ${issue.keys.join(', ')})` : undefined) },
);

const keyCreate = z.strictObject({ name: z.string().max(100, 'name must be at most 100 characters').optional() });

const signupBody = z.strictObject({
  email: z.email('email must be an email address').max(254),
  name: z.string().max(200).optional(),
});

/** Optional JSON body: empty means {}. */
async function optionalJson(ctx: HttpContext): Promise<unknown> {
  const raw = await ctx.readBody();
  if (raw.length === 0) return {};
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new ApiError(400, `Request body is not valid JSON: ${(err as Error).message}`);
  }
}

function pageUrl(ctx: HttpContext, page: number | null): string | null {
  if (page === null) return null;
  const q = new URLSearchParams(ctx.query);
  q.set('page', String(page));
  const proto = ctx.headers['x-forwarded-proto'] === 'https' ? 'https' : 'http';
  const host = ctx.headers['host'] || 'localhost';
  return `${proto}://${host}${ctx.path}?${q.toString()}`;
}

// ---- routes -----------------------------------------------------------------------------------

export function registerAccountRoutes(server: HttpServer, deps: AccountRouteDeps): void {
  const { access, accounts, usage, transcripts } = deps;
  const now = deps.now ?? (() => new Date());
  const auth = (ctx: HttpContext) => access.requireAccount(ctx.headers['authorization']);

  async function accountReply(a: Account): Promise<Reply> {
    const used = a.plan === 'free' ? await usage.monthlyMinutes(a.id, utcMonth(now())) : null;
    return { body: accountJson(a, access, used) };
  }

  server.route('GET', '/api/v1/account/', async (ctx) => accountReply(await auth(ctx)));

  const emailChanges = new Map<string, { day: string; n: number }>();
  const updateAccount = async (ctx: HttpContext): Promise<Reply> => {
    const account = await auth(ctx);
    const parsed = accountUpdate.safeParse(await ctx.readJson());
    if (!parsed.success) throw badRequest(parsed.error);
    const b = parsed.data;
    if (b.email !== undefined && b.email.trim().toLowerCase() !== account.email.toLowerCase()) {
      // Counted whether or not the address turns out to be free: the limit itself reveals nothing.
      const day = now().toISOString().slice(0, 10);
      const seen = emailChanges.get(account.id);
      const n = seen?.day === day ? seen.n : 0;
      if (n >= EMAIL_CHANGES_PER_ACCOUNT_PER_DAY) {
        throw new ApiError(429, `Too many email changes today (at most ${EMAIL_CHANGES_PER_ACCOUNT_PER_DAY} a day); retry tomorrow (UTC).`, { 'retry-after': '3600' });
      }
      emailChanges.set(account.id, { day, n: n + 1 });
    }
    const updated = await accounts.update(account.id, { name: b.name, email: b.email, emailPreferences: b.email_preferences });
    if (!updated) throw new ApiError(401, 'Invalid or revoked API key.');
    return accountReply(updated);
  };
  server.route('PUT', '/api/v1/account/', updateAccount);
  server.route('PATCH', '/api/v1/account/', updateAccount);

  server.route('GET', '/api/v1/transcripts/', async (ctx) => {
    const account = await auth(ctx);
    const parsed = listQuery.safeParse(Object.fromEntries(ctx.query));
    if (!parsed.success) throw badRequest(parsed.error);
    const q = parsed.data;
    const page = q.page ?? 1;
    const pageSize = q.page_size ?? DEFAULT_PAGE_SIZE;
    // created_before=YYYY-MM-DD includes that whole day.
    const to = q.created_before ? new Date(q.created_before.date.getTime() + (q.created_before.dateOnly ? 86_400_000 : 0)) : undefined;
    const { count, results } = await transcripts.list(
      account.id,
      { status: q.status as TranscriptSummary['status'] | undefined, language: q.language, from: q.created_after?.date, to },
      { offset: (page - 1) * pageSize, limit: pageSize },
    );
    if (page > 1 && results.length === 0) throw new ApiError(404, 'Invalid page.');
    return {
      body: {
        count,
        next: pageUrl(ctx, page * pageSize < count ? page + 1 : null),
        previous: pageUrl(ctx, page > 1 ? page - 1 : null),
        results: results.map(summaryJson),
      },
    };
  });

  const notFound = () => new ApiError(404, 'Transcript not found.');

  server.route('GET', '/api/v1/transcripts/:id/', async (ctx) => {
    const account = await auth(ctx);
    const t = await transcripts.get(account.id, ctx.params.id);
    if (!t) throw notFound();
    return { body: detailJson(t) };
  });

  server.route('DELETE', '/api/v1/transcripts/:id/', async (ctx) => {
    const account = await auth(ctx);
    if (!(await transcripts.delete(account.id, ctx.params.id))) throw notFound();
    return { status: 204 };
  });

  server.route('GET', '/api/v1/transcripts/:id/export/:format/', async (ctx) => {
    const account = await auth(ctx);
    const format = ctx.params.format.toLowerCase() as ExportFormat;
    if (!EXPORT_FORMATS.includes(format)) throw new ApiError(400, `format must be one of ${EXPORT_FORMATS.join(', ')} (got '${ctx.params.format}')`);
    const t = await transcripts.get(account.id, ctx.params.id);
    if (!t) throw notFound();
    return {
      headers: { 'content-type': CONTENT_TYPES[format], 'content-disposition': `attachment; filename="${downloadName(t, format)}"` },
      body: await renderExport(t, format),
    };
  });

  server.route('GET', '/api/v1/keys/', async (ctx) => {
    const account = await auth(ctx);
    const keys = await accounts.listKeys(account.id);
    return { body: { count: keys.length, next: null, previous: null, results: keys.map(keyJson) } };
  });

  server.route('POST', '/api/v1/keys/', async (ctx) => {
    const account = await auth(ctx);
    const parsed = keyCreate.safeParse(await optionalJson(ctx));
    if (!parsed.success) throw badRequest(parsed.error);
    const { key, record } = await issueKey(accounts, account.id, parsed.data.name ?? '');
    return { status: 201, body: { ...keyJson(record), key } };
  });

  server.route('DELETE', '/api/v1/keys/:id/', async (ctx) => {
    const account = await auth(ctx);
    if (!(await accounts.revokeKey(account.id, ctx.params.id))) throw new ApiError(404, 'API key not found.');
    return { status: 204 };
  });

  server.route('GET', '/api/v1/usage/', async (ctx) => {
    const account = await auth(ctx);
    const t = now();
    const today = Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate());
    const from = new Date(today - 29 * 86_400_000);
    const rows = new Map((await usage.daily(account.id, from, new Date(today + 86_400_000))).map((r) => [r.date, r]));
    const days = Array.from({ length: 30 }, (_, i) => {
      const date = new Date(from.getTime() + i * 86_400_000).toISOString().slice(0, 10);
      const r = rows.get(date);
      return { date, minutes: r?.minutes ?? 0, requests: r?.requests ?? 0, credits: r?.credits ?? 0 };
    });
    return {
      body: {
        from: days[0].date,
        to: days[29].date,
        total_minutes: days.reduce((n, d) => n + d.minutes, 0),
        total_requests: days.reduce((n, d) => n + d.requests, 0),
        total_credits: days.reduce((n, d) => n + d.credits, 0),
        days,
      },
    };
  });

  server.route('GET', '/api/v1/cloud/', async (ctx) => {
    await auth(ctx);
    const results = deps.cloud ?? [];
    return { body: { count: results.length, next: null, previous: null, results } };
  });

  if (deps.signupEnabled ?? access.config.signupEnabled) {
    const signups = new Map<string, { day: string; n: number }>();
    server.route('POST', '/api/v1/signup', async (ctx) => {
      const parsed = signupBody.safeParse(await ctx.readJson());
      if (!parsed.success) throw badRequest(parsed.error);
      const day = now().toISOString().slice(0, 10);
      const seen = signups.get(ctx.remoteAddress);
      const n = seen?.day === day ? seen.n : 0;
      if (n >= SIGNUPS_PER_IP_PER_DAY) throw new ApiError(429, 'Too many sign-ups from this address today.', { 'retry-after': '3600' });
      signups.set(ctx.remoteAddress, { day, n: n + 1 });
      const account = await accounts.create({ email: parsed.data.email, name: parsed.data.name, plan: 'free' });
      const { key, record } = await issueKey(accounts, account.id, 'signup');
      return { status: 201, body: { account: accountJson(account, access, 0), key: { ...keyJson(record), key } } };
    });
  }
}
