/**
 * AUTO_PULL in process: the installer pulls a missing manifest model once for every request that needs it meanwhile,
 * reports progress to each, resumes what an interrupted download left, and answers as the registry does for what it
 * cannot pull. The hub is the project's stand-in (test/models/hub-server.ts) serving the Moonshine fixture under the
 * `moonshine-tiny` manifest entry's paths.
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { loadManifest, type Manifest } from '../../src/models/manifest.ts';
import { ModelInstaller, type InstallProgress } from '../../src/models/model-installer.ts';
import { ModelRegistry } from '../../src/models/registry.ts';
import { MODELS_DIR } from '../helpers/paths.ts';
import { until } from '../helpers/until.ts';
import { startFixtureHub, type HubServer } from './hub-server.ts';

const ID = 'moonshine-tiny';
const HELD = 'onnx/decoder_model_merged.onnx';
let manifest: Manifest;
let hub: HubServer;
const dirs: string[] = [];

beforeAll(async () => {
  manifest = await loadManifest();
});

afterEach(async () => {
  await hub?.close();
});

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function setup(autoPull = true, extra: { minFreeBytes?: number } = {}) {
  hub = await startFixtureHub(manifest.models[ID].files, join(MODELS_DIR, 'moonshine-mini-random'));
  const modelsDir = mkdtempSync(join(tmpdir(), 'stt-models-installer-'));
  dirs.push(modelsDir);
  const registry = new ModelRegistry({ modelsDir, manifest });
  const installer = new ModelInstaller({ registry, autoPull, endpoint: hub.endpoint, token: '', retries: 0, retryDelayMs: 5, ...extra });
  return { registry, installer, modelsDir };
}

it('concurrent requests share one download; each sees its progress rise to 1; then the model is installed', async () => {
  const { registry, installer } = await setup();
  hub.holdOnce.set(HELD, 900_000);
  const seen: InstallProgress[][] = [[], []];
  const a = installer.ensure(ID, 'asr', { onProgress: (p) => seen[0].push(p) });
  await until(() => hub.heldCount === 1);
  // A second request while the first download is half-way joins it.
  const b = installer.ensure(ID, 'asr', { onProgress: (p) => seen[1].push(p) });
  expect(installer.status([{ role: 'default', id: ID, kind: 'asr' }])[0]).toMatchObject({ installed: false, firstUse: 'downloading' });
  hub.releaseHeld();
  const [ea, eb] = await Promise.all([a, b]);
  expect(ea).toMatchObject({ id: ID, installed: true });
  expect(eb.path).toBe(ea.path);
  // One GET per file of the fp32 variant, whoever asked.
  const fp32 = manifest.models[ID].files.filter((f) => f.variant !== 'quantized').map((f) => f.path);
  for (const f of fp32) expect(hub.gets(f)).toHaveLength(1);
  for (const s of seen) {
    const fractions = s.map((p) => p.fraction).filter((f): f is number => f !== null);
    expect(fractions.some((f) => f > 0 && f < 1)).toBe(true);
    expect(fractions.every((f, i) => i === 0 || f >= fractions[i - 1])).toBe(true);
    expect(fractions.at(-1)).toBe(1);
  }
  expect(registry.get(ID)?.installed).toBe(true);
  expect(installer.status([{ role: 'default', id: ID, kind: 'asr' }])[0]).toMatchObject({ installed: true, firstUse: 'ready' });
  expect(installer.downloading()).toEqual([]);
});

it('a failed download is a 503 saying how to resume; the next request resumes it with a Range request', async () => {
  const { installer, modelsDir } = await setup();
  hub.cutOnce.set(HELD, 700_000);
  await expect(installer.ensure(ID, 'asr')).rejects.toMatchObject({
    kind: 'unavailable',
    message: expect.stringMatching(/Retry the request to resume the download.*npm run models:pull -- moonshine-tiny/),
  });
  // What arrived is kept for the resume.
  const part = join(modelsDir, `${ID}.partial`, `${HELD}.part`);
  expect(statSync(part).size).toBeGreaterThan(0);
  const entry = await installer.ensure(ID, 'asr');
  expect(entry.installed).toBe(true);
  const ranges = hub.seen.filter((r) => r.path === HELD && r.method === 'GET' && r.range).map((r) => r.range);
  expect(ranges.length).toBeGreaterThan(0);
  expect(ranges.every((r) => /^bytes=[1-9]\d*-$/.test(r!))).toBe(true);
  expect(existsSync(join(modelsDir, `${ID}.partial`))).toBe(false);
});

it('a request that stops waiting leaves the download to the others', async () => {
  const { installer } = await setup();
  hub.holdOnce.set(HELD, 900_000);
  const gone = new AbortController();
  const first = installer.ensure(ID, 'asr', { signal: gone.signal });
  const second = installer.ensure(ID, 'asr');
  await until(() => hub.heldCount === 1);
  gone.abort(new Error('client went away'));
  await expect(first).rejects.toThrow('client went away');
  hub.releaseHeld();
  await expect(second).resolves.toMatchObject({ installed: true });
  expect(hub.gets(HELD)).toHaveLength(1);
});

it('AUTO_PULL off, unknown ids and other kinds answer as the registry does, without asking the hub', async () => {
  const off = await setup(false);
  await expect(off.installer.ensure(ID, 'asr')).rejects.toMatchObject({ kind: 'unavailable', message: expect.stringContaining('npm run models:pull -- moonshine-tiny') });
  expect(() => off.installer.check(ID, 'asr')).toThrow(expect.objectContaining({ kind: 'unavailable' }));
  expect(off.installer.status([{ role: 'default', id: ID, kind: 'asr' }])[0].firstUse).toBe('manual');
  await hub.close();
  const on = await setup(true);
  await expect(on.installer.ensure('whisper-huge-v9', 'asr')).rejects.toMatchObject({ kind: 'invalid' });
  await expect(on.installer.ensure(ID, 'embedding')).rejects.toMatchObject({ kind: 'invalid', message: expect.stringContaining('is a asr model, not a embedding model') });
  expect(() => on.installer.check(ID, 'asr')).not.toThrow();
  expect(
    on.installer
      .status([
        { role: 'default', id: ID, kind: 'asr' },
        { role: 'x', id: 'nope-model', kind: 'asr' },
      ])
      .map((s) => s.firstUse),
  ).toEqual(['pull', 'unknown']);
  expect(hub.seen).toEqual([]);
});

it('refuses a download that would not leave MODELS_DIR its free space, once the hub has told the sizes', async () => {
  // More free space asked for than any disk has: the real statfs of the folder says no.
  const { installer, registry } = await setup(true, { minFreeBytes: 2 ** 60 });
  hub.holdOnce.set(HELD, 900_000);
  await expect(installer.ensure(ID, 'asr')).rejects.toMatchObject({
    kind: 'unavailable',
    message: expect.stringMatching(/^Model 'moonshine-tiny' needs 0\.\d GB more in MODELS_DIR .* GB free .*free some space/),
  });
  expect(registry.get(ID)?.installed).toBe(false);
  expect(installer.downloading()).toEqual([]);
});
