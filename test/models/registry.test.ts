import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelNotInstalledError, UnknownModelError } from '../../src/models/errors.ts';
import { DEFAULT_MANIFEST_PATH, filesForVariant, loadManifest, ManifestError, parseManifest, type Manifest } from '../../src/models/manifest.ts';
import { detectFolderModel, ModelRegistry } from '../../src/models/registry.ts';
import { statusOf } from '../../src/http/error-kinds.ts';

const SHARED = '/work/shared/models';

let manifest: Manifest;
let reg: ModelRegistry;

beforeAll(async () => {
  manifest = await loadManifest();
  reg = new ModelRegistry({ modelsDir: SHARED, manifest });
});

describe('models/manifest.json', () => {
  it('has the public models with their display fields', () => {
    const whisper = {
      'large-v3-turbo': ['Whisper Large V3 Turbo', 'fast'],
      'large-v3': ['Whisper Large V3', 'standard'],
      medium: ['Whisper Medium', 'fast'],
      small: ['Whisper Small', 'very_fast'],
      base: ['Whisper Base', 'very_fast'],
      tiny: ['Whisper Tiny', 'very_fast'],
    } as const;
    for (const [id, [name, speed]] of Object.entries(whisper)) {
      const m = manifest.models[id];
      expect(m).toMatchObject({ name, speed, kind: 'asr', languages: 99, repo: `onnx-community/whisper-${id}` });
      const paths = m.files.map((f) => f.path);
      for (const p of ['config.json', 'generation_config.json', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json']) {
        expect(paths).toContain(p);
      }
      expect(filesForVariant(m, 'fp32').map((f) => f.path)).toContain('onnx/decoder_model_merged.onnx');
      expect(filesForVariant(m, 'quantized').map((f) => f.path)).toContain('onnx/encoder_model_quantized.onnx');
      expect(filesForVariant(m, 'quantized').map((f) => f.path)).not.toContain('onnx/encoder_model.onnx');
    }
    expect(manifest.models['all-minilm-l6-v2']).toMatchObject({ kind: 'embedding', repo: 'Xenova/all-MiniLM-L6-v2' });
    const qwen = manifest.models['qwen2.5-1.5b-instruct'];
    expect(qwen).toMatchObject({ kind: 'llm', repo: 'Qwen/Qwen2.5-1.5B-Instruct-GGUF' });
    expect(qwen.files.map((f) => f.path)).toEqual(['qwen2.5-1.5b-instruct-q4_k_m.gguf']);
    // --quantized on a model without variants fetches the same files.
    expect(filesForVariant(qwen, 'quantized')).toEqual(qwen.files);
  });

  it('has the English Moonshine models: one language, its code, merged decoder in fp32 and int8', () => {
    for (const [id, name] of [
      ['moonshine-tiny', 'Moonshine Tiny'],
      ['moonshine-base', 'Moonshine Base'],
    ] as const) {
      const m = manifest.models[id];
      expect(m).toMatchObject({ name, kind: 'asr', languages: 1, language_codes: ['en'], speed: 'very_fast', repo: `onnx-community/${id}-ONNX` });
      expect(m.files.map((f) => f.path)).toEqual(expect.arrayContaining(['config.json', 'generation_config.json', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json']));
      expect(filesForVariant(m, 'fp32').map((f) => f.path)).toEqual(expect.arrayContaining(['onnx/encoder_model.onnx', 'onnx/decoder_model_merged.onnx']));
      expect(filesForVariant(m, 'quantized').map((f) => f.path)).toEqual(expect.arrayContaining(['onnx/encoder_model_quantized.onnx', 'onnx/decoder_model_merged_quantized.onnx']));
      expect(filesForVariant(m, 'quantized').map((f) => f.path)).not.toContain('onnx/encoder_model.onnx');
    }
    // Whisper's 99 languages are not listed one by one.
    expect(manifest.models.tiny).not.toHaveProperty('language_codes');
  });

  it('language_codes must be lower-case ISO codes', () => {
    const model = (codes: unknown) => ({
      version: 1,
      models: { m: { name: 'x', kind: 'asr', languages: 1, language_codes: codes, speed: null, repo: 'a/b', revision: 'main', files: [{ path: 'a', size: 1, sha256: null }] } },
    });
    expect(parseManifest(model(['en'])).models.m.language_codes).toEqual(['en']);
    expect(() => parseManifest(model(['EN']))).toThrow(ManifestError);
    expect(() => parseManifest(model(['english']))).toThrow(ManifestError);
    expect(() => parseManifest(model('en'))).toThrow(ManifestError);
  });

  it('is validated: bad ids, paths and hashes are rejected with every problem listed', () => {
    const bad = {
      version: 1,
      models: {
        '../evil': { name: 'x', kind: 'asr', languages: 1, speed: null, repo: 'a/b', revision: 'main', files: [{ path: 'a', size: 1, sha256: null }] },
        ok: {
          name: 'x',
          kind: 'asr',
          languages: 1,
          speed: null,
          repo: 'a/b',
          revision: 'main',
          files: [{ path: '../x', size: 1, sha256: 'ABC' }],
        },
      },
    };
    expect(() => parseManifest(bad)).toThrow(ManifestError);
    try {
      parseManifest(bad);
    } catch (e) {
      expect((e as Error).message).toMatch(/invalid model id/);
      expect((e as Error).message).toMatch(/relative path/);
      expect((e as Error).message).toMatch(/64 lower-case hex/);
    }
    expect(JSON.parse(readFileSync(DEFAULT_MANIFEST_PATH, 'utf8')).version).toBe(1);
  });
});

describe('ModelRegistry on /work/shared/models', () => {
  it('lists every manifest model plus the fixture folders with the right kinds', () => {
    const list = reg.list();
    const byId = new Map(list.map((e) => [e.id, e]));
    for (const id of Object.keys(manifest.models)) {
      expect(byId.get(id)).toMatchObject({ source: 'manifest', installed: false, path: null });
    }
    expect(byId.get('whisper-mini-random')).toMatchObject({
      kind: 'asr',
      languages: 99,
      installed: true,
      source: 'folder',
      path: join(SHARED, 'whisper-mini-random'),
    });
    expect(byId.get('minilm-mini-random')).toMatchObject({ kind: 'embedding', installed: true, source: 'folder' });
    expect(byId.get('qwen2-mini-random')).toMatchObject({ kind: 'llm', installed: true, source: 'folder' });
    expect(byId.get('wespeaker-resnet34-random')).toMatchObject({ kind: 'diarization', role: 'speaker-embedding' });
    expect(byId.get('pyannote-segmentation-3.0-random')).toMatchObject({ kind: 'diarization', role: 'segmentation' });
    for (const size of ['tiny', 'base', 'small']) expect(byId.get(`whisper-${size}-random`)).toMatchObject({ kind: 'asr', source: 'folder' });
    // Every model folder of the fixtures is listed (the set grows as fixtures are added: count them, don't hard-code).
    const folders = readdirSync(SHARED, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
    expect(
      list
        .filter((e) => e.source === 'folder')
        .map((e) => e.id)
        .sort(),
    ).toEqual(folders.sort());
  });

  it('Moonshine: the fixture folder is an English asr model, the registry ids carry their codes', () => {
    expect(detectFolderModel(join(SHARED, 'moonshine-mini-random'))).toEqual({ kind: 'asr', languages: 1, languageCodes: ['en'] });
    // Multilingual Whisper: 99 languages, no code list.
    expect(detectFolderModel(join(SHARED, 'whisper-mini-random'))).toEqual({ kind: 'asr', languages: 99 });
    const byId = new Map(reg.list().map((e) => [e.id, e]));
    expect(byId.get('moonshine-mini-random')).toMatchObject({ kind: 'asr', languages: 1, languageCodes: ['en'], installed: true, source: 'folder' });
    for (const id of ['moonshine-tiny', 'moonshine-base']) {
      expect(byId.get(id)).toMatchObject({ kind: 'asr', languages: 1, languageCodes: ['en'], installed: false, source: 'manifest' });
    }
    expect(reg.resolve('moonshine-mini-random', 'asr').path).toBe(join(SHARED, 'moonshine-mini-random'));
  });

  it('resolves folder models by folder name, optionally checking the kind', () => {
    expect(reg.resolve('whisper-mini-random').path).toBe(join(SHARED, 'whisper-mini-random'));
    expect(reg.resolve('whisper-mini-random', 'asr').kind).toBe('asr');
    expect(() => reg.resolve('qwen2-mini-random', 'asr')).toThrow(UnknownModelError);
    try {
      reg.resolve('qwen2-mini-random', 'asr');
    } catch (e) {
      expect((e as Error).message).toMatch(/is a llm model, not a asr model/);
      expect((e as Error).message).toContain('whisper-mini-random');
    }
  });

  it('a manifest model that is not installed: ModelNotInstalledError, 503, exact pull command', () => {
    let err: unknown;
    try {
      reg.resolve('small', 'asr');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ModelNotInstalledError);
    expect((err as ModelNotInstalledError).kind).toBe('unavailable');
    expect(statusOf(err)).toBe(503);
    expect((err as Error).message).toBe("Model 'small' is not installed on this server. Install it with: npm run models:pull -- small");
  });

  it('an unknown id: UnknownModelError, 400, lists the available ids', () => {
    for (const id of ['no-such-model', '../whisper-mini-random', 'golden', '']) {
      let err: unknown;
      try {
        reg.resolve(id);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(UnknownModelError);
      expect((err as UnknownModelError).kind).toBe('invalid');
      expect(statusOf(err)).toBe(400);
      expect((err as UnknownModelError).available).toContain('whisper-mini-random');
      expect((err as Error).message).toContain('whisper-mini-random');
      expect((err as Error).message).toContain('large-v3-turbo (not installed)');
    }
    const asrOnly = (() => {
      try {
        reg.resolve('nope', 'asr');
      } catch (e) {
        return e as UnknownModelError;
      }
    })()!;
    expect(asrOnly.available).not.toContain('qwen2-mini-random');
    expect(asrOnly.available).toContain('whisper-mini-random');
  });

  it('verify(whisper-mini-random) is clean against files.json', async () => {
    const r = await reg.verify('whisper-mini-random');
    expect(r).toEqual({ id: 'whisper-mini-random', ok: true, source: 'files.json', checked: 21, mismatches: [], patched: [] });
    expect((await reg.verify('qwen2-mini-random')).ok).toBe(true);
    expect(await reg.verify('moonshine-mini-random')).toMatchObject({ ok: true, source: 'files.json', mismatches: [] });
    expect(await reg.verify('wespeaker-resnet34-random')).toMatchObject({ ok: true, source: 'none', checked: 0 });
  });
});

describe('ModelRegistry on a writable MODELS_DIR', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stt-reg-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('installed needs every required file; partial folders and non-model folders are ignored; verify finds damage', async () => {
    const r = new ModelRegistry({ modelsDir: dir, manifest });
    const tiny = join(dir, 'tiny');
    for (const f of filesForVariant(manifest.models.tiny, 'quantized')) {
      if (f.path === 'tokenizer.json') continue;
      mkdirSync(join(tiny, f.path, '..'), { recursive: true });
      writeFileSync(join(tiny, f.path), 'x');
    }
    expect(r.get('tiny')!.installed).toBe(false);
    expect(() => r.resolve('tiny')).toThrow(ModelNotInstalledError);
    writeFileSync(join(tiny, 'tokenizer.json'), '{}');
    expect(r.resolve('tiny')).toMatchObject({ installed: true, variants: ['quantized'], path: tiny });

    mkdirSync(join(dir, 'base.partial', 'onnx'), { recursive: true });
    writeFileSync(join(dir, 'base.partial', 'config.json'), '{"model_type":"whisper"}');
    mkdirSync(join(dir, 'notes'));
    writeFileSync(join(dir, 'notes', 'readme.txt'), 'hi');
    const mine = join(dir, 'my-whisper');
    mkdirSync(mine);
    writeFileSync(join(mine, 'config.json'), JSON.stringify({ model_type: 'whisper', vocab_size: 51864 }));
    writeFileSync(join(mine, 'files.json'), JSON.stringify({ 'config.json': [1, '0'.repeat(64)], 'gone.onnx': [3, '1'.repeat(64)] }));
    const folders = r.list().filter((e) => e.source === 'folder');
    expect(folders.map((e) => e.id)).toEqual(['my-whisper']);
    expect(folders[0]).toMatchObject({ kind: 'asr', languages: 1, languageCodes: ['en'] });
    const v = await r.verify('my-whisper');
    expect(v.ok).toBe(false);
    expect(v.mismatches.map((m) => [m.path, m.problem])).toEqual([
      ['config.json', 'size'],
      ['gone.onnx', 'missing'],
    ]);
  });
});
