/**
 * "No live worker" is answered at once, before anything is charged (issue 13): a durable consumer
 * outlives its workers, so presence is asked on core NATS. On a nats-server spawned here (fresh
 * streams and consumers): a worker process killed with -9 leaves its consumer behind but stops
 * counting as alive; a busy worker (no pull request open) still counts; an API-only server answers
 * 503 + Retry-After without charging a paid account, and works again once a worker is up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { loadConfig } from '../../config/config.ts';
import type { App } from '../../src/app.ts';
import { NatsWorkQueue, WORK_STREAM, workConsumerName, WorkQueueError } from '../../src/bus/work-queue.ts';
import { TEXTS, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { MODELS_DIR } from '../helpers/paths.ts';
import { paidKey } from '../helpers/accounts.ts';
import { TestApps } from '../helpers/test-apps.ts';
import { startNatsServer, type TestNatsServer } from './nats-server.ts';
import { statusOf } from '../../src/http/error-kinds.ts';
import { toApiError } from '../../src/http/api-error.ts';

const MODEL = 'whisper-mini-random';
const logger = pino({ level: 'silent' });
const apps = new TestApps();
let nats: TestNatsServer;

beforeAll(async () => {
  nats = await startNatsServer({ spawn: true });
});

afterAll(async () => {
  await apps.closeAll();
  await nats?.stop();
});

/** Polls `check` until it returns true (generous bound: a busy CI machine). */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const rejection = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (e: WorkQueueError) => e,
  );

describe('NatsWorkQueue.ensureWorker', () => {
  let q: NatsWorkQueue;
  let nc: NatsConnection;
  let child: ChildProcess | null = null;
  beforeAll(async () => {
    q = new NatsWorkQueue({ url: nats.url, logger, timeoutMs: 120_000 });
    await q.start();
    nc = await connect({ servers: nats.url });
  });
  afterAll(async () => {
    child?.kill('SIGKILL');
    await q?.close();
    await nc?.close();
  });

  it('no worker ever: 503 with Retry-After and a message saying nothing was charged', async () => {
    const err = await rejection(q.ensureWorker('nobody-serves-this'));
    expect(err).toBeInstanceOf(WorkQueueError);
    const { error } = toApiError(err);
    expect(error.status).toBe(503);
    expect(error.headers['retry-after']).toMatch(/^\d+$/);
    expect(err!.message).toMatch(/No worker is running for model 'nobody-serves-this'.*nothing was charged.*WORKER=true/);
  });

  it('a busy worker counts as alive; the same worker killed with -9 does not, though its consumer remains', async () => {
    const model = 'killable-model';
    child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'fixtures', 'work-worker-process.ts'), nats.url, model], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    await until('the worker process to start pulling', async () => out.includes('ready') || child!.exitCode !== null, 60_000);
    expect(out).toContain('ready');
    await q.ensureWorker(model);

    // Give it its one item: it holds it, so it has no pull request open (num_waiting 0) — still alive.
    const ac = new AbortController();
    const held = rejection(q.dispatch('transcribe', model, new Float32Array(160), { jobId: 'busy', signal: ac.signal }));
    const jsm = await jetstreamManager(nc);
    await until('the worker to take the item', async () => {
      const ci = await jsm.consumers.info(WORK_STREAM, workConsumerName(model));
      return ci.num_ack_pending === 1 && ci.num_waiting === 0;
    });
    await q.ensureWorker(model);

    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    // The durable consumer is still there; a consumer-based check would say "served".
    expect((await jsm.consumers.info(WORK_STREAM, workConsumerName(model))).config.durable_name).toBe(workConsumerName(model));
    let err: WorkQueueError | null = null;
    await until('presence to notice the killed worker', async () => (err = await rejection(q.ensureWorker(model))) !== null);
    expect(statusOf(err)).toBe(503);
    expect(err!.message).toMatch(/No worker is running for model 'killable-model'/);
    ac.abort(new Error('test done'));
    expect((await held)?.message).toBe('test done');
  });
});

describe('API-only server (WORKER=false)', () => {
  let api: App;
  let wav: string;
  const natsEnv = () => ({ NATS_URL: nats.url, WORK_QUEUE: 'nats', WORK_ACK_WAIT_S: '2', WORK_TIMEOUT_S: '60' });

  const startApp = (env: Record<string, string>) => apps.start(env);

  async function transcribe(key: string) {
    const form = new FormData();
    form.append('file', await fs.openAsBlob(wav), 'hello.wav');
    for (const [k, v] of Object.entries({ language: 'en', max_new_tokens: '8', temperature: '0', diarize: 'false' })) form.append(k, v);
    const r = await fetch(`http://127.0.0.1:${api.port}/v1/transcribe`, { method: 'POST', body: form, headers: { authorization: `Bearer ${key}` } });
    return { status: r.status, retryAfter: r.headers.get('retry-after'), body: (await r.json()) as { error?: string; text?: string } };
  }

  const credits = async (key: string) => (await api.access.authenticate(`Bearer ${key}`))!.credits;

  beforeAll(async () => {
    wav = (await makeSpeechWav(TEXTS.hello)).path;
    api = await startApp({ ...natsEnv(), WORKER: 'false' });
  });

  it('with a worker: works and charges; with its worker gone (consumer left behind): 503 at once, nothing charged', async () => {
    const key = await paidKey(api, 100);
    const worker = await startApp(natsEnv());
    const ok = await transcribe(key);
    expect(ok.status).toBe(200);
    expect(typeof ok.body.text).toBe('string');
    expect(await credits(key)).toBe(99);
    await worker.close();

    const dispatched = api.workQueue!.stats.dispatched;
    const r = await transcribe(key);
    expect(r.status).toBe(503);
    expect(r.retryAfter).toMatch(/^\d+$/);
    expect(r.body.error).toMatch(/No worker is running for model 'whisper-mini-random'.*nothing was charged/);
    expect(await credits(key)).toBe(99);
    // Refused before any chunk was queued (not after WORK_TIMEOUT_S).
    expect(api.workQueue!.stats.dispatched).toBe(dispatched);

    // A worker comes back: requests work again.
    await startApp(natsEnv());
    const again = await transcribe(key);
    expect(again.status).toBe(200);
    expect(await credits(key)).toBe(98);
  });
});
