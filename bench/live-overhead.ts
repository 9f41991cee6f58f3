/**
 * Per-stream cost outside the model, and memory per live stream (issue 15).
 *
 *   npm run bench:live-overhead -- [--model whisper-mini-random] [--streams 8 | 1,8,16] [--seconds 30]
 *                                  [--tokens 16] [--batch 8] [--sample-rate 16000|48000] [--interval-us 1000] [--no-profile]
 *                                  [--out-dir .tmp/live-overhead] [--json out.json]
 *
 * For each N in --streams: a fresh server child process (`node --cpu-prof --import tsx --import
 * bench/lib/ort-profile-tags.ts src/main.ts`, PORT=0, a temp DATA_DIR with paid accounts, MODELS_DIR
 * from the environment or ../shared/models), one warm-up stream, then N WebSocket streams of the
 * load-test espeak conversation (loadtest/audio.ts) in 100 ms PCM16 frames at real-time pace, then
 * SIGTERM (the graceful shutdown lets V8 write the profile). RSS is sampled from /proc every 500 ms.
 *
 * From the profile, only the window from the first stream's start to the last stream's close counts:
 *   busy      main-thread samples that are not "(idle)": JS, GC and "(program)" (native code with no
 *             JS frame: uWS/libuv I/O, V8 internals); all of it is CPU the streams cost this thread.
 *   model     samples inside the Whisper sessions' ORT run (the native call and its marshalling).
 *   VAD       samples inside the Silero session's run (reported apart, but counted OUTSIDE the model).
 *   outside   busy − model, per stream-second of audio (N × audio seconds).
 * ORT's own intra-op threads are not the main thread and are not in the profile. With a model whose
 * network costs almost nothing (whisper-mini-random, d64), "model" is mostly per-call overhead.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { loadAudio, SR, type LoadAudio } from '../loadtest/audio.ts';
import { procRssMB } from '../loadtest/stream-load.ts';
import { summarizeProfile, type CpuProfile, type ProfileSummary } from './lib/cpuprofile.ts';

const REPO = path.resolve(import.meta.dirname, '..');
const FRAME_MS = 100;
const STREAMS_PER_KEY = 4;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const deadline = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());
const nowUs = () => Number(process.hrtime.bigint() / 1000n);

interface Args {
  model: string;
  streams: number[];
  seconds: number;
  tokens: number;
  batch: number;
  /** What the clients send (16000, or 32000 / 48000: the server resamples to 16 kHz). */
  sampleRate: number;
  intervalUs: number;
  profile: boolean;
  outDir: string;
  json: string | null;
  modelsDir: string;
}

function parse(): Args {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'whisper-mini-random' },
      streams: { type: 'string', default: '8' },
      seconds: { type: 'string', default: '30' },
      tokens: { type: 'string', default: '16' },
      batch: { type: 'string', default: '8' },
      'sample-rate': { type: 'string', default: '16000' },
      'interval-us': { type: 'string' },
      'no-profile': { type: 'boolean', default: false },
      'out-dir': { type: 'string', default: path.join(REPO, '.tmp', 'live-overhead') },
      json: { type: 'string' },
    },
  });
  const streams = values.streams!.split(',').map((s) => Number(s.trim()));
  if (streams.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`--streams: expected positive integers, got ${values.streams}`);
  const seconds = Number(values.seconds);
  return {
    model: values.model!,
    streams,
    seconds,
    tokens: Number(values.tokens),
    batch: Number(values.batch),
    sampleRate: Number(values['sample-rate']),
    // Long runs: a coarser profile (1 ms × 30 min would be ~2 M samples).
    intervalUs: Number(values['interval-us'] ?? (seconds > 300 ? 10_000 : 1000)),
    profile: !values['no-profile'],
    outDir: path.resolve(values['out-dir']!),
    json: values.json ? path.resolve(values.json) : null,
    modelsDir: path.resolve(process.env.MODELS_DIR ?? path.join(REPO, '..', 'shared', 'models')),
  };
}

// ---------------------------------------------------------------------------------------------
// Server

interface Server {
  child: ChildProcess;
  pid: number;
  port: number;
  exited: Promise<string>;
  dataDir: string;
  profDir: string;
  tail: string[];
}

