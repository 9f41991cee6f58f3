/** Real server and CLI processes for the single-owner and admin-channel tests (no mocks: `node --import tsx`). */
import { spawn, type ChildProcess } from 'node:child_process';
import { MODELS_DIR, REPO_ROOT } from '../helpers/paths.ts';

export interface ServerProcess {
  child: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  /** Resolves with the port once the server logs "listening"; rejects if it exits first. */
  listening: Promise<number>;
  /** Resolves with the exit status (null when killed by a signal). */
  exit: Promise<number | null>;
}

const started = new Set<ChildProcess>();

/** Starts `src/main.ts` on 127.0.0.1 with PORT=0, the fixture models and the given DATA_DIR (embedded database unless env says otherwise). */
export function spawnServer(dataDir: string, env: Record<string, string> = {}): ServerProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: REPO_ROOT,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, MODELS_DIR, DATABASE_URL: '', LOG_LEVEL: 'info', INFERENCE_THREADS: '1', LLM_THREADS: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.add(child);
  let out = '';
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  exit.then(() => started.delete(child));
  const listening = new Promise<number>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d;
      const m = /"port":(\d+)[^\n]*"msg":"listening"/.exec(out);
      if (m) resolve(Number(m[1]));
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    exit.then((code) => reject(new Error(`server exited (${code}) before listening:\n${out}`)));
  });
  listening.catch(() => {}); // a test that expects the exit awaits `exit` instead
  return { child, output: () => out, listening, exit };
}

/** SIGKILLs every server still running (afterAll). */
export async function killAllServers(): Promise<void> {
  await Promise.all(
    [...started].map((c) => new Promise<void>((resolve) => {
      if (c.exitCode !== null || c.signalCode !== null) return resolve();
      c.on('exit', () => resolve());
      c.kill('SIGKILL');
    })),
  );
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
