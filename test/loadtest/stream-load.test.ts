/**
 * Smoke test of the live-stream load runner (loadtest/stream-load.ts): `--quick` (N = 1, 2;
 * MAX_BATCH_SIZE 1 and 8; ~6 s of espeak-ng speech; 4-token budget) as a child process, with its
 * own server children. Checks the report's shape, a final for every utterance, and zero errors.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { LoadTestReport } from '../../loadtest/stream-load.ts';
import { hasAudioTools } from '../helpers/audio-fixtures.ts';
import { MODELS_DIR, REPO_ROOT } from '../helpers/paths.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-loadtest-smoke-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const haveTools = await hasAudioTools();
const haveModel = fs.existsSync(path.join(MODELS_DIR, 'whisper-mini-random'));

describe.skipIf(!haveTools || !haveModel)('loadtest/stream-load.ts --quick', () => {
  it('runs N=1,2 per-stream and batched: every utterance gets a final, no errors, a complete report', async () => {
    const out = path.join(tmp, 'quick.json');
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', 'loadtest/stream-load.ts', '--model', 'whisper-mini-random', '--quick', '--out', out],
        { cwd: REPO_ROOT, env: { ...process.env, MODELS_DIR }, timeout: 150_000, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
      );
    });
    expect(code, `${stdout}\n${stderr}`).toBe(0);
    expect(stdout).toMatch(/\| N \| utts \| finals \|/);
    expect(stdout).toMatch(/largest N with p95 final latency ≤ 1 s: /);
    expect(stdout).toMatch(/largest N meeting the live targets \(final p50 ≤ 0.8 s, p95 ≤ 1.2 s, first partial p50 ≤ 0.3 s, no missing final\): /);

    const report = JSON.parse(fs.readFileSync(out, 'utf8')) as LoadTestReport;
    expect(report.schema).toBe('stt-loadtest/1');
    expect(report.config).toMatchObject({ model: 'whisper-mini-random', tokens: 4, quick: true, frameMs: 100 });
    expect(report.config.utterancesPerStream).toBeGreaterThanOrEqual(2);
    expect(report.config.audioSeconds).toBeLessThanOrEqual(6);
    expect(report.machine.cpus).toBeGreaterThan(0);
    expect(report.machine.loadavgBefore).toHaveLength(3);
    expect(report.runs.map((r) => r.batch)).toEqual([1, 8]);
    for (const run of report.runs) {
      expect(run.serverExit).toBe('code 0');
      expect(run.results.map((r) => r.streams)).toEqual([1, 2]);
      for (const r of run.results) {
        const where = `batch ${run.batch}, N=${r.streams}: ${JSON.stringify(r.errors)}`;
        expect(r.errorCount, where).toBe(0);
        expect(r.utterances).toBe(r.streams * report.config.utterancesPerStream);
        expect(r.missingFinals, where).toBe(0);
        expect(r.finalsMatched, where).toBe(r.utterances);
        expect(r.final.n).toBe(r.utterances);
        for (const p of [r.final, r.finalMinusVadSilence]) {
          expect(p.p50).toBeTypeOf('number');
          expect(p.p95!).toBeGreaterThanOrEqual(p.p50!);
          expect(p.p99!).toBeGreaterThanOrEqual(p.p95!);
        }
        // A final cannot come before the VAD has heard 500 ms of silence after the speech.
        expect(r.final.p50!).toBeGreaterThan(0.4);
        expect(r.finalMinusVadSilence.p50!).toBeCloseTo(r.final.p50! - 0.5, 3);
        expect(r.firstPartial.n).toBeGreaterThanOrEqual(0);
        expect(r.rtf!).toBeGreaterThan(0);
        expect(r.serverCpuSeconds!).toBeGreaterThan(0);
        expect(r.cpuPercent!.mean).toBeGreaterThanOrEqual(0);
        expect(r.rssMB!.max).toBeGreaterThan(50);
        expect(r.droppedPartials).toBeTypeOf('number');
        expect(r.meanBatchSize!).toBeGreaterThanOrEqual(1);
        if (run.batch === 1) expect(r.meanBatchSize).toBe(1);
        expect(r.activeStreamsAfter).toBe(0);
      }
    }
    expect(Object.keys(report.summary.largestN)).toEqual(['batch1', 'batch8']);
    expect(report.summary.p95FinalRatioPerStreamOverBatched.map((x) => x.streams)).toEqual([1, 2]);
  }, 180_000);
});
