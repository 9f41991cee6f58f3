/**
 * Summarise, analyse and generate from transcript text with a ChatBackend (local llama.cpp or an external
 * OpenAI-compatible server). Text longer than the context is handled map-reduce over token-counted chunks.
 * Structured outputs are grammar-constrained JSON, closed and conformed to their schema when the token
 * budget cuts them (see structured.ts), so they always have the documented shape.
 */
import type { CountryCode } from 'libphonenumber-js';
import { from, lastValueFrom, mergeMap, toArray } from 'rxjs';
import type { ChatBackend, ChatMessage, JsonSchema } from '../engines/llm/chat-backend.ts';
import { splitByTokens } from './chunking.ts';
import { detectPii, findNameSpans, redact, resolveOverlaps, type PiiSpan } from './pii.ts';
import {
  ANALYSIS_INSTRUCTIONS,
  ANALYSIS_SCHEMAS,
  GENERATE_INSTRUCTIONS,
  GENERATE_SCHEMAS,
  MAP_INSTRUCTION,
  PERSON_NAMES_SCHEMA,
  SUMMARY_INSTRUCTIONS,
  SYSTEM_TRANSCRIPT,
  type AnalysisType,
  type GenerateType,
  type StructuredGenerateType,
  type SummaryStyle,
} from './prompts.ts';
import { parseStructured } from './structured.ts';

export interface AiServiceOptions {
  backend: ChatBackend;
  /** Output cap per model call (the fixture model never stops by itself). Default 512. */
  maxTokens?: number;
  /** Region for phone numbers without a country code in pii_redact (default US). */
  phoneRegion?: CountryCode;
}

export interface CallOptions {
  signal?: AbortSignal;
  /** Lower the output cap for this call. */
  maxTokens?: number;
}

const MAX_DEPTH = 4;
/**
 * Model calls one request keeps in flight over the chunks of a long text: enough to fill the local
 * model's batch, few enough that a long text does not fill the queue (its share of LLM_MAX_QUEUE).
 */
export const CHUNK_CONCURRENCY = 4;

/** `fn` over `items`, at most `limit` at once, results in input order. */
async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  if (items.length <= 1) return Promise.all(items.map(fn));
  const done = await lastValueFrom(
    from(items.map((item, i) => ({ item, i }))).pipe(
      mergeMap(async ({ item, i }) => ({ i, r: await fn(item) }), limit),
      toArray(),
    ),
  );
  return done.sort((a, b) => a.i - b.i).map((d) => d.r);
}
/** Chat-template tokens around the messages (role markers etc.). */
const TEMPLATE_OVERHEAD = 32;

type Items = Record<string, unknown>[];

export class AiService {
  readonly backend: ChatBackend;
  readonly maxTokens: number;
  /** Model calls made (tests, metrics). */
  calls = 0;

  constructor(private readonly opts: AiServiceOptions) {
    this.backend = opts.backend;
    this.maxTokens = opts.maxTokens ?? 512;
  }

  get model(): string {
    return this.backend.model;
  }

  private cap(o: CallOptions): number {
    return Math.max(1, Math.min(this.maxTokens, o.maxTokens ?? this.maxTokens));
  }

  /** Input tokens left for the text of a call with this instruction and output cap. */
  private budget(instruction: string, maxTokens: number): number {
    const fixed = this.backend.countTokens(SYSTEM_TRANSCRIPT) + this.backend.countTokens(instruction) + TEMPLATE_OVERHEAD;
    const b = this.backend.contextSize - maxTokens - fixed;
    if (b < 32) throw new Error(`LLM context of ${this.backend.contextSize} tokens is too small for max_tokens ${maxTokens}`);
    return b;
  }

  private messages(instruction: string, text: string): ChatMessage[] {
    return [
      { role: 'system', content: SYSTEM_TRANSCRIPT },
      { role: 'user', content: `${instruction}\n\nTranscript:\n"""\n${text}\n"""` },
    ];
  }

  private async call(instruction: string, text: string, maxTokens: number, signal?: AbortSignal, jsonSchema?: JsonSchema): Promise<string> {
    this.calls++;
    const r = await this.backend.chat(this.messages(instruction, text), { maxTokens, signal, jsonSchema });
    return r.text;
  }

  /** Runs `instruction` over text of any length: directly when it fits, else on map-reduced notes. */
  private async overLongText(text: string, instruction: string, maxTokens: number, signal: AbortSignal | undefined, depth = 0): Promise<string> {
    const budget = this.budget(instruction, maxTokens);
    if (this.backend.countTokens(text) <= budget) return this.call(instruction, text, maxTokens, signal);
    if (depth >= MAX_DEPTH) return this.call(instruction, splitByTokens(text, budget, (s) => this.backend.countTokens(s))[0], maxTokens, signal);
    const notes = await this.mapNotes(text, maxTokens, signal);
    return this.overLongText(notes, instruction, maxTokens, signal, depth + 1);
  }

  /** The map step: notes of each chunk (CHUNK_CONCURRENCY at once: the local model batches them as sequences). */
  private async mapNotes(text: string, maxTokens: number, signal?: AbortSignal): Promise<string> {
    // Notes are at most a quarter of their chunk, so every round shrinks the text.
    const probe = this.budget(MAP_INSTRUCTION, 16);
    const mapMax = Math.max(16, Math.min(maxTokens, Math.floor(probe / 5)));
    const chunkTokens = this.budget(MAP_INSTRUCTION, mapMax);
    const chunks = splitByTokens(text, chunkTokens, (s) => this.backend.countTokens(s));
    const notes = await mapLimited(chunks, CHUNK_CONCURRENCY, (c) => this.call(MAP_INSTRUCTION, c, mapMax, signal));
    return notes.map((n, i) => `Part ${i + 1}:\n${n.trim()}`).join('\n\n');
  }

