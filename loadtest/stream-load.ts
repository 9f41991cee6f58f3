/**
 * Live-streaming load test for WS /v1/stream (issue 5).
 *
 *   npm run loadtest -- --model <id-or-folder> [--streams 1,2,4,8,16,32] [--batch 1,8] [--seconds 20]
 *                       [--tokens 16] [--url ws://host:port] [--out docs/loadtest.json] [--quick]
 *
 * For each MAX_BATCH_SIZE in --batch (1 = every decode alone, "per-stream"; 8 = batched across
 * streams) it starts its own server child process (PORT=0, a temp DATA_DIR, MODELS_DIR from the
 * environment or ../shared/models) — or, with --url, uses a running server and measures only the
 * client side plus /metrics. For each N in --streams it opens N streams at once (starts staggered by
 * a few hundred ms), each sending the same espeak-ng conversation (utterances with known speech
 * start/end, ≥ 1.5 s of silence between them) in 100 ms PCM16 frames at real-time pace, then
 * {"action":"stop"}, and measures per utterance:
 *   first-partial latency  send time of the frame holding the speech start → first partial of it
 *   final latency          send time of the frame holding the speech end → its final (includes the
 *                          500 ms of silence the VAD needs to end an utterance; also given minus 500 ms)
 * and per run: p50/p95/p99 over all utterances of all streams, RTF (server CPU s / audio s
 * streamed), dropped partials, errors, server CPU % and RSS (/proc, every 500 ms), mean batch size.
 * Random-weight models never emit end-of-text: every decode spends the whole --tokens budget.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { loadAudio, SR, type LoadAudio } from './audio.ts';

const REPO = path.resolve(import.meta.dirname, '..');
const FRAME_MS = 100;
const FRAME = (SR * FRAME_MS) / 1000;
const VAD_SILENCE_S = 0.5;
const PARTIAL_INTERVAL_MS = 500;
/** p95 final latency target for "largest N". */
export const TARGET_P95_FINAL_S = 1;
/**
 * The live-capacity targets (issue 15), after the end of speech, the 0.5 s endpoint silence included:
 * final p50 ≤ 0.8 s and p95 ≤ 1.2 s, first partial p50 ≤ 0.3 s, no final missing, no error.
 */
export const LIVE_TARGETS = { finalP50S: 0.8, finalP95S: 1.2, firstPartialP50S: 0.3 } as const;

// ---------------------------------------------------------------------------------------------
// Result shapes (also read by plot.ts and the smoke test)

export interface Pcts {
  /** Values measured. */
  n: number;
  /** Values that never arrived (counted as slower than everything measured); a percentile that falls among them is null. */
  missing?: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
}

export interface RunResult {
  streams: number;
  utterances: number;
  finalsMatched: number;
  missingFinals: number;
  extraFinals: number;
  utterancesWithoutPartial: number;
  /** seconds */
  firstPartial: Pcts;
  final: Pcts;
  finalMinusVadSilence: Pcts;
  audioSeconds: number;
  serverCpuSeconds: number | null;
  rtf: number | null;
  cpuPercent: { mean: number; max: number } | null;
  rssMB: { start: number; end: number; max: number } | null;
  droppedPartials: number | null;
  meanBatchSize: number | null;
  modelCalls: number | null;
  maxQueueDepth: number | null;
  /** Highest share of its time the model worker was busy over its 30 s window (stt_scheduler_busy_ratio, finals + partials + files), sampled every second; what STREAM_MAX_LOAD is compared with. */
  maxModelBusy: number | null;
  activeStreamsAfter: number | null;
  sendLagMs: { p99: number; max: number };
  wallSeconds: number;
  errorCount: number;
  errors: string[];
  /** Streams refused by admission control (STREAM_MAX_FINAL_WAIT_MS, STREAM_MAX_LOAD); their utterances are not counted. */
  refusedStreams?: number;
  /** Refusals by reason (capacity, slow_start, capacity_forecast), from the server's stt_streams_refused_total; null without /metrics. */
  refusedByReason?: Record<string, number> | null;
}

/** The reasons admission control gives (stt_streams_refused_total{reason}). */
export const REFUSAL_REASONS = ['capacity', 'slow_start', 'capacity_forecast'] as const;

/** "3 (capacity_forecast 2, slow_start 1)": refusals and the reasons that had any. */
export function formatRefused(total: number, byReason?: Record<string, number> | null): string {
  const parts = Object.entries(byReason ?? {})
    .filter(([, n]) => n > 0)
    .map(([r, n]) => `${r} ${n}`);
  return parts.length ? `${total} (${parts.join(', ')})` : String(total);
}

export interface BatchRun {
  batch: number | null;
  label: string;
  serverPid: number | null;
  serverExit: string | null;
  serverErrors: string[];
  results: RunResult[];
  largestNWithinTarget: number | null;
  /** Largest N meeting every one of LIVE_TARGETS. */
  largestNMeetingLiveTargets?: number | null;
}

