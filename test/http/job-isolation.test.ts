/**
 * GET/DELETE /v1/jobs/:id belong to the job's owner (the key's account, or the client address of an
 * anonymous request): another tenant gets the same 404 as for an unknown id, cannot cancel the job,
 * and cannot learn that a client-chosen id is in use.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { loadConfig } from '../../config/config.ts';
import { App } from '../../src/app.ts';
import { TEXTS, concatWithGaps, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { MODELS_DIR } from '../helpers/paths.ts';
import { paidKey } from '../helpers/accounts.ts';

let app: App;
let base: string;
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-jobs-'));
let alice: string;
let bob: string;
let speech: { path: string };
let long: { path: string };

beforeAll(async () => {
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', MODELS_DIR, AUTO_PULL: 'false', DATA_DIR: dataDir, DEFAULT_MODEL: 'whisper-mini-random', ANON_DAILY_LIMIT: '100' });
  app = await new App(config, { logger: pino({ level: 'silent' }) }).start();
  base = `http://127.0.0.1:${app.port}`;
  alice = await paidKey(app);
  bob = await paidKey(app);
  speech = await makeSpeechWav(TEXTS.hello, { padStartS: 0.3, padEndS: 0.3 });
  long = await concatWithGaps(Array(6).fill(speech.path), 1.5);
}, 120_000);
afterAll(async () => {
  await app?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const auth = (k?: string): Record<string, string> => (k ? { authorization: `Bearer ${k}` } : {});

async function upload(file: string, jobId: string, k: string | undefined, fields: Record<string, string> = {}) {
  const form = new FormData();
  form.append('file', await fs.openAsBlob(file), path.basename(file));
  for (const [n, v] of Object.entries({ language: 'en', temperature: '0', max_new_tokens: '8', ...fields })) form.append(n, v);
  return fetch(`${base}/v1/transcribe`, { method: 'POST', body: form, headers: { ...auth(k), 'x-job-id': jobId } });
}

const getJob = (id: string, k?: string) => fetch(`${base}/v1/jobs/${id}`, { headers: auth(k) });
const deleteJob = (id: string, k?: string) => fetch(`${base}/v1/jobs/${id}`, { method: 'DELETE', headers: auth(k) });

describe('/v1/jobs/:id isolation', () => {
  it('another tenant (or no key) gets 404 for GET and DELETE, the owner sees the job', async () => {
    const id = `iso-${Date.now()}`;
    expect((await upload(speech.path, id, alice)).status).toBe(200);
    const own = await getJob(id, alice);
    expect(own.status).toBe(200);
    expect(await own.json()).toMatchObject({ id, status: 'completed' });
    for (const other of [bob, undefined]) {
      const g = await getJob(id, other);
      expect(g.status).toBe(404);
      const body = await g.json();
      expect(body.error).toMatch(/No job/);
      // The same answer as for an id that never existed: nothing to tell them apart.
      const unknown = await (await getJob(`never-${Date.now()}`, other)).json();
      expect(body.error.replace(id, 'X')).toBe(unknown.error.replace(/never-\d+/, 'X'));
      expect((await deleteJob(id, other)).status).toBe(404);
    }
    expect(await (await getJob(id, alice)).json()).toMatchObject({ status: 'completed' });
  });

  it('a bad key is 401, not a lookup', async () => {
    const r = await getJob('whatever-123', 'stt_not_a_real_key');
    expect(r.status).toBe(401);
    expect((await fetch(`${base}/v1/jobs/whatever-123`, { method: 'DELETE', headers: auth('stt_not_a_real_key') })).status).toBe(401);
  });

  it("another tenant's DELETE does not cancel a running job", async () => {
    const id = `run-${Date.now()}`;
    const req = upload(long.path, id, alice, { max_new_tokens: '440' });
    let status = '';
    for (let i = 0; i < 3000 && status !== 'running' && status !== 'completed'; i++) {
      const r = await getJob(id, alice);
      if (r.status === 200) status = (await r.json()).status;
      else await new Promise((res) => setTimeout(res, 20));
    }
    expect(['running', 'completed']).toContain(status);
    expect((await deleteJob(id, bob)).status).toBe(404);
    expect((await deleteJob(id)).status).toBe(404);
    const res = await req;
    expect(res.status).toBe(200);
    expect(await (await getJob(id, alice)).json()).toMatchObject({ id, status: 'completed' });
  }, 180_000);

  it('a client-chosen id in use by another tenant is not revealed: each owner has its own job under it', async () => {
    const id = `shared-${Date.now()}`;
    expect((await upload(speech.path, id, alice)).status).toBe(200);
    const r = await upload(speech.path, id, bob);
    expect(r.status).toBe(200);
    expect(r.headers.get('x-job-id')).toBe(id);
    // Anonymous (client address) is a third owner.
    const anon = await upload(speech.path, id, undefined);
    expect(anon.status).toBe(200);
    const [a, b, n] = await Promise.all([getJob(id, alice), getJob(id, bob), getJob(id)]);
    expect([a.status, b.status, n.status]).toEqual([200, 200, 200]);
    const created = await Promise.all([a, b, n].map(async (x) => (await x.json()).created_at as string));
    expect(new Set(created).size).toBe(3);
    // The same owner reusing its own id is told so (409).
    const again = await upload(speech.path, id, alice);
    expect(again.status).toBe(409);
    expect((await again.json()).error).toMatch(/already in use/);
  });
});
