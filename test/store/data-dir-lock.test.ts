import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { DataDirLock, DataDirLockedError, ownerSocketPath } from '../../src/store/data-dir-lock.ts';
import { Database } from '../../src/store/database.ts';
import { REPO_ROOT } from '../helpers/paths.ts';
import { killAllServers, spawnServerProcess } from '../helpers/server-process.ts';

const dirs: string[] = [];
function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-lock-'));
  dirs.push(d);
  return d;
}
const holders = new Set<ChildProcess>();

interface HolderLine {
  won: boolean;
  pid: number;
  ownerPid?: number | null;
  message?: string;
}

/** A separate process that tries the lock; resolves with what it printed (winners keep holding it). */
function holder(dataDir: string): { child: ChildProcess; line: Promise<HolderLine> } {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test/store/lock-holder.ts'), dataDir], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  holders.add(child);
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const line = new Promise<HolderLine>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(JSON.parse(out.slice(0, nl)));
    });
    child.on('exit', (code) => reject(new Error(`lock holder exited (${code}) without a line: ${out}${err}`)));
  });
  return { child, line };
}

function kill9(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.on('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

afterEach(async () => {
  await Promise.all([...holders].map(kill9));
  holders.clear();
});
afterAll(async () => {
  await killAllServers();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('DataDirLock', () => {
  it('refuses a second owner with DATA_DIR and the owner pid, and is free again once released', async () => {
    const dir = tempDir();
    const lock = await DataDirLock.acquire(dir, 'server');
    const second = await DataDirLock.acquire(dir, 'server').catch((e) => e);
    expect(second).toBeInstanceOf(DataDirLockedError);
    expect(second.owner).toMatchObject({ pid: process.pid, role: 'server' });
    expect(second.message).toContain(`DATA_DIR ${dir} is in use by server process pid ${process.pid}`);
    expect(fs.statSync(ownerSocketPath(dir)).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(dir, 'run')).mode & 0o777).toBe(0o700);
    await lock.release();
    expect(fs.existsSync(ownerSocketPath(dir))).toBe(false);
    const again = await DataDirLock.acquire(dir, 'admin');
    await again.release();
  });

  it('an embedded Database on disk holds the lock from start() to close()', async () => {
    const dir = tempDir();
    const db1 = new Database({ url: null, embeddedDir: path.join(dir, 'db'), owner: { role: 'server' } });
    await db1.start();
    const db2 = new Database({ url: null, embeddedDir: path.join(dir, 'db') });
    await expect(db2.start()).rejects.toThrow(`DATA_DIR ${dir} is in use by server process pid ${process.pid}`);
    await db1.close();
    await db2.start();
    expect(await db2.query('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    await db2.close();
  });

  it('another process is refused while the owner lives; a lock left by kill -9 is taken over at once', async () => {
    const dir = tempDir();
    const first = holder(dir);
    expect(await first.line).toMatchObject({ won: true });
    const refused = await holder(dir).line;
    expect(refused).toMatchObject({ won: false, ownerPid: first.child.pid });
    expect(refused.message).toContain(`DATA_DIR ${dir} is in use by holder process pid ${first.child.pid}`);

    await kill9(first.child);
    expect(fs.existsSync(ownerSocketPath(dir))).toBe(true); // the dead owner's file is still there
    const next = await holder(dir).line;
    expect(next).toMatchObject({ won: true });
  });

  it('of several processes racing for a dead owner’s lock, exactly one wins', async () => {
    const dir = tempDir();
    const dead = holder(dir);
    expect(await dead.line).toMatchObject({ won: true });
    await kill9(dead.child);
    const racers = Array.from({ length: 6 }, () => holder(dir));
    const lines = await Promise.all(racers.map((r) => r.line));
    const winners = lines.filter((l) => l.won);
    expect(winners).toHaveLength(1);
    for (const l of lines.filter((x) => !x.won)) expect(l.ownerPid).toBe(winners[0].pid);
  });
});

describe('two servers on one DATA_DIR (embedded database)', () => {
  it('the second exits non-zero naming DATA_DIR and the owner pid, the first keeps answering; after kill -9 a new one starts', { timeout: 300_000 }, async () => {
    const dir = tempDir();
    const first = spawnServerProcess({ dataDir: dir });
    const port = await first.listening;

    const second = spawnServerProcess({ dataDir: dir });
    const code = await second.exit;
    expect(code).not.toBe(0);
    expect(code).toBe(4);
    expect(second.output()).toContain(`DATA_DIR ${dir} is in use by server process pid ${first.child.pid}`);
    expect(second.output()).not.toMatch(/"msg":"listening"/);

    expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);
    expect(first.child.exitCode).toBeNull();

    await kill9(first.child);
    const third = spawnServerProcess({ dataDir: dir });
    const port3 = await third.listening;
    expect((await fetch(`http://127.0.0.1:${port3}/health`)).status).toBe(200);
  });
});
