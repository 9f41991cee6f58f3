import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aiConfigFromEnv } from '../../config/ai.ts';
import { AiModels } from '../../src/ai/ai-models.ts';
import { LlmServices } from '../../src/ai/llm-services.ts';
import type { HttpServer } from '../../src/http/http-server.ts';
import { testHttpServer } from '../helpers/http-server.ts';
import { registerAiRoutes } from '../../src/http/routes/ai-routes.ts';
import { ModelRegistry } from '../../src/models/registry.ts';
import { readWav } from '../../src/audio/pcm.ts';
import { makeSilenceWav, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { decodeToPcm16k } from '../../src/audio/ffmpeg.ts';
import { StreamResampler } from '../../src/audio/resampler.ts';
import { medianF0Hz, speechRms } from '../../src/engines/tts/espeak-synthesizer.ts';
import { MODELS_DIR } from '../helpers/paths.ts';

const MAX_CHARS = 20_000;
const golden = JSON.parse(readFileSync(join(MODELS_DIR, 'minilm-mini-random', 'golden', 'golden.json'), 'utf8')) as { single: { text: string; embedding: number[] }[] };

interface Instance {
  server: HttpServer;
  models: AiModels;
  base: string;
}

async function startInstance(env: Record<string, string>): Promise<Instance> {
  const registry = await ModelRegistry.create(MODELS_DIR);
  const config = aiConfigFromEnv({ LLM_MODEL: 'qwen2-mini-random', EMBED_MODEL: 'minilm-mini-random', LLM_CONTEXT_SIZE: '512', LLM_THREADS: '1', LLM_MAX_TOKENS: '48', ...env });
  const models = new AiModels({ registry, config, intraOpThreads: 1 });
  const server = testHttpServer({ maxJsonBodyBytes: 1024 * 1024 });
  registerAiRoutes(server, {
    models,
    services: new LlmServices({ llm: () => models.llm(), maxTokens: config.llm.maxTokens }),
    maxTextChars: MAX_CHARS,
    maxTokens: config.llm.maxTokens,
    maxUploadBytes: 10 * 1024 * 1024,
    tmpDir: mkdtempSync(join(tmpdir(), 'ai-routes-')),
  });
  await server.start();
  return { server, models, base: `http://127.0.0.1:${server.port}` };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const j = (r: Response): Promise<any> => r.json();

const post = (base: string, path: string, body: unknown) => fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

async function sse(res: Response): Promise<Record<string, unknown>[]> {
  const text = await res.text();
  return text
    .split('\n\n')
    .filter((l) => l.startsWith('data: '))
    .map((l) => l.slice(6))
    .map((d) => (d === '[DONE]' ? { done: true } : JSON.parse(d)));
}

const TRANSCRIPT = 'Anna: We agreed to ship the release on Friday. Ben: I will fix the login bug first; mail me at ben@example.com or call +1 415 555 2671. Anna: Great, thanks Ben!';

describe('AI routes on the local fixture models', () => {
  let a: Instance;
  beforeAll(async () => {
    a = await startInstance({ LLM_SEQUENCES: '4', LLM_MAX_QUEUE: '8' });
  });
  afterAll(async () => {
    await a?.server.close();
    await a?.models.close();
  });

  it('POST /v1/summarize: the spec shape, default style, validation', async () => {
    const r = await post(a.base, '/v1/summarize', { text: TRANSCRIPT });
    expect(r.status).toBe(200);
    const body = await j(r);
    expect(Object.keys(body).sort()).toEqual(['model', 'style', 'summary']);
    expect(body).toMatchObject({ style: 'brief', model: 'qwen2-mini-random' });
    expect(typeof body.summary).toBe('string');
    expect(body.summary.length).toBeGreaterThan(0);
    const bullets = await post(a.base, '/v1/summarize', { text: TRANSCRIPT, style: 'bullet_points', max_tokens: 8 });
    expect((await j(bullets)).style).toBe('bullet_points');

    const bad = await post(a.base, '/v1/summarize', { text: TRANSCRIPT, style: 'haiku' });
    expect(bad.status).toBe(400);
    expect((await j(bad)).error).toMatch(/style must be one of brief, detailed, action_items, bullet_points/);
    for (const body of [{}, { text: '' }, { text: '   ' }, { text: 42 }]) {
      const r2 = await post(a.base, '/v1/summarize', body);
      expect(r2.status).toBe(400);
      expect((await j(r2)).error).toMatch(/text is required/);
    }
    const big = await post(a.base, '/v1/summarize', { text: 'x'.repeat(MAX_CHARS + 1) });
    expect(big.status).toBe(413);
    expect((await j(big)).error).toMatch(/limit is 20000/);
  });

  it('POST /v1/analyze: typed JSON for every type, pii_redact deterministic', async () => {
    const shapes: Record<string, (r: Record<string, unknown>) => void> = {
      sentiment: (r) => expect(['positive', 'neutral', 'negative', 'mixed']).toContain(r.label),
      topics: (r) => expect(Array.isArray(r.topics)).toBe(true),
      entities: (r) => expect(Array.isArray(r.entities)).toBe(true),
      action_items: (r) => expect(Array.isArray(r.action_items)).toBe(true),
      questions: (r) => expect(Array.isArray(r.questions)).toBe(true),
      pii_redact: (r) => {
        expect(r.redacted_text).toContain('[EMAIL]');
        expect(r.redacted_text).toContain('[PHONE]');
        expect(r.redacted_text).not.toContain('ben@example.com');
        expect((r.spans as { type: string }[]).map((s) => s.type)).toEqual(expect.arrayContaining(['email', 'phone']));
        // Offsets and types only: the response never carries the values it was asked to remove.
        for (const s of r.spans as object[]) expect(Object.keys(s).sort()).toEqual(['end', 'start', 'type']);
        expect(JSON.stringify(r)).not.toMatch(/ben@example\.com|555 2671/);
      },
    };
    const results = await Promise.all(Object.keys(shapes).map((type) => post(a.base, '/v1/analyze', { text: TRANSCRIPT, type }).then(j)));
    Object.keys(shapes).forEach((type, i) => {
      expect(results[i]).toMatchObject({ type, model: 'qwen2-mini-random' });
      shapes[type](results[i].result);
    });
    const bad = await post(a.base, '/v1/analyze', { text: TRANSCRIPT, type: 'vibes' });
    expect(bad.status).toBe(400);
    expect((await j(bad)).error).toMatch(/type must be one of sentiment, topics, entities, action_items, questions, pii_redact/);
  });

  it('POST /v1/generate: all ten types; structured ones are JSON of their schema', async () => {
    const types = ['blog_post', 'social_media', 'newsletter', 'key_quotes', 'show_notes', 'meeting_notes', 'study_guide', 'flashcards', 'quiz', 'chapter_markers'];
    const results = await Promise.all(types.map((type) => post(a.base, '/v1/generate', { text: TRANSCRIPT, type, max_tokens: 24 }).then(j)));
    results.forEach((r, i) => expect(r).toMatchObject({ type: types[i], model: 'qwen2-mini-random' }));
    const by = Object.fromEntries(results.map((r) => [r.type, r.content]));
    for (const t of ['blog_post', 'social_media', 'newsletter', 'show_notes', 'meeting_notes', 'study_guide']) expect(typeof by[t]).toBe('string');
    expect(Array.isArray(by.key_quotes.quotes)).toBe(true);
    expect(Array.isArray(by.flashcards.flashcards)).toBe(true);
    expect(Array.isArray(by.quiz.questions)).toBe(true);
    expect(Array.isArray(by.chapter_markers.chapters)).toBe(true);
    const bad = await post(a.base, '/v1/generate', { text: TRANSCRIPT, type: 'poem' });
    expect(bad.status).toBe(400);
    expect((await j(bad)).error).toMatch(/blog_post, social_media, newsletter, key_quotes, show_notes, meeting_notes, study_guide, flashcards, quiz, chapter_markers/);
  });

  it('POST /v1/translate: single and batch shapes, language validation', async () => {
    const one = await post(a.base, '/v1/translate', { text: 'Hello world', target: 'es' });
    expect(one.status).toBe(200);
    const b1 = await j(one);
    expect(Object.keys(b1).sort()).toEqual(['source_language', 'target_language', 'translated_text']);
    expect(b1).toMatchObject({ source_language: 'en', target_language: 'es' });
    const batch = await post(a.base, '/v1/translate', { texts: ['Hello', 'World'], target: 'fr', source: 'en' });
    const b2 = await j(batch);
    expect(b2.translations).toHaveLength(2);
    expect(typeof b2.translations[0].translated_text).toBe('string');
    for (const [body, re] of [
      [{ text: 'Hi', target: 'xx' }, /target must be a language code/],
      [{ text: 'Hi', target: 'es', source: 'klingon' }, /source must be a language code/],
      [{ text: 'Hi' }, /target is required/],
      [{ target: 'es' }, /text \(or texts\) is required/],
      [{ texts: [], target: 'es' }, /non-empty array/],
    ] as const) {
      const r = await post(a.base, '/v1/translate', body);
      expect(r.status).toBe(400);
      expect((await j(r)).error).toMatch(re);
    }
  });

  it('POST /v1/embed: golden vectors through HTTP, model validation, 503 with the pull command', async () => {
    const texts = golden.single.slice(0, 3).map((g) => g.text);
    const r = await post(a.base, '/v1/embed', { texts });
    expect(r.status).toBe(200);
    const body = await j(r);
    expect(body.dimensions).toBe(384);
    body.embeddings.forEach((e: number[], i: number) => e.forEach((v, d) => expect(Math.abs(v - golden.single[i].embedding[d])).toBeLessThan(1e-5)));
    const missing = await post(a.base, '/v1/embed', { texts, model: 'all-minilm-l6-v2' });
    expect(missing.status).toBe(503);
    expect((await j(missing)).error).toMatch(/npm run models:pull -- all-minilm-l6-v2/);
    const unknown = await post(a.base, '/v1/embed', { texts, model: 'nope' });
    expect(unknown.status).toBe(400);
    expect((await post(a.base, '/v1/embed', { texts: [] })).status).toBe(400);
  });

  it('POST /v1/chat/completions: OpenAI shape, SSE streaming, json_schema, 429 with Retry-After when the queue is full', async () => {
    const msgs = [{ role: 'user', content: 'Say hi' }];
    const r = await post(a.base, '/v1/chat/completions', { model: 'whatever', messages: msgs, max_tokens: 12 });
    const c = await j(r);
    expect(c).toMatchObject({
      object: 'chat.completion',
      model: 'qwen2-mini-random',
      choices: [{ index: 0, message: { role: 'assistant' }, finish_reason: 'length' }],
      usage: { completion_tokens: 12 },
    });

    const s = await post(a.base, '/v1/chat/completions', { messages: msgs, max_tokens: 12, stream: true, stream_options: { include_usage: true } });
    expect(s.headers.get('content-type')).toMatch(/text\/event-stream/);
    const events = await sse(s);
    expect(events.at(-1)).toEqual({ done: true });
    const deltas = events.flatMap((e) => ((e.choices as { delta: { content?: string } }[] | undefined) ?? []).map((ch) => ch.delta.content ?? ''));
    expect(deltas.join('')).toBe(c.choices[0].message.content);
    expect(events.find((e) => e.usage)).toMatchObject({ usage: { completion_tokens: 12 } });

    const js = await post(a.base, '/v1/chat/completions', {
      messages: msgs,
      max_tokens: 48,
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] } } },
    });
    expect(typeof JSON.parse((await j(js)).choices[0].message.content).ok).toBe('boolean');

    // 4 sequences + 8 queued: of 16 concurrent requests some get 429.
    const long = { messages: msgs, max_tokens: 48 };
    const all = await Promise.all(Array.from({ length: 16 }, () => post(a.base, '/v1/chat/completions', long)));
    expect(all.filter((x) => x.status === 200).length).toBeGreaterThanOrEqual(12);
    const limited = all.filter((x) => x.status === 429);
    expect(limited.length).toBeGreaterThanOrEqual(1);
    expect(Number(limited[0].headers.get('retry-after'))).toBeGreaterThan(0);
    const bad = await post(a.base, '/v1/chat/completions', { messages: [] });
    expect(bad.status).toBe(400);
  });

  it('POST /v1/enhance-audio: multipart file in, 48 kHz WAV of the same duration out; 400 without a file', async () => {
    const speech = await makeSpeechWav('Hello there, this is a test.', { sampleRate: 16000 });
    const input = readFileSync(speech.path);
    const form = new FormData();
    form.append('file', new Blob([input], { type: 'audio/wav' }), 'speech.wav');
    const r = await fetch(`${a.base}/v1/enhance-audio`, { method: 'POST', body: form });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('audio/wav');
    const out = readWav(Buffer.from(await r.arrayBuffer()));
    expect(out.sampleRate).toBe(48000);
    expect(out.samples.length).toBe(readWav(input).samples.length * 3);
    expect(Number(r.headers.get('x-output-loudness-lufs'))).toBeCloseTo(-23, 0);
    const none = new FormData();
    none.append('x', '1');
    expect((await fetch(`${a.base}/v1/enhance-audio`, { method: 'POST', body: none })).status).toBe(400);
  });

  it('POST /v1/tts: reference + text → WAV in a voice of matching pitch, X-Duration and X-Generation-Time', async () => {
    const REF = 'Hello there, this is my voice. I am recording a short sample for the speech synthesizer.';
    const tts = async (voice: string) => {
      const ref = await makeSpeechWav(REF, { voice, sampleRate: 16000 });
      const form = new FormData();
      form.append('reference', new Blob([readFileSync(ref.path)], { type: 'audio/wav' }), 'ref.wav');
      form.append('text', 'Good morning everyone, and welcome to the weekly meeting.');
      const r = await fetch(`${a.base}/v1/tts`, { method: 'POST', body: form });
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe('audio/wav');
      const wav = readWav(Buffer.from(await r.arrayBuffer()));
      expect(Number(r.headers.get('x-duration'))).toBeCloseTo(wav.durationS, 2);
      expect(wav.durationS).toBeGreaterThan(1.5);
      expect(Number(r.headers.get('x-generation-time'))).toBeGreaterThan(0);
      const to16k = await StreamResampler.create(wav.sampleRate, 16_000);
      const out16k = to16k.process(wav.samples);
      to16k.close();
      const refF0 = medianF0Hz(await decodeToPcm16k(ref.path))!;
      return { refF0, outF0: medianF0Hz(out16k)!, engine: r.headers.get('x-tts-engine')!, refRms: speechRms(await decodeToPcm16k(ref.path), 16_000), outRms: speechRms(out16k, 16_000) };
    };
    const high = await tts('en+f4');
    const low = await tts('en-us+m7');
    expect(high.refF0).toBeGreaterThan(low.refF0 * 1.4);
    for (const v of [high, low]) {
      expect(Math.abs(v.outF0 - v.refF0) / v.refF0).toBeLessThan(0.1); // the voice's pitch is matched
      expect(Math.abs(20 * Math.log10(v.outRms / v.refRms))).toBeLessThan(1.5); // and its loudness
      expect(v.engine).toMatch(/^espeak-ng voice .* \(matched to the reference: pitch \d+ Hz, loudness; not a voice clone\)$/);
    }
    expect(high.engine).toMatch(/voice en\+f3/);
    expect(low.engine).toMatch(/voice en pitch/);
  });

  it('POST /v1/tts errors: no text, no reference, too short/long, silent, not audio, unknown language, text too long', async () => {
    const ref = readFileSync((await makeSpeechWav('Hello there, this is my voice. I am recording a short sample for the test of errors.', { sampleRate: 16000 })).path);
    const send = async (fields: Record<string, string>, reference: Buffer | null = ref) => {
      const form = new FormData();
      if (reference) form.append('reference', new Blob([reference], { type: 'audio/wav' }), 'ref.wav');
      for (const [k, v] of Object.entries(fields)) form.append(k, v);
      const r = await fetch(`${a.base}/v1/tts`, { method: 'POST', body: form });
      return { status: r.status, error: (await j(r)).error as string };
    };
    expect(await send({})).toEqual({ status: 400, error: expect.stringMatching(/Missing text/) });
    expect(await send({ text: 'hi' }, null)).toEqual({ status: 400, error: expect.stringMatching(/Missing reference: send 3–10 s/) });
    const short = readFileSync((await makeSpeechWav('Hi.', { sampleRate: 16000 })).path);
    expect(await send({ text: 'hi' }, short)).toEqual({ status: 400, error: expect.stringMatching(/reference is [\d.]+ s long; send 3–10 s/) });
    const long = readFileSync(await makeSilenceWav(31));
    expect(await send({ text: 'hi' }, long)).toEqual({ status: 400, error: expect.stringMatching(/reference is 31\.0 s long/) });
    const silent = readFileSync(await makeSilenceWav(5, { noiseAmplitude: 0.05 }));
    expect(await send({ text: 'hi' }, silent)).toEqual({ status: 400, error: expect.stringMatching(/no voiced speech/) });
    expect((await send({ text: 'hi' }, Buffer.from('this is not audio at all'))).status).toBe(400);
    expect(await send({ text: 'hi', language: 'xx' })).toEqual({ status: 400, error: expect.stringMatching(/language: espeak-ng has no voice for 'xx'/) });
    expect(await send({ text: 'x'.repeat(5001) })).toEqual({ status: 413, error: expect.stringMatching(/text is 5001 characters long; the limit is 5000/) });
  });

  describe('with LLM_BASE_URL pointing at a second instance (external OpenAI-compatible backend)', () => {
    let b: Instance;
    beforeAll(async () => {
      b = await startInstance({ LLM_BASE_URL: `${a.base}/v1`, LLM_MODEL: 'remote-qwen', LLM_CONTEXT_SIZE: '512' });
    });
    afterAll(async () => {
      await b?.server.close();
      await b?.models.close();
    });

    it('summarize, analyze (json_schema), translate and streamed chat go through the other server', async () => {
      const s = await j(await post(b.base, '/v1/summarize', { text: TRANSCRIPT, max_tokens: 16 }));
      expect(s).toMatchObject({ style: 'brief', model: 'remote-qwen' });
      expect(s.summary.length).toBeGreaterThan(0);
      const an = await j(await post(b.base, '/v1/analyze', { text: TRANSCRIPT, type: 'sentiment' }));
      expect(['positive', 'neutral', 'negative', 'mixed']).toContain(an.result.label);
      const tr = await j(await post(b.base, '/v1/translate', { texts: ['Hello'], target: 'de' }));
      expect(tr.translations).toHaveLength(1);
      const events = await sse(await post(b.base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 8, stream: true }));
      expect(events.at(-1)).toEqual({ done: true });
      expect(events.filter((e) => (e.choices as { delta: { content?: string } }[] | undefined)?.[0]?.delta?.content).length).toBeGreaterThan(0);
    });
  });
});

describe('AI routes without the models installed', () => {
  it('503 with the pull command for the default LLM', async () => {
    const c = await startInstance({ LLM_MODEL: 'qwen2.5-1.5b-instruct' });
    try {
      const r = await post(c.base, '/v1/summarize', { text: 'hello' });
      expect(r.status).toBe(503);
      expect((await j(r)).error).toMatch(/npm run models:pull -- qwen2.5-1.5b-instruct/);
    } finally {
      await c.server.close();
      await c.models.close();
    }
  });
});
