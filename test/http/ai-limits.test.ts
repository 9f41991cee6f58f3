/**
 * Anonymous use of the costly AI endpoints is limited, and LLM work is queued fairly per tenant
 * (issue 13). A whole App on the embedded database with the fixture models (qwen2-mini-random on
 * one thread and one sequence, minilm-mini-random): every AI endpoint draws on a per-address daily
 * allowance of its own, anonymous bodies have small caps (refused before admission, so they spend
 * nothing), keys keep the full limits, and a tenant's short summarize is not queued behind another
 * tenant's long, chunked one. Order is asserted, never time.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { loadConfig } from '../../config/config.ts';
import { App } from '../../src/app.ts';
import type { LocalLlm } from '../../src/engines/llm/local-llm.ts';
import { makeSilenceWav } from '../helpers/audio-fixtures.ts';
import { testServerEnv } from '../helpers/live-env.ts';
import { paidKey } from '../helpers/accounts.ts';

const logger = pino({ level: 'silent' });
const gpu = { available: false, name: null, memoryMb: null, detail: 'test' } as never;
let app: App;
let dataDir: string;
let base: string;

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-ai-limits-'));
  const config = loadConfig(
    testServerEnv(dataDir, {
      LOG_LEVEL: 'silent',
      LLM_MODEL: 'qwen2-mini-random',
      EMBED_MODEL: 'minilm-mini-random',
      LLM_CONTEXT_SIZE: '512',
      LLM_THREADS: '1',
      LLM_SEQUENCES: '1',
      LLM_MAX_TOKENS: '8',
      ANON_DAILY_AI_LIMIT: '3',
      ANON_AI_MAX_REQUEST_KB: '2',
      ANON_AI_MAX_UPLOAD_MB: '1',
    }),
  );
  app = await new App(config, { logger, gpu }).start();
  base = `http://127.0.0.1:${app.port}`;
});

afterAll(async () => {
  await app?.close();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

const post = (p: string, body: unknown, key?: string) =>
  fetch(`${base}${p}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) }, body: JSON.stringify(body) });

async function postFile(p: string, field: string, file: string, fields: Record<string, string> = {}, key?: string) {
  const form = new FormData();
  form.append(field, await fs.openAsBlob(file), path.basename(file));
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  return fetch(`${base}${p}`, { method: 'POST', body: form, headers: key ? { authorization: `Bearer ${key}` } : {} });
}

/** The message of a reference `{"error": "..."}` or of an OpenAI route's `{"error": {"message"}}`. */
const error = async (r: Response) => {
  const e = ((await r.json()) as { error: string | { message: string } }).error;
  return typeof e === 'string' ? e : e.message;
};
const aiUnitsSpent = async () => Number((await app.stores.db.query<{ n: number }>(`SELECT COALESCE(sum(count), 0)::int AS n FROM anon_daily_ai_usage`))[0].n);

describe('anonymous AI limits', () => {
  it('caps anonymous bodies (JSON and uploads) far below the key limits, before admission', async () => {
    const text = 'We agreed to ship on Friday. '.repeat(100); // ~2.9 KB of JSON
    const r = await post('/v1/summarize', { text, max_tokens: 4 });
    expect(r.status).toBe(413);
    expect(await error(r)).toMatch(/Anonymous AI requests are limited to request bodies of 2 KB \(this one is 3 KB\).*API key/);
    // A 2 MB upload (1 MB anonymous cap) to enhance-audio and tts.
    const big = await makeSilenceWav(65, { noiseAmplitude: 0.01 });
    const e = await postFile('/v1/enhance-audio', 'file', big);
    expect(e.status).toBe(413);
    expect(await error(e)).toMatch(/limited to uploads of 1 MB/);
    expect((await postFile('/v1/tts', 'reference', big, { text: 'hi' })).status).toBe(413);
    // Refused before admission: no daily unit spent.
    expect(await aiUnitsSpent()).toBe(0);
    // With a key the same text is fine.
    const key = await paidKey(app);
    expect((await post('/v1/summarize', { text, max_tokens: 4 }, key)).status).toBe(200);
  });

  it('every AI endpoint draws on one daily allowance per address; then 429 with Retry-After; keys are unaffected', async () => {
    expect((await post('/v1/summarize', { text: 'Short meeting.', max_tokens: 2 })).status).toBe(200);
    expect((await post('/v1/embed', { texts: ['hello'] })).status).toBe(200);
    expect((await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 })).status).toBe(200);
    expect(await aiUnitsSpent()).toBe(3);
    const wav = await makeSilenceWav(1);
    const refused = [
      await post('/v1/summarize', { text: 'Short meeting.' }),
      await post('/v1/translate', { text: 'hello', target: 'es' }),
      await post('/v1/analyze', { text: 'hello', type: 'sentiment' }),
      await post('/v1/generate', { text: 'hello', type: 'blog_post' }),
      await post('/v1/embed', { texts: ['hello'] }),
      await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] }),
      await postFile('/v1/enhance-audio', 'file', wav),
      await postFile('/v1/tts', 'reference', wav, { text: 'hi' }),
    ];
    for (const r of refused) {
      expect(r.status).toBe(429);
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(await error(r)).toMatch(/Anonymous limit of 3 AI requests per day reached.*API key/);
    }
    expect(await aiUnitsSpent()).toBe(3);
    const key = await paidKey(app);
    expect((await post('/v1/embed', { texts: ['hello'] }, key)).status).toBe(200);
  });
});

describe('fair LLM queue between tenants over HTTP', () => {
  it("one tenant's long chunked summarize does not hold back another tenant's short one", async () => {
    const llm = (await app.ai.llm()) as LocalLlm;
    const [a, b] = [await paidKey(app), await paidKey(app)];
    const words = 'alpha budget review shipping friday login bug customer roadmap hiring'.split(' ');
    const long = `${Array.from({ length: 2400 }, (_, i) => words[(i * 7) % words.length]).join(' ')}.`;
    const startedBefore = llm.stats.requests;
    const done: string[] = [];
    const longReq = post('/v1/summarize', { text: long }, a).then(async (r) => {
      done.push('A');
      return r;
    });
    // A is running with more of its chunks waiting: now B asks for a short summary.
    const deadline = Date.now() + 60_000;
    while (!(llm.running === 1 && llm.queueDepth >= 1)) {
      if (Date.now() > deadline) throw new Error('tenant A never queued');
      await new Promise((r) => setTimeout(r, 20));
    }
    let startedWhenBDone = 0;
    const shortReq = post('/v1/summarize', { text: 'Anna: ship Friday. Ben: fix login first.' }, b).then(async (r) => {
      startedWhenBDone = llm.stats.requests - startedBefore;
      done.push('B');
      return r;
    });
    const [ra, rb] = await Promise.all([longReq, shortReq]);
    expect(ra.status).toBe(200);
    expect(rb.status).toBe(200);
    const totalCalls = llm.stats.requests - startedBefore;
    expect(done).toEqual(['B', 'A']);
    // A's summarize took many model calls; B's was served after at most two of them, not after A's backlog.
    expect(totalCalls).toBeGreaterThanOrEqual(6);
    expect(startedWhenBDone).toBeLessThanOrEqual(3);
    expect(llm.queueDepth).toBe(0);
  });
});
