/* eslint-disable @typescript-eslint/no-explicit-any -- response bodies are checked by the assertions */
/**
 * POST /api/v1/transcripts/:id/translate/ on the MADLAD engine (TRANSLATE_MODEL=madlad-mini-random): every segment
 * translated on its own with its times and speaker kept, as JSON or as SRT/VTT captions; owner-scoped (another
 * account's transcript is a 404); bad target or format → 400.
 */
import { parseLanguageCode } from '../../src/ai/languages.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aiConfigFromEnv } from '../../config/ai.ts';
import { AiModels } from '../../src/ai/ai-models.ts';
import { LlmServices } from '../../src/ai/llm-services.ts';
import { AccessControl } from '../../src/auth/access-control.ts';
import type { Segment } from '../../src/formats/transcript.ts';
import type { HttpServer } from '../../src/http/http-server.ts';
import { registerTranscriptAiRoutes } from '../../src/http/routes/transcript-ai-routes.ts';
import { ModelRegistry } from '../../src/models/registry.ts';
import { createStores, type Stores } from '../../src/store/index.ts';
import { testHttpServer } from '../helpers/http-server.ts';
import { paidUser } from '../helpers/accounts.ts';
import { MODELS_DIR } from '../helpers/paths.ts';
import { DB_VARIANTS, type TestDatabase } from '../store/test-databases.ts';

const seg = (start: number, text: string, speaker: string): Segment => ({ start, end: start + 2.5, text, speaker, confidence: 0.9, words: [{ word: 'x', start, end: start + 0.1 }] });
const SEGMENTS: Segment[] = [seg(0, ' The quarterly budget meeting is moved to Friday afternoon.', 'Anna'), seg(3, '   ', 'Ben'), seg(5, ' Please send the updated plan to everyone tonight.', 'Ben')];
const variant = DB_VARIANTS.find((v) => v.skip === null)!;

let models: AiModels;
let t: TestDatabase;
let s: Stores;
let server: HttpServer;
let base: string;

beforeAll(async () => {
  const registry = await ModelRegistry.create(MODELS_DIR);
  models = new AiModels({ registry, config: aiConfigFromEnv({ LLM_MODEL: 'no-such-llm', TRANSLATE_MODEL: 'madlad-mini-random' }), intraOpThreads: 1 });
  t = await variant.open();
  s = createStores(t.db);
  server = testHttpServer();
  registerTranscriptAiRoutes(server, {
    access: new AccessControl({ accounts: s.accounts, usage: s.usage, config: {} }),
    transcripts: s.transcripts,
    chat: s.transcriptChat,
    ai: models,
    services: new LlmServices({ llm: () => models.llm(), maxTokens: 32, seq2seqTranslator: (m) => models.translator(m) }),
  });
  await server.start();
  base = `http://127.0.0.1:${server.port}`;
});

afterAll(async () => {
  await server?.close();
  await models?.close();
  await t?.dispose();
});

const user = (email: string) => paidUser(s, base, email);

describe('POST /api/v1/transcripts/:id/translate/', () => {
  it('translates each segment alone, keeping its times and speaker; SRT and VTT captions at those times', async () => {
    const anna = await user('anna@example.com');
    const { id } = await s.transcripts.save({ ownerId: anna.account.id, model: 'small', language: 'en', duration: 8, source: 'file', filename: 'm.wav', segments: SEGMENTS, text: '' });
    const r = await anna.post(`/api/v1/transcripts/${id}/translate/`, { target: 'es', max_new_tokens: 8 });
    expect(r.status).toBe(200);
    const b: any = await r.json();
    const translator = (await models.translator())!;
    const alone = await Promise.all(
      [SEGMENTS[0], SEGMENTS[2]].map(async (x) => (await translator.translate([x.text.trim()], parseLanguageCode('en')!, parseLanguageCode('es')!, undefined, { maxNewTokens: 8 }))[0]),
    );
    expect(b).toMatchObject({ transcript_id: id, source_language: 'en', target_language: 'es', model: 'madlad-mini-random' });
    expect(b.segments).toEqual([
      { start: 0, end: 2.5, text: alone[0], speaker: 'Anna' },
      { start: 5, end: 7.5, text: alone[1], speaker: 'Ben' },
    ]);
    const srt = await (await anna.post(`/api/v1/transcripts/${id}/translate/`, { target: 'es', format: 'srt', max_new_tokens: 8 })).text();
    expect(srt).toMatch(/^1\n00:00:00,000 --> /);
    expect(srt).toContain('00:00:05,000 --> ');
    expect(srt).toContain('00:00:07,500');
    const vtt = await anna.post(`/api/v1/transcripts/${id}/translate/`, { target: 'es', format: 'vtt', max_new_tokens: 8 });
    expect(vtt.headers.get('content-type')).toMatch(/text\/vtt/);
    expect(await vtt.text()).toMatch(/^WEBVTT\n\n00:00:00\.000 --> /);
  });

  it("another account's transcript is a 404; a bad target or format is a 400", async () => {
    const anna = await user('anna2@example.com');
    const ben = await user('ben@example.com');
    const { id } = await s.transcripts.save({ ownerId: anna.account.id, model: 'small', language: 'en', duration: 8, source: 'file', segments: SEGMENTS, text: '' });
    expect((await ben.post(`/api/v1/transcripts/${id}/translate/`, { target: 'es', max_new_tokens: 4 })).status).toBe(404);
    const badTarget = await anna.post(`/api/v1/transcripts/${id}/translate/`, { target: 'klingon' });
    expect(badTarget.status).toBe(400);
    expect(((await badTarget.json()) as any).error).toMatch(/target/);
    const lacks = await anna.post(`/api/v1/transcripts/${id}/translate/`, { target: 'lv', max_new_tokens: 4 });
    expect(lacks.status).toBe(400);
    const badFormat = await anna.post(`/api/v1/transcripts/${id}/translate/`, { target: 'es', format: 'docx' });
    expect(badFormat.status).toBe(400);
    expect(((await badFormat.json()) as any).error).toMatch(/format must be one of json, srt, vtt, txt/);
  });
});
