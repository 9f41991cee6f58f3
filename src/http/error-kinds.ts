/**
 * The one table from a domain error's kind to the codes of our transports: the HTTP status of a
 * request's `{"error"}` reply and the RFC 6455 close code that ends a live stream. Code below the
 * transports names only the kind (src/errors.ts); the HTTP edge (`toApiError`) and the live-stream
 * adapters read their code here, so a kind answers the same on every transport.
 */
import { DomainError, type ErrorKind } from '../errors.ts';
import { CLOSE_CODES } from '../ingest/stream-protocol.ts';
import { ApiError } from './api-error.ts';

export interface KindCodes {
  /** HTTP status of a request that failed this way. */
  status: number;
  /** WebSocket close code of a live stream that ended this way (RFC 6455 §7.4). */
  closeCode: number;
}

const CLOSE = CLOSE_CODES;

export const ERROR_KIND_CODES: Readonly<Record<ErrorKind, KindCodes>> = {
  invalid: { status: 400, closeCode: CLOSE.INVALID_PAYLOAD },
  unauthenticated: { status: 401, closeCode: CLOSE.POLICY_VIOLATION },
  payment_required: { status: 402, closeCode: CLOSE.POLICY_VIOLATION },
  forbidden: { status: 403, closeCode: CLOSE.POLICY_VIOLATION },
  not_found: { status: 404, closeCode: CLOSE.POLICY_VIOLATION },
  conflict: { status: 409, closeCode: CLOSE.POLICY_VIOLATION },
  too_large: { status: 413, closeCode: CLOSE.MESSAGE_TOO_BIG },
  unsupported_media: { status: 415, closeCode: CLOSE.UNSUPPORTED_DATA },
  rate_limited: { status: 429, closeCode: CLOSE.TRY_AGAIN_LATER },
  // 499 is nginx's "client closed request": nobody reads it, but the access log and metrics tell cancels apart.
  cancelled: { status: 499, closeCode: CLOSE.NORMAL },
  upstream: { status: 502, closeCode: CLOSE.INTERNAL_ERROR },
  unavailable: { status: 503, closeCode: CLOSE.TRY_AGAIN_LATER },
  internal: { status: 500, closeCode: CLOSE.INTERNAL_ERROR },
};

/** The HTTP status for anything thrown: the kind's, an ApiError's own, else 500. */
export function statusOf(err: unknown): number {
  if (err instanceof DomainError) return ERROR_KIND_CODES[err.kind].status;
  if (err instanceof ApiError) return err.status;
  return 500;
}

/** The WebSocket close code for anything that ends a live stream: the kind's, else an internal error. */
export function closeCodeOf(err: unknown): number {
  return err instanceof DomainError ? ERROR_KIND_CODES[err.kind].closeCode : CLOSE.INTERNAL_ERROR;
}
