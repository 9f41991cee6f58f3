/**
 * Fault injection, end to end (issue 13): kill -9 an API server, a worker and nats-server while
 * uploads and live streams run, on the embedded database and on PostgreSQL, then check that every
 * request ended in a clear success or a clear failure (none lost) and that the credits charged
 * equal the audio delivered.
 *
 *   npm run chaos -- [--db pglite,postgres] [--uploads 8] [--streams 4] [--database-url URL] [--out FILE]
 *
 * Everything runs on 127.0.0.1: its own server processes (src/main.ts, temp DATA_DIR), its own
 * nats-server (a free port, its own JetStream folder) and, for PostgreSQL, its own schema in
 * DATABASE_URL (default TEST_DATABASE_URL or postgres://stt:stt@127.0.0.1:5432/stt_test), dropped
 * at the end. Every wait is bounded; the run stops by itself.
 *
 * Scenarios (each with fresh paid accounts):
 *   api-kill/uploads     kill -9 the only server while uploads run; restart on the same database
 *   api-kill/streams     kill -9 the only server while live streams run; restart
 *   worker-kill/uploads  WORK_QUEUE=nats: an API-only server + 2 workers; kill -9 one worker (PostgreSQL only:
 *                        the embedded database belongs to one process)
 *   nats-kill/uploads    WORK_QUEUE=nats: kill -9 nats-server mid-upload, restart it (PostgreSQL only)
 *   nats-kill/streams    results fanned out over NATS: kill -9 nats-server mid-stream, restart it
 *
 * Outcomes: completed (200 transcript / stream ended with {"is_final":true}), failed with a clear
 * error (an HTTP error with {"error"}, a WebSocket close with a reason, or the connection reset by
 * the killed process), lost (no answer within the bound, or an answer that is neither). Credits: the
 * accounts' balance drop after restart and lease expiry, against the billable minutes of what was
 * delivered (uploads: completed transcripts; streams: the audio the server received, metered every
 * 10 s, so charged lies between billable(sent − 10 s) and billable(sent)).
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import pg from 'pg';
import WebSocket from 'ws';
import { billableMinutes } from '../src/auth/access-control.ts';
import { loadAudio, SR } from './audio.ts';
import { REPO_ROOT } from '../test/helpers/paths.ts';
import { startServerProcess, type ServerProcess } from '../test/helpers/server-process.ts';

const execFileP = promisify(execFile);
const MODEL = 'whisper-mini-random';
const LEASE_TTL_S = 3;
const CREDITS = 1000;

type DbKind = 'pglite' | 'postgres';

interface Row {
  scenario: string;
  db: DbKind;
  sent: number;
  completed: number;
  failedClear: number;
  lost: number;
  charged: number;
  delivered: string;
  match: boolean;
  notes: string[];
}

// ---------------------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** Resolves `v` or `fallback` after `ms`. */
function within<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((r) => (timer = setTimeout(() => r(fallback), ms)))]).finally(() => clearTimeout(timer));
}