function provision(template: string, env: NodeJS.ProcessEnv, count: number): string[] {
  const keys: string[] = [];
  for (let i = 0; i < count; i++) {
    const out = execFileSync(
      process.execPath,
      ['--import', 'tsx', 'src/cli/admin.ts', 'create-account', '--email', `overhead-${i}@example.com`, '--plan', 'paid', '--credits', '10000000', '--name', 'overhead'],
      { cwd: REPO, env: { ...env, DATA_DIR: template }, encoding: 'utf8', timeout: 120_000, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const m = /api key[^:]*:\s*(\S+)/.exec(out);
    if (!m) throw new Error(`admin create-account printed no api key:\n${out}`);
    keys.push(m[1]);
  }
  return keys;
}

function baseEnv(a: Args): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PORT: '0',
    HOST: '127.0.0.1',
    MODELS_DIR: a.modelsDir,
    MAX_BATCH_SIZE: String(a.batch),
    DEFAULT_MODEL: a.model,
    STREAM_MAX_FINAL_WAIT_MS: process.env.STREAM_MAX_FINAL_WAIT_MS ?? '0',
    LOG_LEVEL: 'info',
  };
}

async function startServer(a: Args, template: string, label: string): Promise<Server> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'stt-overhead-'));
  cpSync(template, dataDir, { recursive: true });
  const profDir = path.join(a.outDir, label);
  rmSync(profDir, { recursive: true, force: true });
  mkdirSync(profDir, { recursive: true });
  const args = [
    ...(a.profile ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-interval=${a.intervalUs}`] : []),
    '--import',
    'tsx',
    '--import',
    './bench/lib/ort-profile-tags.ts',
    'src/main.ts',
  ];
  const child = spawn(process.execPath, args, { cwd: REPO, env: { ...baseEnv(a), DATA_DIR: dataDir }, stdio: ['ignore', 'pipe', 'pipe'] });
  process.once('exit', () => child.kill('SIGKILL'));
  const tail: string[] = [];
  let onPort: ((p: number) => void) | null = null;
  const portP = new Promise<number>((r) => (onPort = r));
  for (const s of [child.stdout!, child.stderr!]) {
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        tail.push(line.slice(0, 500));
        if (tail.length > 30) tail.shift();
        try {
          const j = JSON.parse(line) as { msg?: string; port?: number };
          if (j.msg === 'listening' && typeof j.port === 'number') onPort?.(j.port);
        } catch {
          /* not a log line */
        }
      }
    });
  }
  const exited = new Promise<string>((resolve) => child.on('exit', (code, sig) => resolve(sig ? `signal ${sig}` : `code ${code}`)));
  const port = await Promise.race([
    portP,
    exited.then((how) => Promise.reject(new Error(`server exited (${how}) before listening:\n${tail.join('\n')}`))),
    deadline(120_000).then(() => Promise.reject(new Error(`server did not listen within 120 s:\n${tail.join('\n')}`))),
  ]);
  return { child, pid: child.pid!, port, exited, dataDir, profDir, tail };
}

async function stopServer(s: Server): Promise<string> {
  s.child.kill('SIGTERM');
  const how = await Promise.race([s.exited, deadline(60_000).then(() => null)]);
  if (how === null) {
    s.child.kill('SIGKILL');
    await s.exited;
  }
  rmSync(s.dataDir, { recursive: true, force: true });
  return how ?? 'killed (no exit 60 s after SIGTERM: no profile)';
}

async function metrics(port: number): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const sp = line.lastIndexOf(' ');
      const v = Number(line.slice(sp + 1));
      if (Number.isFinite(v)) m.set(line.slice(0, sp), v);
    }
  } catch {
    /* no metrics: reported as n/a */
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// Streams

interface StreamStats {
  partials: number;
  finals: number;
  bytesIn: number;
  errors: string[];
}

async function stream(port: number, key: string | undefined, audio: LoadAudio, a: Args, delayMs: number): Promise<StreamStats> {
  await sleep(delayMs);
  const st: StreamStats = { partials: 0, finals: 0, bytesIn: 0, errors: [] };
  const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/stream`, { perMessageDeflate: false, headers: key ? { authorization: `Bearer ${key}` } : {} });
  const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
  let ready: () => void = () => {};
  const readyP = new Promise<void>((r) => (ready = r));
  ws.on('error', (e) => st.errors.push(e.message));
  ws.on('message', (d) => {
    const text = d.toString();
    st.bytesIn += text.length;
    const m = JSON.parse(text) as Record<string, unknown>;
    if (m.status === 'ready') ready();
    else if ('partial' in m) st.partials++;
    else if ('text' in m) st.finals++;
    else if ('error' in m) st.errors.push(String(m.error));
  });
  await new Promise<void>((r) => ws.once('open', () => r()));
  ws.send(JSON.stringify({ language: 'en', model: a.model, max_new_tokens: a.tokens, sample_rate: a.sampleRate }));
  await Promise.race([readyP, deadline(60_000)]);
  const FRAME_BYTES = ((a.sampleRate * FRAME_MS) / 1000) * 2;
  const t0 = performance.now();
  const frames = Math.ceil(audio.pcm16.length / FRAME_BYTES);
  for (let k = 0; k < frames && ws.readyState === WebSocket.OPEN; k++) {
    const wait = t0 + k * FRAME_MS - performance.now();
    if (wait > 1) await sleep(wait);
    ws.send(audio.pcm16.subarray(k * FRAME_BYTES, (k + 1) * FRAME_BYTES));
  }
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ action: 'stop' }));
  const code = await Promise.race([closed, deadline(Math.max(120_000, audio.durationS * 4000)).then(() => null)]);
  if (code === null) {
    st.errors.push('no close after stop');
    ws.terminate();
  } else if (code !== 1000) st.errors.push(`close ${code}`);
  return st;
}

