import { UnauthenticatedError } from '../auth/errors.ts';
import { DomainError } from '../errors.ts';
import { ERROR_KIND_CODES } from './error-kinds.ts';

/** The one error type of the HTTP edge: mapped to `{"error": "..."}` with its status in one place (HttpServer). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const INTERNAL_MESSAGE = 'Internal server error. The request id in X-Request-Id identifies it in the server log.';

/**
 * Maps anything thrown by a handler to an ApiError. A DomainError answers with its kind's status
 * (error-kinds.ts), its message, Retry-After from `retryAfterS` and, for 'unauthenticated', the
 * Bearer challenge. `internal` (log it as a fault): kind 'internal' — whose message stays in the
 * log, the client gets a generic one — and 5xx kinds not marked `expected`. Anything else thrown is
 * internal too.
 */
export function toApiError(err: unknown): { error: ApiError; internal: boolean } {
  if (err instanceof ApiError) return { error: err, internal: false };
  if (err instanceof DomainError) {
    const { status } = ERROR_KIND_CODES[err.kind];
    if (err.kind === 'internal') return { error: new ApiError(status, INTERNAL_MESSAGE), internal: true };
    const headers: Record<string, string> = {};
    if (err.retryAfterS !== undefined) headers['retry-after'] = String(Math.max(0, Math.ceil(err.retryAfterS)));
    if (err.kind === 'unauthenticated') headers['www-authenticate'] = err instanceof UnauthenticatedError ? err.challenge : 'Bearer';
    return { error: new ApiError(status, err.message, headers), internal: status >= 500 && !err.expected };
  }
  return { error: new ApiError(500, INTERNAL_MESSAGE), internal: true };
}