export interface LoadTestReport {
  schema: 'stt-loadtest/1';
  createdAt: string;
  command: string;
  machine: { cpuModel: string; cpus: number; loadavgBefore: number[]; loadavgAfter: number[]; node: string; platform: string; memGB: number; note: string };
  config: {
    model: string;
    /** Two-pass streams: the model of finals (`final_model`), partials on `model`. */
    finalModel?: string;
    modelsDir: string | null;
    tokens: number;
    secondsRequested: number;
    audioSeconds: number;
    utterancesPerStream: number;
    spans: Array<[number, number]>;
    frameMs: number;
    partialIntervalMs: number;
    staggerMs: string;
    batchWindowMs: string;
    url: string | null;
    quick: boolean;
    targetP95FinalS: number;
    /** How long each stream waited for its close after {"action":"stop"}. */
    drainTimeoutS: number;
  };
  definitions: Record<string, string>;
  runs: BatchRun[];
  summary: {
    largestN: Record<string, number | null>;
    largestNMeetingLiveTargets?: Record<string, number | null>;
    p95FinalRatioPerStreamOverBatched: Array<{ streams: number; ratio: number | null }>;
    rtfRatioPerStreamOverBatched: Array<{ streams: number; ratio: number | null }>;
  };
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** A timer for Promise.race deadlines that does not keep the process alive once the race is won. */
const deadline = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());
const r3 = (x: number) => Math.round(x * 1000) / 1000;

/**
 * Nearest-rank percentiles. `missing` values (e.g. finals that never came before the drain timeout)
 * rank above every measured one: a percentile that lands among them is null ("> timeout"), so an
 * overloaded run is never reported faster than it was.
 */
export function percentiles(xs: number[], missing = 0): Pcts {
  const total = xs.length + missing;
  if (!total) return { n: 0, p50: null, p95: null, p99: null, max: null };
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => {
    const i = Math.min(total - 1, Math.max(0, Math.ceil((p / 100) * total) - 1));
    return i < s.length ? r3(s[i]) : null;
  };
  const out: Pcts = { n: s.length, p50: q(50), p95: q(95), p99: q(99), max: missing || !s.length ? null : r3(s[s.length - 1]) };
  if (missing) out.missing = missing;
  return out;
}

type MetricMap = Map<string, number>;

/** Prometheus text → "name{labels}" → value. */
export function parseMetrics(text: string): MetricMap {
  const m: MetricMap = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    const v = Number(line.slice(sp + 1));
    if (Number.isFinite(v)) m.set(line.slice(0, sp), v);
  }
  return m;
}

/** Sum of every series of `name` whose labels contain all of `labels` (e.g. 'model="x"'). */
export function metricSum(m: MetricMap, name: string, ...labels: string[]): number {
  let sum = 0;
  for (const [k, v] of m) {
    const base = k.includes('{') ? k.slice(0, k.indexOf('{')) : k;
    if (base === name && labels.every((l) => k.includes(l))) sum += v;
  }
  return sum;
}

async function scrape(httpBase: string): Promise<MetricMap | null> {
  try {
    const res = await fetch(`${httpBase}/metrics`, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) return null;
    return parseMetrics(await res.text());
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Server child process

interface Server {
  /** API keys of paid load-test accounts (empty when the tree has no admin CLI). */
  keys: string[];
  child: ChildProcess;
  pid: number;
  port: number;
  errors: string[];
  tail: string[];
  exited: Promise<string>;
  dataDir: string;
}

/** Server children alive now: killed if the runner is interrupted. */
const liveChildren = new Set<ChildProcess>();
function killChildrenOnSignal(): void {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      for (const c of liveChildren) c.kill('SIGKILL');
      process.exit(130);
    });
  }
}

/** Streams per API key: below the paid plan's concurrency limit (5), counting the warm-up stream. */
const STREAMS_PER_KEY = 4;

/**
 * Paid accounts with plenty of credits in the server's (embedded) database, made with the admin CLI
 * before the server starts, so N streams from one address are not refused as anonymous (429).
 * Skipped (no keys) when the tree has no src/cli/admin.ts.
 */
