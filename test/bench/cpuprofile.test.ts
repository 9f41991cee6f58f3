/**
 * bench/lib/cpuprofile.ts against a profile whose answer is known by construction, and the ORT tag
 * preload against a real V8 profile of a real Silero VAD session (the frame the analysis keys on).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { frameKey, summarizeProfile, type CpuProfile } from '../../bench/lib/cpuprofile.ts';
import { REPO_ROOT } from '../helpers/paths.ts';

const cf = (functionName: string, url = '') => ({ functionName, url, lineNumber: 9, columnNumber: 0 });

/**
 * root ─ (idle) 2
 *      ├ (garbage collector) 3
 *      └ processImmediate 4 ─ ORT_vad 5 ─ run 6
 *                           ├ ORT_model_decoder 7 ─ run 8
 *                           └ drainFrames 9 (src/pipeline/stream-session.ts) ─ slice 10
 */
const profile: CpuProfile = {
  nodes: [
    { id: 1, callFrame: cf('(root)'), children: [2, 3, 4] },
    { id: 2, callFrame: cf('(idle)') },
    { id: 3, callFrame: cf('(garbage collector)') },
    { id: 4, callFrame: cf('processImmediate', 'node:internal/timers'), children: [5, 7, 9] },
    { id: 5, callFrame: cf('ORT_vad', 'file:///x/bench/lib/ort-profile-tags.ts'), children: [6] },
    { id: 6, callFrame: cf('run') },
    { id: 7, callFrame: cf('ORT_model_decoder', 'file:///x/bench/lib/ort-profile-tags.ts'), children: [8] },
    { id: 8, callFrame: cf('run') },
    { id: 9, callFrame: cf('drainFrames', 'file:///x/src/pipeline/stream-session.ts'), children: [10] },
    { id: 10, callFrame: cf('slice') },
  ],
  startTime: 1_000_000,
  // 10 samples, 1 ms apart (the first 1 ms after startTime): each lasts 1 ms.
  endTime: 1_010_000,
  samples: [2, 2, 3, 6, 8, 8, 8, 9, 10, 10],
  timeDeltas: Array(10).fill(1000),
};

describe('summarizeProfile', () => {
  it('splits busy time into the model, VAD, GC and the rest, with self and inclusive tops', () => {
    const s = summarizeProfile(profile);
    expect(s.samples).toBe(10);
    expect(s.ms).toEqual({ idle: 2, program: 0, gc: 1, 'ort-model': 3, 'ort-vad': 1, other: 3 });
    expect(s.busyMs).toBe(8);
    // The VAD's ORT calls are not "the model": they count outside.
    expect(s.outsideModelMs).toBe(5);
    expect(s.topSelf).toEqual([
      { key: 'slice', ms: 2 },
      { key: '(garbage collector)', ms: 1 },
      { key: 'src/pipeline/stream-session.ts:drainFrames', ms: 1 },
    ]);
    expect(s.topInclusive).toEqual([{ key: 'src/pipeline/stream-session.ts:drainFrames', ms: 3 }]);
    expect(s.byTag).toEqual({ ORT_vad: 1, ORT_model_decoder: 3 });
  });

  it('counts only the samples inside the window', () => {
    // Samples at 1.001 … 1.010 s; the window [1.004, 1.007] s holds samples 4–7 (ids 6, 8, 8, 8).
    const s = summarizeProfile(profile, { fromUs: 1_004_000, toUs: 1_007_000 });
    expect(s.samples).toBe(4);
    expect(s.ms['ort-vad']).toBe(1);
    expect(s.ms['ort-model']).toBe(3);
    expect(s.outsideModelMs).toBe(1);
    expect(s.wallMs).toBe(3);
  });

  it('names frames by file and function', () => {
    expect(frameKey(cf('drainFrames', 'file:///a/b/src/pipeline/stream-session.ts'))).toBe('src/pipeline/stream-session.ts:drainFrames');
    expect(frameKey(cf('_transform4', 'file:///a/node_modules/fft.js/lib/fft.js'))).toBe('fft.js/lib/fft.js:_transform4');
    expect(frameKey(cf('', 'file:///a/node_modules/x/y.js'))).toBe('x/y.js:(anonymous):10');
  });
});

describe('ort-profile-tags preload', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'ort-tags-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('puts every Silero session.run of a real profile under an ORT_vad frame', async () => {
    const script = path.join(tmp, 'vad.mts');
    const vadModule = path.join(REPO_ROOT, 'src', 'engines', 'vad', 'silero-vad.ts');
    writeFileSync(
      script,
      `import { SileroVad } from ${JSON.stringify(vadModule)};
const vad = await SileroVad.load({ crossStreamBatching: false });
const s = vad.createStream();
const frame = new Float32Array(512).map((_, i) => Math.sin(i / 5) * 0.3);
for (let i = 0; i < 400; i++) await vad.process(s, frame);
await vad.close();`,
    );
    await promisify(execFile)(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${tmp}`, '--cpu-prof-interval=100', '--import', 'tsx', '--import', './bench/lib/ort-profile-tags.ts', script], {
      cwd: REPO_ROOT,
      timeout: 120_000,
    });
    const file = readdirSync(tmp).find((f) => f.endsWith('.cpuprofile'))!;
    const p = JSON.parse(readFileSync(path.join(tmp, file), 'utf8')) as CpuProfile;
    const s = summarizeProfile(p);
    expect(s.ms['ort-vad']).toBeGreaterThan(0);
    expect(s.ms['ort-model']).toBe(0);
    // The native run (the backend's anonymous setImmediate callback) is never left untagged; loading
    // the session (OnnxruntimeSessionHandler) is not a run and stays outside.
    const untagged = s.topSelf.filter((t) => t.key.startsWith('onnxruntime-node/dist/backend.js:(anonymous)'));
    expect(untagged).toEqual([]);
  }, 150_000);
});
