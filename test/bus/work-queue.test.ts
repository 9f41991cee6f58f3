/**
 * File transcription scaled out over the JetStream work queue (WORK_QUEUE=nats), on a nats-server
 * spawned here (so streams and consumers start empty): an API-only server dispatches chunks, a
 * worker decodes them, the answer is the same as a single local server's, and the API server loads
 * no model for it (only its config files are read); a chunk taken by a worker that dies without
 * acking is redelivered and the request still completes.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import { ConfigError, loadConfig } from '../../config/config.ts';
import type { App } from '../../src/app.ts';
import { NatsWorkQueue, WORK_STREAM, decodeWork, encodeJson, encodeWork, workConsumerName, workPresenceSubject, WorkQueueError } from '../../src/bus/work-queue.ts';
import { TEXTS, concatWithGaps, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { MODELS_DIR } from '../helpers/paths.ts';
import { paidKey } from '../helpers/accounts.ts';
import { TestApps } from '../helpers/test-apps.ts';
import { startNatsServer, type TestNatsServer } from './nats-server.ts';

const MODEL = 'whisper-mini-random';
const logger = pino({ level: 'silent' });
const apps = new TestApps();
let nats: TestNatsServer;
let dialogue: string;

const startApp = (env: Record<string, string>) => apps.start(env);

async function transcribe(app: App, file: string, fields: Record<string, string>) {
  const key = await paidKey(app);
  const form = new FormData();
  form.append('file', await fs.openAsBlob(file), path.basename(file));
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  const r = await fetch(`http://127.0.0.1:${app.port}/v1/transcribe`, { method: 'POST', body: form, headers: { authorization: `Bearer ${key}` } });
  return { status: r.status, body: await r.json() };
}

async function requests(app: App): Promise<number> {
  return (await app.speechModels.get(MODEL)).scheduler.stats.requests;
}

/** The API-only server has no engine loaded: none in its SpeechModels, none on /metrics. */
async function expectNothingLoaded(app: App): Promise<void> {
  expect(app.speechModels.loadedCount).toBe(0);
  const text = await (await fetch(`http://127.0.0.1:${app.port}/metrics`)).text();
  expect(text).not.toMatch(/stt_model_loaded\{[^}]*model="whisper-mini-random"[^}]*\} 1/);
}

const FIELDS = { language: 'en', max_new_tokens: '8', temperature: '0', diarize: 'false' };

beforeAll(async () => {
  nats = await startNatsServer({ spawn: true });
  const a = await makeSpeechWav(TEXTS.hello);
  const b = await makeSpeechWav(TEXTS.second);
  // Two utterances 1.5 s apart: two VAD chunks, two work items.
  dialogue = (await concatWithGaps([a.path, b.path], 1.5, { padStartS: 0.3, padEndS: 0.5 })).path;
});

afterAll(async () => {
  await apps.closeAll();
  await nats?.stop();
});

describe('work messages', () => {
  it('carry the head and 16-bit PCM exactly for samples of 16-bit sources', () => {
    const audio = new Float32Array([0, 1 / 32768, -1, 32767 / 32768, -12345 / 32768, 0.5]);
    const head = { v: 1 as const, op: 'transcribe' as const, jobId: 'j', chunkId: 'c', model: MODEL, options: { temperature: 0, initialPrompt: 'naïve\nprompt' }, reply: 'stt.work.result.s.j' };
    const enc = encodeWork(head, audio);
    expect(enc.length).toBeLessThan(4 + 300 + audio.length * 2);
    const dec = decodeWork(enc);
    expect(dec.head).toEqual(head);
    expect([...dec.audio]).toEqual([...audio]);
    // Out-of-range floats clip instead of wrapping.
    expect([...decodeWork(encodeWork(head, new Float32Array([1.5, -2]))).audio]).toEqual([32767 / 32768, -1]);
  });

  it('keep non-finite numbers of results', () => {
    expect(encodeJson({ a: -Infinity, b: NaN, c: [1, Infinity] })).toBe('{"a":{"$num":"-Infinity"},"b":{"$num":"NaN"},"c":[1,{"$num":"Infinity"}]}');
  });
});