function provisionKeys(env: NodeJS.ProcessEnv, count: number): string[] {
  if (!existsSync(path.join(REPO, 'src', 'cli', 'admin.ts'))) return [];
  const keys: string[] = [];
  for (let i = 0; i < count; i++) {
    const out = execFileSync(
      process.execPath,
      ['--import', 'tsx', 'src/cli/admin.ts', 'create-account', '--email', `loadtest-${i}@example.com`, '--plan', 'paid', '--credits', '10000000', '--name', 'loadtest'],
      { cwd: REPO, env, encoding: 'utf8', timeout: 120_000, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const m = /api key[^:]*:\s*(\S+)/.exec(out);
    if (!m) throw new Error(`admin create-account printed no api key:\n${out}`);
    keys.push(m[1]);
  }
  return keys;
}

async function startServer(o: { batch: number; modelsDir: string; model: string; maxStreams: number }): Promise<Server> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'stt-loadtest-'));
  const env = {
    ...process.env,
    PORT: '0',
    HOST: '127.0.0.1',
    MODELS_DIR: o.modelsDir,
    DATA_DIR: dataDir,
    MAX_BATCH_SIZE: String(o.batch),
    DEFAULT_MODEL: o.model,
    // The runner measures latency past the knee, so the server's admission control (which refuses new
    // streams once finals are late, or when its load forecast says one more is too many) is off unless
    // the caller sets it.
    STREAM_MAX_FINAL_WAIT_MS: process.env.STREAM_MAX_FINAL_WAIT_MS ?? '0',
    STREAM_MAX_LOAD: process.env.STREAM_MAX_LOAD ?? '0',
    // The port comes from the "listening" line, an info line: never quieter than info.
    LOG_LEVEL: ['debug', 'trace'].includes(process.env.LOG_LEVEL ?? '') ? process.env.LOG_LEVEL! : 'info',
  };
  // `node --import tsx` (not `npx tsx`): one process, so its pid is the server's for /proc sampling.
  let keys: string[];
  try {
    keys = provisionKeys(env, Math.ceil(o.maxStreams / STREAMS_PER_KEY) + 1);
  } catch (err) {
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  const args = ['--import', 'tsx', 'src/main.ts'];
  const child = spawn(process.execPath, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(child);
  child.on('exit', () => liveChildren.delete(child));
  const errors: string[] = [];
  const tail: string[] = [];
  let onPort: ((p: number) => void) | null = null;
  const portP = new Promise<number>((r) => (onPort = r));
  const onLine = (line: string) => {
    if (!line.trim()) return;
    tail.push(line.slice(0, 2000));
    if (tail.length > 40) tail.shift();
    try {
      const j = JSON.parse(line) as { msg?: string; port?: number; level?: number };
      if (j.msg === 'listening' && typeof j.port === 'number') onPort?.(j.port);
      if ((j.level ?? 0) >= 50 && errors.length < 50) errors.push(line.slice(0, 1000));
    } catch {
      if (/error/i.test(line) && errors.length < 50) errors.push(line.slice(0, 1000));
    }
  };
  const logFile = process.env.LOADTEST_SERVER_LOG; // every server line, for a post-mortem
  for (const s of [child.stdout!, child.stderr!]) {
    let buf = '';
    if (logFile) s.on('data', (d: string) => appendFileSync(logFile, d));
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
  }
  const exited = new Promise<string>((resolve) => child.on('exit', (code, sig) => resolve(sig ? `signal ${sig}` : `code ${code}`)));
  const port = await Promise.race([
    portP,
    exited.then((how) => Promise.reject(new Error(`server exited (${how}) before listening:\n${tail.join('\n')}`))),
    deadline(90_000).then(() => Promise.reject(new Error(`server did not log "listening" within 90 s:\n${tail.join('\n')}`))),
  ]).catch((err) => {
    child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  });
  return { keys, child, pid: child.pid!, port, errors, tail, exited, dataDir };
}

async function stopServer(s: Server): Promise<string> {
  if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGTERM');
  const how = await Promise.race([s.exited, deadline(20_000).then(() => null)]);
  let result = how ?? 'killed (no exit 20 s after SIGTERM)';
  if (how === null) {
    s.child.kill('SIGKILL');
    await Promise.race([s.exited, deadline(5000)]);
  }
  rmSync(s.dataDir, { recursive: true, force: true });
  if (how !== null && how !== 'code 0') result = `${how} after SIGTERM`;
  return result;
}

// ---------------------------------------------------------------------------------------------
// /proc sampling of the server process (Linux)

let clkTck = 0;
function ticksPerSecond(): number {
  if (!clkTck) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

function procCpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the ")" of the command name: state is field 3; utime 14, stime 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / ticksPerSecond();
  } catch {
    return null;
  }
}

/** Resident memory of a process (MB) from /proc, or null when it is gone. */
export function procRssMB(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

class ProcSampler {
  private timer: NodeJS.Timeout | null = null;
  private last: { t: number; cpu: number } | null = null;
  readonly cpuPct: number[] = [];
  readonly rss: number[] = [];
  maxQueue = 0;
  maxBusy = 0;
  private tick = 0;

  constructor(
    private readonly pid: number | null,
    private readonly httpBase: string,
  ) {}

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), 500);
  }

  private sample(): void {
    if (this.pid !== null) {
      const cpu = procCpuSeconds(this.pid);
      const rss = procRssMB(this.pid);
      const t = performance.now();
      if (cpu !== null && this.last) this.cpuPct.push((100 * (cpu - this.last.cpu)) / ((t - this.last.t) / 1000));
      if (cpu !== null) this.last = { t, cpu };
      if (rss !== null) this.rss.push(rss);
    }
    // Queue depth from /metrics once a second.
    if (this.tick++ % 2 === 0) {
      void scrape(this.httpBase).then((m) => {
        if (!m) return;
        this.maxQueue = Math.max(this.maxQueue, metricSum(m, 'stt_scheduler_queue_depth'));
        this.maxBusy = Math.max(this.maxBusy, metricSum(m, 'stt_scheduler_busy_ratio'));
      });
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.sample();
  }
}

// ---------------------------------------------------------------------------------------------
// One stream

interface StreamOutcome {
  firstPartial: Array<number | null>;
  final: Array<number | null>;
  finalsMatched: number;
  extraFinals: number;
  lagMs: number[];
  errors: string[];
  /** Refused by the server's admission control ("Server at capacity", close 1013): not an error. */
  refused?: string;
}

function frameOf(sample: number): number {
  return Math.floor(sample / FRAME);
}