  private chunks(text: string, instruction: string, maxTokens: number): string[] {
    const budget = this.budget(instruction, maxTokens);
    return this.backend.countTokens(text) <= budget ? [text] : splitByTokens(text, budget, (s) => this.backend.countTokens(s));
  }

  async summarize(text: string, style: SummaryStyle, o: CallOptions = {}): Promise<{ summary: string; style: SummaryStyle; model: string }> {
    const summary = await this.overLongText(text, SUMMARY_INSTRUCTIONS[style], this.cap(o), o.signal);
    return { summary: summary.trim(), style, model: this.model };
  }

  /** Structured output over each chunk of the text (one chunk unless the text is longer than the context). */
  private async structured<T>(text: string, instruction: string, schema: JsonSchema, o: CallOptions): Promise<T[]> {
    const maxTokens = this.cap(o);
    const parts = this.chunks(text, instruction, maxTokens);
    return mapLimited(parts, CHUNK_CONCURRENCY, async (c) => parseStructured<T>(await this.call(instruction, c, maxTokens, o.signal, schema), schema));
  }

  async analyze(text: string, type: AnalysisType, o: CallOptions = {}): Promise<{ type: AnalysisType; result: Record<string, unknown>; model: string }> {
    if (type === 'pii_redact') return { type, result: await this.redactPii(text, o), model: this.model };
    const schema = ANALYSIS_SCHEMAS[type];
    const results = await this.structured<Record<string, unknown>>(text, ANALYSIS_INSTRUCTIONS[type], schema, o);
    let result: Record<string, unknown>;
    if (type === 'sentiment') {
      const labels = results.map((r) => r.label as string);
      const label = new Set(labels).size === 1 ? labels[0] : 'mixed';
      result =
        results.length === 1
          ? results[0]
          : {
              label,
              confidence: 'medium',
              explanation: results
                .map((r) => r.explanation)
                .filter(Boolean)
                .join(' '),
            };
    } else {
      const key = Object.keys((schema.properties as object) ?? {})[0];
      const maxItems = ((schema.properties as Record<string, JsonSchema>)[key].maxItems as number) ?? 25;
      result = {
        [key]: mergeItems(
          results.map((r) => r[key] as Items),
          maxItems,
        ),
      };
    }
    return { type, result, model: this.model };
  }

  /** Deterministic detectors first; the LLM adds the names of people. Works without an LLM (backendless: pass none). */
  async redactPii(text: string, o: CallOptions = {}, withNames = true): Promise<{ redacted_text: string; spans: PiiSpan[] }> {
    let spans = detectPii(text, { defaultRegion: this.opts.phoneRegion });
    if (withNames) {
      const found = await this.structured<{ names: string[] }>(text, ANALYSIS_INSTRUCTIONS.pii_redact, PERSON_NAMES_SCHEMA, o);
      spans = resolveOverlaps([
        ...spans,
        ...findNameSpans(
          text,
          found.flatMap((f) => f.names),
        ),
      ]);
    }
    return { redacted_text: redact(text, spans), spans };
  }

  async generate(text: string, type: GenerateType, o: CallOptions = {}): Promise<{ type: GenerateType; content: unknown; model: string }> {
    const instruction = GENERATE_INSTRUCTIONS[type];
    if (!(type in GENERATE_SCHEMAS)) {
      const content = (await this.overLongText(text, instruction, this.cap(o), o.signal)).trim();
      return { type, content, model: this.model };
    }
    const schema = GENERATE_SCHEMAS[type as StructuredGenerateType];
    const results = await this.structured<Record<string, unknown>>(text, instruction, schema, o);
    const key = Object.keys(schema.properties as object)[0];
    const maxItems = ((schema.properties as Record<string, JsonSchema>)[key].maxItems as number) ?? 25;
    let items = mergeItems(
      results.map((r) => r[key] as Items),
      maxItems,
    );
    if (type === 'chapter_markers') items = locateChapters(text, items as { title: string; starts_with: string }[]);
    return { type, content: { [key]: items }, model: this.model };
  }
}

/** Concatenates item lists of several chunks, drops duplicates (same first field) and empty items. */
function mergeItems(lists: Items[], maxItems: number): Items {
  const seen = new Set<string>();
  const out: Items = [];
  for (const item of lists.flat()) {
    const first = Object.values(item)[0];
    const k = typeof first === 'string' ? first.trim().toLowerCase() : JSON.stringify(item);
    if (!k || seen.has(k)) continue;
    seen.add(k);
    out.push(item);
  }
  return out.slice(0, Math.max(maxItems, lists.length > 1 ? maxItems * 2 : maxItems));
}

const TIMESTAMP = /\[?\b(?:(\d{1,2}):)?(\d{1,2}):(\d{2})(?:[.,]\d+)?\]?/g;

/** Adds `offset` (index of starts_with in the text, -1 when not found) and `timestamp` (seconds of the last timestamp written in the text before it, or null). */
export function locateChapters(text: string, chapters: { title: string; starts_with: string }[]): Items {
  const stamps = [...text.matchAll(TIMESTAMP)].map((m) => ({ at: m.index!, s: Number(m[1] ?? 0) * 3600 + Number(m[2]) * 60 + Number(m[3]) }));
  let from = 0;
  return chapters.map((c) => {
    const needle = c.starts_with.trim();
    let offset = needle ? text.indexOf(needle, from) : -1;
    if (offset < 0 && needle) offset = text.indexOf(needle);
    if (offset >= 0) from = offset + 1;
    const before = offset >= 0 ? stamps.filter((t) => t.at <= offset).at(-1) : undefined;
    return { title: c.title, starts_with: c.starts_with, offset, timestamp: before ? before.s : null };
  });
}
