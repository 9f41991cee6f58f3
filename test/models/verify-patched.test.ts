/**
 * `models verify` after `models:attentions`, on a temp copy of the Whisper fixture: a patched decoder is reported
 * as "patched (original verified)" when its `*.orig.onnx` matches the files.json / lock entry and the file is
 * exactly that original patched; any other change (another graph with cross_attentions outputs, a damaged patched
 * file or original, a missing file) still fails.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCK_FILE } from '../../src/models/integrity.ts';
import { crossAttentionOutputs, patchDecoder, patchWhisperFolder } from '../../src/models/onnx-attentions.ts';
import { ModelRegistry } from '../../src/models/registry.ts';
import { WHISPER_FIXTURE } from '../helpers/paths.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');

function cli(args: string[], env: Record<string, string>) {
  return run('npx', ['tsx', 'src/cli/models.ts', ...args], { cwd: ROOT, env: { ...process.env, ...env }, timeout: 120_000 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }),
  );
}

const PATCHED = ['onnx/decoder_model.onnx', 'onnx/decoder_model_merged.onnx', 'onnx/decoder_model_quantized.onnx'];

/** Runs `fn` with a file's bytes replaced, then puts the old bytes back. */
async function withBytes(path: string, bytes: Uint8Array, fn: () => Promise<void>): Promise<void> {
  const old = readFileSync(path);
  writeFileSync(path, bytes);
  try {
    await fn();
  } finally {
    writeFileSync(path, old);
  }
}

function flipLastByte(b: Buffer): Buffer {
  const c = Buffer.from(b);
  c[c.length - 1] ^= 0xff;
  return c;
}

