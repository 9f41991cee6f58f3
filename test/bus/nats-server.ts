/**
 * A real nats-server for the tests: TEST_NATS_URL when set (CI starts one with JetStream on
 * 127.0.0.1:4222), otherwise one spawned on a free port with JetStream in a temp dir.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface TestNatsServer {
  url: string;
  /** Kills the server and deletes its store (no-op for an external server). */
  stop(): Promise<void>;
  /** Kills and restarts the spawned server on the same port and store (null for an external server). */
  restart: (() => Promise<void>) | null;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function waitForPort(port: number, timeoutMs: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null) return reject(new Error(`nats-server exited (${child.exitCode}):\n${log()}`));
      const sock = net.connect(port, '127.0.0.1');
      sock.once('connect', () => {
        sock.destroy();
        resolve();
      });
      sock.once('error', () => {
        sock.destroy();
        if (Date.now() > deadline) reject(new Error(`nats-server did not listen on ${port}:\n${log()}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

/** `spawn: true` always spawns one (e.g. `jetstream: false` to test a server without JetStream). */
export async function startNatsServer(opts: { spawn?: boolean; jetstream?: boolean } = {}): Promise<TestNatsServer> {
  const external = process.env.TEST_NATS_URL;
  if (external && !opts.spawn) return { url: external, stop: async () => {}, restart: null };

  const dir = mkdtempSync(path.join(os.tmpdir(), 'stt-nats-'));
  const port = await freePort();
  let child: ChildProcess;
  let output = '';
  const launch = async () => {
    output = '';
    const js = opts.jetstream === false ? [] : ['-js', '-sd', dir];
    child = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port), ...js], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    await waitForPort(port, 10_000, child, () => output);
  };
  const kill = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  };
  await launch();
  return {
    url: `nats://127.0.0.1:${port}`,
    restart: async () => {
      await kill();
      await launch();
    },
    stop: async () => {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
