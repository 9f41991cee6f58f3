/**
 * Structured LLM output: the grammar guarantees the model can only write JSON of the schema, but the token
 * budget (maxTokens) can end it half-way. `parseStructured` closes a truncated document at its last complete
 * value and `conformToSchema` fills what is missing, so a structured endpoint always answers with the
 * documented shape, whatever the model (the random-weight fixture included).
 *
 * Schemas here use the subset node-llama-cpp turns into a grammar and that bounds the output length:
 * object (properties, required), array (items, maxItems), string (maxLength), enum, boolean. No numbers
 * (their digits are unbounded).
 */
import type { JsonSchema } from '../engines/llm/chat-backend.ts';

type Frame = '{' | '[';

/** Parses JSON that may have been cut off; returns null only when nothing usable was written. */
export function parseTruncatedJson(text: string): unknown {
  const trimmed = text.trim();
  try {
    return JSON.parse(trimmed);
  } catch {
    /* repair below */
  }
  const stack: Frame[] = [];
  // Cut points: a prefix that ends after a complete value (or right after an opening bracket), with its stack.
  const cuts: { at: number; stack: Frame[] }[] = [];
  let inString = false;
  let escaped = false;
  for (let i = 0; i < trimmed.length; i++) {
    const c = trimmed[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '{' || c === '[') {
      stack.push(c);
      cuts.push({ at: i + 1, stack: [...stack] });
    } else if (c === '}' || c === ']') {
      stack.pop();
      cuts.push({ at: i + 1, stack: [...stack] });
    } else if (c === ',') cuts.push({ at: i, stack: [...stack] });
  }
  const close = (s: Frame[]) =>
    s
      .map((f) => (f === '{' ? '}' : ']'))
      .reverse()
      .join('');
  const attempts: string[] = [];
  // The whole text with an open string closed (a cut-off string value is kept, shortened).
  if (inString) attempts.push(trimmed.replace(/\\u[0-9a-fA-F]{0,3}$|\\$/, '') + '"' + close(stack));
  attempts.push(trimmed + close(stack));
  for (let k = cuts.length - 1; k >= 0; k--) attempts.push(trimmed.slice(0, cuts[k].at).replace(/[\s,]+$/, '') + close(cuts[k].stack));
  for (const a of attempts) {
    try {
      return JSON.parse(a);
    } catch {
      /* next */
    }
  }
  return null;
}

/** Makes a value fit the schema: missing required fields get empty defaults, extra fields go, lengths are capped. */
export function conformToSchema(value: unknown, schema: JsonSchema): unknown {
  if (Array.isArray(schema.enum)) {
    return (schema.enum as unknown[]).includes(value) ? value : (schema.enum as unknown[])[0];
  }
  if ('const' in schema) return schema.const;
  switch (schema.type) {
    case 'object': {
      const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
      const src = value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
      const out: Record<string, unknown> = {};
      for (const [k, s] of Object.entries(props)) out[k] = conformToSchema(src[k], s);
      return out;
    }
    case 'array': {
      const items = (schema.items ?? {}) as JsonSchema;
      const arr = Array.isArray(value) ? value : [];
      const max = typeof schema.maxItems === 'number' ? schema.maxItems : arr.length;
      return arr.slice(0, max).map((v) => conformToSchema(v, items));
    }
    case 'string': {
      const s = typeof value === 'string' ? value : '';
      return typeof schema.maxLength === 'number' ? s.slice(0, schema.maxLength) : s;
    }
    case 'boolean':
      return typeof value === 'boolean' ? value : false;
    case 'integer':
    case 'number':
      return typeof value === 'number' && Number.isFinite(value) ? value : 0;
    default:
      return value ?? null;
  }
}

export function parseStructured<T>(text: string, schema: JsonSchema): T {
  return conformToSchema(parseTruncatedJson(text), schema) as T;
}

// Schema builders (bounded).
export const str = (maxLength: number, description?: string): JsonSchema => ({ type: 'string', maxLength, ...(description ? { description } : {}) });
export const oneOf = (values: readonly string[]): JsonSchema => ({ enum: [...values] });
export const arr = (items: JsonSchema, maxItems: number): JsonSchema => ({ type: 'array', items, maxItems });
export const obj = (properties: Record<string, JsonSchema>): JsonSchema => ({ type: 'object', properties, required: Object.keys(properties) });