describe('configuration', () => {
  it('WORK_QUEUE=nats needs NATS_URL; WORKER=false needs WORK_QUEUE=nats; bad values are named', () => {
    expect(() => loadConfig({ WORK_QUEUE: 'nats' })).toThrow(/WORK_QUEUE="nats" needs NATS_URL/);
    expect(() => loadConfig({ WORKER: 'false' })).toThrow(/WORKER="false" makes an API-only server, which needs WORK_QUEUE=nats/);
    let err: unknown;
    try {
      loadConfig({ WORK_QUEUE: 'redis', WORKER: 'sometimes' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems.join('\n')).toMatch(/WORK_QUEUE="redis": expected 'local' or 'nats'/);
    expect((err as ConfigError).problems.join('\n')).toMatch(/WORKER="sometimes": expected true or false/);
  });

  it('defaults to the local queue with this server as its worker', () => {
    expect(loadConfig({}).work).toEqual({ queue: 'local', worker: true, ackWaitMs: 60_000, timeoutMs: 120_000 });
    const c = loadConfig({ WORK_QUEUE: 'nats', NATS_URL: 'nats://127.0.0.1:4222', WORKER: 'false', WORK_ACK_WAIT_S: '5', WORK_TIMEOUT_S: '30' });
    expect(c.work).toEqual({ queue: 'nats', worker: false, ackWaitMs: 5000, timeoutMs: 30_000 });
  });
});

describe('NatsWorkQueue dispatcher', () => {
  let nc: NatsConnection;
  let q: NatsWorkQueue;
  beforeAll(async () => {
    q = new NatsWorkQueue({ url: nats.url, logger, timeoutMs: 1500 });
    await q.start();
    nc = await connect({ servers: nats.url });
  });
  afterAll(async () => {
    await q?.close();
    await nc?.close();
  });

  it('fails fast with 503 when no worker serves the model', async () => {
    const err = await q.dispatch<never>('transcribe', 'nobody-serves-this', new Float32Array(160), { jobId: 'j1' }).catch((e: Error & { status?: number }) => e);
    expect(err).toBeInstanceOf(WorkQueueError);
    expect((err as WorkQueueError).kind).toBe('unavailable');
    expect(err.message).toMatch(/No worker serves model 'nobody-serves-this'.*WORKER=true/);
  });

  it('refuses a piece over max_payload with a message naming it', async () => {
    const err = await q.dispatch<never>('transcribe', MODEL, new Float32Array(16_000 * 40), { jobId: 'j2' }).catch((e: Error & { status?: number }) => e);
    expect(err).toBeInstanceOf(WorkQueueError);
    expect(err.message).toMatch(/exceeds the NATS server's max_payload of \d+ bytes.*vad=true/);
  });

  it('drops duplicate results, times out without a worker, and takes aborted work off the queue', async () => {
    const jsm = await jetstreamManager(nc);
    const worker = new NatsWorkQueue({ url: nats.url, logger, serverId: 'fake' });
    await worker.start();
    // A worker that answers with the sample count.
    await worker.serve('dup-model', async ({ audio }) => audio.length, { concurrency: 2 });
    const js = jetstream(nc);
    const answered = q.dispatch<number>('transcribe', 'dup-model', new Float32Array(320), { jobId: 'j3' });
    expect(await answered).toBe(320);
    await worker.close();
    // Resend a result for a chunk that is done: dropped.
    const before = q.stats.duplicates;
    nc.publish(`stt.work.result.${q.serverId}.j3`, encodeJson({ chunkId: 'gone', kind: 'result', worker: 'x', result: 1 }));
    await nc.flush();
    await new Promise((r) => setTimeout(r, 100));
    expect(q.stats.duplicates).toBe(before + 1);

    // The consumer exists but nobody pulls: timeout (1.5 s here), and the message is deleted.
    const t0 = Date.now();
    const err = await q.dispatch<never>('transcribe', 'dup-model', new Float32Array(320), { jobId: 'j4' }).catch((e: Error & { status?: number }) => e);
    expect(err).toBeInstanceOf(WorkQueueError);
    expect(err.message).toMatch(/No worker answered .* within 2 s/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
    // Abort: the caller is released at once with the signal's reason; the message leaves the queue.
    const ac = new AbortController();
    const pending = q.dispatch<never>('transcribe', 'dup-model', new Float32Array(320), { jobId: 'j5', signal: ac.signal }).catch((e: Error & { status?: number }) => e);
    await new Promise((r) => setTimeout(r, 200));
    ac.abort(new Error('client went away'));
    expect((await pending).message).toBe('client went away');
    await new Promise((r) => setTimeout(r, 200));
    const si = await jsm.streams.info(WORK_STREAM, { subjects_filter: 'stt.work.asr.dup-model' });
    expect(si.state.subjects?.['stt.work.asr.dup-model'] ?? 0).toBe(0);
    void js;
  });
});

describe('API server + worker over NATS', () => {
  let local: App;
  let api: App;
  let expected: { text: string; segments: unknown[] };
  const natsEnv = () => ({ NATS_URL: nats.url, WORK_QUEUE: 'nats', WORK_ACK_WAIT_S: '2' });

  beforeAll(async () => {
    local = await startApp({});
    const r = await transcribe(local, dialogue, FIELDS);
    expect(r.status).toBe(200);
    expected = r.body;
    expect(expected.segments.length).toBeGreaterThanOrEqual(2);
    api = await startApp({ ...natsEnv(), WORKER: 'false' });
  });

  it('an upload to an API-only server is decoded by the worker, with the local answer', async () => {
    const worker = await startApp(natsEnv());
    const r = await transcribe(api, dialogue, FIELDS);
    expect(r.status).toBe(200);
    expect(r.body.text).toBe(expected.text);
    expect(r.body.segments).toEqual(expected.segments);
    expect(await requests(worker)).toBeGreaterThanOrEqual(2);
    await expectNothingLoaded(api);
    expect(worker.workQueue!.stats.served).toBeGreaterThanOrEqual(2);
    // language=auto: detection is work too.
    const auto = await transcribe(api, dialogue, { ...FIELDS, language: 'auto' });
    const autoLocal = await transcribe(local, dialogue, { ...FIELDS, language: 'auto' });
    expect(auto.status).toBe(200);
    expect(auto.body).toEqual(autoLocal.body);
    await expectNothingLoaded(api);
    // Both sides export their counts on /metrics.
    const scrape = async (app: App, event: string) =>
      Number((await (await fetch(`http://127.0.0.1:${app.port}/metrics`)).text()).match(new RegExp(`stt_work_chunks_total\\{event="${event}"\\} (\\d+)`))?.[1]);
    expect(await scrape(api, 'dispatched')).toBe(api.workQueue!.stats.dispatched);
    expect(api.workQueue!.stats.dispatched).toBeGreaterThanOrEqual(2);
    expect(await scrape(worker, 'served')).toBe(worker.workQueue!.stats.served);
    expect(await (await fetch(`http://127.0.0.1:${api.port}/metrics`)).text()).toMatch(/stt_work_chunks_waiting 0/);
    await worker.close();
  });

  it('a chunk taken by a worker that dies without acking is redelivered, and the request completes', async () => {
    const nc = await connect({ servers: nats.url });
    try {
      const js = jetstream(nc);
      const jsm = await jetstreamManager(nc);
      // The "crashing worker" is alive when the upload is admitted (it answers presence, see
      // ensureWorker); no real worker runs, so the upload's chunks wait in the stream.
      const presence = nc.subscribe(workPresenceSubject(MODEL), { queue: 'workers', callback: (_e, m) => void m.respond('{}') });
      await nc.flush();
      const answer = transcribe(api, dialogue, FIELDS);
      // It takes one chunk on the shared consumer and dies without acking it.
      const consumer = await js.consumers.get(WORK_STREAM, workConsumerName(MODEL));
      let taken: JsMsg | null = null;
      for await (const m of await consumer.fetch({ max_messages: 1, expires: 20_000 })) taken = m;
      presence.unsubscribe();
      expect(taken).not.toBeNull();
      expect(taken!.info.deliveryCount).toBe(1);
      expect(decodeWork(taken!.data).head.model).toBe(MODEL);
      // A real worker (ack wait 2 s) comes up: it gets the free chunk now and the taken one once its ack wait passes.
      const worker = await startApp(natsEnv());
      const r = await answer;
      expect(r.status).toBe(200);
      expect(r.body.text).toBe(expected.text);
      expect(r.body.segments).toEqual(expected.segments);
      // The worker served both chunks, one of them a redelivery; nothing is left unacked.
      expect(worker.workQueue!.stats.served).toBeGreaterThanOrEqual(2);
      expect(worker.workQueue!.stats.redelivered).toBeGreaterThanOrEqual(1);
      const ci = await jsm.consumers.info(WORK_STREAM, workConsumerName(MODEL));
      expect(ci.num_ack_pending).toBe(0);
      expect(ci.num_pending).toBe(0);
      await expectNothingLoaded(api);
    } finally {
      await nc.close();
    }
  });

  it('the API-only server answers model and language errors as a local one, loading nothing', async () => {
    const dispatched = api.workQueue!.stats.dispatched;
    const unknown = await transcribe(api, dialogue, { ...FIELDS, model: 'whisper-huge-v9' });
    expect(unknown.status).toBe(400);
    expect(JSON.stringify(unknown.body)).toMatch(/whisper-mini-random/);
    const missing = await transcribe(api, dialogue, { ...FIELDS, model: 'small' });
    expect(missing.status).toBe(503);
    expect(JSON.stringify(missing.body)).toContain('npm run models:pull -- small');
    const badLanguage = await transcribe(api, dialogue, { ...FIELDS, language: 'zz' });
    expect(badLanguage.status).toBe(400);
    expect(badLanguage).toEqual(await transcribe(local, dialogue, { ...FIELDS, language: 'zz' }));
    expect(api.workQueue!.stats.dispatched).toBe(dispatched);
    await expectNothingLoaded(api);
  });
});
