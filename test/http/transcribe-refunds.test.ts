/**
 * File transcriptions pay for what was delivered (issue 13, "Money"): the upload reserves before the
 * model work and settles after; a cancelled job, a client that disconnects and a 503 from the work
 * queue (no worker) give every reserved credit back. Real App, real model fixture, real NATS.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { loadConfig } from '../../config/config.ts';
import { App } from '../../src/app.ts';
import { billableMinutes } from '../../src/auth/access-control.ts';
import { issueKey } from '../../src/auth/index.ts';
import { makeSilenceWav, makeSpeechWav, TEXTS } from '../helpers/audio-fixtures.ts';
import { MODELS_DIR } from '../helpers/paths.ts';
import { startNatsServer, type TestNatsServer } from '../bus/nats-server.ts';

const CREDITS = 100;
/** Random weights never stop early: 448 tokens per 30 s window keeps a long file busy for a while. */
const SLOW = { vad: 'false', max_new_tokens: '448', temperature: '0', timestamps: 'false', language: 'en', diarize: 'false' };

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function startApp(env: Record<string, string>): Promise<{ app: App; base: string; dir: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-refunds-'));
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', MODELS_DIR, AUTO_PULL: 'false', DATA_DIR: dir, DEFAULT_MODEL: 'whisper-mini-random', INFERENCE_THREADS: '1', ...env });
  const app = await new App(config, { logger: pino({ level: 'silent' }) }).start();
  return { app, base: `http://127.0.0.1:${app.port}`, dir };
}

async function paidAccount(app: App, credits: number) {
  const account = await app.stores.accounts.create({ email: `m-${Math.random().toString(36).slice(2)}@test.local`, plan: 'paid', credits });
  const { key } = await issueKey(app.stores.accounts, account.id, 'tests');
  return { id: account.id, key, credits: async () => (await app.stores.accounts.get(account.id))!.credits };
}

async function post(base: string, key: string, file: string, fields: Record<string, string>, opts: { jobId?: string; signal?: AbortSignal } = {}) {
  const form = new FormData();
  form.append('file', await fs.openAsBlob(file), path.basename(file));
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  const headers: Record<string, string> = { authorization: `Bearer ${key}` };
  if (opts.jobId) headers['x-job-id'] = opts.jobId;
  return fetch(`${base}/v1/transcribe`, { method: 'POST', body: form, headers, signal: opts.signal });
}

describe('file transcription money flow (embedded database, local work)', () => {
  let app: App;
  let base: string;
  let dir: string;
  let long: string;

  beforeAll(async () => {
    ({ app, base, dir } = await startApp({}));
    long = await makeSilenceWav(240, { noiseAmplitude: 0.01 }); // 4 minutes → 4 credits reserved
  });
  afterAll(async () => {
    await app?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a completed job pays the started minutes of its audio, once', async () => {
    const acct = await paidAccount(app, CREDITS);
    const speech = await makeSpeechWav(TEXTS.hello, { padStartS: 0.5, padEndS: 0.5 });
    const r = await post(base, acct.key, speech.path, { max_new_tokens: '8', temperature: '0', language: 'en' });
    expect(r.status).toBe(200);
    const body = await r.json();
    await app.access.settle();
    expect(await acct.credits()).toBe(CREDITS - billableMinutes(body.duration));
    expect(await app.stores.usage.reservations.list(acct.id)).toEqual([]);
  });

  it('DELETE /v1/jobs/:id while the model runs: the job ends without a transcript and every credit comes back', async () => {
    const acct = await paidAccount(app, CREDITS);
    const jobId = `cancel-${Date.now()}`;
    const response = post(base, acct.key, long, SLOW, { jobId });
    await until(async () => (await acct.credits()) === CREDITS - 4, 'the 4-minute reservation');
    const del = await fetch(`${base}/v1/jobs/${jobId}`, { method: 'DELETE', headers: { authorization: `Bearer ${acct.key}` } });
    expect(del.status).toBe(200);
    expect((await del.json()).cancelled).toBe(true);
    const r = await response;
    expect(r.status).not.toBe(200);
    expect((await r.json()).error).toBeTruthy();
    await until(async () => (await acct.credits()) === CREDITS, 'the refund of the cancelled job');
    expect(await app.stores.usage.reservations.list(acct.id)).toEqual([]);
    expect(await app.stores.usage.daily(acct.id, new Date(Date.now() - 86_400_000), new Date(Date.now() + 86_400_000))).toEqual([]);
  }, 180_000);

  it('a client that disconnects mid-job is refunded in full', async () => {
    const acct = await paidAccount(app, CREDITS);
    const abort = new AbortController();
    const response = post(base, acct.key, long, SLOW, { signal: abort.signal }).catch((err: Error) => err);
    await until(async () => (await acct.credits()) === CREDITS - 4, 'the 4-minute reservation');
    abort.abort();
    expect(await response).toBeInstanceOf(Error);
    await until(async () => (await acct.credits()) === CREDITS, 'the refund of the abandoned job');
    expect(await app.stores.usage.reservations.list(acct.id)).toEqual([]);
  }, 180_000);
});

describe('file transcription money flow (work queue without a worker)', () => {
  let nats: TestNatsServer;
  let app: App;
  let base: string;
  let dir: string;

  beforeAll(async () => {
    // A private nats-server: no other suite's worker can serve the model here.
    nats = await startNatsServer({ spawn: true });
    ({ app, base, dir } = await startApp({ WORK_QUEUE: 'nats', NATS_URL: nats.url, WORKER: 'false' }));
  });
  afterAll(async () => {
    await app?.close();
    await nats?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('503 because no worker answered: nothing charged, nothing left reserved', async () => {
    const acct = await paidAccount(app, CREDITS);
    const speech = await makeSpeechWav(TEXTS.hello, { padStartS: 0.5, padEndS: 0.5 });
    const r = await post(base, acct.key, speech.path, { max_new_tokens: '8', temperature: '0', language: 'en' });
    expect(r.status).toBe(503);
    expect((await r.json()).error).toMatch(/No worker is running for model 'whisper-mini-random'.*nothing was charged/);
    await app.access.settle();
    expect(await acct.credits()).toBe(CREDITS);
    expect(await app.stores.usage.reservations.list(acct.id)).toEqual([]);
  });
});
