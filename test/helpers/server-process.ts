/**
 * A real server process (`node --import tsx src/main.ts`) for crash and fault tests: what the
 * operator runs, so an unhandled error really takes it down and `alive()` really says so.
 *
 *   const srv = await startServerProcess({ env: { MAX_UPLOAD_MB: '10' } });
 *   try { await fetch(`${srv.url}/health`); expect(srv.alive()).toBe(true); } finally { await srv.close(); }
 *
 * Defaults: HOST=127.0.0.1, PORT=0 (the bound port is read from the 'listening' log line), a fresh
 * DATA_DIR in the temp folder (removed by close() unless the caller passed its own), the model
 * fixtures in MODELS_DIR, LOG_LEVEL=info. stdout/stderr are kept for failure messages (`output()`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MODELS_DIR, REPO_ROOT } from './paths.ts';

export interface ServerProcess {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly dataDir: string;
  readonly child: ChildProcess;
  /** True while the process has not exited. */
  alive(): boolean;
  /** Everything it wrote to stdout and stderr so far (the last `maxChars`), for assertion messages. */
  output(maxChars?: number): string;
  /** Sends `signal` and resolves with the exit code (or signal name) once it has exited. */
  kill(signal?: NodeJS.Signals): Promise<number | string | null>;
  /** Kills it if still running (SIGTERM, then SIGKILL after 10 s) and removes a DATA_DIR this helper made. */
  close(): Promise<void>;
}

export interface ServerProcessOptions {
  /** Environment on top of process.env and the defaults above. */
  env?: Record<string, string>;
  /** Use this data folder (kept on close); default a fresh temp folder (removed on close). */
  dataDir?: string;
  /** How long to wait for the 'listening' line and a 200 from /health. */
  startTimeoutMs?: number;
}

const MAX_OUTPUT = 1 << 20;

export function serverEnv(dataDir: string, env: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    HOST: '127.0.0.1',
    PORT: '0',
    DATA_DIR: dataDir,
    MODELS_DIR,
    DEFAULT_MODEL: 'whisper-mini-random',
    INFERENCE_THREADS: '1',
    LLM_THREADS: '1',
    LOG_LEVEL: 'info',
    ...env,
  };
}

export async function startServerProcess(opts: ServerProcessOptions = {}): Promise<ServerProcess> {
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'stt-proc-'));
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: REPO_ROOT,
    env: serverEnv(dataDir, opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const append = (d: Buffer) => {
    out += d.toString();
    if (out.length > MAX_OUTPUT) out = out.slice(-MAX_OUTPUT / 2);
  };
  let exited: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const exit = new Promise<number | string | null>((resolve) =>
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve(code ?? signal);
    }),
  );
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);

  const output = (maxChars = 8000) => out.slice(-maxChars);
  const alive = () => exited === null;
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

  try {
    const port = await waitForPort(() => out, alive, opts.startTimeoutMs ?? 60_000);
    const url = `http://127.0.0.1:${port}`;
    await waitForHealth(url, alive, opts.startTimeoutMs ?? 60_000);
    return { url, port, pid: child.pid!, dataDir, child, alive, output, kill, close };
  } catch (err) {
    await close();
    throw new Error(`${(err as Error).message}\n--- server output ---\n${output()}`);
  }
}

async function waitForPort(out: () => string, alive: () => boolean, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const line of out().split('\n')) {
      if (!line.includes('"listening"')) continue;
      try {
        const port = (JSON.parse(line) as { port?: number }).port;
        if (port) return port;
      } catch {
        // a partial line: read it again on the next round
      }
    }
    if (!alive()) throw new Error('server process exited before listening');
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server process did not log 'listening' within ${timeoutMs} ms`);
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

/**
 * Creates an account with an API key through the admin CLI on `dataDir`'s embedded database
 * (run it before the server starts: PGlite allows one process per data folder). Returns the raw key.
 */
export function createAccountKey(dataDir: string, opts: { plan?: 'free' | 'paid'; credits?: number; email?: string; env?: Record<string, string> } = {}): string {
  const email = opts.email ?? `proc-${Math.random().toString(36).slice(2)}@test.local`;
  const args = ['--import', 'tsx', 'src/cli/admin.ts', 'create-account', '--email', email, '--plan', opts.plan ?? 'paid', '--credits', String(opts.credits ?? 1_000_000)];
  const r = spawnSync(process.execPath, args, { cwd: REPO_ROOT, env: serverEnv(dataDir, opts.env), encoding: 'utf8', timeout: 120_000 });
  const key = /api key \(shown once[^:]*\): (\S+)/.exec(r.stdout)?.[1];
  if (r.status !== 0 || !key) throw new Error(`admin create-account failed (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  return key;
}
