/**
 * SpeechModels.describe: a model's id, languages and sampling rate from its config files, with the
 * registry's 400/503 errors and no ONNX session; and the file path of an API-only server
 * (TranscriptionService over a SpeechWork that does not decode locally) using only that.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { SileroVad } from '../../src/engines/vad/silero-vad.ts';
import type { TranscribeRequest, TranscribeResult } from '../../src/engines/whisper/index.ts';
import { loadManifest } from '../../src/models/manifest.ts';
import { ModelRegistry } from '../../src/models/registry.ts';
import { FileTranscriber } from '../../src/pipeline/file-transcriber.ts';
import { JobRegistry } from '../../src/pipeline/job-registry.ts';
import { SpeechModels, type FileSpeechModel } from '../../src/pipeline/speech-models.ts';
import { LocalSpeechWork, type SpeechWork } from '../../src/pipeline/speech-work.ts';
import { TranscriptionService } from '../../src/pipeline/transcription-service.ts';
import { TEXTS, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { MODELS_DIR, WHISPER_FIXTURE } from '../helpers/paths.ts';

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

/** Pieces go "elsewhere": recorded and answered here, as workers would. */
class RemoteWork implements SpeechWork {
  readonly decodesLocally = false;
  readonly seen: Array<{ op: string; model: string; loaded: boolean }> = [];
  async transcribe(model: FileSpeechModel, req: TranscribeRequest): Promise<TranscribeResult> {
    this.seen.push({ op: 'transcribe', model: model.id, loaded: 'engine' in model });
    return { text: 'hello', language: req.options?.language ?? 'en', segments: [{ id: 0, seek: 0, start: 0, end: 1, text: ' hello', tokens: [], temperature: 0, avgLogprob: 0, compressionRatio: 1, noSpeechProb: 0 }], tokensPerWindow: [[1]], duration: 1 } as unknown as TranscribeResult;
  }
  async detectLanguage(model: FileSpeechModel): Promise<string> {
    this.seen.push({ op: 'detect', model: model.id, loaded: 'engine' in model });
    return 'en';
  }
}

beforeAll(async () => {
  registry = new ModelRegistry({ modelsDir: MODELS_DIR, manifest: await loadManifest() });
  // An English-only model folder with config files only: describe needs nothing else.
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-describe-'));
  const dir = path.join(tmp, 'english-only-configs');
  fs.mkdirSync(dir);
  for (const f of ['config.json', 'preprocessor_config.json']) fs.copyFileSync(path.join(WHISPER_FIXTURE, f), path.join(dir, f));
  const gen = JSON.parse(fs.readFileSync(path.join(WHISPER_FIXTURE, 'generation_config.json'), 'utf8'));
  gen.lang_to_id = { '<|en|>': gen.lang_to_id['<|en|>'] };
  fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify(gen));
  vad = await SileroVad.load();
  speech = (await makeSpeechWav(TEXTS.hello)).path;
});

afterAll(async () => {
  for (const m of all) await m.close();
  await vad?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('SpeechModels.describe', () => {
  it("reads what the loaded engine reports, once, without loading it", async () => {
    const m = models();
    const d = await m.describe(MODEL);
    expect(m.loadedCount).toBe(0);
    expect(await m.describe(MODEL)).toBe(d);
    const loaded = await m.get(MODEL);
    expect(m.loadedCount).toBe(1);
    const i = loaded.engine.info;
    expect(d).toEqual({ id: loaded.id, dir: i.dir, languages: i.languages, multilingual: i.multilingual, samplingRate: i.samplingRate });
    expect(d.languages).toContain('en');
  });

  it('throws the registry errors: 400 unknown, 503 not installed (with the pull command)', async () => {
    const m = models();
    expect(() => m.describe('whisper-huge-v9')).toThrow(expect.objectContaining({ kind: 'invalid', message: expect.stringMatching(/whisper-mini-random/) }));
    expect(() => m.describe('small')).toThrow(expect.objectContaining({ kind: 'unavailable', message: expect.stringContaining('npm run models:pull -- small') }));
    expect(m.loadedCount).toBe(0);
  });
});

describe('TranscriptionService where chunks are decoded elsewhere', () => {
  function service(m: SpeechModels, work: SpeechWork) {
    return new TranscriptionService({ models: m, transcriber: new FileTranscriber({ vad, work }), jobs: new JobRegistry() });
  }

  it('describes the model, dispatches its pieces and loads nothing', async () => {
    const m = models();
    const work = new RemoteWork();
    const r = await service(m, work).transcribeFile({ path: speech, model: MODEL, language: 'auto' });
    expect(r.model).toBe(MODEL);
    expect(r.language).toBe('en');
    expect(r.text).toBe('hello');
    expect(work.seen[0]).toEqual({ op: 'detect', model: MODEL, loaded: false });
    expect(work.seen.filter((s) => s.op === 'transcribe').length).toBeGreaterThanOrEqual(1);
    expect(work.seen.every((s) => !s.loaded)).toBe(true);
    expect(m.loadedCount).toBe(0);
  });

  it('400 for a language the model lacks, 400 unknown, 503 not installed, all before any work', async () => {
    const reg = new ModelRegistry({ modelsDir: tmp, manifest: await loadManifest() });
    const m = models(reg);
    const work = new RemoteWork();
    const svc = service(m, work);
    await expect(svc.transcribeFile({ path: speech, model: 'english-only-configs', language: 'de' })).rejects.toMatchObject({
      kind: 'invalid',
      message: "Model 'english-only-configs' does not support language 'de'. Use 'auto' or a code from GET /v1/languages.",
    });
    await expect(svc.transcribeFile({ path: speech, model: 'whisper-huge-v9', language: 'en' })).rejects.toMatchObject({ kind: 'invalid' });
    await expect(svc.transcribeFile({ path: speech, model: 'small', language: 'en' })).rejects.toMatchObject({ kind: 'unavailable' });
    expect(work.seen).toEqual([]);
    // English is served from the config-only folder: nothing of the model but its config files is read.
    const r = await svc.transcribeFile({ path: speech, model: 'english-only-configs', language: 'en' });
    expect(r.text).toBe('hello');
    expect(m.loadedCount).toBe(0);
  });

  it('local decoding still loads the model (LocalSpeechWork)', async () => {
    const m = models();
    const r = await service(m, new LocalSpeechWork()).transcribeFile({ path: speech, model: MODEL, language: 'en', maxNewTokens: 4, temperature: 0 });
    expect(r.model).toBe(MODEL);
    expect(m.loadedCount).toBe(1);
  });
});
