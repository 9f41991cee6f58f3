/** Smoke test: `bench/startup.ts` runs end to end on the Whisper fixture (one round) and reports every part. */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, WHISPER_FIXTURE } from '../helpers/paths.ts';

const run = promisify(execFile);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'startup-bench-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.skipIf(!existsSync(WHISPER_FIXTURE))('bench/startup.ts', () => {
  it('times the processes and the session creation variants; the saved optimized encoder loads and agrees', async () => {
    const out = path.join(tmp, 'startup.json');
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'bench/startup.ts', WHISPER_FIXTURE, '--rounds', '1', '--out', out], {
      cwd: REPO_ROOT,
      maxBuffer: 16 * 1024 * 1024,
      timeout: 290_000,
    });
    expect(stdout).toContain('## Processes');
    expect(stdout).toContain('## Session creation');
    const json = JSON.parse(readFileSync(out, 'utf8'));
    const procs = Object.fromEntries((json.processes as { process: string; cpuMs: number; loadMs: number }[]).map((p) => [p.process, p]));
    for (const k of ['node -e ""', 'import src/cli/stt.ts', 'node bin/stt.mjs transcribe', 'node bin/stt.mjs transcribe --prepack-decoder', 'npx stt transcribe'])
      expect(procs[k]?.cpuMs, k).toBeGreaterThan(0);
    expect(procs['node bin/stt.mjs transcribe'].loadMs).toBeGreaterThan(0); // the CLI's own timing was read
    const sessions = (json.sessions as { session: string }[]).map((s) => s.session);
    expect(sessions).toContain('encoder_model (saved optimized)');
    expect(sessions).toContain('decoder_model_merged (as shipped, no pre-packing)');
    expect(json.saved.encoder_model.ok).toBe(true);
    expect(json.encoderSame).toBe(true);
  }, 300_000);
});