async function runStream(o: { url: string; audio: LoadAudio; config: Record<string, unknown>; delayMs: number; drainTimeoutMs: number; apiKey?: string }): Promise<StreamOutcome> {
  await sleep(o.delayMs);
  const { audio } = o;
  const nFrames = Math.ceil(audio.pcm16.length / 2 / FRAME);
  const sentAt = new Float64Array(nFrames).fill(NaN);
  const lagMs: number[] = [];
  const errors: string[] = [];
  let refused: string | undefined;
  const partialTimes: number[] = [];
  const finals: Array<{ t: number; start: number; end: number }> = [];
  let isFinal = false;
  let ready: (() => void) | null = null;
  const readyP = new Promise<void>((r) => (ready = r));

  const ws = new WebSocket(o.url, { perMessageDeflate: false, headers: o.apiKey ? { authorization: `Bearer ${o.apiKey}` } : {} });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.on('error', (err) => errors.push(`socket error: ${err.message}`));
  ws.on('unexpected-response', (_req, res) => errors.push(`upgrade refused: HTTP ${res.statusCode}`));
  ws.on('message', (data, isBinary) => {
    const t = performance.now();
    if (isBinary) return void errors.push('unexpected binary message');
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(data.toString()) as Record<string, unknown>;
    } catch {
      return void errors.push(`non-JSON message: ${data.toString().slice(0, 100)}`);
    }
    if (m.status === 'ready') ready?.();
    else if (typeof m.partial === 'string') partialTimes.push(t);
    else if (typeof m.text === 'string') finals.push({ t, start: Number(m.start), end: Number(m.end) });
    else if (m.is_final === true) isFinal = true;
    else if ('error' in m && /^Server (at|near) capacity/.test(String(m.error))) refused = String(m.error);
    else if ('error' in m) errors.push(`server error message: ${String(m.error)}`);
  });

  const opened = await Promise.race([
    new Promise<boolean>((r) => {
      ws.once('open', () => r(true));
      ws.once('close', () => r(false));
    }),
    deadline(30_000).then(() => false),
  ]);
  if (!opened) {
    if (!errors.length) errors.push('could not connect within 30 s');
    ws.terminate();
    return { firstPartial: audio.spans.map(() => null), final: audio.spans.map(() => null), finalsMatched: 0, extraFinals: 0, lagMs, errors };
  }
  ws.send(JSON.stringify(o.config));
  const gotReady = await Promise.race([readyP.then(() => true), closed.then(() => false), deadline(60_000).then(() => false)]);
  if (!gotReady && refused) {
    ws.terminate();
    return { firstPartial: [], final: [], finalsMatched: 0, extraFinals: 0, lagMs, errors, refused };
  }
  if (!gotReady) {
    errors.push('no {"status":"ready"} within 60 s');
    ws.terminate();
    return { firstPartial: audio.spans.map(() => null), final: audio.spans.map(() => null), finalsMatched: 0, extraFinals: 0, lagMs, errors };
  }

  // Real-time pace: frame k is due at t0 + k·100 ms (drift-free schedule).
  const t0 = performance.now();
  for (let k = 0; k < nFrames; k++) {
    const due = t0 + k * FRAME_MS;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    if (ws.readyState !== WebSocket.OPEN) break;
    const now = performance.now();
    lagMs.push(Math.max(0, now - due));
    ws.send(audio.pcm16.subarray(k * FRAME * 2, Math.min(audio.pcm16.length, (k + 1) * FRAME * 2)));
    sentAt[k] = now;
  }
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ action: 'stop' }));
  const close = await Promise.race([closed, deadline(o.drainTimeoutMs).then(() => null)]);
  if (close === null) {
    errors.push(`no close within ${o.drainTimeoutMs / 1000} s after {"action":"stop"} (is_final ${isFinal ? 'received' : 'missing'})`);
    ws.terminate();
  } else {
    if (close.code !== 1000) errors.push(`unexpected close ${close.code} ${close.reason}`);
    if (!isFinal) errors.push(`closed (${close.code}) without {"is_final":true}`);
  }

  // Finals → utterances by time overlap (the server reports stream time; spans are exact).
  const spans = audio.spans;
  const finalAt: Array<number | null> = spans.map(() => null);
  let matched = 0;
  let extra = 0;
  const matchedPer = spans.map(() => 0);
  for (const f of finals) {
    let best = -1;
    let bestOv = 0;
    spans.forEach(([s, e], k) => {
      const ov = Math.min(e, f.end) - Math.max(s, f.start);
      if (ov > bestOv) (bestOv = ov), (best = k);
    });
    if (best < 0) {
      extra++;
      continue;
    }
    matchedPer[best]++;
    // The last final of an utterance (if the VAD split it) is the one that ends it.
    finalAt[best] = Math.max(finalAt[best] ?? -Infinity, f.t);
  }
  matchedPer.forEach((c) => (matched += c ? 1 : 0));
  extra += matchedPer.reduce((a, c) => a + Math.max(0, c - 1), 0);

  const startSent = spans.map(([s]) => sentAt[frameOf(Math.round(s * SR))]);
  const endSent = spans.map(([, e]) => sentAt[frameOf(Math.max(0, Math.round(e * SR) - 1))]);
  // A partial belongs to the latest utterance whose start frame was sent before it, unless that
  // utterance's final already came (the server drops partials of ended utterances).
  const firstPartialAt: Array<number | null> = spans.map(() => null);
  for (const t of partialTimes) {
    let k = -1;
    for (let j = 0; j < spans.length; j++) if (startSent[j] <= t) k = j;
    if (k < 0) continue;
    if (finalAt[k] !== null && finalAt[k]! < t) continue;
    if (firstPartialAt[k] === null) firstPartialAt[k] = t;
  }
  return {
    firstPartial: firstPartialAt.map((t, k) => (t === null || Number.isNaN(startSent[k]) ? null : (t - startSent[k]) / 1000)),
    final: finalAt.map((t, k) => (t === null || Number.isNaN(endSent[k]) ? null : (t - endSent[k]) / 1000)),
    finalsMatched: matched,
    extraFinals: extra,
    lagMs,
    errors,
  };
}

// ---------------------------------------------------------------------------------------------
// One load level (N streams)

