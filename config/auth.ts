/**
 * Auth configuration (quotas, sign-up, concurrency leases): `authConfigFromEnv` validates these
 * environment variables with zod; loadConfig merges the result into the one Config (`config.auth`).
 * The tiers' fixed limits are the auth layer's own (src/auth/tiers.ts).
 */
import { z } from 'zod';

const MB = 1024 * 1024;

export interface AuthConfig {
  /** Transcriptions (files or streams) per UTC day per client address without a key. ANON_DAILY_LIMIT, default 3; 0 = keys required. */
  anonDailyLimit: number;
  /** Audio minutes per UTC month on the free plan. FREE_MONTHLY_MINUTES, default 600. */
  freeMonthlyMinutes: number;
  /** Whether POST /api/v1/signup creates free accounts. SIGNUP_ENABLED, default false. */
  signupEnabled: boolean;
  /** Retry-After (seconds) of a 429 for a full concurrency slot. CONCURRENCY_RETRY_AFTER_S, default 5. */
  concurrencyRetryAfterS: number;
  /**
   * Lifetime (seconds) of a concurrency lease in the shared database (PostgreSQL) without renewal;
   * held leases are renewed every third of it. A crashed server's slots free themselves after it.
   * CONCURRENCY_LEASE_TTL_S, default 60.
   */
  concurrencyLeaseTtlS: number;
  /**
   * AI calls (summarize, analyze, generate, translate, chat, embed, tts, enhance-audio) per UTC day
   * per client address without a key; counted apart from transcriptions. ANON_DAILY_AI_LIMIT,
   * default 50; 0 = a key is required for them.
   */
  anonDailyAiLimit: number;
  /** Largest JSON body of an anonymous AI call (keys get AI_MAX_TEXT_CHARS). ANON_AI_MAX_REQUEST_KB, default 32. */
  anonAiMaxRequestBytes: number;
  /** Largest upload of an anonymous /v1/enhance-audio or /v1/tts. ANON_AI_MAX_UPLOAD_MB, default 10. */
  anonAiMaxUploadBytes: number;
}

export const DEFAULT_AUTH_CONFIG: AuthConfig = {
  anonDailyLimit: 3,
  freeMonthlyMinutes: 600,
  signupEnabled: false,
  concurrencyRetryAfterS: 5,
  concurrencyLeaseTtlS: 60,
  anonDailyAiLimit: 50,
  anonAiMaxRequestBytes: 32 * 1024,
  anonAiMaxUploadBytes: 10 * MB,
};

const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'expected true or false' }).transform((v) => v === 'true' || v === '1' || v === 'yes');

const int = (min: number, max: number) => z.coerce.number({ message: 'expected a number' }).int('expected an integer').min(min, `must be at least ${min}`).max(max, `must be at most ${max}`);

export const authEnvSchema = z.object({
  ANON_DAILY_LIMIT: int(0, 1_000_000).default(DEFAULT_AUTH_CONFIG.anonDailyLimit),
  FREE_MONTHLY_MINUTES: int(0, 100_000_000).default(DEFAULT_AUTH_CONFIG.freeMonthlyMinutes),
  SIGNUP_ENABLED: bool.default(false),
  CONCURRENCY_RETRY_AFTER_S: int(1, 3600).default(DEFAULT_AUTH_CONFIG.concurrencyRetryAfterS),
  CONCURRENCY_LEASE_TTL_S: int(3, 86_400).default(DEFAULT_AUTH_CONFIG.concurrencyLeaseTtlS),
  ANON_DAILY_AI_LIMIT: int(0, 1_000_000).default(DEFAULT_AUTH_CONFIG.anonDailyAiLimit),
  ANON_AI_MAX_REQUEST_KB: int(1, 1_000_000).default(DEFAULT_AUTH_CONFIG.anonAiMaxRequestBytes / 1024),
  ANON_AI_MAX_UPLOAD_MB: int(1, 100_000).default(DEFAULT_AUTH_CONFIG.anonAiMaxUploadBytes / MB),
});

/** Names of the environment variables read here (for the README table and config tests). */
export const AUTH_ENV_NAMES = Object.keys(authEnvSchema.shape);

export class AuthConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'AuthConfigError';
  }
}

/** Validates the auth variables of `env` (empty = unset); throws AuthConfigError naming each bad variable. */
export function authConfigFromEnv(env: Record<string, string | undefined> = process.env): AuthConfig {
  const cleaned = Object.fromEntries(AUTH_ENV_NAMES.map((k) => [k, env[k] === '' ? undefined : env[k]]));
  const parsed = authEnvSchema.safeParse(cleaned);
  if (!parsed.success) {
    throw new AuthConfigError(parsed.error.issues.map((i) => `${i.path.join('.')}=${JSON.stringify(cleaned[String(i.path[0])])}: ${i.message}`));
  }
  const e = parsed.data;
  return {
    anonDailyLimit: e.ANON_DAILY_LIMIT,
    freeMonthlyMinutes: e.FREE_MONTHLY_MINUTES,
    signupEnabled: e.SIGNUP_ENABLED,
    concurrencyRetryAfterS: e.CONCURRENCY_RETRY_AFTER_S,
    concurrencyLeaseTtlS: e.CONCURRENCY_LEASE_TTL_S,
    anonDailyAiLimit: e.ANON_DAILY_AI_LIMIT,
    anonAiMaxRequestBytes: e.ANON_AI_MAX_REQUEST_KB * 1024,
    anonAiMaxUploadBytes: e.ANON_AI_MAX_UPLOAD_MB * MB,
  };
}
