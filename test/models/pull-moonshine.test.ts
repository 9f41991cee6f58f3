/**
 * `moonshine-tiny` is pulled like the Whisper models: the real manifest entry (hub repository layout, no hashes in
 * the manifest, so the hub's own checksums are checked), from a stand-in hub that serves the Moonshine fixture's
 * files under that entry's paths; then the registry lists it installed and the server's model loader runs it
 * (family told by its config), giving the golden tokens.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pullModel } from '../../src/models/downloader.ts';
import { readLockFile } from '../../src/models/integrity.ts';
import { loadManifest } from '../../src/models/manifest.ts';
import { ModelRegistry } from '../../src/models/registry.ts';
import { SpeechModels } from '../../src/pipeline/speech-models.ts';
import { readWav } from '../engines/whisper/helpers.ts';
import { MODELS_DIR } from '../helpers/paths.ts';
import { startFixtureHub, type HubServer } from './hub-server.ts';

const FIXTURE = join(MODELS_DIR, 'moonshine-mini-random');
let modelsDir: string;
let server: HubServer;

beforeAll(async () => {
  modelsDir = mkdtempSync(join(tmpdir(), 'stt-models-moonshine-'));
  server = await startFixtureHub((await loadManifest()).models['moonshine-tiny'].files, FIXTURE);
});

afterAll(async () => {
  await server?.close();
  rmSync(modelsDir, { recursive: true, force: true });
});

it('pulls the manifest entry moonshine-tiny (hub checksums), lists it installed, and serves it with the golden tokens', async () => {
  const manifest = await loadManifest();
  const entry = manifest.models['moonshine-tiny'];
  expect(entry.repo).toBe('onnx-community/moonshine-tiny-ONNX');
  const r = await pullModel('moonshine-tiny', entry, { modelsDir, endpoint: server.endpoint, token: '', retries: 0, retryDelayMs: 5 });
  const lock = (await readLockFile(r.path))!;
  expect(lock.files['onnx/encoder_model.onnx'].verifiedAgainst).toBe('hub-sha256');
  // the fp32 variant only: the merged decoder, not the quantized files
  expect(server.seen.filter((s) => s.method === 'GET' && !s.cdn).map((s) => s.path)).toContain('onnx/decoder_model_merged.onnx');
  expect(server.seen.some((s) => s.path.includes('quantized'))).toBe(false);

  const registry = new ModelRegistry({ modelsDir, manifest });
  expect(registry.get('moonshine-tiny')).toMatchObject({ installed: true, kind: 'asr', languages: 1, languageCodes: ['en'], variants: ['fp32'] });

  const models = new SpeechModels({ registry, logger: pino({ level: 'silent' }), inference: {} });
  try {
    const m = await models.get('moonshine-tiny');
    expect(m.engine.info).toMatchObject({ family: 'moonshine', layout: 'merged', languages: ['en'] });
    const golden = JSON.parse(readFileSync(join(FIXTURE, 'golden/golden.json'), 'utf8'));
    const audio = readWav(join(FIXTURE, 'golden/jfk.wav')).samples;
    const res = await m.transcribe({ audio, options: { maxNewTokens: 24, temperature: 0 } }, { priority: 'file', key: 'pull-test' });
    expect(res.tokensPerWindow).toEqual([golden.inputs.jfk.greedy]);
  } finally {
    await models.close();
  }
});
