/**
 * Smoke test of bench/live-overhead.ts: one stream of ~8 s of espeak-ng speech against a profiled
 * server child (whisper-mini-random). Checks that the profile was written at the graceful stop, that
 * Whisper and VAD ORT runs were found under their tags, and that the tables were printed.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hasAudioTools } from '../helpers/audio-fixtures.ts';
import { MODELS_DIR, REPO_ROOT } from '../helpers/paths.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'live-overhead-smoke-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const haveTools = await hasAudioTools();
const haveModel = fs.existsSync(path.join(MODELS_DIR, 'whisper-mini-random'));

interface Level {
  streams: number;
  finals: number;
  rss: { baseline: number; peak: number };
  profile: { ms: Record<string, number>; outsideModelMs: number; byTag: Record<string, number>; topSelf: unknown[] } | null;
  errors: string[];
}

describe.skipIf(!haveTools || !haveModel)('bench/live-overhead.ts', () => {
  it('profiles one stream: model and VAD runs tagged, CPU outside the model and RSS reported', async () => {
    const out = path.join(tmp, 'out.json');
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', 'bench/live-overhead.ts', '--streams', '1', '--seconds', '8', '--tokens', '4', '--out-dir', path.join(tmp, 'prof'), '--json', out],
        { cwd: REPO_ROOT, env: { ...process.env, MODELS_DIR }, timeout: 240_000, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
      );
    });
    expect(code, `${stdout}\n${stderr}`).toBe(0);
    expect(stdout).toMatch(/\| N \| stream-s \| busy \| model/);
    expect(stdout).toMatch(/Top self time outside the model, N=1/);
    const { levels } = JSON.parse(fs.readFileSync(out, 'utf8')) as { levels: Level[] };
    const [l] = levels;
    expect(l.errors).toEqual([]);
    expect(l.finals).toBeGreaterThanOrEqual(1);
    expect(l.rss.baseline).toBeGreaterThan(0);
    expect(l.rss.peak).toBeGreaterThanOrEqual(l.rss.baseline);
    expect(l.profile).not.toBeNull();
    expect(l.profile!.ms['ort-model']).toBeGreaterThan(0);
    expect(l.profile!.ms['ort-vad']).toBeGreaterThan(0);
    expect(l.profile!.byTag.ORT_model_encoder).toBeGreaterThan(0);
    expect(l.profile!.byTag.ORT_model_decoder).toBeGreaterThan(0);
    expect(l.profile!.outsideModelMs).toBeGreaterThan(0);
    expect(l.profile!.topSelf.length).toBeGreaterThan(0);
  }, 300_000);
});