// ---------------------------------------------------------------------------------------------
// One level

interface Level {
  streams: number;
  audioS: number;
  streamSeconds: number;
  wallS: number;
  rss: { baseline: number; peak: number; end: number; series: Array<[number, number]> };
  heap: { usedMB: number | null; externalMB: number | null };
  profile: ProfileSummary | null;
  /** The profile window (profile clock, µs): re-analyse the .cpuprofile with summarizeProfile. */
  windowUs: [number, number];
  partials: number;
  finals: number;
  bytesOutPerStreamS: number;
  errors: string[];
  serverExit: string;
}

async function runLevel(a: Args, n: number, audio: LoadAudio, template: string, keys: string[]): Promise<Level> {
  const s = await startServer(a, template, `n${n}`);
  const errors: string[] = [];
  try {
    const warm = await stream(s.port, keys[0], upsample(loadAudio({ seconds: 6 }), a.sampleRate / SR), a, 0);
    errors.push(...warm.errors.map((e) => `warm-up: ${e}`));
    await sleep(1000);
    const baseline = procRssMB(s.pid) ?? NaN;
    const series: Array<[number, number]> = [];
    const tStart = performance.now();
    const timer = setInterval(() => {
      const r = procRssMB(s.pid);
      if (r !== null) series.push([(performance.now() - tStart) / 1000, r]);
    }, 500);
    let heap = { usedMB: null as number | null, externalMB: null as number | null };
    // Heap split at ~80 % of the run, while every stream is live.
    const heapTimer = setTimeout(async () => {
      const m = await metrics(s.port);
      const mb = (k: string) => (m.has(k) ? m.get(k)! / 2 ** 20 : null);
      heap = { usedMB: mb('stt_nodejs_heap_size_used_bytes'), externalMB: mb('stt_nodejs_external_memory_bytes') };
    }, audio.durationS * 800);
    const stagger = Math.min(250, 2000 / n);
    const fromUs = nowUs();
    const outs = await Promise.all(Array.from({ length: n }, (_, i) => stream(s.port, keys[1 + Math.floor(i / STREAMS_PER_KEY)], audio, a, i * stagger)));
    const toUs = nowUs();
    clearInterval(timer);
    clearTimeout(heapTimer);
    const end = procRssMB(s.pid) ?? NaN;
    outs.forEach((o, i) => errors.push(...o.errors.map((e) => `stream ${i}: ${e}`)));
    const serverExit = await stopServer(s);
    let profile: ProfileSummary | null = null;
    if (a.profile) {
      const file = readdirSync(s.profDir).find((f) => f.endsWith('.cpuprofile'));
      if (!file) errors.push(`no .cpuprofile in ${s.profDir} (server ${serverExit})`);
      else profile = summarizeProfile(JSON.parse(readFileSync(path.join(s.profDir, file), 'utf8')) as CpuProfile, { fromUs, toUs, top: 15 });
    }
    const streamSeconds = n * audio.durationS;
    return {
      streams: n,
      audioS: audio.durationS,
      streamSeconds,
      wallS: (toUs - fromUs) / 1e6,
      rss: { baseline, peak: Math.max(baseline, ...series.map(([, r]) => r)), end, series },
      heap,
      profile,
      windowUs: [fromUs, toUs],
      partials: outs.reduce((x, o) => x + o.partials, 0),
      finals: outs.reduce((x, o) => x + o.finals, 0),
      bytesOutPerStreamS: outs.reduce((x, o) => x + o.bytesIn, 0) / streamSeconds,
      errors,
      serverExit,
    };
  } catch (err) {
    s.child.kill('SIGKILL');
    rmSync(s.dataDir, { recursive: true, force: true });
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Report

const f1 = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(1));
const f2 = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(2));

