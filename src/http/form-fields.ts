/**
 * zod fields for values that arrive as strings (multipart form fields, query parameters), with
 * messages that name the field and what is allowed.
 */
import { z } from 'zod';
import { parseLanguageCode, unknownLanguageMessage } from '../ai/languages.ts';

export const boolField = (name: string, dflt: boolean) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === '') return dflt;
      if (/^(true|1|yes|on)$/i.test(v)) return true;
      if (/^(false|0|no|off)$/i.test(v)) return false;
      ctx.addIssue({ code: 'custom', message: `${name} must be true or false (got '${v}')` });
      return z.NEVER;
    });

export const intField = (name: string, min: number, max: number) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === '') return undefined;
      const n = Number(v);
      if (!Number.isInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: `${name} must be an integer from ${min} to ${max} (got '${v}')` });
        return z.NEVER;
      }
      return n;
    });

export const enumField = <T extends readonly [string, ...string[]]>(name: string, values: T, dflt: T[number]) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === '') return dflt;
      if ((values as readonly string[]).includes(v)) return v as T[number];
      ctx.addIssue({ code: 'custom', message: `${name} must be one of ${values.join(', ')} (got '${v}')` });
      return z.NEVER;
    });

/** A JSON `max_tokens` (or `max_completion_tokens`): a positive integer, clamped to `cap` (none: as sent). */
export const maxTokensField = (cap = Number.POSITIVE_INFINITY) =>
  z
    .unknown()
    .optional()
    .transform((v, ctx): number | undefined => {
      if (v === undefined || v === null) return undefined;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
        ctx.addIssue({ code: 'custom', message: `max_tokens must be a positive integer (got ${JSON.stringify(v)})` });
        return z.NEVER;
      }
      return Math.min(v, cap);
    });

/** A JSON language code (`es`, `pt-BR`), canonicalised by ICU; `dflt` when absent, else required. */
export function languageField(name: string, dflt?: string) {
  return z
    .unknown()
    .optional()
    .transform((v, ctx) => {
      if ((v === undefined || v === null || v === '') && dflt) return parseLanguageCode(dflt)!;
      // well-formed codes ICU does not know pass (known: false): the translator decides (see ai/languages.ts)
      const lang = parseLanguageCode(v);
      if (!lang) {
        ctx.addIssue({ code: 'custom', message: v === undefined ? `${name} is required: a language code such as es, fr, zh` : unknownLanguageMessage(name, v) });
        return z.NEVER;
      }
      return lang;
    });
}

/** A JSON `max_new_tokens` of a seq2seq model (per sentence): an integer from 1 to 1024, optional. */
export const maxNewTokensField = () => z.number({ error: 'max_new_tokens must be an integer from 1 to 1024' }).int().min(1).max(1024).optional();
