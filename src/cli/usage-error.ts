/** The caller's mistake on a command line (bad flag, file, model or language): exit code 2, as a 4xx would be. */
import { statusOf } from '../http/error-kinds.ts';

export class UsageError extends Error {}

/** 2 for a usage error or anything the server would answer with a 4xx, else 1. */
export function exitCodeOf(err: unknown): 1 | 2 {
  return err instanceof UsageError || statusOf(err) < 500 ? 2 : 1;
}

/** An integer flag's value (undefined when absent); a UsageError naming the flag when it is not an integer ≥ `min`. */
export function intFlag(name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer ≥ ${min} (got '${v}')`);
  return n;
}
