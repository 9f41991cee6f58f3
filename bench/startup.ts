/**
 * Start-up benchmark (issue 15): where the time of a whole `stt transcribe` process goes, and whether
 * onnxruntime's saved optimized graphs make session creation cheaper.
 *
 *   npx tsx bench/startup.ts <model-folder> [--rounds 5] [--tokens 8] [--audio file.wav] [--out .tmp/bench/startup.json]
 *
 *  1. process start-up steps, each a fresh process (median wall and CPU s over the rounds, alternated):
 *     `node -e ''`, `node --import tsx -e ''`, importing src/cli/stt.ts, and whole `stt transcribe` runs through
 *     `node bin/stt.mjs` (with and without --prepack-decoder) and through `npx stt` (with the CLI's own timing:
 *     startup / load / transcribe);
 *  2. session creation per graph of the folder (encoder, merged, split, Silero VAD): as shipped (optimization
 *     level all) vs reloading the graph onnxruntime saved after optimizing it (optimizedModelFilePath, with the
 *     weights written as external data beside it; level disabled on reload), alternated in one process. A graph
 *     whose saved form fails to load says why; the encoder's saved form is checked to give the same output; and
 *     the decoders without weight pre-packing (session.disable_prepacking), what the CLI does by default.
 * Wall times on a shared machine are noisy: compare CPU times, and rerun on a quiet machine for absolute numbers.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { SileroVad } from '../src/engines/vad/silero-vad.ts';
import { fmt, median, table } from './lib/stats.ts';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : dflt;
};
const model = argv.find((a, i) => !a.startsWith('--') && !argv[i - 1]?.startsWith('--'));
if (!model) {
  console.error('usage: tsx bench/startup.ts <model-folder> [--rounds 5] [--tokens 8] [--audio file.wav] [--out file.json]');
  process.exit(2);
}
const dir = resolve(model);
const rounds = Number(opt('--rounds', '5'));
const tokens = opt('--tokens', '8');
const out = opt('--out', '.tmp/bench/startup.json');
const onnxDir = existsSync(join(dir, 'onnx')) ? join(dir, 'onnx') : dir;
const LOG = (s = '') => console.log(s);

// a 5 s tone when no audio is given: start-up does not depend on what is said
let audio = opt('--audio', '');
const tmp = mkdtempSync(join(os.tmpdir(), 'stt-startup-'));
if (!audio) {
  audio = join(tmp, 'tone.wav');
  execFileSync('ffmpeg', ['-loglevel', 'error', '-f', 'lavfi', '-i', 'sine=frequency=440:duration=5', '-ar', '16000', '-ac', '1', audio]);
}

// ---------------------------------------------------------------- 1. processes

interface Proc {
  wall: number;
  cpu: number;
  timing?: Record<string, number>;
}
function runProcess(cmd: string, args: string[]): Proc {
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '%U %S', cmd, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const wall = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  const [u, s] = r.stderr.trim().split('\n').pop()!.split(' ').map(Number);
  let timing: Record<string, number> | undefined;
  if (r.stdout.trim().startsWith('{')) timing = JSON.parse(r.stdout).timing;
  return { wall, cpu: (u + s) * 1000, timing };
}
const cli = ['transcribe', audio, '--model', dir, '--language', 'en', '--no-vad', '--max-new-tokens', tokens, '--temperature', '0', '--json'];
const procs: Record<string, [string, string[]]> = {
  'node -e ""': [process.execPath, ['-e', '']],
  'node --import tsx -e ""': [process.execPath, ['--import', 'tsx', '-e', '']],
  'import src/cli/stt.ts': [process.execPath, ['--import', 'tsx', '-e', "await import('./src/cli/stt.ts')"]],
  'node bin/stt.mjs transcribe --prepack-decoder': [process.execPath, ['bin/stt.mjs', ...cli, '--prepack-decoder']],
  'node bin/stt.mjs transcribe': [process.execPath, ['bin/stt.mjs', ...cli]],
  'npx stt transcribe': ['npx', ['--no-install', 'stt', ...cli]],
};
console.error(`processes: ${rounds} rounds of ${Object.keys(procs).length}`);
const procRuns: Record<string, Proc[]> = Object.fromEntries(Object.keys(procs).map((k) => [k, []]));
for (let r = 0; r < rounds + 1; r++)
  for (const [k, [cmd, args]] of Object.entries(procs)) {
    const p = runProcess(cmd, args);
    if (r > 0) procRuns[k].push(p); // round 0 warms the page cache and tsx's transform cache
  }
const med = (xs: (number | undefined)[]) => median(xs.filter((x): x is number => typeof x === 'number'));
const procRows = Object.entries(procRuns).map(([k, ps]) => ({
  process: k,
  wallMs: med(ps.map((p) => p.wall)),
  cpuMs: med(ps.map((p) => p.cpu)),
  startupMs: med(ps.map((p) => p.timing?.startup_ms)),
  loadMs: med(ps.map((p) => p.timing?.load_ms)),
  transcribeMs: med(ps.map((p) => p.timing?.transcribe_ms)),
}));

// ---------------------------------------------------------------- 2. sessions

const graphs = ['encoder_model', 'decoder_model_merged', 'decoder_model', 'decoder_with_past_model'].filter((g) => existsSync(join(onnxDir, `${g}.onnx`)));
const cacheDir = join(tmp, 'optimized');
mkdirSync(cacheDir);
const so = (o: ort.InferenceSession.SessionOptions = {}): ort.InferenceSession.SessionOptions => ({ executionProviders: ['cpu'], logSeverityLevel: 3, ...o });
const saved: Record<string, { ok: boolean; error?: string; path: string }> = {};
for (const g of graphs) {
  const path = join(cacheDir, `${g}.onnx`);
  // the weights go to external data beside the saved graph: it would otherwise point at the original's data file by a
  // relative path, which does not resolve from another folder
  const s = await ort.InferenceSession.create(
    join(onnxDir, `${g}.onnx`),
    so({
      graphOptimizationLevel: 'all',
      optimizedModelFilePath: path,
      extra: { session: { optimized_model_external_initializers_file_name: `${g}.onnx_data`, optimized_model_external_initializers_min_size_in_bytes: '1024' } },
    }),
  );
  await s.release();
  try {
    const r = await ort.InferenceSession.create(path, so({ graphOptimizationLevel: 'disabled' }));
    await r.release();
    saved[g] = { ok: true, path };
  } catch (err) {
    saved[g] = {
      ok: false,
      path,
      error: String((err as Error).message)
        .replace(/\s+/g, ' ')
        .slice(-160),
    };
  }
}
// same output from the saved encoder (external data read back correctly)
let encoderSame: boolean | null = null;
if (saved.encoder_model?.ok) {
  const a = await ort.InferenceSession.create(join(onnxDir, 'encoder_model.onnx'), so({ graphOptimizationLevel: 'all' }));
  const b = await ort.InferenceSession.create(saved.encoder_model.path, so({ graphOptimizationLevel: 'disabled' }));
  const meta = a.inputMetadata.find((m) => m.name === 'input_features') as { shape?: (number | string)[] } | undefined;
  const [, nMels, nFrames] = (meta?.shape ?? [1, 80, 3000]).map((d) => (typeof d === 'number' ? d : 1));
  const x = new Float32Array(nMels * nFrames).map((_, i) => Math.sin(i / 7));
  const feed = { input_features: new ort.Tensor('float32', x, [1, nMels, nFrames]) };
  const ya = (await a.run(feed)).last_hidden_state.data as Float32Array;
  const yb = (await b.run(feed)).last_hidden_state.data as Float32Array;
  let maxDiff = 0;
  for (let i = 0; i < ya.length; i++) maxDiff = Math.max(maxDiff, Math.abs(ya[i] - yb[i]));
  encoderSame = ya.length === yb.length && maxDiff < 1e-4;
  await a.release();
  await b.release();
}

type Variant = { name: string; create: () => Promise<{ release: () => Promise<void> }> };
const variants: Variant[] = [];
for (const g of graphs) {
  variants.push({ name: `${g} (as shipped)`, create: () => ort.InferenceSession.create(join(onnxDir, `${g}.onnx`), so({ graphOptimizationLevel: 'all' })) });
  if (g !== 'encoder_model')
    variants.push({
      name: `${g} (as shipped, no pre-packing)`,
      create: () => ort.InferenceSession.create(join(onnxDir, `${g}.onnx`), so({ graphOptimizationLevel: 'all', extra: { session: { disable_prepacking: '1' } } })),
    });
  if (saved[g].ok) variants.push({ name: `${g} (saved optimized)`, create: () => ort.InferenceSession.create(saved[g].path, so({ graphOptimizationLevel: 'disabled' })) });
}
variants.push({
  name: 'Silero VAD',
  create: async () => {
    const v = await SileroVad.load();
    return { release: () => v.close() };
  },
});
console.error(`sessions: ${rounds} rounds of ${variants.length}`);
const sess: Record<string, { wall: number[]; cpu: number[] }> = Object.fromEntries(variants.map((v) => [v.name, { wall: [], cpu: [] }]));
for (let r = 0; r < rounds + 1; r++)
  for (const v of variants) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const s = await v.create();
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    await s.release();
    if (r === 0) continue;
    sess[v.name].wall.push(wall);
    sess[v.name].cpu.push((c.user + c.system) / 1000);
  }
const sessRows = variants.map((v) => ({ session: v.name, wallMs: median(sess[v.name].wall), cpuMs: median(sess[v.name].cpu) }));

// ---------------------------------------------------------------- report

LOG(
  `# Start-up (${dir}; ${rounds} rounds after one warm-up, medians; ${os.cpus().length} CPUs; load ${os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(', ')})`,
);
LOG();
LOG(`## Processes (stt transcribe: ${audio}, --no-vad, ${tokens} tokens; timing = the CLI's own --json timing)`);
LOG();
LOG(
  table(
    ['process', 'wall ms', 'CPU ms', 'startup_ms', 'load_ms', 'transcribe_ms'],
    procRows.map((r) => [r.process, fmt(r.wallMs), fmt(r.cpuMs), fmt(r.startupMs), fmt(r.loadMs), fmt(r.transcribeMs)]),
  ),
);
LOG();
LOG('## Session creation (one process, alternated)');
LOG();
LOG(
  table(
    ['session', 'wall ms', 'CPU ms'],
    sessRows.map((r) => [r.session, fmt(r.wallMs), fmt(r.cpuMs)]),
  ),
);
LOG();
for (const [g, s] of Object.entries(saved)) LOG(`- saved optimized ${g}: ${s.ok ? 'loads' : `does not load: ${s.error}`}`);
if (encoderSame !== null) LOG(`- saved optimized encoder gives the same output as the shipped graph: ${encoderSame ? 'yes' : 'NO'}`);
mkdirSync(dirname(resolve(out)), { recursive: true });
writeFileSync(out, `${JSON.stringify({ model: dir, rounds, tokens: Number(tokens), processes: procRows, sessions: sessRows, saved, encoderSame }, null, 1)}\n`);
rmSync(tmp, { recursive: true, force: true });
console.error(`wrote ${out}`);
