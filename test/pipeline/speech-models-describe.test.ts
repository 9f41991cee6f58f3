/**
 * SpeechModels.describe: a model's id, languages and sampling rate from its config files, with the
 * registry's 400/503 errors and no ONNX session; and the file path of an API-only server
 * (TranscriptionService over QueuedSpeechWork, which does not decode locally) using only that,
 * while a real worker (its own SpeechModels, on a spawned nats-server) decodes with the real
 * whisper-mini-random and gives the answer a local decode gives; Moonshine described and served the same way.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { SileroVad } from '../../src/engines/vad/silero-vad.ts';
import { NatsWorkQueue } from '../../src/bus/work-queue.ts';
import { loadManifest } from '../../src/models/manifest.ts';
import { ModelRegistry } from '../../src/models/registry.ts';
import { FileTranscriber } from '../../src/pipeline/file-transcriber.ts';
import { JobRegistry } from '../../src/pipeline/job-registry.ts';
import { SpeechModels } from '../../src/pipeline/speech-models.ts';
import { LocalSpeechWork, QueuedSpeechWork, speechWorkHandler, type SpeechWork } from '../../src/pipeline/speech-work.ts';
import { TranscriptionService } from '../../src/pipeline/transcription-service.ts';
import { TEXTS, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { MODELS_DIR, WHISPER_FIXTURE } from '../helpers/paths.ts';
import { startNatsServer, type TestNatsServer } from '../bus/nats-server.ts';

const MODEL = 'whisper-mini-random';
const logger = pino({ level: 'silent' });
const all: SpeechModels[] = [];
let registry: ModelRegistry;
let tmp: string;
let vad: SileroVad;
let speech: string;

function models(reg = registry): SpeechModels {
  const m = new SpeechModels({ registry: reg, logger, inference: {} });
  all.push(m);
  return m;
}

/** Folder `english-only-configs`: the fixture's config files with English as its only language. */
function englishOnly(root: string, withWeights: boolean): void {
  const dir = path.join(root, 'english-only-configs');
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(WHISPER_FIXTURE)) {
    if (f === 'generation_config.json') continue;
    if (f === 'config.json' || f === 'preprocessor_config.json') fs.copyFileSync(path.join(WHISPER_FIXTURE, f), path.join(dir, f));
    else if (withWeights) fs.symlinkSync(path.join(WHISPER_FIXTURE, f), path.join(dir, f));
  }
  const gen = JSON.parse(fs.readFileSync(path.join(WHISPER_FIXTURE, 'generation_config.json'), 'utf8'));
  gen.lang_to_id = { '<|en|>': gen.lang_to_id['<|en|>'] };
  fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify(gen));
}

let nats: TestNatsServer;
const queues: NatsWorkQueue[] = [];

async function workQueue(): Promise<NatsWorkQueue> {
  const q = new NatsWorkQueue({ url: nats.url, logger });
  queues.push(q);
  await q.start();
  return q;
}

/** A worker: its own SpeechModels (over `reg`) serving `model` from the work queue. */
async function worker(reg: ModelRegistry, model: string): Promise<SpeechModels> {
  const m = models(reg);
  await (await workQueue()).serve(model, speechWorkHandler(m), { concurrency: 4 });
  return m;
}

beforeAll(async () => {
  registry = new ModelRegistry({ modelsDir: MODELS_DIR, manifest: await loadManifest() });
  // An English-only model folder with config files only (describe needs nothing else), and the
  // same model with its weights, where a worker serves it.
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-describe-'));
  englishOnly(path.join(tmp, 'api'), false);
  englishOnly(path.join(tmp, 'worker'), true);
  vad = await SileroVad.load();
  speech = (await makeSpeechWav(TEXTS.hello)).path;
  // A nats-server of its own: the work stream starts empty, whatever other suites do.
  nats = await startNatsServer({ spawn: true });
}, 120_000);

