import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyKey } from '../../src/auth/keys.ts';
import { runAdmin, UsageError } from '../../src/cli/admin.ts';
import { createStores, type Stores } from '../../src/store/index.ts';
import { DB_VARIANTS, variantTitle, type TestDatabase } from '../store/test-databases.ts';

const variant = DB_VARIANTS.find((v) => v.skip === null)!;

describe(`admin CLI commands on ${variantTitle(variant)}`, () => {
  let t: TestDatabase;
  let s: Stores;
  beforeAll(async () => {
    t = await variant.open();
    s = createStores(t.db);
  });
  afterAll(async () => {
    await t?.dispose();
  });

  async function run(...argv: string[]): Promise<string[]> {
    const lines: string[] = [];
    await runAdmin(argv, s, { out: (l) => lines.push(l) });
    return lines;
  }

  it('create-account prints the raw key once; set-plan, add-credits, issue-key, revoke-key, list-accounts', async () => {
    const out = await run('create-account', '--email', 'a@b.c', '--plan', 'paid', '--credits', '100');
    expect(out[0]).toMatch(/^created [0-9a-f-]{36} {2}a@b\.c {2}plan=paid {2}credits=100$/);
    const key = /api key \(shown once, store it now\): (stt_\S+)/.exec(out.join('\n'))![1];
    const found = await verifyKey(s.accounts, key);
    expect(found?.account).toMatchObject({ email: 'a@b.c', plan: 'paid', credits: 100 });
    expect(JSON.stringify(await t.db.query('SELECT * FROM api_keys'))).not.toContain(key);

    expect((await run('set-plan', '--email', 'A@B.C', '--plan', 'free'))[0]).toMatch(/plan=free/);
    expect((await run('add-credits', '--account', found!.account.id, '--credits=-30'))[0]).toMatch(/credits=70/);
    const issued = await run('issue-key', '--email', 'a@b.c', '--name', 'ci');
    const key2 = /(stt_\S+)/.exec(issued.join('\n'))![1];
    const keyId = /key id: (\S+)/.exec(issued.join('\n'))![1];
    expect(await verifyKey(s.accounts, key2)).not.toBeNull();
    await run('revoke-key', '--email', 'a@b.c', '--key', keyId);
    expect(await verifyKey(s.accounts, key2)).toBeNull();
    expect(await verifyKey(s.accounts, key)).not.toBeNull();

    await run('create-account', '--email', 'x@y.z', '--no-key');
    const listed = JSON.parse((await run('list-accounts', '--json'))[0]);
    expect(listed.map((a: { email: string }) => a.email).sort()).toEqual(['a@b.c', 'x@y.z']);
    expect((await run('list-accounts')).length).toBe(2);
  });

  it('bad arguments are usage errors', async () => {
    await expect(run('create-account', '--email', 'nope')).rejects.toBeInstanceOf(UsageError);
    await expect(run('set-plan', '--email', 'a@b.c', '--plan', 'gold')).rejects.toThrow(/--plan must be one of free, paid/);
    await expect(run('add-credits', '--email', 'missing@b.c', '--credits', '1')).rejects.toThrow(/no account/);
    await expect(run('add-credits', '--email', 'a@b.c', '--credits', '1.5')).rejects.toThrow(/integer/);
    await expect(run('frobnicate')).rejects.toThrow(/unknown command/);
    await expect(run('list-accounts', '--bogus')).rejects.toThrow();
  });
});

describe('npm run admin (process, embedded database)', () => {
  it('creates an account in DATA_DIR/db and prints its key', { timeout: 150_000 }, async () => {
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stt-admin-'));
    try {
      const env = { ...process.env, DATA_DIR: dataDir, DATABASE_URL: '' };
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/admin.ts', 'create-account', '--email', 'cli@x.io', '--plan', 'paid', '--credits', '5'], {
        env,
        timeout: 60_000,
      });
      expect(stdout).toMatch(/created .* cli@x\.io {2}plan=paid {2}credits=5/);
      expect(stdout).toMatch(/api key \(shown once, store it now\): stt_[A-Za-z0-9_-]{43}/);
      await expect(fs.stat(path.join(dataDir, 'db'))).resolves.toBeTruthy();
      const bad = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/admin.ts', 'set-plan', '--email', 'cli@x.io'], { env, timeout: 60_000 }).catch((e) => e);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/--plan must be one of free, paid/);
    } finally {
      await fs.rm(dataDir, { recursive: true, force: true });
    }
  });
});