/** Least-squares slope of y over x (null under two distinct x). */
export function slope(points: Array<[number, number]>): number | null {
  if (new Set(points.map(([x]) => x)).size < 2) return null;
  const mx = points.reduce((s, [x]) => s + x, 0) / points.length;
  const my = points.reduce((s, [, y]) => s + y, 0) / points.length;
  const num = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const den = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  return num / den;
}

function report(a: Args, levels: Level[], command: string): string {
  const out: string[] = [];
  out.push(`Command: \`${command}\``);
  out.push(`Model ${a.model}, ${a.tokens} tokens per decode, MAX_BATCH_SIZE=${a.batch}, clients send ${a.sampleRate} Hz, profile interval ${a.intervalUs} µs.`);
  out.push(
    `Machine: ${os.cpus()[0]?.model ?? '?'} × ${os.cpus().length}, load average before ${os
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}, node ${process.version}`,
  );
  out.push('');
  out.push('CPU of the server main thread per stream-second of audio (ms / stream-s), from `--cpu-prof`, window = first stream start → last close:');
  out.push('');
  out.push('| N | stream-s | busy | model (Whisper ORT run) | **outside the model** | of which VAD ORT run | GC | (program) | partials | finals | errors |');
  out.push('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const l of levels) {
    const p = l.profile;
    const per = (ms: number | undefined) => (p ? f2((ms ?? 0) / l.streamSeconds) : 'n/a');
    out.push(
      `| ${l.streams} | ${l.streamSeconds.toFixed(0)} | ${per(p?.busyMs)} | ${per(p?.ms['ort-model'])} | **${per(p?.outsideModelMs)}** | ${per(p?.ms['ort-vad'])} | ${per(p?.ms.gc)} | ${per(p?.ms.program)} | ${l.partials} | ${l.finals} | ${l.errors.length} |`,
    );
  }
  for (const l of levels) {
    if (!l.profile) continue;
    const tags = Object.entries(l.profile.byTag).sort((x, y) => y[1] - x[1]);
    out.push(`\nORT runs by session, N=${l.streams} (ms / stream-s): ${tags.map(([t, ms]) => `${t.replace('ORT_', '')} ${f2(ms / l.streamSeconds)}`).join(', ')}`);
  }
  out.push('');
  out.push('Memory (RSS of the server process, MB; baseline = after the warm-up stream, before the N streams):');
  out.push('');
  out.push('| N | baseline | peak | end | peak − baseline | per stream | JS heap used | external (ArrayBuffers) |');
  out.push('|---|---|---|---|---|---|---|---|');
  for (const l of levels) {
    const d = l.rss.peak - l.rss.baseline;
    out.push(`| ${l.streams} | ${f1(l.rss.baseline)} | ${f1(l.rss.peak)} | ${f1(l.rss.end)} | ${f1(d)} | ${f1(d / l.streams)} | ${f1(l.heap.usedMB)} | ${f1(l.heap.externalMB)} |`);
  }
  const sl = slope(levels.map((l) => [l.streams, l.rss.peak]));
  if (sl !== null) out.push(`\nRSS slope (least squares of peak RSS over N = ${levels.map((l) => l.streams).join(', ')}): **${sl.toFixed(1)} MB per added stream**.`);
  for (const l of levels) {
    if (l.audioS < 120 || l.rss.series.length < 8) continue;
    const half = l.rss.series.filter(([t]) => t >= l.wallS / 2);
    const perMin = slope(half.map(([t, r]) => [t / 60, r]));
    const at = (frac: number) => l.rss.series[Math.min(l.rss.series.length - 1, Math.floor(frac * l.rss.series.length))][1];
    out.push(
      `\nLong stream (N=${l.streams}, ${(l.audioS / 60).toFixed(1)} min): RSS at 10 % / 50 % / 100 % of the run ${f1(at(0.1))} / ${f1(at(0.5))} / ${f1(at(0.999))} MB; growth over the second half ${f2(perMin)} MB/min.`,
    );
  }
  for (const l of levels) {
    if (!l.profile) continue;
    out.push(`\nTop self time outside the model, N=${l.streams} (ms per stream-second; file:function:line):\n`);
    out.push('| function | ms / stream-s | share of outside |');
    out.push('|---|---|---|');
    for (const t of l.profile.topSelf) out.push(`| \`${t.key}\` | ${f2(t.ms / l.streamSeconds)} | ${((100 * t.ms) / l.profile.outsideModelMs).toFixed(1)} % |`);
    out.push(`\nInclusive time of src/ functions outside the model, N=${l.streams}:\n`);
    out.push('| function | ms / stream-s | share of outside |');
    out.push('|---|---|---|');
    for (const t of l.profile.topInclusive) out.push(`| \`${t.key}\` | ${f2(t.ms / l.streamSeconds)} | ${((100 * t.ms) / l.profile.outsideModelMs).toFixed(1)} % |`);
  }
  for (const l of levels)
    if (l.errors.length)
      out.push(
        `\nErrors at N=${l.streams} (server ${l.serverExit}):\n${l.errors
          .slice(0, 10)
          .map((e) => `- ${e}`)
          .join('\n')}`,
      );
  return out.join('\n');
}