/** A nats-server of our own (JetStream store kept across kill -9, so a restart recovers the streams). */
class Nats {
  private child: ChildProcess | null = null;
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'stt-chaos-nats-'));
  constructor(readonly port: number) {}
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }
  async start(): Promise<void> {
    this.child = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.dir], { stdio: 'ignore' });
    for (let i = 0; i < 200; i++) {
      if (await canConnect(this.port)) return;
      await sleep(100);
    }
    throw new Error(`nats-server did not listen on ${this.port}`);
  }
  async kill(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  }
  async close(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

// ---------------------------------------------------------------------------------------------
// Databases and accounts

interface DbTarget {
  kind: DbKind;
  /** Environment for servers and the admin CLI. */
  env: Record<string, string>;
  dispose(): Promise<void>;
}

async function openDb(kind: DbKind, baseUrl: string): Promise<DbTarget> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'stt-chaos-data-'));
  if (kind === 'pglite') {
    return { kind, env: { DATA_DIR: dataDir }, dispose: async () => rmSync(dataDir, { recursive: true, force: true }) };
  }
  const schema = `stt_chaos_${Math.random().toString(36).slice(2, 10)}`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.end();
  const url = new URL(baseUrl);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return {
    kind,
    env: { DATA_DIR: dataDir, DATABASE_URL: url.toString() },
    dispose: async () => {
      const c = new pg.Client({ connectionString: baseUrl });
      await c.connect();
      await c.query(`DROP SCHEMA ${schema} CASCADE`).catch(() => {});
      await c.end();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Paid accounts made with the admin CLI (before the server starts: the embedded database has one owner). */
function provision(env: Record<string, string>, n: number, tag: string): string[] {
  const keys: string[] = [];
  for (let i = 0; i < n; i++) {
    const out = execFileSync(
      process.execPath,
      ['--import', 'tsx', 'src/cli/admin.ts', 'create-account', '--email', `chaos-${tag}-${i}-${Date.now()}@example.com`, '--plan', 'paid', '--credits', String(CREDITS)],
      { cwd: REPO_ROOT, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 180_000, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const m = /api key[^:]*:\s*(\S+)/i.exec(out);
    if (!m) throw new Error(`admin create-account printed no API key:\n${out}`);
    keys.push(m[1]);
  }
  return keys;
}

async function creditsOf(base: string, key: string): Promise<number> {
  const res = await fetch(`${base}/api/v1/account/`, { headers: { authorization: `Bearer ${key}` } });
  if (!res.ok) throw new Error(`GET /api/v1/account/ → ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { credits: number }).credits;
}

/**
 * Charged credits (sum over keys of CREDITS − balance) once they settle: polls until `ok(charged)` or
 * the bound passes (reservations of a killed server are refunded when their lease expires).
 */
async function settledCharge(base: string, keys: string[], ok: (charged: number) => boolean, boundMs = 90_000): Promise<number> {
  const until = Date.now() + boundMs;
  let charged = NaN;
  for (;;) {
    charged = 0;
    for (const k of keys) charged += CREDITS - (await creditsOf(base, k));
    if (ok(charged) || Date.now() > until) return charged;
    await sleep(1000);
  }
}

// ---------------------------------------------------------------------------------------------
// Clients

type Outcome = { kind: 'completed'; minutes: number } | { kind: 'failed'; why: string } | { kind: 'lost'; why: string };

const CLEAR_NETWORK = /ECONNRESET|ECONNREFUSED|socket hang up|other side closed|terminated|UND_ERR_SOCKET|fetch failed/i;

async function upload(base: string, key: string, wav: Buffer, boundMs: number): Promise<Outcome> {
  const form = new FormData();
  form.set('file', new Blob([new Uint8Array(wav)], { type: 'audio/wav' }), 'chaos.wav');
  form.set('model', MODEL);
  form.set('vad', 'true');
  form.set('diarize', 'false');
  form.set('max_new_tokens', '48');
  form.set('language', 'en');
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), boundMs);
  try {
    const res = await fetch(`${base}/v1/transcribe`, { method: 'POST', body: form, headers: { authorization: `Bearer ${key}` }, signal: ac.signal });
    const text = await res.text();
    let body: { duration?: number; error?: string } = {};
    try {
      body = JSON.parse(text);
    } catch {
      return { kind: 'lost', why: `HTTP ${res.status} with a body that is not JSON: ${text.slice(0, 80)}` };
    }
    if (res.ok && typeof body.duration === 'number') return { kind: 'completed', minutes: billableMinutes(body.duration) };
    if (!res.ok && typeof body.error === 'string') return { kind: 'failed', why: `HTTP ${res.status}: ${body.error}` };
    return { kind: 'lost', why: `HTTP ${res.status} without a transcript or an error: ${text.slice(0, 80)}` };
  } catch (err) {
    const e = err as Error & { cause?: Error };
    const why = `${e.message}${e.cause ? ` (${e.cause.message})` : ''}`;
    if (ac.signal.aborted) return { kind: 'lost', why: `no answer within ${boundMs / 1000} s` };
    return CLEAR_NETWORK.test(why) ? { kind: 'failed', why } : { kind: 'lost', why };
  } finally {
    clearTimeout(timer);
  }
}

interface StreamOutcome {
  outcome: Outcome;
  sentSeconds: number;
}

/** One live stream: config, `seconds` of audio at `pace`× real time in 100 ms frames, stop. */
async function stream(wsBase: string, key: string, pcm: Buffer, pace: number, boundMs: number): Promise<StreamOutcome> {
  const ws = new WebSocket(`${wsBase}/v1/stream`, { headers: { authorization: `Bearer ${key}` }, perMessageDeflate: false });
  let sentBytes = 0;
  let isFinal = false;
  let errorMsg: string | null = null;
  const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
  ws.on('error', () => {});
  let readyResolve: () => void = () => {};
  const ready = new Promise<void>((r) => (readyResolve = r));
  ws.on('message', (data, bin) => {
    if (bin) return;
    const m = JSON.parse(data.toString()) as Record<string, unknown>;
    if (m.status === 'ready') readyResolve();
    if (m.is_final === true) isFinal = true;
    if (typeof m.error === 'string') errorMsg = m.error;
  });
  const opened = await within(
    new Promise<boolean>((r) => {
      ws.once('open', () => r(true));
      ws.once('close', () => r(false));
    }),
    30_000,
    false,
  );
  if (!opened) return { outcome: { kind: 'failed', why: 'could not connect' }, sentSeconds: 0 };
  ws.send(JSON.stringify({ model: MODEL, language: 'en' }));
  const gotReady = await within(Promise.race([ready.then(() => true), closed.then(() => false)]), 60_000, false);
  if (!gotReady) {
    ws.terminate();
    return { outcome: errorMsg ? { kind: 'failed', why: errorMsg } : { kind: 'lost', why: 'no ready' }, sentSeconds: 0 };
  }
  const frame = (SR / 10) * 2;
  const t0 = performance.now();
  for (let off = 0, k = 0; off < pcm.length && ws.readyState === WebSocket.OPEN; off += frame, k++) {
    ws.send(pcm.subarray(off, off + frame));
    sentBytes += Math.min(frame, pcm.length - off);
    const wait = t0 + ((k + 1) * 100) / pace - performance.now();
    if (wait > 0) await sleep(wait);
  }
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ action: 'stop' }));
  const end = await within(closed, boundMs, null);
  const sentSeconds = sentBytes / 2 / SR;
  if (!end) {
    ws.terminate();
    return { outcome: { kind: 'lost', why: `not closed within ${boundMs / 1000} s` }, sentSeconds };
  }
  if (isFinal && end.code === 1000) return { outcome: { kind: 'completed', minutes: 0 }, sentSeconds };
  // 1006: the server process died (the connection dropped); any other code carries its reason.
  if (end.code === 1006 || end.reason || errorMsg) return { outcome: { kind: 'failed', why: `close ${end.code} ${end.reason || errorMsg || ''}`.trim() }, sentSeconds };
  return { outcome: { kind: 'lost', why: `closed ${end.code} without a reason or is_final` }, sentSeconds };
}

// ---------------------------------------------------------------------------------------------
// Scenarios

interface Ctx {
  db: DbTarget;
  modelsDir: string;
  wav: Buffer;
  pcm: Buffer;
  uploads: number;
  streams: number;
}

function serverEnv(c: Ctx, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...c.db.env,
    MODELS_DIR: c.modelsDir,
    DEFAULT_MODEL: MODEL,
    CONCURRENCY_LEASE_TTL_S: String(LEASE_TTL_S),
    STREAM_MAX_FINAL_WAIT_MS: '0',
    STREAM_MAX_LOAD: '0',
    LLM_THREADS: '1',
    ...extra,
  };
}

/** A server on the scenario's database (its DATA_DIR is kept across restarts: the embedded database lives there). */
function startServer(c: Ctx, env: Record<string, string>): Promise<ServerProcess> {
  return startServerProcess({ dataDir: c.db.env.DATA_DIR, env });
}

function tally(scenario: string, c: Ctx, outcomes: Outcome[]): Omit<Row, 'charged' | 'delivered' | 'match'> {
  const notes = [...new Set(outcomes.filter((o) => o.kind !== 'completed').map((o) => `${o.kind}: ${(o as { why: string }).why}`))].slice(0, 4);
  return {
    scenario,
    db: c.db.kind,
    sent: outcomes.length,
    completed: outcomes.filter((o) => o.kind === 'completed').length,
    failedClear: outcomes.filter((o) => o.kind === 'failed').length,
    lost: outcomes.filter((o) => o.kind === 'lost').length,
    notes,
  };
}

/**
 * Sends `n` uploads, 2 accounts × up to 4 at a time, and calls `fault` once the first has completed
 * (so that the fault lands while others are in flight). Returns every outcome.
 */
async function uploadsWithFault(base: () => string, keys: string[], c: Ctx, fault: () => Promise<void>): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  let faulted: Promise<void> | null = null;
  let next = 0;
  const worker = async (key: string) => {
    while (next < c.uploads) {
      next++;
      const o = await upload(base(), key, c.wav, 240_000);
      outcomes.push(o);
      if (o.kind === 'completed' && !faulted) faulted = fault();
    }
  };
  await Promise.all(keys.flatMap((k) => Array.from({ length: 4 }, () => worker(k))));
  if (!faulted) faulted = fault(); // none completed: the fault still happens, for the record
  await faulted;
  return outcomes;
}

async function uploadCredits(base: string, keys: string[], outcomes: Outcome[]): Promise<Pick<Row, 'charged' | 'delivered' | 'match'>> {
  const delivered = outcomes.reduce((s, o) => s + (o.kind === 'completed' ? o.minutes : 0), 0);
  const charged = await settledCharge(base, keys, (ch) => ch === delivered);
  return { charged, delivered: `${delivered} min`, match: charged === delivered };
}

async function apiKillUploads(c: Ctx): Promise<Row> {
  const keys = provision(c.db.env, 2, 'api-up');
  let server = await startServer(c, serverEnv(c));
  const outcomes = await uploadsWithFault(
    () => server.url,
    keys,
    c,
    async () => {
      await sleep(300);
      await server.kill('SIGKILL');
    },
  );
  server = await startServer(c, serverEnv(c));
  try {
    return { ...tally('api-kill/uploads', c, outcomes), ...(await uploadCredits(server.url, keys, outcomes)) };
  } finally {
    await server.close();
  }
}

async function streamsWithFault(wsBase: string, keys: string[], c: Ctx, faultAfterMs: number, fault: () => Promise<void>): Promise<StreamOutcome[]> {
  const runs = Array.from({ length: c.streams }, (_, i) => stream(wsBase, keys[i % keys.length], c.pcm, 2, 240_000));
  await sleep(faultAfterMs);
  await fault();
  return Promise.all(runs);
}

/** Streams are metered every 10 s of audio received: charged is within [billable(sent − 10 s), billable(sent)] per stream. */
async function streamCredits(base: string, keys: string[], results: StreamOutcome[]): Promise<Pick<Row, 'charged' | 'delivered' | 'match'>> {
  const hi = results.reduce((s, r) => s + billableMinutes(r.sentSeconds), 0);
  const lo = results.reduce((s, r) => s + billableMinutes(Math.max(0, Math.floor(r.sentSeconds / 10) * 10 - 10)), 0);
  const charged = await settledCharge(base, keys, (ch) => ch >= lo && ch <= hi, 30_000);
  const sent = results.reduce((s, r) => s + r.sentSeconds, 0);
  return { charged, delivered: `${sent.toFixed(0)} s streamed → ${lo}–${hi} min`, match: charged >= lo && charged <= hi };
}

async function apiKillStreams(c: Ctx): Promise<Row> {
  const keys = provision(c.db.env, 2, 'api-st');
  let server = await startServer(c, serverEnv(c));
  const results = await streamsWithFault(server.wsUrl, keys, c, 15_000, () => server.kill('SIGKILL').then(() => {}));
  server = await startServer(c, serverEnv(c));
  try {
    return {
      ...tally(
        'api-kill/streams',
        c,
        results.map((r) => r.outcome),
      ),
      ...(await streamCredits(server.url, keys, results)),
    };
  } finally {
    await server.close();
  }
}

async function workerKillUploads(c: Ctx, nats: Nats): Promise<Row> {
  const keys = provision(c.db.env, 2, 'wk-up');
  const q = { WORK_QUEUE: 'nats', NATS_URL: nats.url, WORK_ACK_WAIT_S: '5' };
  const api = await startServer(c, serverEnv(c, { ...q, WORKER: 'false' }));
  const workers = await Promise.all([1, 2].map((i) => startServer(c, serverEnv(c, { ...q, WORKER: 'true' }))));
  try {
    const outcomes = await uploadsWithFault(
      () => api.url,
      keys,
      c,
      () => workers[0].kill('SIGKILL').then(() => {}),
    );
    return { ...tally('worker-kill/uploads', c, outcomes), ...(await uploadCredits(api.url, keys, outcomes)) };
  } finally {
    await Promise.all([api.close(), ...workers.map((w) => w.close())]);
  }
}

async function natsKillUploads(c: Ctx, nats: Nats): Promise<Row> {
  const keys = provision(c.db.env, 2, 'nk-up');
  const q = { WORK_QUEUE: 'nats', NATS_URL: nats.url, WORK_ACK_WAIT_S: '5', WORK_TIMEOUT_S: '60' };
  const api = await startServer(c, serverEnv(c, { ...q, WORKER: 'false' }));
  const worker = await startServer(c, serverEnv(c, { ...q, WORKER: 'true' }));
  try {
    const outcomes = await uploadsWithFault(
      () => api.url,
      keys,
      c,
      async () => {
        await nats.kill();
        await sleep(2000);
        await nats.start();
      },
    );
    return { ...tally('nats-kill/uploads', c, outcomes), ...(await uploadCredits(api.url, keys, outcomes)) };
  } finally {
    await Promise.all([api.close(), worker.close()]);
  }
}

async function natsKillStreams(c: Ctx, nats: Nats): Promise<Row> {
  const keys = provision(c.db.env, 2, 'nk-st');
  const server = await startServer(c, serverEnv(c, { NATS_URL: nats.url }));
  try {
    const results = await streamsWithFault(server.wsUrl, keys, c, 10_000, async () => {
      await nats.kill();
      await sleep(2000);
      await nats.start();
    });
    const row = {
      ...tally(
        'nats-kill/streams',
        c,
        results.map((r) => r.outcome),
      ),
      ...(await streamCredits(server.url, keys, results)),
    };
    if (!server.alive()) row.notes.push(`server died: ${await server.exit}`);
    return row;
  } finally {
    await server.close();
  }
}

// ---------------------------------------------------------------------------------------------

export function chaosTable(rows: Row[]): string {
  const lines = [
    '| scenario | database | sent | completed | failed (clear error) | lost | credits charged | delivered | match |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.scenario} | ${r.db} | ${r.sent} | ${r.completed} | ${r.failedClear} | ${r.lost} | ${r.charged} | ${r.delivered} | ${r.match ? 'yes' : '**no**'} |`),
  ];
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      db: { type: 'string', default: 'pglite,postgres' },
      uploads: { type: 'string', default: '8' },
      streams: { type: 'string', default: '4' },
      'database-url': { type: 'string' },
      out: { type: 'string' },
      only: { type: 'string' },
    },
  });
  const dbs = values.db!.split(',').map((s) => s.trim()) as DbKind[];
  for (const d of dbs) if (d !== 'pglite' && d !== 'postgres') throw new Error(`--db: pglite and/or postgres (got ${d})`);
  const baseUrl = values['database-url'] ?? process.env.TEST_DATABASE_URL ?? 'postgres://stt:stt@127.0.0.1:5432/stt_test';
  const modelsDir = path.resolve(process.env.MODELS_DIR ?? path.join(REPO_ROOT, '..', 'shared', 'models'));
  await execFileP('nats-server', ['--version']).catch(() => {
    throw new Error('nats-server is not on PATH (apt-get install nats-server)');
  });
  const audio = loadAudio({ seconds: 40 });
  const wav = readFileSync(audio.wavPath);
  const only = values.only ? new Set(values.only.split(',')) : null;
  const nats = new Nats(await freePort());
  await nats.start();
  const rows: Row[] = [];
  try {
    for (const kind of dbs) {
      const db = await openDb(kind, baseUrl);
      const c: Ctx = { db, modelsDir, wav, pcm: audio.pcm16, uploads: Number(values.uploads), streams: Number(values.streams) };
      const scenarios: Array<[string, () => Promise<Row>]> = [
        ['api-kill/uploads', () => apiKillUploads(c)],
        ['api-kill/streams', () => apiKillStreams(c)],
        ...(kind === 'postgres'
          ? ([
              ['worker-kill/uploads', () => workerKillUploads(c, nats)],
              ['nats-kill/uploads', () => natsKillUploads(c, nats)],
            ] as Array<[string, () => Promise<Row>]>)
          : []),
        ['nats-kill/streams', () => natsKillStreams(c, nats)],
      ];
      try {
        for (const [name, run] of scenarios) {
          if (only && !only.has(name)) continue;
          process.stderr.write(`== ${name} (${kind})\n`);
          const row = await run();
          rows.push(row);
          process.stderr.write(`   ${JSON.stringify(row)}\n`);
        }
      } finally {
        await db.dispose();
      }
    }
  } finally {
    await nats.close();
  }
  const table = chaosTable(rows);
  console.log(table);
  for (const r of rows) for (const n of r.notes) console.log(`- ${r.scenario} (${r.db}): ${n}`);
  if (values.out) writeFileSync(values.out, JSON.stringify(rows, null, 2));
  const bad = rows.filter((r) => r.lost > 0 || !r.match);
  if (bad.length) {
    console.error(`${bad.length} scenario(s) lost requests or charged for work not delivered`);
    process.exitCode = 1;
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('chaos.ts')) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
