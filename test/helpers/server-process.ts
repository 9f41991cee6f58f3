/**
 * Real server processes (`node --import tsx src/main.ts`) for crash, fault, operator and chaos
 * tests: what the operator runs, so an unhandled error really takes it down, kill -9 really kills
 * it, and `alive()` really says so. The one place that spawns the server (tests and `npm run chaos`).
 *
 *   const srv = await startServerProcess({ env: { MAX_UPLOAD_MB: '10' } });
 *   try { await fetch(`${srv.url}/health`); expect(srv.alive()).toBe(true); } finally { await srv.close(); }
 *
 * `spawnServerProcess()` returns at once (for a process expected to refuse to start: await `exit`);
 * `startServerProcess()` also waits for the 'listening' log line and a 200 from /health.
 *
 * Defaults: HOST=127.0.0.1, PORT=0 (the bound port is read from the 'listening' log line), a fresh
 * DATA_DIR in the temp folder (removed by close() unless the caller passed its own), the embedded
 * database (DATABASE_URL cleared unless env sets it), the model fixtures in MODELS_DIR,
 * LOG_LEVEL=info. stdout/stderr are kept for failure messages (`output()`). Every process still
 * running when the test process exits is killed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MODELS_DIR, REPO_ROOT } from './paths.ts';

export interface SpawnedServer {
  readonly pid: number;
  readonly dataDir: string;
  readonly child: ChildProcess;
  /** The bound port once the server logs 'listening'; rejects if it exits first. */
  readonly listening: Promise<number>;
  /** The exit code, or the signal name, once the process has exited. */
  readonly exit: Promise<number | string | null>;
  /** True while the process has not exited. */
  alive(): boolean;
  /** Everything it wrote to stdout and stderr so far (the last `maxChars`), for assertion messages. */
  output(maxChars?: number): string;
  /** Sends `signal` (default SIGTERM; SIGKILL is the crash case) and resolves once it has exited. */
  kill(signal?: NodeJS.Signals): Promise<number | string | null>;
  /** Kills it if still running (SIGTERM, then SIGKILL after 10 s) and removes a DATA_DIR this helper made. */
  close(): Promise<void>;
}

export interface ServerProcess extends SpawnedServer {
  readonly url: string;
  readonly wsUrl: string;
  readonly port: number;
}

export interface ServerProcessOptions {
  /** Environment on top of process.env and the defaults above. */
  env?: Record<string, string>;
  /** Use this data folder (kept on close); default a fresh temp folder (removed on close). */
  dataDir?: string;
  /** How long to wait for the 'listening' line and a 200 from /health (default 120 s: a cold start on a loaded 2-core machine). */
  startTimeoutMs?: number;
}

const MAX_OUTPUT = 1 << 20;
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

export function serverEnv(dataDir: string, env: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    HOST: '127.0.0.1',
    PORT: '0',
    DATA_DIR: dataDir,
    DATABASE_URL: '',
    MODELS_DIR,
    // The model fixtures are all there; AUTO_PULL has its own tests against the stand-in hub.
    AUTO_PULL: 'false',
    DEFAULT_MODEL: 'whisper-mini-random',
    INFERENCE_THREADS: '1',
    LLM_THREADS: '1',
    LOG_LEVEL: 'info',
    ...env,
  };
}

export function spawnServerProcess(opts: ServerProcessOptions = {}): SpawnedServer {
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'stt-proc-'));
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: REPO_ROOT,
    env: serverEnv(dataDir, opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let out = '';
  let exited = false;
  const exit = new Promise<number | string | null>((resolve) =>
    child.once('exit', (code, signal) => {
      exited = true;
      running.delete(child);
      resolve(code ?? signal);
    }),
  );
  const listening = new Promise<number>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.length > MAX_OUTPUT) out = out.slice(-MAX_OUTPUT / 2);
      const m = /"port":(\d+)[^\n]*"msg":"listening"/.exec(out);
      if (m) resolve(Number(m[1]));
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    void exit.then((how) => reject(new Error(`server process exited (${how}) before listening`)));
  });
  listening.catch(() => {}); // a test that expects the exit awaits `exit` instead

  const alive = () => !exited;
  const kill = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (alive()) child.kill(signal);
    return exit;
  };
  const close = async () => {
    if (alive()) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => alive() && child.kill('SIGKILL'), 10_000);
      await exit;
      clearTimeout(timer);
    }
    if (ownDir) fs.rmSync(dataDir, { recursive: true, force: true });
  };
  return { pid: child.pid!, dataDir, child, listening, exit, alive, output: (maxChars = 8000) => out.slice(-maxChars), kill, close };
}

export async function startServerProcess(opts: ServerProcessOptions = {}): Promise<ServerProcess> {
  const s = spawnServerProcess(opts);
  const timeoutMs = opts.startTimeoutMs ?? 120_000;
  let timer: NodeJS.Timeout | undefined;
  try {
    const port = await Promise.race([
      s.listening,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`server process did not log 'listening' within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    const url = `http://127.0.0.1:${port}`;
    await waitForHealth(url, s.alive, timeoutMs);
    return Object.assign(s, { url, wsUrl: `ws://127.0.0.1:${port}`, port });
  } catch (err) {
    await s.close();
    throw new Error(`${(err as Error).message}\n--- server output ---\n${s.output()}`);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves when GET /health answers 200; throws if the process exits or `timeoutMs` passes. */
export async function waitForHealth(url: string, alive: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (!alive()) throw new Error('server process exited');
    try {
      const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(10_000) });
      if (r.status === 200) return;
      last = `status ${r.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`/health did not answer 200 within ${timeoutMs} ms (last: ${last})`);
}

/** SIGKILLs every server process of this test file still running (afterAll). */
export async function killAllServers(): Promise<void> {
  await Promise.all(
    [...running].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.once('exit', () => resolve());
          c.kill('SIGKILL');
        }),
    ),
  );
}

/**
 * Creates an account with an API key through the admin CLI on `dataDir`'s database (the embedded
 * one unless env has DATABASE_URL; with a server running there, the CLI goes through it). Returns the raw key.
 */
export function createAccountKey(dataDir: string, opts: { plan?: 'free' | 'paid'; credits?: number; email?: string; env?: Record<string, string> } = {}): string {
  const email = opts.email ?? `proc-${Math.random().toString(36).slice(2)}@test.local`;
  const args = ['--import', 'tsx', 'src/cli/admin.ts', 'create-account', '--email', email, '--plan', opts.plan ?? 'paid', '--credits', String(opts.credits ?? 1_000_000)];
  const r = spawnSync(process.execPath, args, { cwd: REPO_ROOT, env: serverEnv(dataDir, opts.env), encoding: 'utf8', timeout: 180_000 });
  const key = /api key \(shown once[^:]*\): (\S+)/.exec(r.stdout)?.[1];
  if (r.status !== 0 || !key) throw new Error(`admin create-account failed (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  return key;
}

/** Runs the admin CLI as `npm run admin -- …` and returns its exit status and output. */
export function runAdminCli(argv: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('npm', ['run', '--silent', 'admin', '--', ...argv], { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
