import { ApiError, toApiError } from '../../src/http/api-error.ts';
import { DomainError } from '../../src/errors.ts';

/**
 * What an HTTP client gets for the error `p` rejects with: the ApiError (status, message, headers)
 * the HTTP edge maps it to. Fails the test if `p` resolves or rejects with something that is neither
 * a DomainError nor an ApiError (an internal fault).
 */
export async function apiError(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiError || err instanceof DomainError) return toApiError(err).error;
    throw err;
  }
  throw new Error('expected a DomainError or an ApiError');
}