async function runLevel(o: {
  n: number;
  wsUrl: string;
  httpBase: string;
  pid: number | null;
  model: string;
  finalModel?: string;
  audio: LoadAudio;
  tokens: number;
  staggerMs: number;
  keys: string[];
}): Promise<RunResult> {
  const config = { language: 'en', model: o.model, ...(o.finalModel ? { final_model: o.finalModel } : {}), max_new_tokens: o.tokens, partial_interval_ms: PARTIAL_INTERVAL_MS };
  const modelLabel = `model="${o.model}"`;
  const before = await scrape(o.httpBase);
  const cpu0 = o.pid !== null ? procCpuSeconds(o.pid) : null;
  const sampler = new ProcSampler(o.pid, o.httpBase);
  sampler.start();
  const t0 = performance.now();
  const drainTimeoutMs = drainTimeoutFor(o.audio.durationS);
  const outcomes = await Promise.all(Array.from({ length: o.n }, (_, i) => runStream({ url: o.wsUrl, audio: o.audio, config, delayMs: i * o.staggerMs, drainTimeoutMs, apiKey: keyFor(o.keys, i) })));
  const wallSeconds = (performance.now() - t0) / 1000;
  // Let the server free the sessions, then read the counters.
  let after = await scrape(o.httpBase);
  for (let i = 0; i < 20 && after && metricSum(after, 'stt_active_streams') > 0; i++) {
    await sleep(250);
    after = await scrape(o.httpBase);
  }
  sampler.stop();
  const cpu1 = o.pid !== null ? procCpuSeconds(o.pid) : null;

  const firstPartial = outcomes.flatMap((s) => s.firstPartial).filter((x): x is number => x !== null);
  const finals = outcomes.flatMap((s) => s.final);
  const finalLat = finals.filter((x): x is number => x !== null);
  const errors = outcomes.flatMap((s, i) => s.errors.map((e) => `stream ${i}: ${e}`));
  const refusedStreams = outcomes.filter((s) => s.refused).length;
  const utterances = (o.n - refusedStreams) * o.audio.spans.length;
  const missingFinals = finals.filter((x) => x === null).length;
  if (missingFinals) errors.push(`${missingFinals} of ${utterances} utterances got no final`);
  const lag = percentiles(outcomes.flatMap((s) => s.lagMs));
  const audioSeconds = o.n * o.audio.durationS;

  // CPU: /proc when we own the server, else the server's own process_cpu_seconds_total.
  let serverCpuSeconds: number | null = null;
  if (cpu0 !== null && cpu1 !== null) serverCpuSeconds = cpu1 - cpu0;
  else if (before && after && before.has('stt_process_cpu_seconds_total')) {
    serverCpuSeconds = metricSum(after, 'stt_process_cpu_seconds_total') - metricSum(before, 'stt_process_cpu_seconds_total');
  }
  const delta = (name: string, ...labels: string[]) => (before && after ? metricSum(after, name, ...labels) - metricSum(before, name, ...labels) : null);
  const calls = delta('stt_batch_size_count', modelLabel);
  const sum = delta('stt_batch_size_sum', modelLabel);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const refusedByReason = before && after ? Object.fromEntries(REFUSAL_REASONS.map((r) => [r, delta('stt_streams_refused_total', `reason="${r}"`) ?? 0])) : null;
  return {
    streams: o.n,
    refusedStreams,
    refusedByReason,
    utterances,
    finalsMatched: outcomes.reduce((a, s) => a + s.finalsMatched, 0),
    missingFinals,
    extraFinals: outcomes.reduce((a, s) => a + s.extraFinals, 0),
    utterancesWithoutPartial: outcomes.flatMap((s) => s.firstPartial).filter((x) => x === null).length,
    firstPartial: percentiles(firstPartial),
    final: percentiles(finalLat, missingFinals),
    finalMinusVadSilence: percentiles(
      finalLat.map((x) => x - VAD_SILENCE_S),
      missingFinals,
    ),
    audioSeconds: r3(audioSeconds),
    serverCpuSeconds: serverCpuSeconds === null ? null : r3(serverCpuSeconds),
    rtf: serverCpuSeconds === null ? null : r3(serverCpuSeconds / audioSeconds),
    cpuPercent: sampler.cpuPct.length ? { mean: Math.round(mean(sampler.cpuPct)), max: Math.round(Math.max(...sampler.cpuPct)) } : null,
    rssMB: sampler.rss.length ? { start: Math.round(sampler.rss[0]), end: Math.round(sampler.rss.at(-1)!), max: Math.round(Math.max(...sampler.rss)) } : null,
    droppedPartials: delta('stt_partials_dropped_total', modelLabel),
    meanBatchSize: calls && sum !== null ? r3(sum / calls) : null,
    modelCalls: calls,
    maxQueueDepth: before ? sampler.maxQueue : null,
    maxModelBusy: before ? r3(sampler.maxBusy) : null,
    activeStreamsAfter: after ? metricSum(after, 'stt_active_streams') : null,
    sendLagMs: { p99: Math.round(lag.p99 ?? 0), max: Math.round(lag.max ?? 0) },
    wallSeconds: r3(wallSeconds),
    errorCount: errors.length,
    errors: errors.slice(0, 30),
  };
}

/** Stream i's key: ≤ STREAMS_PER_KEY streams per key (keys 1…; key 0 is the warm-up's). */
function keyFor(keys: string[], i: number): string | undefined {
  if (!keys.length) return undefined;
  if (keys.length === 1) return keys[0];
  return keys[1 + (Math.floor(i / STREAMS_PER_KEY) % (keys.length - 1))];
}

/** How long a stream waits for its close after {"action":"stop"}; finals later than that count as missing. */
export function drainTimeoutFor(audioS: number): number {
  return Math.round(Math.max(90_000, audioS * 1000 * 4));
}

