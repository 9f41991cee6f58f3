/**
 * POST /v1/translate on the MADLAD engine (TRANSLATE_MODEL=madlad-mini-random): the text equals the golden greedy
 * tokens decoded, for single and batch requests; a text of several sentences is each sentence translated alone and
 * rejoined; concurrent requests share batches; a target the model lacks is a 400 that says where the codes are.
 */
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aiConfigFromEnv } from '../../config/ai.ts';
import { AiModels } from '../../src/ai/ai-models.ts';
import { LlmServices } from '../../src/ai/llm-services.ts';
import { parseLanguageCode } from '../../src/ai/languages.ts';
import { Seq2SeqTranslator, splitSentences } from '../../src/ai/seq2seq-translator.ts';
import { TranslationEngine } from '../../src/engines/translation/index.ts';
import type { HttpServer } from '../../src/http/http-server.ts';
import { registerAiRoutes } from '../../src/http/routes/ai-routes.ts';
import { ModelRegistry } from '../../src/models/registry.ts';
import { testHttpServer } from '../helpers/http-server.ts';
import { MODELS_DIR } from '../helpers/paths.ts';

const golden: { single: Array<{ target: string; text: string; greedy: number[]; greedy_text: string }> } = JSON.parse(
  readFileSync(join(MODELS_DIR, 'madlad-mini-random', 'golden', 'golden.json'), 'utf8'),
);

let server: HttpServer;
let models: AiModels;
let base: string;

beforeAll(async () => {
  const registry = await ModelRegistry.create(MODELS_DIR);
  // LLM_MODEL names a model that is not there: translation must not touch the chat model
  const config = aiConfigFromEnv({ LLM_MODEL: 'no-such-llm', TRANSLATE_MODEL: 'madlad-mini-random', EMBED_MODEL: 'minilm-mini-random' });
  models = new AiModels({ registry, config, intraOpThreads: 1 });
  server = testHttpServer({ maxJsonBodyBytes: 1024 * 1024 });
  registerAiRoutes(server, {
    models,
    services: new LlmServices({ llm: () => models.llm(), maxTokens: 64, seq2seqTranslator: (m) => models.translator(m) }),
    maxTextChars: 20_000,
    maxTokens: 64,
    maxUploadBytes: 1024 * 1024,
    tmpDir: mkdtempSync(join(tmpdir(), 'translate-madlad-')),
  });
  await server.start();
  base = `http://127.0.0.1:${server.port}`;
});

afterAll(async () => {
  await server?.close();
  await models?.close();
});

