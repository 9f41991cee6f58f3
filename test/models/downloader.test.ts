import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { pullModel, type PullProgress } from '../../src/models/downloader.ts';
import { ChecksumMismatchError, DownloadError, ModelNotInstalledError } from '../../src/models/errors.ts';
import { LOCK_FILE, readLockFile, sha256File } from '../../src/models/integrity.ts';
import { parseManifest, type Manifest, type ManifestModel } from '../../src/models/manifest.ts';
import { ModelRegistry } from '../../src/models/registry.ts';
import { HubServer } from './hub-server.ts';

const FIXTURE = '/work/shared/models/whisper-mini-random';
const filesJson = JSON.parse(readFileSync(join(FIXTURE, 'files.json'), 'utf8')) as Record<string, [number, string]>;

const COMMON = ['config.json', 'generation_config.json', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json'];
const FP32 = ['onnx/encoder_model.onnx', 'onnx/decoder_model_merged.onnx'];
const QUANT = ['onnx/encoder_model_quantized.onnx', 'onnx/decoder_model_quantized.onnx'];
const BIG = 'onnx/decoder_model_merged.onnx'; // 27 MB

let hubRoot: string;
let server: HubServer;
let modelsDir: string;

/** Test manifest: the fixture files under a fake repo, with the real sizes and sha256 from files.json. */
function testModel(withHashes = true): ManifestModel {
  const spec = (path: string, variant?: 'fp32' | 'quantized') => ({
    path,
    size: withHashes ? filesJson[path][0] : null,
    sha256: withHashes ? filesJson[path][1] : null,
    ...(variant ? { variant } : {}),
  });
  return {
    name: 'Test Whisper',
    kind: 'asr',
    languages: 99,
    speed: 'very_fast',
    repo: 'test-org/whisper-mini-random',
    revision: 'main',
    files: [...COMMON.map((p) => spec(p)), ...FP32.map((p) => spec(p, 'fp32')), ...QUANT.map((p) => spec(p, 'quantized'))],
  };
}

function manifestWith(model: ManifestModel): Manifest {
  return parseManifest({ version: 1, models: { 'test-whisper': model } });
}

function pull(model: ManifestModel, extra: Partial<Parameters<typeof pullModel>[2]> = {}) {
  return pullModel('test-whisper', model, {
    modelsDir,
    endpoint: server.endpoint,
    token: '',
    retries: 0,
    retryDelayMs: 5,
    ...extra,
  });
}

beforeAll(async () => {
  // Serve copies of the fixture files (the shared folder is read-only and must stay untouched).
  hubRoot = mkdtempSync(join(tmpdir(), 'stt-hub-'));
  for (const p of [...COMMON, ...FP32, ...QUANT]) {
    mkdirSync(dirname(join(hubRoot, p)), { recursive: true });
    copyFileSync(join(FIXTURE, p), join(hubRoot, p));
  }
});

afterAll(() => {
  rmSync(hubRoot, { recursive: true, force: true });
});

beforeEach(async () => {
  server = await new HubServer({ root: hubRoot }).start();
  modelsDir = mkdtempSync(join(tmpdir(), 'stt-models-'));
});

afterEach(async () => {
  await server.close();
  rmSync(modelsDir, { recursive: true, force: true });
});

async function expectInstalledAndVerified(variant: 'fp32' | 'quantized' = 'fp32') {
  const dir = join(modelsDir, 'test-whisper');
  const wanted = [...COMMON, ...(variant === 'fp32' ? FP32 : QUANT)];
  for (const p of wanted) {
    expect(statSync(join(dir, p)).size).toBe(filesJson[p][0]);
    expect(await sha256File(join(dir, p))).toBe(filesJson[p][1]);
  }
  expect(readdirSync(modelsDir).sort()).toEqual(['test-whisper']);
  expect(existsSync(join(dir, '.stt-partial.json'))).toBe(false);
  expect(readdirSync(join(dir, 'onnx')).some((n) => n.endsWith('.part'))).toBe(false);
}

describe('pullModel against a local hub', () => {
  it('downloads, verifies against the manifest sha256, installs atomically and writes the lock file', async () => {
    const events: PullProgress[] = [];
    const model = testModel();
    const r = await pull(model, { onProgress: (p) => events.push(p) });
    expect(r.alreadyInstalled).toBe(false);
    expect(r.path).toBe(join(modelsDir, 'test-whisper'));
    await expectInstalledAndVerified();

    const lock = await readLockFile(r.path);
    expect(lock).not.toBeNull();
    expect(Object.keys(lock!.files).sort()).toEqual([...COMMON, ...FP32].sort());
    for (const [p, f] of Object.entries(lock!.files)) {
      expect(f).toEqual({ size: filesJson[p][0], sha256: filesJson[p][1], verifiedAgainst: 'manifest' });
    }
    expect(lock!.variant).toBe('fp32');

    // Progress: monotonic overall bytes, known total (sizes in the manifest), ends at the total.
    const total = [...COMMON, ...FP32].reduce((a, p) => a + filesJson[p][0], 0);
    const dl = events.filter((e) => e.phase === 'download');
    expect(dl.length).toBeGreaterThan(0);
    for (let i = 1; i < dl.length; i++) expect(dl[i].bytes).toBeGreaterThanOrEqual(dl[i - 1].bytes);
    expect(events.every((e) => e.total === total)).toBe(true);
    expect(events.at(-1)!.bytes).toBe(total);
    expect(r.bytesDownloaded).toBe(total);

    // The registry sees it as installed; verify() checks it against the lock file.
    const reg = new ModelRegistry({ modelsDir, manifest: manifestWith(model) });
    const entry = reg.resolve('test-whisper', 'asr');
    expect(entry).toMatchObject({ installed: true, source: 'manifest', path: r.path, variants: ['fp32'] });
    expect(await reg.verify('test-whisper')).toMatchObject({ ok: true, source: 'lock', checked: 7, mismatches: [] });

    // Second pull: nothing to do, no request for file bodies.
    const before = server.seen.length;
    const again = await pull(model);
    expect(again.alreadyInstalled).toBe(true);
    expect(server.seen.length).toBe(before);

    // Adding the quantized variant keeps the fp32 files and fetches only the new ones.
    const q = await pull(model, { variant: 'quantized' });
    expect(q.alreadyInstalled).toBe(false);
    expect(q.bytesDownloaded).toBe(QUANT.reduce((a, p) => a + filesJson[p][0], 0));
    await expectInstalledAndVerified('quantized');
    await expectInstalledAndVerified('fp32');
    expect(reg.resolve('test-whisper').variants).toEqual(['fp32', 'quantized']);
  });

  it('sha256 mismatch: clear error naming file and hashes, no model folder and no partial junk', async () => {
    server.corrupt.add('onnx/encoder_model.onnx');
    const err = await pull(testModel()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChecksumMismatchError);
    const e = err as ChecksumMismatchError;
    expect(e.file).toBe('onnx/encoder_model.onnx');
    expect(e.expected).toBe(filesJson['onnx/encoder_model.onnx'][1]);
    expect(e.actual).toMatch(/^[0-9a-f]{64}$/);
    expect(e.actual).not.toBe(e.expected);
    expect(e.message).toContain('onnx/encoder_model.onnx');
    expect(e.message).toContain(e.expected);
    expect(e.message).toContain(e.actual);
    expect(readdirSync(modelsDir)).toEqual([]);

    const reg = new ModelRegistry({ modelsDir, manifest: manifestWith(testModel()) });
    expect(() => reg.resolve('test-whisper')).toThrow(ModelNotInstalledError);
  });

  it('interrupted download: the next pull resumes with a Range request and completes', async () => {
    const cutAt = 10_000_000;
    server.cutOnce.set(BIG, cutAt);
    const err = await pull(testModel()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as DownloadError).retryable).toBe(true);
    expect(existsSync(join(modelsDir, 'test-whisper'))).toBe(false);
    const part = join(modelsDir, 'test-whisper.partial', `${BIG}.part`);
    const have = statSync(part).size;
    expect(have).toBeGreaterThan(0);
    expect(have).toBeLessThanOrEqual(cutAt);

    const getsBefore = server.seen.filter((r) => r.method === 'GET').length;
    const r = await pull(testModel());
    expect(r.resumedFiles).toEqual([BIG]);
    expect(server.gets(BIG).at(-1)!.range).toBe(`bytes=${have}-`);
    // Files finished before the cut were not downloaded again.
    const getsAfter = server.seen.filter((x) => x.method === 'GET').slice(getsBefore);
    expect(getsAfter.map((x) => x.path)).toEqual([BIG]);
    expect(r.bytesDownloaded).toBe(filesJson[BIG][0] - have);
    await expectInstalledAndVerified();
  });

  it('automatic retry inside one pull resumes too', async () => {
    server.cutOnce.set(BIG, 5_000_000);
    const r = await pull(testModel(), { retries: 2 });
    expect(r.resumedFiles).toEqual([BIG]);
    expect(server.gets(BIG).map((x) => x.range)).toEqual([undefined, expect.stringMatching(/^bytes=\d+-$/)]);
    await expectInstalledAndVerified();
  });

  it('a server that ignores Range (200 instead of 206) still yields a correct file', async () => {
    server.cutOnce.set(BIG, 7_000_000);
    await expect(pull(testModel())).rejects.toBeInstanceOf(DownloadError);
    server.ignoreRange = true;
    const r = await pull(testModel());
    expect(server.gets(BIG).at(-1)!.range).toMatch(/^bytes=\d+-$/);
    expect(r.resumedFiles).toEqual([]);
    expect(r.bytesDownloaded).toBe(filesJson[BIG][0]);
    await expectInstalledAndVerified();
  });

  it('without manifest hashes, verifies against the hub checksum headers and records them', async () => {
    server.checksums = 'hf';
    const r = await pull(testModel(false), { token: 'hf_secret' });
    await expectInstalledAndVerified();
    const lock = (await readLockFile(r.path))!;
    expect(lock.commit).toBe('0123456789abcdef0123456789abcdef01234567');
    for (const p of COMMON) expect(lock.files[p].verifiedAgainst).toBe('hub-git-sha1');
    for (const p of FP32) expect(lock.files[p]).toEqual({ size: filesJson[p][0], sha256: filesJson[p][1], verifiedAgainst: 'hub-sha256' });
    // The token goes to the hub origin (here the same server also plays the CDN).
    expect(server.seen.every((x) => x.authorization === 'Bearer hf_secret')).toBe(true);
    // Sizes were learned from a HEAD probe before downloading.
    expect(server.seen.filter((x) => x.method === 'HEAD').length).toBe(7);
  });

  it('hub checksum mismatch is caught as well', async () => {
    server.checksums = 'hf';
    server.corrupt.add(BIG);
    const err = await pull(testModel(false)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChecksumMismatchError);
    expect((err as ChecksumMismatchError).expectedFrom).toBe('hub');
    expect((err as ChecksumMismatchError).expected).toBe(filesJson[BIG][1]);
    expect(readdirSync(modelsDir)).toEqual([]);
  });

  it('refuses files with no checksum anywhere unless allowUnverified', async () => {
    const err = await pull(testModel(false)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as Error).message).toMatch(/No checksum for 'config.json'.*--allow-unverified/);
    expect(existsSync(join(modelsDir, 'test-whisper'))).toBe(false);

    const r = await pull(testModel(false), { allowUnverified: true });
    const lock = (await readLockFile(r.path))!;
    expect(Object.values(lock.files).every((f) => f.verifiedAgainst === 'unverified')).toBe(true);
    await expectInstalledAndVerified();
  });

  it('optional files the hub does not have are skipped and recorded; required ones fail with 404', async () => {
    const model = testModel();
    model.files.push({ path: 'onnx/encoder_model.onnx_data', size: null, sha256: null, variant: 'fp32', optional: true });
    const r = await pull(model);
    expect(r.lock.absent).toEqual(['onnx/encoder_model.onnx_data']);
    expect(existsSync(join(r.path, LOCK_FILE))).toBe(true);

    rmSync(r.path, { recursive: true });
    server.missing.add('tokenizer.json');
    model.files.find((f) => f.path === 'tokenizer.json')!.size = null;
    const err = await pull(model).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as DownloadError).httpStatus).toBe(404);
    expect((err as Error).message).toContain('tokenizer.json');
  });
});
