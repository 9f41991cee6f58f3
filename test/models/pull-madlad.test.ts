/**
 * `madlad400-3b-mt` is pulled like the Whisper models: the real manifest entry (a community int8 export with its
 * ONNX files at the repository root and no generation_config.json), from a stand-in hub that serves the MADLAD
 * fixture's int8 files under that entry's paths. The registry then lists it installed as a translation model, and
 * the engine loads the int8 files by itself (the folder has no fp32 ones) and translates as the fixture's int8
 * files do when loaded directly.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { TranslationEngine } from '../../src/engines/translation/index.ts';
import { pullModel } from '../../src/models/downloader.ts';
import { loadManifest } from '../../src/models/manifest.ts';
import { ModelRegistry } from '../../src/models/registry.ts';
import { MODELS_DIR } from '../helpers/paths.ts';
import { startFixtureHub, type HubServer } from './hub-server.ts';

const FIXTURE = join(MODELS_DIR, 'madlad-mini-random');
let modelsDir: string;
let server: HubServer;

beforeAll(async () => {
  modelsDir = mkdtempSync(join(tmpdir(), 'stt-models-madlad-'));
  const entry = (await loadManifest()).models['madlad400-3b-mt'];
  // the upload has no generation_config.json and no onnx/ folder
  server = await startFixtureHub(entry.files, FIXTURE, (p) => (p === 'generation_config.json' || p === 'special_tokens_map.json' ? null : p.endsWith('.onnx') ? `onnx/${p}` : p));
});

afterAll(async () => {
  await server?.close();
  rmSync(modelsDir, { recursive: true, force: true });
});

it('pulls madlad400-3b-mt (int8 files, optional files absent), lists it as translation, and the engine runs its int8 files', async () => {
  const manifest = await loadManifest();
  const entry = manifest.models['madlad400-3b-mt'];
  expect(entry).toMatchObject({ kind: 'translation', repo: 'CXDuncan/madlad400-3b-mt-optimized-quantized-onnx' });
  expect(entry.revision).toMatch(/^[0-9a-f]{40}$/);
  const r = await pullModel('madlad400-3b-mt', entry, { modelsDir, endpoint: server.endpoint, token: '', retries: 0, retryDelayMs: 5 });
  expect(server.seen.filter((s) => s.method === 'GET' && !s.cdn).map((s) => s.path)).toEqual(expect.arrayContaining(['encoder_model_quantized.onnx', 'decoder_with_past_model_quantized.onnx']));

  const registry = new ModelRegistry({ modelsDir, manifest });
  expect(registry.get('madlad400-3b-mt')).toMatchObject({ installed: true, kind: 'translation', variants: ['quantized'] });

  const pulled = await TranslationEngine.load(r.path, { id: 'madlad400-3b-mt', intraOpThreads: 1 });
  const direct = await TranslationEngine.load(FIXTURE, { precision: 'int8', intraOpThreads: 1 });
  try {
    expect(pulled.info).toMatchObject({ quantized: true, layout: 'split', modelType: 't5' });
    // eos from config.json: the same as the fixture's generation_config.json
    expect(pulled.config.eosTokenId).toBe(direct.config.eosTokenId);
    const texts = ['The weather is nice today.', 'Where is the station?'];
    const a = await pulled.translate(texts, 'de', { maxNewTokens: 8 });
    const b = await direct.translate(texts, 'de', { maxNewTokens: 8 });
    expect(a.map((t) => t.tokens)).toEqual(b.map((t) => t.tokens));
    expect(a[0].tokens).toHaveLength(8);
  } finally {
    await pulled.close();
    await direct.close();
  }
});