/** One short stream so the model is loaded and onnxruntime warm before anything is timed. */
async function warmUp(wsUrl: string, model: string, tokens: number, apiKey?: string, finalModel?: string): Promise<void> {
  const ws = new WebSocket(wsUrl, { perMessageDeflate: false, headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {} });
  const done = new Promise<void>((resolve) => {
    ws.on('close', () => resolve());
    ws.on('error', () => resolve());
  });
  ws.on('open', () => ws.send(JSON.stringify({ language: 'en', model, ...(finalModel ? { final_model: finalModel } : {}), max_new_tokens: tokens })));
  ws.on('message', (d) => {
    const m = JSON.parse(d.toString()) as Record<string, unknown>;
    if (m.status === 'ready') {
      const a = loadAudio({ seconds: 4 });
      for (let k = 0; k * FRAME * 2 < a.pcm16.length; k++) ws.send(a.pcm16.subarray(k * FRAME * 2, (k + 1) * FRAME * 2));
      ws.send(JSON.stringify({ action: 'stop' }));
    }
    if ('error' in m) console.error(`warm-up: server error: ${String(m.error)}`);
  });
  await Promise.race([done, deadline(120_000)]);
  ws.terminate();
}

// ---------------------------------------------------------------------------------------------
// Output

const fmtS = (x: number | null, none = 'n/a') => (x === null ? none : x.toFixed(2));

