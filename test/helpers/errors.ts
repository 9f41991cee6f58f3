import { ApiError } from '../../src/http/api-error.ts';

/** The ApiError `p` rejects with (fails the test if it resolves or rejects with something else). */
export async function apiError(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  throw new Error('expected an ApiError');
}
