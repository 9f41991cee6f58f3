import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Database } from '../../src/store/database.ts';
import { createStores } from '../../src/store/index.ts';
import { DB_VARIANTS } from '../store/test-databases.ts';
import { killAllServers, runAdminCli, spawnServerProcess } from '../helpers/server-process.ts';

const dirs: string[] = [];
function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-admin-ch-'));
  dirs.push(d);
  return d;
}
afterAll(async () => {
  await killAllServers();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const keyOf = (stdout: string) => /api key \(shown once, store it now\): (stt_\S+)/.exec(stdout)?.[1];

async function account(port: number, key: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(`http://127.0.0.1:${port}/api/v1/account/`, { headers: { authorization: `Bearer ${key}` } });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

describe('npm run admin while a server runs on the embedded database', () => {
  it('goes through the server: the printed key authenticates against it at once, list-accounts shows the account', { timeout: 300_000 }, async () => {
    const dir = tempDir();
    const server = spawnServerProcess({ dataDir: dir });
    const port = await server.listening;
    const env = { DATA_DIR: dir, DATABASE_URL: '' };

    const created = await runAdminCli(['create-account', '--email', 'ops@x.io', '--plan', 'paid', '--credits', '7'], env);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/created [0-9a-f-]{36} {2}ops@x\.io {2}plan=paid {2}credits=7/);
    const key = keyOf(created.stdout)!;
    expect(key).toMatch(/^stt_[A-Za-z0-9_-]{43}$/);
    const me = await account(port, key);
    expect(me.status).toBe(200);
    expect(JSON.stringify(me.body)).toContain('ops@x.io');

    const listed = await runAdminCli(['list-accounts', '--json'], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout).map((a: { email: string }) => a.email)).toEqual(['ops@x.io']);

    // Changes made through the channel are the server's own: it sees them on the next request.
    const added = await runAdminCli(['add-credits', '--email', 'ops@x.io', '--credits', '10'], env);
    expect(added.stdout).toMatch(/credits=17/);
    expect(JSON.stringify((await account(port, key)).body)).toMatch(/"credits":17/);

    // Bad arguments and conflicts keep their exit status and message through the channel.
    const bad = await runAdminCli(['set-plan', '--email', 'ops@x.io'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--plan must be one of free, paid/);
    const dup = await runAdminCli(['create-account', '--email', 'ops@x.io'], env);
    expect(dup.code).toBe(2);
    expect(keyOf(dup.stdout)).toBeUndefined();

    expect(server.child.exitCode).toBeNull();
  });

  it('with no server running it works on the database itself, and the key works once a server starts', { timeout: 300_000 }, async () => {
    const dir = tempDir();
    const env = { DATA_DIR: dir, DATABASE_URL: '' };
    const created = await runAdminCli(['create-account', '--email', 'offline@x.io', '--plan', 'free'], env);
    expect(created.code, created.stderr).toBe(0);
    const key = keyOf(created.stdout)!;
    expect(fs.existsSync(path.join(dir, 'run', 'owner.sock'))).toBe(false); // the CLI let go of DATA_DIR

    const server = spawnServerProcess({ dataDir: dir });
    const port = await server.listening;
    expect((await account(port, key)).status).toBe(200);
    const listed = await runAdminCli(['list-accounts'], env);
    expect(listed.stdout).toMatch(/offline@x\.io {2}plan=free/);
  });
});

const pgVariant = DB_VARIANTS.find((v) => v.name === 'postgres')!;
describe.skipIf(pgVariant.skip !== null)('npm run admin while a server runs on PostgreSQL', () => {
  it('works on the database directly; the key authenticates against the running server', { timeout: 300_000 }, async () => {
    const url = process.env.TEST_DATABASE_URL || 'postgres://stt:stt@127.0.0.1:5432/stt_test';
    const email = `ops-${randomBytes(6).toString('hex')}@x.io`;
    const dir = tempDir();
    const server = spawnServerProcess({ dataDir: dir, env: { DATABASE_URL: url } });
    const port = await server.listening;
    try {
      const env = { DATA_DIR: dir, DATABASE_URL: url };
      const created = await runAdminCli(['create-account', '--email', email, '--plan', 'paid', '--credits', '3'], env);
      expect(created.code, created.stderr).toBe(0);
      const key = keyOf(created.stdout)!;
      expect((await account(port, key)).status).toBe(200);
      const listed = await runAdminCli(['list-accounts', '--json'], env);
      expect(JSON.parse(listed.stdout).map((a: { email: string }) => a.email)).toContain(email);
      expect(fs.existsSync(path.join(dir, 'run', 'owner.sock'))).toBe(false); // PostgreSQL needs no DATA_DIR lock
    } finally {
      // The server uses the shared database's public schema: remove what this test created.
      const db = new Database({ url, embeddedDir: 'unused' });
      await db.start();
      const stores = createStores(db);
      const a = await stores.accounts.findByEmail(email);
      if (a) await stores.accounts.delete(a.id);
      await db.close();
    }
  });
});