/** `censoredAboveS`: what a null percentile means (finals that never came before the drain timeout). */
export function markdownTable(run: BatchRun, censoredAboveS?: number): string {
  const none = censoredAboveS ? `>${Math.round(censoredAboveS)}` : 'n/a';
  const f = (x: number | null) => fmtS(x, none);
  const head = [
    'N',
    'utts',
    'finals',
    'first partial p50 / p95 / p99 (s)',
    'final p50 / p95 / p99 (s)',
    'final p95 − 0.5 s',
    'RTF',
    'server CPU % mean / max',
    'RSS MB max',
    'dropped partials',
    'mean batch',
    'model busy max',
    'refused',
    'errors',
  ];
  const rows = run.results.map((r) => [
    r.streams,
    r.utterances,
    r.finalsMatched,
    `${fmtS(r.firstPartial.p50)} / ${fmtS(r.firstPartial.p95)} / ${fmtS(r.firstPartial.p99)}`,
    `${f(r.final.p50)} / ${f(r.final.p95)} / ${f(r.final.p99)}`,
    f(r.finalMinusVadSilence.p95),
    r.rtf === null ? 'n/a' : r.rtf.toFixed(3),
    r.cpuPercent ? `${r.cpuPercent.mean} / ${r.cpuPercent.max}` : 'n/a',
    r.rssMB ? String(r.rssMB.max) : 'n/a',
    r.droppedPartials ?? 'n/a',
    r.meanBatchSize === null ? 'n/a' : r.meanBatchSize.toFixed(2),
    r.maxModelBusy == null ? 'n/a' : r.maxModelBusy.toFixed(2),
    formatRefused(r.refusedStreams ?? 0, r.refusedByReason),
    r.errorCount,
  ]);
  const line = (r: (string | number)[]) => `| ${r.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

export function largestWithin(results: RunResult[], targetS = TARGET_P95_FINAL_S): number | null {
  const ok = results.filter((r) => r.errorCount === 0 && r.missingFinals === 0 && r.final.p95 !== null && r.final.p95 <= targetS);
  return ok.length ? Math.max(...ok.map((r) => r.streams)) : null;
}

/** Largest N whose run meets every live target (LIVE_TARGETS), or null. */
export function largestMeetingLiveTargets(results: RunResult[], t = LIVE_TARGETS): number | null {
  const ok = results.filter(
    (r) =>
      r.errorCount === 0 &&
      r.missingFinals === 0 &&
      r.final.p50 !== null &&
      r.final.p50 <= t.finalP50S &&
      r.final.p95 !== null &&
      r.final.p95 <= t.finalP95S &&
      r.firstPartial.p50 !== null &&
      r.firstPartial.p50 <= t.firstPartialP50S,
  );
  return ok.length ? Math.max(...ok.map((r) => r.streams)) : null;
}

const labelOf = (batch: number | null) => (batch === null ? 'external server' : batch === 1 ? 'per-stream (MAX_BATCH_SIZE=1)' : `batched (MAX_BATCH_SIZE=${batch})`);

// ---------------------------------------------------------------------------------------------
// Main

const phase = (msg: string) => console.log(`  · ${msg}`);

function usage(msg?: string): never {
  if (msg) console.error(msg);
  console.error(
    'usage: npm run loadtest -- --model <id-or-folder> [--final-model <id>] [--streams 1,2,4,8,16,32] [--batch 1,8] [--seconds 20] [--tokens 16] [--url ws://host:port] [--out docs/loadtest.json] [--quick] [--stagger-ms 300] [--audio-only] [--api-key KEY ...]',
  );
  process.exit(2);
}

function list(v: string, what: string): number[] {
  const xs = v.split(',').map((s) => Number(s.trim()));
  if (!xs.length || xs.some((x) => !Number.isInteger(x) || x < 1 || x > 1024)) usage(`--${what}: expected a comma-separated list of positive integers, got "${v}"`);
  return xs;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      'final-model': { type: 'string' },
      streams: { type: 'string' },
      batch: { type: 'string' },
      seconds: { type: 'string' },
      tokens: { type: 'string' },
      url: { type: 'string' },
      out: { type: 'string' },
      quick: { type: 'boolean', default: false },
      'stagger-ms': { type: 'string' },
      'audio-only': { type: 'boolean', default: false },
      'api-key': { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) usage();
  if (!values.model) usage('--model is required (a model id in MODELS_DIR, or a model folder)');
  const quick = values.quick!;
  const streams = list(values.streams ?? (quick ? '1,2' : '1,2,4,8,16,32'), 'streams');
  const batches = list(values.batch ?? '1,8', 'batch');
  const seconds = Number(values.seconds ?? (quick ? 6 : 20));
  const tokens = Number(values.tokens ?? (quick ? 4 : 16));
  if (!(seconds >= 4 && seconds <= 3600)) usage('--seconds: expected 4..3600');
  if (!Number.isInteger(tokens) || tokens < 1 || tokens > 448) usage('--tokens: expected an integer 1..448');
  const out = path.resolve(values.out ?? (quick ? '.tmp/loadtest/quick.json' : 'docs/loadtest.json'));

  // Model: an id (a folder in MODELS_DIR) or a folder path (its parent becomes MODELS_DIR).
  let model = values.model;
  let modelsDir: string | null = path.resolve(process.env.MODELS_DIR ?? path.join(REPO, '..', 'shared', 'models'));
  if (model.includes('/') || model.startsWith('.')) {
    const dir = path.resolve(model);
    model = path.basename(dir);
    modelsDir = path.dirname(dir);
  }
  if (!values.url && !(existsSync(path.join(modelsDir, model)) && statSync(path.join(modelsDir, model)).isDirectory())) {
    usage(`model folder ${path.join(modelsDir, model)} not found (set MODELS_DIR, or pass --model <folder>)`);
  }
  if (values.url) modelsDir = null;

  const audio = loadAudio({ seconds });
  if (values['audio-only']) {
    // For loadtest/k6-stream.js: AUDIO is this path without the extension.
    console.log(`${path.relative(REPO, audio.pcmPath)}  (${audio.durationS.toFixed(1)} s PCM16 LE mono 16 kHz, ${audio.spans.length} utterances)`);
    console.log(`${path.relative(REPO, audio.spansPath)}  (speech spans)`);
    console.log(`k6: -e AUDIO=../${path.relative(REPO, audio.pcmPath).replace(/\.pcm$/, '')}`);
    return;
  }
  const loadavgBefore = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const cpus = os.cpus();
  const staggerFor = (n: number) => (values['stagger-ms'] !== undefined ? Number(values['stagger-ms']) : Math.round(Math.min(300, 3000 / n)));
  console.log(
    `# Live-stream load test — model ${model}, ${tokens} tokens per decode (random weights never stop early), ` +
      `${audio.durationS.toFixed(1)} s of audio per stream (${audio.spans.length} utterances), 100 ms frames at real-time pace`,
  );
  console.log(`${cpus[0]?.model ?? 'cpu'} × ${cpus.length}, node ${process.version}, load average before ${loadavgBefore.join(' ')}\n`);
  killChildrenOnSignal();
  // With --url: keys to use (each ≤ STREAMS_PER_KEY streams; the first also warms up). Also STT_API_KEYS=k1,k2.
  const apiKeys = (values['api-key'] ?? (process.env.STT_API_KEYS ? process.env.STT_API_KEYS.split(',') : [])).flatMap((k) => k.split(',')).filter(Boolean);
  const runs: BatchRun[] = [];
  const settings: Array<number | null> = values.url ? [null] : batches;
  for (const batch of settings) {
    let server: Server | null = null;
    let keys: string[] = apiKeys;
    let wsUrl: string;
    let httpBase: string;
    if (batch === null) {
      const u = new URL(values.url!);
      if (u.pathname === '/' || u.pathname === '') u.pathname = '/v1/stream';
      wsUrl = u.toString();
      httpBase = `${u.protocol === 'wss:' ? 'https:' : 'http:'}//${u.host}`;
    } else {
      const ts = performance.now();
      server = await startServer({ batch, modelsDir: modelsDir!, model, maxStreams: Math.max(...streams) });
      keys = server.keys;
      if (keys.length) phase(`${keys.length} paid load-test accounts/keys made with src/cli/admin.ts (≤ ${STREAMS_PER_KEY} streams per key)`);
      phase(`server up in ${((performance.now() - ts) / 1000).toFixed(1)} s`);
      wsUrl = `ws://127.0.0.1:${server.port}/v1/stream`;
      httpBase = `http://127.0.0.1:${server.port}`;
    }
    const run: BatchRun = { batch, label: labelOf(batch), serverPid: server?.pid ?? null, serverExit: null, serverErrors: [], results: [], largestNWithinTarget: null };
    runs.push(run);
    try {
      console.log(`## ${run.label}${server ? ` — server pid ${server.pid} on port ${server.port}` : ` — ${wsUrl}`}`);
      const tw = performance.now();
      await warmUp(wsUrl, model, tokens, keys[0], values['final-model']);
      phase(`warm-up (model load + one decode) ${((performance.now() - tw) / 1000).toFixed(1)} s`);
      for (const n of streams) {
        if (server && server.child.exitCode !== null) {
          run.serverErrors.push(`server exited before N=${n}`);
          break;
        }
        process.stdout.write(`N=${n} … `);
        const r = await runLevel({ n, wsUrl, httpBase, pid: server?.pid ?? null, model, finalModel: values['final-model'], audio, tokens, staggerMs: staggerFor(n), keys });
        run.results.push(r);
        console.log(
          `p95 first partial ${fmtS(r.firstPartial.p95)} s, p95 final ${fmtS(r.final.p95)} s, RTF ${r.rtf ?? 'n/a'}, ` +
            `finals ${r.finalsMatched}/${r.utterances}, refused ${formatRefused(r.refusedStreams ?? 0, r.refusedByReason)}, errors ${r.errorCount}, ${r.wallSeconds.toFixed(0)} s`,
        );
        for (const e of r.errors.slice(0, 5)) console.log(`   ! ${e}`);
        if (r.activeStreamsAfter) console.log(`   ! stt_active_streams still ${r.activeStreamsAfter} after the run`);
      }
    } finally {
      if (server) {
        const tk = performance.now();
        run.serverExit = await stopServer(server);
        phase(`server stopped (${run.serverExit}) in ${((performance.now() - tk) / 1000).toFixed(1)} s`);
        run.serverErrors.push(...server.errors);
      }
    }
    run.largestNWithinTarget = largestWithin(run.results);
    run.largestNMeetingLiveTargets = largestMeetingLiveTargets(run.results);
    console.log(`\n${markdownTable(run, drainTimeoutFor(audio.durationS) / 1000)}\n`);
    console.log(`largest N with p95 final latency ≤ ${TARGET_P95_FINAL_S} s: ${run.largestNWithinTarget ?? 'none'}`);
    console.log(
      `largest N meeting the live targets (final p50 ≤ ${LIVE_TARGETS.finalP50S} s, p95 ≤ ${LIVE_TARGETS.finalP95S} s, first partial p50 ≤ ${LIVE_TARGETS.firstPartialP50S} s, no missing final): ${run.largestNMeetingLiveTargets ?? 'none'}`,
    );
    if (run.serverErrors.length) console.log(`server errors (${run.serverErrors.length}):\n  ${run.serverErrors.slice(0, 5).join('\n  ')}`);
    if (run.serverExit && run.serverExit !== 'code 0') console.log(`server exit: ${run.serverExit}`);
    console.log('');
  }

  const ratio = (get: (r: RunResult) => number | null) => {
    const per = runs.find((r) => r.batch === 1);
    const bat = runs.find((r) => r.batch !== null && r.batch > 1);
    if (!per || !bat) return [];
    return per.results.map((p) => {
      const b = bat.results.find((x) => x.streams === p.streams);
      const a = get(p);
      const c = b ? get(b) : null;
      return { streams: p.streams, ratio: a !== null && c ? Math.round((a / c) * 100) / 100 : null };
    });
  };
  const report: LoadTestReport = {
    schema: 'stt-loadtest/1',
    createdAt: new Date().toISOString(),
    command: `npm run loadtest -- ${process.argv.slice(2).join(' ')}`,
    machine: {
      cpuModel: cpus[0]?.model ?? 'unknown',
      cpus: cpus.length,
      loadavgBefore,
      loadavgAfter: os.loadavg().map((x) => Math.round(x * 100) / 100),
      node: process.version,
      platform: `${os.platform()} ${os.release()} ${os.arch()}`,
      memGB: Math.round(os.totalmem() / 2 ** 30),
      note: 'The load generator runs on the same machine as the server (loopback), and shares its CPUs.',
    },
    config: {
      model,
      ...(values['final-model'] ? { finalModel: values['final-model'] } : {}),
      modelsDir,
      tokens,
      secondsRequested: seconds,
      audioSeconds: r3(audio.durationS),
      utterancesPerStream: audio.spans.length,
      spans: audio.spans,
      frameMs: FRAME_MS,
      partialIntervalMs: PARTIAL_INTERVAL_MS,
      staggerMs: values['stagger-ms'] ?? 'min(300, 3000/N) ms between stream starts',
      batchWindowMs: process.env.BATCH_WINDOW_MS ?? '10 (server default)',
      url: values.url ?? null,
      quick,
      targetP95FinalS: TARGET_P95_FINAL_S,
      drainTimeoutS: drainTimeoutFor(audio.durationS) / 1000,
    },
    definitions: {
      firstPartial: 'seconds from sending the 100 ms frame that holds the utterance speech start until the first {"partial"} of that utterance arrives',
      final: 'seconds from sending the frame that holds the utterance speech end until its final arrives; includes the 500 ms of silence the VAD needs to end an utterance',
      finalMinusVadSilence: 'final minus 0.5 s: the part of the final latency that is processing and queueing',
      rtf: 'server CPU seconds (utime+stime of the server process, or process_cpu_seconds_total with --url) / seconds of audio streamed by all N streams',
      meanBatchSize: 'delta of stt_batch_size_sum / delta of stt_batch_size_count for the model (every decode: partials and finals)',
      droppedPartials: 'delta of stt_partials_dropped_total for the model',
      errors: 'error messages from the server, closes other than 1000, missing {"is_final":true}, utterances without a final, connection failures',
    },
    runs,
    summary: {
      largestN: Object.fromEntries(runs.map((r) => [r.batch === null ? 'external' : `batch${r.batch}`, r.largestNWithinTarget])),
      largestNMeetingLiveTargets: Object.fromEntries(runs.map((r) => [r.batch === null ? 'external' : `batch${r.batch}`, r.largestNMeetingLiveTargets ?? null])),
      p95FinalRatioPerStreamOverBatched: ratio((r) => r.final.p95),
      rtfRatioPerStreamOverBatched: ratio((r) => r.rtf),
    },
  };
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
  console.log(`wrote ${path.relative(process.cwd(), out)}`);
  const failed = runs.some((r) => r.serverExit !== null && r.serverExit !== 'code 0');
  process.exitCode = failed ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main().catch((err) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(1);
  });
}