const post = (body: unknown) => fetch(`${base}/v1/translate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('POST /v1/translate on MADLAD', () => {
  it.each(golden.single.map((c) => [c.target, c] as const))('%s: translated_text is the golden greedy text', async (_t, c) => {
    const r = await post({ text: c.text, target: c.target, max_new_tokens: 16 });
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ translated_text: c.greedy_text.trim(), source_language: 'en', target_language: c.target });
  });

  it('batch texts, concurrent requests: each as alone (sentences of all requests share the model batches)', async () => {
    const c = golden.single[0];
    const [a, b] = await Promise.all([post({ texts: [c.text, c.text], target: c.target, max_new_tokens: 16 }), post({ text: c.text, target: c.target, max_new_tokens: 16 })]);
    expect(await a.json()).toEqual({ translations: [{ translated_text: c.greedy_text.trim() }, { translated_text: c.greedy_text.trim() }] });
    expect((await b.json()).translated_text).toBe(c.greedy_text.trim());
    expect((await models.translator()!).stats.maxBatchSize).toBeGreaterThan(1);
  });

  it('a text of two sentences is each sentence translated alone, rejoined', async () => {
    const [s1, s2] = [golden.single[0].text, golden.single[1].text];
    const one = async (text: string) => (await (await post({ text, target: 'es', max_new_tokens: 8 })).json()).translated_text as string;
    const joined = await one(`${s1} ${s2}`);
    expect(joined).toBe(`${await one(s1)} ${await one(s2)}`);
  });

  it('a target language the model lacks → 400 naming it and how to list the codes; unknown codes and bad budgets → 400', async () => {
    const lacks = await post({ text: 'Hello', target: 'lv', max_new_tokens: 4 });
    expect(lacks.status).toBe(400);
    expect((await lacks.json()).error).toMatch(/target: unknown target language "lv".*--list-targets/);
    expect((await post({ text: 'Hello', target: 'xx' })).status).toBe(400);
    const budget = await post({ text: 'Hello', target: 'es', max_new_tokens: 0 });
    expect(budget.status).toBe(400);
    expect((await budget.json()).error).toMatch(/max_new_tokens/);
  });
});

describe('codes outside ICU (MADLAD has 400+ languages and script tags)', () => {
  // the fixture with two tags renamed, same ids: <2br> → <2btx> (Batak Karo: ICU has no name for it) and
  // <2eu> → <2zh_Latn> (MADLAD's romanized-Chinese tag); a renamed tag must translate exactly as the original
  const renamed = () => {
    const dir = mkdtempSync(join(tmpdir(), 'madlad-tags-'));
    cpSync(join(MODELS_DIR, 'madlad-mini-random'), dir, { recursive: true });
    const tokPath = join(dir, 'tokenizer.json');
    const tok = JSON.parse(readFileSync(tokPath, 'utf8'));
    for (const a of tok.added_tokens) a.content = ({ '<2br>': '<2btx>', '<2eu>': '<2zh_Latn>' } as Record<string, string>)[a.content] ?? a.content;
    writeFileSync(tokPath, JSON.stringify(tok));
    return dir;
  };

  it('a code the model has but ICU does not know is translated (by its tag), as are zh_Latn / zh-Latn', async () => {
    const engine = await TranslationEngine.load(renamed(), { intraOpThreads: 1 });
    const original = (await models.translator())!;
    const t = new Seq2SeqTranslator(engine);
    try {
      const text = [golden.single[0].text];
      const en = parseLanguageCode('en')!;
      const run = (tr: Seq2SeqTranslator, code: string) => tr.translate(text, en, parseLanguageCode(code)!, undefined, { maxNewTokens: 8 });
      const [br, eu] = [await run(original, 'br'), await run(original, 'eu')];
      expect(br).not.toEqual(eu);
      expect(parseLanguageCode('btx')).toMatchObject({ code: 'btx', known: false });
      expect(await run(t, 'btx')).toEqual(br);
      expect(await run(t, 'zh_Latn')).toEqual(eu);
      expect(await run(t, 'zh-Latn')).toEqual(eu);
      expect(t.targets).toContain('btx');
      expect(t.targets).not.toContain('br');
    } finally {
      await t.close();
    }
  });

  it('a well-formed code neither the model nor ICU knows → 400 listing where the codes are; a malformed one → 400', async () => {
    const r = await post({ text: 'Hello', target: 'btx', max_new_tokens: 4 });
    expect(r.status).toBe(400);
    expect((await r.json()).error).toMatch(/target: unknown target language "btx".*--list-targets/);
    const bad = await post({ text: 'Hello', target: 'not a code' });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error).toMatch(/target must be a language code/);
  });
});

describe('translation model selection and languages', () => {
  it('GET /v1/translate/languages lists the <2xx> targets of TRANSLATE_MODEL or ?model=', async () => {
    const r = await fetch(`${base}/v1/translate/languages`);
    expect(r.status).toBe(200);
    const b = await r.json();
    expect(b.model).toBe('madlad-mini-random');
    expect(b.languages).toHaveLength(50);
    for (const c of golden.single) expect(b.languages).toContain(c.target);
    expect((await fetch(`${base}/v1/translate/languages?model=madlad-mini-random`)).status).toBe(200);
    const wrongKind = await fetch(`${base}/v1/translate/languages?model=whisper-mini-random`);
    expect(wrongKind.status).toBe(400);
    expect((await wrongKind.json()).error).toMatch(/translation/);
  });

  it('"model" names the translation model; another kind of model is a 400', async () => {
    const c = golden.single[1];
    const r = await post({ text: c.text, target: c.target, max_new_tokens: 16, model: 'madlad-mini-random' });
    expect((await r.json()).translated_text).toBe(c.greedy_text.trim());
    const bad = await post({ text: c.text, target: c.target, model: 'whisper-mini-random' });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error).toMatch(/whisper-mini-random.*translation/);
  });
});

describe('splitSentences', () => {
  it('keeps each sentence with the whitespace that followed it; long sentences are cut at spaces', () => {
    expect(splitSentences('One. Two?  Three')).toEqual([
      ['One.', ' '],
      ['Two?', '  '],
      ['Three', ''],
    ]);
    const long = Array.from({ length: 50 }, () => 'word').join(' ');
    const pieces = splitSentences(long, 40);
    expect(pieces.every(([p]) => p.length <= 40)).toBe(true);
    expect(pieces.map(([p]) => p).join(' ')).toBe(long);
  });
});
