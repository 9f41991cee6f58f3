/** The caller's mistake on a command line (bad flag, file, model or language): exit code 2, as a 4xx would be. */
import { statusOf } from '../http/error-kinds.ts';

export class UsageError extends Error {}

/** 2 for a usage error or anything the server would answer with a 4xx, else 1. */
export function exitCodeOf(err: unknown): 1 | 2 {
  return err instanceof UsageError || statusOf(err) < 500 ? 2 : 1;
}