afterAll(async () => {
  for (const q of queues) await q.close();
  await nats?.stop();
  for (const m of all) await m.close();
  await vad?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('SpeechModels.describe', () => {
  it.each([
    [MODEL, 'whisper'],
    ['moonshine-mini-random', 'moonshine'],
  ])('%s: reads what the loaded engine reports, once, without loading it', async (id, family) => {
    const m = models();
    const d = await m.describe(id);
    expect(m.loadedCount).toBe(0);
    expect(await m.describe(id)).toBe(d);
    const loaded = await m.get(id);
    expect(m.loadedCount).toBe(1);
    const i = loaded.engine.info;
    expect(d).toEqual({ id: loaded.id, dir: i.dir, family: i.family, tasks: i.tasks, languages: i.languages, multilingual: i.multilingual, samplingRate: i.samplingRate });
    expect(d.family).toBe(family);
    expect(d.languages).toContain('en');
    // Only multilingual Whisper translates.
    expect(d.tasks).toEqual(family === 'whisper' ? ['transcribe', 'translate'] : ['transcribe']);
  });

  it('throws the registry errors: 400 unknown, 503 not installed (with the pull command)', async () => {
    const m = models();
    await expect(m.describe('whisper-huge-v9')).rejects.toMatchObject({ kind: 'invalid', message: expect.stringMatching(/whisper-mini-random/) });
    await expect(m.describe('small')).rejects.toMatchObject({ kind: 'unavailable', message: expect.stringContaining('npm run models:pull -- small') });
    // check() answers the same before any job starts
    expect(() => m.check('small')).toThrow(expect.objectContaining({ kind: 'unavailable' }));
    expect(m.loadedCount).toBe(0);
  });
});

describe('TranscriptionService where chunks are decoded elsewhere (work queue, real worker)', () => {
  function service(m: SpeechModels, work: SpeechWork) {
    return new TranscriptionService({ models: m, transcriber: new FileTranscriber({ vad, work }), jobs: new JobRegistry() });
  }
  const OPTS = { maxNewTokens: 8, temperature: 0 };

  it('describes the model, dispatches its pieces to the worker, loads nothing, and answers as a local decode', async () => {
    const api = models();
    const served = await worker(registry, MODEL);
    const r = await service(api, new QueuedSpeechWork(await workQueue(), null)).transcribeFile({ path: speech, model: MODEL, language: 'auto', ...OPTS });
    // The API server read config files only; the worker loaded the model and decoded everything.
    expect(api.loadedCount).toBe(0);
    expect(served.loadedCount).toBe(1);
    const { byGroup } = (await served.get(MODEL)).scheduler.stats;
    expect(byGroup.detect).toBe(1);
    expect(byGroup.transcribe).toBeGreaterThanOrEqual(1);
    // The same file decoded on one server with the same model: the same transcript (16-bit source: bit-exact on the wire).
    const local = await service(models(), new LocalSpeechWork()).transcribeFile({ path: speech, model: MODEL, language: 'auto', ...OPTS });
    expect(r.model).toBe(MODEL);
    expect(r.language).toBe(local.language);
    expect(r.text).toBe(local.text);
    expect(r.segments).toEqual(local.segments);
  });

  it('400 for a language the model lacks, 400 unknown, 503 not installed, all before any work; English served from config files only', async () => {
    const api = models(new ModelRegistry({ modelsDir: path.join(tmp, 'api'), manifest: await loadManifest() }));
    const served = await worker(new ModelRegistry({ modelsDir: path.join(tmp, 'worker'), manifest: await loadManifest() }), 'english-only-configs');
    const queue = await workQueue();
    const svc = service(api, new QueuedSpeechWork(queue, null));
    await expect(svc.transcribeFile({ path: speech, model: 'english-only-configs', language: 'de' })).rejects.toMatchObject({
      kind: 'invalid',
      message: "Model 'english-only-configs' does not support language 'de'. Use 'auto' or one of: en.",
    });
    await expect(svc.transcribeFile({ path: speech, model: 'whisper-huge-v9', language: 'en' })).rejects.toMatchObject({ kind: 'invalid' });
    await expect(svc.transcribeFile({ path: speech, model: 'small', language: 'en' })).rejects.toMatchObject({ kind: 'unavailable' });
    expect(queue.stats.dispatched).toBe(0);
    expect(served.loadedCount).toBe(0);
    // English: the API server has nothing of the model but its config files; the worker decodes.
    const r = await svc.transcribeFile({ path: speech, model: 'english-only-configs', language: 'en', ...OPTS });
    expect(r.language).toBe('en');
    expect(queue.stats.dispatched).toBeGreaterThanOrEqual(1);
    expect(api.loadedCount).toBe(0);
    expect((await served.get('english-only-configs')).scheduler.stats.byGroup.transcribe).toBe(queue.stats.dispatched);
  });

  it('Moonshine over the work queue: de and translate refused from its config files, English decoded by a worker', async () => {
    const api = models();
    const served = await worker(registry, 'moonshine-mini-random');
    const queue = await workQueue();
    const svc = service(api, new QueuedSpeechWork(queue, null));
    const req = { path: speech, model: 'moonshine-mini-random', maxNewTokens: 8, temperature: 0 };
    await expect(svc.transcribeFile({ ...req, language: 'de' })).rejects.toMatchObject({
      kind: 'invalid',
      message: "Model 'moonshine-mini-random' does not support language 'de'. Use 'auto' or one of: en.",
    });
    await expect(svc.transcribeFile({ ...req, language: 'en', task: 'translate' })).rejects.toMatchObject({ kind: 'invalid', message: expect.stringMatching(/cannot translate/) });
    expect(queue.stats.dispatched).toBe(0);
    expect(served.loadedCount).toBe(0);
    const r = await svc.transcribeFile({ ...req, language: 'en' });
    expect(r.model).toBe('moonshine-mini-random');
    expect(r.language).toBe('en');
    expect(r.text.length).toBeGreaterThan(0);
    expect(api.loadedCount).toBe(0);
    expect(served.loadedCount).toBe(1);
    expect(queue.stats.dispatched).toBeGreaterThanOrEqual(1);
  });

  it('local decoding still loads the model (LocalSpeechWork)', async () => {
    const m = models();
    const r = await service(m, new LocalSpeechWork()).transcribeFile({ path: speech, model: MODEL, language: 'en', maxNewTokens: 4, temperature: 0 });
    expect(r.model).toBe(MODEL);
    expect(m.loadedCount).toBe(1);
    expect((await m.get(MODEL)).scheduler.stats.byGroup).toEqual({ transcribe: expect.any(Number) });
  });
});
