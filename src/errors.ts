/**
 * Errors of the domain, in the domain's words. Code below the transports throws a `DomainError`
 * with a `kind` (what went wrong for the caller) and a message that says what to fix; it never
 * names an HTTP status or a WebSocket close code. The transports map a kind to their own codes in
 * one table (`http/error-kinds.ts`): an HTTP status and `{"error"}` body for requests, a close
 * code for live streams.
 */

export const ERROR_KINDS = [
  /** The request is malformed or names something impossible (bad field, bad audio, unknown language). */
  'invalid',
  /** No credentials, or credentials that are not valid. */
  'unauthenticated',
  /** The account has no credits left for this. */
  'payment_required',
  /** Valid credentials, but not allowed to do this. */
  'forbidden',
  /** The thing named does not exist (or is not the caller's). */
  'not_found',
  /** The request conflicts with the current state (an id or email already in use). */
  'conflict',
  /** The input is larger or longer than the limit. */
  'too_large',
  /** The media type is not one we read. */
  'unsupported_media',
  /** Too many requests or concurrent uses for the caller's tier. */
  'rate_limited',
  /** The caller went away or cancelled the work. */
  'cancelled',
  /** A service we depend on answered badly. */
  'upstream',
  /** The server cannot do it now (model not installed, at capacity, shutting down); retrying may help. */
  'unavailable',
  /** A fault of ours; the message is for the log, not for the client. */
  'internal',
] as const;

export type ErrorKind = (typeof ERROR_KINDS)[number];

export interface DomainErrorOptions {
  /** When retrying makes sense (rate limits, capacity): seconds to wait. */
  retryAfterS?: number;
  /** An 'unavailable' condition that is part of normal operation (not logged as a fault). */
  expected?: boolean;
  cause?: unknown;
}

export class DomainError extends Error {
  readonly retryAfterS?: number;
  readonly expected: boolean;

  constructor(
    readonly kind: ErrorKind,
    message: string,
    opts: DomainErrorOptions = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'DomainError';
    this.retryAfterS = opts.retryAfterS;
    this.expected = opts.expected ?? kind !== 'internal';
  }
}

export function isDomainError(err: unknown): err is DomainError {
  return err instanceof DomainError;
}

/** The kind of anything thrown: a DomainError's own, else 'internal'. */
export function errorKind(err: unknown): ErrorKind {
  return err instanceof DomainError ? err.kind : 'internal';
}
