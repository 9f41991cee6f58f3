/**
 * The error body of the OpenAI-compatible routes: `{"error": {"message", "type", "param", "code"}}`,
 * the shape the official SDKs parse into `err.type` / `err.code` / `err.param`. The reference API's
 * routes keep `{"error": "..."}`; a route chooses this shape with `RouteOptions.errorBody`.
 */
import { ApiError } from './api-error.ts';

/** An ApiError that names the request field at fault and an OpenAI error code (rendered as `{"error": "..."}` elsewhere). */
export class OpenAiError extends ApiError {
  readonly param: string | null;
  readonly code: string | null;
  constructor(status: number, message: string, opts: { param?: string | null; code?: string | null; headers?: Record<string, string> } = {}) {
    super(status, message, opts.headers);
    this.name = 'OpenAiError';
    this.param = opts.param ?? null;
    this.code = opts.code ?? null;
  }
}

/** OpenAI's `type` and a default `code` per status (as api.openai.com answers them: 401 invalid_api_key, 429 rate_limit_exceeded, …). */
const BY_STATUS: Record<number, { type: string; code: string }> = {
  400: { type: 'invalid_request_error', code: 'invalid_request' },
  401: { type: 'invalid_request_error', code: 'invalid_api_key' },
  402: { type: 'insufficient_quota', code: 'insufficient_quota' },
  403: { type: 'permission_error', code: 'forbidden' },
  404: { type: 'invalid_request_error', code: 'not_found' },
  405: { type: 'invalid_request_error', code: 'method_not_allowed' },
  409: { type: 'invalid_request_error', code: 'conflict' },
  411: { type: 'invalid_request_error', code: 'length_required' },
  413: { type: 'invalid_request_error', code: 'request_too_large' },
  415: { type: 'invalid_request_error', code: 'unsupported_media_type' },
  429: { type: 'rate_limit_error', code: 'rate_limit_exceeded' },
  499: { type: 'invalid_request_error', code: 'client_closed_request' },
  501: { type: 'invalid_request_error', code: 'not_implemented' },
  502: { type: 'server_error', code: 'upstream_error' },
  503: { type: 'server_error', code: 'service_unavailable' },
};

/** `type` and `code` for a status: the table's, else invalid_request_error (4xx) or server_error (5xx). */
export function openAiErrorType(status: number): { type: string; code: string } {
  return BY_STATUS[status] ?? (status >= 500 ? { type: 'server_error', code: 'server_error' } : { type: 'invalid_request_error', code: 'invalid_request' });
}

/** The OpenAI error body for an error the HTTP edge has mapped (`toApiError`). */
export function openAiErrorBody(error: ApiError): { error: { message: string; type: string; param: string | null; code: string | null } } {
  const d = openAiErrorType(error.status);
  const own = error instanceof OpenAiError ? error : null;
  return { error: { message: error.message, type: d.type, param: own?.param ?? null, code: own?.code ?? d.code } };
}
