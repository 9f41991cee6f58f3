/**
 * A real server (or worker) process for load, chaos and crash tests: `node --import tsx src/main.ts`
 * with environment overrides, its port read from the "listening" log line, the last log lines kept
 * for error messages, and kill(signal) / stop() that always reap the child.
 *
 * One process (not `npx tsx`), so `pid` is the server's own: kill -9 hits the server, not a wrapper.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export const REPO_ROOT = path.resolve(import.meta.dirname, '..');

export interface ServerProcessOptions {
  /** Environment on top of process.env (PORT defaults to 0, HOST to 127.0.0.1, LOG_LEVEL to info). */
  env?: Record<string, string | undefined>;
  /** How long to wait for "listening" (default 120 s: a cold tsx compile on a busy 2-core machine). */
  startTimeoutMs?: number;
  /** Label for messages. */
  name?: string;
}

/** Children alive now, killed when the runner exits so that no server outlives it. */
const alive = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const c of alive) c.kill('SIGKILL');
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      for (const c of alive) c.kill('SIGKILL');
      process.exit(130);
    });
  }
}

export class ServerProcess {
  readonly name: string;
  port = 0;
  /** Last log lines (stdout and stderr), for failure messages. */
  readonly tail: string[] = [];
  /** Resolves with 'code N' or 'signal SIG' when the process exits. */
  readonly exited: Promise<string>;
  private readonly child: ChildProcess;
  private exitHow: string | null = null;
  private readonly lineWaiters: Array<{ re: RegExp; resolve: (line: string) => void }> = [];

  private constructor(opts: ServerProcessOptions) {
    installExitHook();
    this.name = opts.name ?? 'server';
    const env: Record<string, string | undefined> = { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...opts.env };
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
    this.child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    alive.add(this.child);
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code, sig) => {
        alive.delete(this.child);
        this.exitHow = sig ? `signal ${sig}` : `code ${code}`;
        resolve(this.exitHow);
      }),
    );
    for (const s of [this.child.stdout!, this.child.stderr!]) {
      let buf = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          this.onLine(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
    }
  }

  /** Starts a process and waits until it listens (rejects with its last log lines if it exits or times out first). */
  static async start(opts: ServerProcessOptions = {}): Promise<ServerProcess> {
    const p = new ServerProcess(opts);
    const listening = p.waitForLine(/"msg":"listening"/);
    const timeoutMs = opts.startTimeoutMs ?? 120_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const line = await Promise.race([
        listening,
        p.exited.then((how) => Promise.reject(new Error(`${p.name} exited (${how}) before listening:\n${p.tail.join('\n')}`))),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${p.name} did not listen within ${timeoutMs / 1000} s:\n${p.tail.join('\n')}`)), timeoutMs);
        }),
      ]);
      p.port = (JSON.parse(line) as { port: number }).port;
      return p;
    } catch (err) {
      p.child.kill('SIGKILL');
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  get pid(): number {
    return this.child.pid!;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** Whether the process is still running. */
  get running(): boolean {
    return this.exitHow === null;
  }

  /** Resolves with the first log line matching `re` from now on. */
  waitForLine(re: RegExp): Promise<string> {
    return new Promise((resolve) => this.lineWaiters.push({ re, resolve }));
  }

  /** Sends a signal and waits for the exit (SIGKILL: the crash case). */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<string> {
    if (this.running) this.child.kill(signal);
    return this.exited;
  }

  /** Graceful stop (SIGTERM), SIGKILL if it has not exited after `graceMs`. */
  async stop(graceMs = 30_000): Promise<string> {
    if (!this.running) return this.exited;
    this.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const how = await Promise.race([this.exited, new Promise<null>((r) => (timer = setTimeout(() => r(null), graceMs)))]);
    clearTimeout(timer);
    if (how !== null) return how;
    return this.kill('SIGKILL');
  }

  private onLine(line: string): void {
    if (!line.trim()) return;
    this.tail.push(line.slice(0, 2000));
    if (this.tail.length > 60) this.tail.shift();
    for (let i = this.lineWaiters.length - 1; i >= 0; i--) {
      if (this.lineWaiters[i].re.test(line)) this.lineWaiters.splice(i, 1)[0].resolve(line);
    }
  }
}