/** The PCM at `factor` × 16 kHz (linear interpolation: enough to make the server's resampler work). */
function upsample(audio: LoadAudio, factor: number): LoadAudio {
  if (factor === 1) return audio;
  const src = new Int16Array(new Uint8Array(audio.pcm16).buffer); // a copy: aligned
  const out = new Int16Array(src.length * factor);
  for (let i = 0; i < src.length; i++) {
    const a = src[i];
    const b = src[Math.min(src.length - 1, i + 1)];
    for (let k = 0; k < factor; k++) out[i * factor + k] = Math.round(a + ((b - a) * k) / factor);
  }
  return { ...audio, pcm16: Buffer.from(out.buffer) };
}

/**
 * The conversation repeated until `seconds` (loadAudio makes at most ~13 min: the 30-min memory
 * check streams it again and again, as one stream).
 */
function repeatTo(audio: LoadAudio, seconds: number): LoadAudio {
  const times = Math.max(1, Math.floor(seconds / audio.durationS));
  if (times === 1) return audio;
  const pcm16 = Buffer.concat(Array.from({ length: times }, () => audio.pcm16));
  const spans = Array.from({ length: times }, (_, k) => audio.spans.map(([s, e]) => [s + k * audio.durationS, e + k * audio.durationS] as [number, number])).flat();
  return { ...audio, pcm16, samples: new Float32Array(0), durationS: times * audio.durationS, spans, texts: Array.from({ length: times }, () => audio.texts).flat() };
}

async function main(): Promise<void> {
  const a = parse();
  const command = `npm run bench:live-overhead -- ${process.argv.slice(2).join(' ')}`.trim();
  mkdirSync(a.outDir, { recursive: true });
  if (a.sampleRate % SR !== 0) throw new Error('--sample-rate: a multiple of 16000 (16000, 32000, 48000)');
  const audio = upsample(repeatTo(loadAudio({ seconds: Math.min(a.seconds, 600) }), a.seconds), a.sampleRate / SR);
  const template = mkdtempSync(path.join(os.tmpdir(), 'stt-overhead-template-'));
  try {
    console.log(`· provisioning accounts (${a.model}, ${audio.durationS.toFixed(1)} s of audio per stream)`);
    const keys = provision(template, baseEnv(a), 1 + Math.ceil(Math.max(...a.streams) / STREAMS_PER_KEY));
    const levels: Level[] = [];
    for (const n of a.streams) {
      console.log(`· N=${n}`);
      levels.push(await runLevel(a, n, audio, template, keys));
    }
    const md = report(a, levels, command);
    console.log(`\n${md}`);
    if (a.json) writeFileSync(a.json, `${JSON.stringify({ command, args: a, levels }, null, 2)}\n`);
    process.exitCode = levels.some((l) => l.errors.length) ? 1 : 0;
  } finally {
    rmSync(template, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === import.meta.filename) {
  main().catch((err) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(1);
  });
}
