/**
 * A newcomer's first run (issue #16), on a real server process: DEFAULT_MODEL is a registry model that is not
 * installed. Start-up says it will be pulled on first use; the first file request and the first live stream wait
 * for one shared download and see it (job stage `downloading model` with a fraction, `{"status":"loading_model"}`
 * before `ready`, /health); the server is killed with the download half-way, and the next server resumes it with a
 * Range request and transcribes. The hub is the project's stand-in (test/models/hub-server.ts) holding the largest
 * file half-way, so every "while downloading" observation is deterministic.
 */
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadManifest } from '../../src/models/manifest.ts';
import { hasAudioTools, makeSpeechWav, TEXTS } from '../helpers/audio-fixtures.ts';
import { MODELS_DIR } from '../helpers/paths.ts';
import { createAccountKey, killAllServers, startServerProcess, type ServerProcess } from '../helpers/server-process.ts';
import { until } from '../helpers/until.ts';
import { StreamClient } from '../helpers/ws-client.ts';
import { startFixtureHub, type HubServer } from './hub-server.ts';

const ID = 'moonshine-tiny';
const HELD = 'onnx/decoder_model_merged.onnx';
const audioTools = await hasAudioTools();
let hub: HubServer;
let modelsDir: string;
let speech: string;
/** One DATA_DIR for both servers, with a paid key: the file and the stream run at once (anonymous: one at a time). */
let dataDir: string;
let key: string;

beforeAll(async () => {
  hub = await startFixtureHub((await loadManifest()).models[ID].files, path.join(MODELS_DIR, 'moonshine-mini-random'));
  modelsDir = fs.mkdtempSync(path.join(tmpdir(), 'stt-models-autopull-'));
  dataDir = fs.mkdtempSync(path.join(tmpdir(), 'stt-data-autopull-'));
  key = createAccountKey(dataDir, { plan: 'paid', credits: 1000 });
  if (audioTools) speech = (await makeSpeechWav(TEXTS.hello, { padStartS: 0.3, padEndS: 0.3 })).path;
});

afterAll(async () => {
  await killAllServers();
  await hub?.close();
  for (const d of [modelsDir, dataDir]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

function start(): Promise<ServerProcess> {
  return startServerProcess({
    dataDir,
    env: { AUTO_PULL: 'true', HF_ENDPOINT: hub.endpoint, HF_TOKEN: '', MODELS_DIR: modelsDir, DEFAULT_MODEL: ID, ANON_DAILY_LIMIT: '1000000', STREAM_MAX_FINAL_WAIT_MS: '0', STREAM_MAX_LOAD: '0' },
  });
}

const auth = (): Record<string, string> => ({ authorization: `Bearer ${key}` });

async function upload(base: string, jobId: string): Promise<Response> {
  const form = new FormData();
  form.append('file', await fs.openAsBlob(speech), 'hello.wav');
  for (const [n, v] of Object.entries({ language: 'en', temperature: '0', max_new_tokens: '8' })) form.append(n, v);
  return fetch(`${base}/v1/transcribe`, { method: 'POST', body: form, headers: { 'x-job-id': jobId, ...auth() } });
}

interface HealthModel {
  id: string;
  role: string;
  installed: boolean;
  first_use: string;
  progress?: { fraction: number | null };
}
const healthModel = async (base: string) => ((await (await fetch(`${base}/health`)).json()) as { models: HealthModel[] }).models.find((m) => m.id === ID)!;

it.skipIf(!audioTools)(
  'pulls the default model on first use, shows it as a job stage, a loading_model message and in /health, and resumes after a crash',
  async () => {
    hub.holdOnce.set(HELD, 900_000);
    const first = await start();
    // Start-up says what the first request will do.
    expect(first.output()).toMatch(new RegExp(`model ${ID} \\(speech \\(DEFAULT_MODEL\\)\\): not installed yet; it is downloaded from ${hub.endpoint.replace(/[.]/g, '\\.')} on first use`));
    expect(await healthModel(first.url)).toMatchObject({ installed: false, first_use: 'pull', role: 'speech (DEFAULT_MODEL)' });

    // The first file and the first live stream wait for one download, held half-way by the hub.
    const pending = upload(first.url, 'first-use').catch((err: Error) => err);
    const live = await StreamClient.connect(`${first.wsUrl}/v1/stream`, auth());
    live.json({ model: ID, language: 'en', sample_rate: 16000 });
    await until(() => hub.heldCount === 1);
    const part = path.join(modelsDir, `${ID}.partial`, `${HELD}.part`);
    await until(() => fs.existsSync(part) && fs.statSync(part).size > 0);

    const job = await until(async () => {
      const r = await fetch(`${first.url}/v1/jobs/first-use`, { headers: auth() });
      const j = r.status === 200 ? ((await r.json()) as { status: string; progress: { stage: string; fraction: number } }) : undefined;
      return j?.progress.stage === 'downloading model' && j.progress.fraction > 0 ? j : undefined;
    });
    expect(job.status).toBe('running');
    expect(job.progress.fraction).toBeLessThan(1);
    const loading = await live.next((m) => m.status === 'loading_model' && typeof m.progress === 'number' && m.progress > 0);
    expect(loading).toMatchObject({ status: 'loading_model', model: ID, stage: 'downloading' });
    expect(loading.progress as number).toBeLessThan(1);
    expect(live.messages.some((m) => m.status === 'ready')).toBe(false);
    const h = await healthModel(first.url);
    expect(h.first_use).toBe('downloading');
    expect(h.progress?.fraction).toBeGreaterThan(0);
    expect(h.progress?.fraction).toBeLessThan(1);
    // Only one download for both requests.
    expect(hub.seen.filter((r) => r.path === HELD && r.method === 'GET' && r.cdn)).toHaveLength(1);

    // The server dies with the download half-way: the next one resumes it (Range) and serves the request.
    await first.kill('SIGKILL');
    expect(await pending).toBeInstanceOf(Error);
    hub.releaseHeld();
    const second = await start();
    try {
      expect(await healthModel(second.url)).toMatchObject({ installed: false, first_use: 'pull' });
      const r = await upload(second.url, 'after-crash');
      expect(r.status, await r.clone().text()).toBe(200);
      expect(typeof ((await r.json()) as { text: unknown }).text).toBe('string');
      const resumed = hub.seen.filter((s) => s.path === HELD && s.method === 'GET' && s.range).map((s) => s.range!);
      expect(resumed.length).toBeGreaterThan(0);
      expect(Number(/^bytes=(\d+)-$/.exec(resumed[0])![1])).toBeGreaterThan(0);
      expect(second.output()).toMatch(/model moonshine-tiny installed, resumed 1 file/);
      expect(await healthModel(second.url)).toMatchObject({ installed: true, first_use: 'ready' });
      // Installed now: a live stream is ready at once (at most told that the model loads).
      const again = await StreamClient.connect(`${second.wsUrl}/v1/stream`, auth());
      again.json({ model: ID, language: 'en', sample_rate: 16000 });
      expect(await again.next((m) => m.status === 'ready')).toMatchObject({ model: ID });
      expect(again.messages.filter((m) => m.status === 'loading_model').every((m) => m.stage === 'loading')).toBe(true);
      again.json({ action: 'stop' });
      await again.closed;
    } finally {
      await second.close();
    }
  },
  240_000,
);
