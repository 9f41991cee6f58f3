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

/**
 * Maps anything thrown by a handler to an ApiError. Domain errors (model not installed, bad audio, ...)
 * carry a numeric `status`, a user-facing message and optionally response `headers` (Retry-After);
 * everything else is an internal error whose
 * details go to the log, not to the client.
 */
export function toApiError(err: unknown): { error: ApiError; internal: boolean } {
  if (err instanceof ApiError) return { error: err, internal: false };
  const status = (err as { status?: unknown } | null)?.status;
  if (typeof status === 'number' && status >= 400 && status < 600 && err instanceof Error) {
    const headers = (err as { headers?: unknown }).headers;
    const plain = headers && typeof headers === 'object' && Object.values(headers).every((v) => typeof v === 'string') ? (headers as Record<string, string>) : {};
    return { error: new ApiError(status, err.message, plain), internal: status >= 500 && !(err as { expected?: boolean }).expected };
  }
  return { error: new ApiError(500, 'Internal server error. The request id in X-Request-Id identifies it in the server log.'), internal: true };
}
