import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLockFile } from '../../src/models/integrity.ts';
import { HubServer } from './hub-server.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const FIXTURE = '/work/shared/models/whisper-mini-random';

function cli(args: string[], env: Record<string, string>) {
  return run('npx', ['tsx', 'src/cli/models.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, HF_TOKEN: '', ...env },
    timeout: 60_000,
  }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }),
  );
}

describe('src/cli/models.ts as a child process', () => {
  let hubRoot: string;
  let modelsDir: string;
  let server: HubServer;

  beforeAll(async () => {
    hubRoot = mkdtempSync(join(tmpdir(), 'stt-clihub-'));
    // What the real manifest asks for `tiny` (fp32), served from the fixture's files.
    for (const p of ['config.json', 'generation_config.json', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json', 'onnx/encoder_model.onnx', 'onnx/decoder_model_merged.onnx']) {
      mkdirSync(dirname(join(hubRoot, p)), { recursive: true });
      copyFileSync(join(FIXTURE, p), join(hubRoot, p));
    }
    server = await new HubServer({ root: hubRoot }).start();
    server.checksums = 'hf';
    modelsDir = mkdtempSync(join(tmpdir(), 'stt-climodels-'));
  });

  afterAll(async () => {
    await server.close();
    rmSync(hubRoot, { recursive: true, force: true });
    rmSync(modelsDir, { recursive: true, force: true });
  });

  it('models:list with MODELS_DIR=/work/shared/models lists the fixture folders', async () => {
    const r = await cli(['list'], { MODELS_DIR: '/work/shared/models' });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^whisper-mini-random\s+asr\s+yes\s+folder\s+\/work\/shared\/models\/whisper-mini-random$/m);
    expect(r.stdout).toMatch(/^large-v3-turbo\s+asr\s+no\s+manifest\s+-$/m);
    expect(r.stdout).toMatch(/^qwen2-mini-random\s+llm\s+yes/m);
  });

  it('models:pull installs a manifest model from HF_ENDPOINT, verified against the hub checksums', async () => {
    const env = { MODELS_DIR: modelsDir, HF_ENDPOINT: server.endpoint };
    const r = await cli(['pull', 'tiny'], env);
    expect(r.stderr).not.toMatch(/failed/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/tiny installed in .*verified against: hub-git-sha1, hub-sha256/);
    expect(server.gets('onnx/encoder_model.onnx')).toHaveLength(1);
    const lock = (await readLockFile(join(modelsDir, 'tiny')))!;
    expect(lock.repo).toBe('onnx-community/whisper-tiny');
    expect(lock.absent.sort()).toEqual(['onnx/decoder_model_merged.onnx_data', 'onnx/encoder_model.onnx_data']);

    const list = await cli(['list', '--json'], env);
    const tiny = (JSON.parse(list.stdout) as Array<{ id: string; installed: boolean }>).find((e) => e.id === 'tiny');
    expect(tiny?.installed).toBe(true);
  });

  it('models:pull fails with a clear message and a non-zero exit', async () => {
    const unknown = await cli(['pull', 'nope'], { MODELS_DIR: modelsDir, HF_ENDPOINT: server.endpoint });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/Unknown model 'nope'\. Models that can be pulled: large-v3-turbo/);

    // `base` is the same layout; the hub now corrupts the decoder.
    server.corrupt.add('onnx/decoder_model_merged.onnx');
    const bad = await cli(['pull', 'base'], { MODELS_DIR: modelsDir, HF_ENDPOINT: server.endpoint });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/models:pull base failed: Checksum mismatch for 'onnx\/decoder_model_merged.onnx'/);
    expect(existsSync(join(modelsDir, 'base'))).toBe(false);
    expect(existsSync(join(modelsDir, 'base.partial'))).toBe(false);
  });
});
