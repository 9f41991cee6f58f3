import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AiService, locateChapters } from '../../src/ai/ai-service.ts';
import { splitByTokens } from '../../src/ai/chunking.ts';
import { conformToSchema, parseStructured, parseTruncatedJson } from '../../src/ai/structured.ts';
import { ANALYSIS_SCHEMAS, GENERATE_SCHEMAS } from '../../src/ai/prompts.ts';
import { chatOverTranscript, topKByCosine } from '../../src/ai/transcript-chat.ts';
import { EmbeddingService } from '../../src/pipeline/embedding-service.ts';
import type { ChatBackend, ChatMessage, ChatOptions } from '../../src/engines/llm/chat-backend.ts';
import { LocalLlm } from '../../src/engines/llm/local-llm.ts';
import { MODELS_DIR } from '../helpers/paths.ts';

describe('structured output repair', () => {
  it('closes JSON cut off by the token budget at the last complete value', () => {
    expect(parseTruncatedJson('{"a": [1, 2, {"b": "x"')).toEqual({ a: [1, 2, { b: 'x' }] });
    expect(parseTruncatedJson('{"a": [1, 2], "c": tr')).toEqual({ a: [1, 2] });
    expect(parseTruncatedJson('{"items": [{"q": "one"}, {"q": "tw')).toEqual({ items: [{ q: 'one' }, { q: 'tw' }] });
    expect(parseTruncatedJson('{"k": "v\\')).toEqual({ k: 'v' });
    expect(parseTruncatedJson('')).toBeNull();
  });
  it('conforms to the schema: defaults for missing fields, enums, caps', () => {
    const s = ANALYSIS_SCHEMAS.sentiment;
    expect(conformToSchema({ label: 'great', extra: 1 }, s)).toEqual({ label: 'positive', confidence: 'low', explanation: '' });
    expect(parseStructured('{"flashcards": [{"front": "a"', GENERATE_SCHEMAS.flashcards)).toEqual({ flashcards: [{ front: 'a', back: '' }] });
  });
});

describe('chunking', () => {
  it('splits by token count at sentence boundaries and never exceeds the limit', () => {
    const count = (s: string) => s.split(/\s+/).filter(Boolean).length;
    const text = Array.from({ length: 40 }, (_, i) => `Sentence number ${i} has exactly seven words.`).join(' ') + ' ' + 'word '.repeat(50);
    const chunks = splitByTokens(text, 20, count);
    for (const c of chunks) expect(count(c)).toBeLessThanOrEqual(20);
    expect(chunks.join(' ').split(/\s+/).filter(Boolean).length).toBe(count(text));
    expect(chunks[0].endsWith('words.')).toBe(true);
  });
  it('chapter markers get offsets and the timestamp written before them', () => {
    const text = '[00:00] Welcome everyone. [01:30] Now the budget. [1:02:03] Finally questions.';
    expect(
      locateChapters(text, [
        { title: 'Budget', starts_with: 'Now the budget' },
        { title: 'X', starts_with: 'not there' },
      ]),
    ).toEqual([
      { title: 'Budget', starts_with: 'Now the budget', offset: text.indexOf('Now the'), timestamp: 90 },
      { title: 'X', starts_with: 'not there', offset: -1, timestamp: null },
    ]);
  });
});

/** Counts the calls that reach the real model. */
class Counting implements ChatBackend {
  calls: { maxTokens: number; promptTokens: number }[] = [];
  constructor(private readonly inner: LocalLlm) {}
  get model() {
    return this.inner.model;
  }
  get contextSize() {
    return this.inner.contextSize;
  }
  countTokens(t: string) {
    return this.inner.countTokens(t);
  }
  async chat(m: ChatMessage[], o: ChatOptions) {
    const r = await this.inner.chat(m, o);
    this.calls.push({ maxTokens: o.maxTokens, promptTokens: r.promptTokens });
    return r;
  }
  close() {
    return Promise.resolve();
  }
}

describe('AiService and transcript chat on the fixture models', () => {
  let llm: LocalLlm;
  let embedder: EmbeddingService;
  beforeAll(async () => {
    llm = await LocalLlm.load({ modelPath: join(MODELS_DIR, 'qwen2-mini-random', 'qwen2-mini-random-f32.gguf'), modelId: 'qwen2-mini-random', contextSize: 512, sequences: 4, threads: 1 });
    embedder = await EmbeddingService.load({ dir: join(MODELS_DIR, 'minilm-mini-random'), modelId: 'minilm-mini-random', intraOpThreads: 1 });
  });
  afterAll(async () => {
    await llm?.close();
    await embedder?.close();
  });

  it('summarises a transcript longer than the context map-reduce, every call within the context', async () => {
    const backend = new Counting(llm);
    const ai = new AiService({ backend, maxTokens: 32 });
    const text = Array.from({ length: 120 }, (_, i) => `Speaker ${i % 3}: item ${i} of the agenda was discussed and the team agreed on next steps.`).join(' ');
    expect(llm.countTokens(text)).toBeGreaterThan(3 * llm.contextSize);
    const r = await ai.summarize(text, 'detailed');
    expect(r).toMatchObject({ style: 'detailed', model: 'qwen2-mini-random' });
    expect(backend.calls.length).toBeGreaterThan(4); // map calls + the final reduce
    for (const c of backend.calls) expect(c.promptTokens + c.maxTokens).toBeLessThanOrEqual(llm.contextSize);
    expect(backend.calls.at(-1)!.maxTokens).toBe(32);
  });

  it('topKByCosine ranks by cosine, ties by order', () => {
    const vs = [
      [1, 0],
      [0, 1],
      [1, 1],
      [0, 1],
    ];
    expect(topKByCosine([0, 2], vs, 3).map((x) => x.index)).toEqual([1, 3, 2]);
    expect(topKByCosine([0, 2], vs, 3)[0].score).toBeCloseTo(1);
  });

  it('chatOverTranscript retrieves the most similar segments as sources and answers within the budget', async () => {
    const segments = [
      { segment_order: 0, text: 'Welcome to the weekly planning meeting.' },
      { segment_order: 1, text: 'The quarterly budget meeting is moved to Friday afternoon.' },
      { segment_order: 2, text: 'Please review the design document before Tuesday.' },
      { segment_order: 3, text: 'Lunch will be served at noon.' },
    ];
    const question = 'The quarterly budget meeting is moved to Friday afternoon.';
    const history: ChatMessage[] = Array.from({ length: 30 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: `earlier turn ${i} `.repeat(10) }));
    const r = await chatOverTranscript({ question, segments, history, backend: llm, embedder, k: 2, maxTokens: 24 });
    expect(typeof r.answer).toBe('string');
    expect(r.sources).toHaveLength(2);
    expect(r.sources[0]).toMatchObject({ segment_order: 1, text: segments[1].text });
    expect(r.sources[0].score).toBeCloseTo(1, 4);
    expect(r.sources[0].score).toBeGreaterThanOrEqual(r.sources[1].score);
  });
});
