/**
 * The one table from a domain error's kind to the codes of our transports: the HTTP status of a
 * request's `{"error"}` reply and the RFC 6455 close code that ends a live stream. Code below the
 * transports names only the kind (src/errors.ts); the HTTP edge (`toApiError`) and the live-stream
 * adapters read their code here, so a kind answers the same on every transport.
 */
import { DomainError, type ErrorKind } from '../errors.ts';

export interface KindCodes {
  /** HTTP status of a request that failed this way. */
  status: number;
  /** WebSocket close code of a live stream that ended this way (RFC 6455 §7.4). */
  closeCode: number;
}

/** RFC 6455 close codes we use. */
export const CLOSE = {
  NORMAL: 1000,
  UNSUPPORTED_DATA: 1003,
  INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  TRY_AGAIN_LATER: 1013,
} as const;

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

/**
 * A numeric `status` (400–599) on a thrown error that is not a DomainError: the HTTP edge's own
 * ApiError, and — until src/ingest is converted — plain errors decorated with `{status}`.
 */
function legacyStatus(err: unknown): number | undefined {
  const status = (err as { status?: unknown } | null)?.status;
  return err instanceof Error && typeof status === 'number' && status >= 400 && status < 600 ? status : undefined;
}

/** The HTTP status for anything thrown: the kind's, else a legacy numeric `status`, else 500. */
export function statusOf(err: unknown): number {
  if (err instanceof DomainError) return ERROR_KIND_CODES[err.kind].status;
  return legacyStatus(err) ?? 500;
}

/** The WebSocket close code for anything thrown that ends a live stream: the kind's, else by status class. */
export function closeCodeOf(err: unknown): number {
  if (err instanceof DomainError) return ERROR_KIND_CODES[err.kind].closeCode;
  const status = legacyStatus(err);
  if (status === undefined) return CLOSE.INTERNAL_ERROR;
  const same = Object.values(ERROR_KIND_CODES).find((c) => c.status === status);
  return same?.closeCode ?? (status < 500 ? CLOSE.POLICY_VIOLATION : CLOSE.INTERNAL_ERROR);
}