describe('models verify on a folder patched by models:attentions', () => {
  let modelsDir: string;
  let dir: string;
  let reg: ModelRegistry;

  beforeAll(async () => {
    modelsDir = mkdtempSync(join(tmpdir(), 'stt-verify-patched-'));
    dir = join(modelsDir, 'whisper-v');
    cpSync(WHISPER_FIXTURE, dir, { recursive: true });
    reg = await ModelRegistry.create(modelsDir);
  });
  afterAll(() => {
    if (modelsDir) rmSync(modelsDir, { recursive: true, force: true });
  });

  it('reports the patched decoders as "patched (original verified)", ok, against files.json and against the lock file', async () => {
    expect(await reg.verify('whisper-v')).toEqual({ id: 'whisper-v', ok: true, source: 'files.json', checked: 21, mismatches: [], patched: [] });
    const p = await patchWhisperFolder(dir);
    expect(p.files.map((f) => [f.file, f.status])).toEqual(PATCHED.map((f) => [f, 'patched']));

    const v = await reg.verify('whisper-v');
    expect(v).toEqual({
      id: 'whisper-v',
      ok: true,
      source: 'files.json',
      checked: 21,
      mismatches: [],
      patched: PATCHED.map((path) => ({ path, original: path.replace('.onnx', '.orig.onnx'), layers: 2 })),
    });

    const r = await cli(['verify', 'whisper-v'], { MODELS_DIR: modelsDir });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('whisper-v: ok (21 files checked against files.json; 3 patched by models:attentions, original verified)');
    expect(r.stdout).toContain('onnx/decoder_model_merged.onnx: patched (original verified: onnx/decoder_model_merged.orig.onnx; 2 cross_attentions outputs)');

    // The same against an install lock file (no files.json).
    const files = JSON.parse(readFileSync(join(dir, 'files.json'), 'utf8')) as Record<string, [number, string]>;
    const lock = {
      version: 1,
      id: 'whisper-v',
      repo: 'test/whisper-v',
      revision: 'main',
      commit: null,
      endpoint: 'http://127.0.0.1',
      variant: 'fp32',
      installedAt: new Date().toISOString(),
      files: Object.fromEntries(Object.entries(files).map(([k, [size, sha256]]) => [k, { size, sha256, verifiedAgainst: 'manifest' }])),
      absent: [],
    };
    renameSync(join(dir, 'files.json'), join(dir, 'files.json.off'));
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify(lock));
    try {
      expect(await reg.verify('whisper-v')).toMatchObject({ ok: true, source: 'lock', checked: 21, mismatches: [], patched: v.patched });
    } finally {
      unlinkSync(join(dir, LOCK_FILE));
      renameSync(join(dir, 'files.json.off'), join(dir, 'files.json'));
    }
  }, 60_000);

  it('anything else still fails: another graph with cross_attentions outputs, a damaged patched file or original, a missing file', async () => {
    const onnx = (f: string) => join(dir, 'onnx', f);
    const orig = readFileSync(onnx('decoder_model.orig.onnx'));

    // Has the cross_attentions outputs, but is not the original as models:attentions patches it (wrong head count).
    const impostor = patchDecoder(orig, 5);
    expect(crossAttentionOutputs(impostor)).toEqual(['cross_attentions.0', 'cross_attentions.1']);
    await withBytes(onnx('decoder_model.onnx'), impostor, async () => {
      const v = await reg.verify('whisper-v');
      expect(v.ok).toBe(false);
      expect(v.patched.map((p) => p.path)).toEqual(PATCHED.slice(1));
      expect(v.mismatches).toHaveLength(1);
      expect(v.mismatches[0]).toMatchObject({
        path: 'onnx/decoder_model.onnx',
        detail: 'onnx/decoder_model.orig.onnx matches this entry, but the file is not onnx/decoder_model.orig.onnx as models:attentions patches it',
      });
      const r = await cli(['verify', 'whisper-v'], { MODELS_DIR: modelsDir });
      expect(r.code).toBe(1);
      expect(r.stdout).toContain('whisper-v: 1 problem(s) (checked against files.json; 2 patched by models:attentions, original verified)');
      expect(r.stdout).toMatch(/onnx\/decoder_model\.onnx: (sha256|size) expected .* \(onnx\/decoder_model\.orig\.onnx matches this entry, but the file is not/);
    });

    // The patched file damaged (its size already differs from the entry, which is the original's).
    await withBytes(onnx('decoder_model_merged.onnx'), flipLastByte(readFileSync(onnx('decoder_model_merged.onnx'))), async () => {
      const v = await reg.verify('whisper-v');
      expect(v.ok).toBe(false);
      // compared with the entry, i.e. the original's size
      expect(v.mismatches.map((m) => [m.path, m.problem])).toEqual([['onnx/decoder_model_merged.onnx', 'size']]);
      expect(v.mismatches[0].detail).toMatch(/but the file is not onnx\/decoder_model_merged\.orig\.onnx as models:attentions patches it/);
    });

    // The kept original damaged: the patched file cannot be vouched for.
    await withBytes(onnx('decoder_model_quantized.orig.onnx'), flipLastByte(readFileSync(onnx('decoder_model_quantized.orig.onnx'))), async () => {
      const v = await reg.verify('whisper-v');
      expect(v.ok).toBe(false);
      expect(v.mismatches).toEqual([expect.objectContaining({ path: 'onnx/decoder_model_quantized.onnx', detail: 'onnx/decoder_model_quantized.orig.onnx does not match this entry either' })]);
    });

    // A changed file without an original: a plain mismatch, no detail.
    await withBytes(onnx('decoder_with_past_model.onnx'), flipLastByte(readFileSync(onnx('decoder_with_past_model.onnx'))), async () => {
      const v = await reg.verify('whisper-v');
      expect(v.mismatches).toEqual([{ path: 'onnx/decoder_with_past_model.onnx', problem: 'sha256', expected: expect.any(String), actual: expect.any(String) }]);
    });

    // The patched file gone, its original still there: missing.
    const patchedBytes = readFileSync(onnx('decoder_model.onnx'));
    unlinkSync(onnx('decoder_model.onnx'));
    try {
      const v = await reg.verify('whisper-v');
      expect(v.mismatches.map((m) => [m.path, m.problem])).toEqual([['onnx/decoder_model.onnx', 'missing']]);
    } finally {
      writeFileSync(onnx('decoder_model.onnx'), patchedBytes);
    }

    // Restored: clean again.
    expect((await reg.verify('whisper-v')).ok).toBe(true);
  }, 60_000);
});
