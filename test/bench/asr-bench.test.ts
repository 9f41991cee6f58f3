/** Smoke test: `bench/asr.ts --quick` runs end to end on the Whisper fixture and prints every table. */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, WHISPER_FIXTURE } from '../helpers/paths.ts';

const run = promisify(execFile);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'asr-bench-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.skipIf(!existsSync(WHISPER_FIXTURE))('bench:asr --quick', () => {
  it('prints the encoder/decoder/RTF/batching/baseline/knob tables, tokens match transformers.js, writes JSON', async () => {
    const out = path.join(tmp, 'asr.json');
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'bench/asr.ts', WHISPER_FIXTURE, '--quick', '--out', out], {
      cwd: REPO_ROOT,
      maxBuffer: 16 * 1024 * 1024,
      timeout: 290_000, // ~45 s at load 5 on 2 cores, 135 s seen at load 14
    });
    for (const h of [
      '## 1. Encoder',
      '## 2. Decoder',
      '## 3. File real-time factor',
      '## 4. Per-request vs batched',
      '## 5. transformers.js',
      '## 6. Knobs',
      '### Big wins',
      '### Encoder on shorter audio',
    ])
      expect(stdout).toContain(h);
    expect(stdout).toMatch(/\| fp32 \| 1 \| [\d.]+ \|/); // encoder row, batch 1
    expect(stdout).toMatch(/\| fp32 \| merged \| 1 \| [\d.]+ \|/); // decoder row
    expect(stdout).toMatch(/token match \(.*\): ours == transformers\.js: yes; ours == golden: yes/);
    expect(stdout).toMatch(/\| graphOptimizationLevel \| disabled \|/);
    expect(stdout).toContain('onnxruntime-node');
    const json = JSON.parse(readFileSync(out, 'utf8'));
    expect(json.meta.tokenBudget).toBeGreaterThan(0);
    expect(json.encoder.length).toBeGreaterThan(0);
    // fp32 batching is exact; int8 quantizes activations per batch tensor, so it is only close.
    const tp = json.throughput as { precision: string; sameTokens: boolean; tokenAgreement: number }[];
    expect(tp.some((r) => r.precision === 'fp32')).toBe(true);
    for (const r of tp.filter((r) => r.precision === 'fp32')) expect(r.sameTokens).toBe(true);
    for (const r of tp) expect(r.tokenAgreement === 1).toBe(r.sameTokens);
    expect(json.baseline.tokens.oursEqTheirs).toBe(true);
    expect(json.shortAudio.rows.find((r: { frames: number }) => r.frames === 3000).ok).toBe(true);
    // as exported the encoder refuses 1500 frames; rewritten at load it runs every bucket, frames/2 positions out
    expect(json.shortAudio.rows.find((r: { frames: number }) => r.frames === 1500).ok).toBe(false);
    for (const r of json.shortAudio.patched.rows as { frames: number; ok: boolean; outputShape: number[] }[]) expect([r.ok, r.outputShape[1]]).toEqual([true, r.frames / 2]);
    // peak RSS after every section (one engine at a time; see bench/asr.ts)
    expect(stdout).toContain('## Memory');
    const sections = (json.memory as { section: string; peakRssMb: number }[]).map((m) => m.section);
    expect(sections).toEqual(['1. encoder', '2. decoder', '3. file RTF', '4. per-request vs batched', '5. transformers.js baseline', '6. knobs', '6b. encoder on shorter audio']);
    for (const m of json.memory) expect(m.peakRssMb).toBeGreaterThan(0);
    // section 6 reports each part's peak (one engine or raw session at a time on real sizes)
    const parts = (json.memoryParts as { section: string; part: string; peakRssMb: number }[]).filter((p) => p.section === '6. knobs');
    expect(parts.map((p) => p.part)).toContain('allow_spinning (two raw encoder sessions)');
    expect(parts.some((p) => p.part.startsWith('merged decoder fetches'))).toBe(true);
    for (const p of parts) expect(p.peakRssMb).toBeGreaterThan(0);
  }, 300_000);

  it('--sections runs only the chosen sections after the shared setup', async () => {
    const out = path.join(tmp, 'asr-6b.json');
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'bench/asr.ts', WHISPER_FIXTURE, '--quick', '--sections', '6b', '--out', out], {
      cwd: REPO_ROOT,
      maxBuffer: 16 * 1024 * 1024,
      timeout: 120_000,
    });
    expect(stdout).toContain('- sections run: 6b');
    const json = JSON.parse(readFileSync(out, 'utf8'));
    expect(json.meta.sections).toEqual(['6b']);
    expect((json.memory as { section: string }[]).map((m) => m.section)).toEqual(['0. setup (model load, features)', '6b. encoder on shorter audio']);
    expect([json.encoder, json.decoder, json.rtf, json.throughput, json.knobs]).toEqual([[], [], [], [], []]);
    expect(json.baseline.ran).toBe(false);
    expect(json.shortAudio.patched.rows.length).toBeGreaterThan(0);
  }, 150_000);
});
