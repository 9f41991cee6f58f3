/**
 * kill -9 mid-job never keeps a customer's credits (issue 13, "Money"): a real server process takes
 * a long upload, reserves its credits and is killed with SIGKILL while the model runs; a new server
 * on the same data (embedded PGlite directory, or PostgreSQL schema) gives every credit back — at
 * start-up for the embedded database, by the lease sweeper once the dead server's lease expires for
 * PostgreSQL.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { issueKey } from '../../src/auth/index.ts';
import { createStores } from '../../src/store/index.ts';
import { Database } from '../../src/store/database.ts';
import { makeSilenceWav } from '../helpers/audio-fixtures.ts';
import { killAllServers, startServerProcess } from '../helpers/server-process.ts';
import { DB_VARIANTS } from '../store/test-databases.ts';

const CREDITS = 50;
/** 8 minutes of audio: 8 credits reserved; with 448 tokens per 30 s window it runs far longer than the test needs. */
const AUDIO_S = 480;
const PG_URL = process.env.TEST_DATABASE_URL || 'postgres://stt:stt@127.0.0.1:5432/stt_test';
const pgSkip = DB_VARIANTS.find((v) => v.name === 'postgres')!.skip;

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Server {
  child: ChildProcess;
  base: string;
  log: () => string;
}

afterAll(() => killAllServers());

async function startServer(env: Record<string, string>): Promise<Server> {
  // Short leases: a dead server's reservations expire within 3 s.
  const s = await startServerProcess({ dataDir: env.DATA_DIR, env: { CONCURRENCY_LEASE_TTL_S: '3', ...env } });
  return { child: s.child, base: s.url, log: () => s.output() };
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

async function credits(base: string, key: string): Promise<number> {
  const r = await fetch(`${base}/api/v1/account/`, { headers: { authorization: `Bearer ${key}` } });
  if (r.status !== 200) throw new Error(`GET /api/v1/account/ answered ${r.status}`);
  return (await r.json()).credits;
}

/** Creates a paid account with CREDITS credits on `db` (then closed); returns its API key. */
async function seedAccount(db: Database): Promise<string> {
  await db.start();
  try {
    const stores = createStores(db);
    const account = await stores.accounts.create({ email: `crash-${randomBytes(4).toString('hex')}@test.local`, plan: 'paid', credits: CREDITS });
    return (await issueKey(stores.accounts, account.id, 'crash test')).key;
  } finally {
    await db.close();
  }
}

async function crashMidJobAndRestart(env: Record<string, string>, key: string): Promise<void> {
  const audio = await makeSilenceWav(AUDIO_S, { noiseAmplitude: 0.01 });
  const first = await startServer(env);
  const jobId = `crash-${randomBytes(6).toString('hex')}`;
  const form = new FormData();
  form.append('file', await fs.openAsBlob(audio), 'long.wav');
  for (const [k, v] of Object.entries({ vad: 'false', max_new_tokens: '448', temperature: '0', timestamps: 'false', language: 'en', diarize: 'false' })) form.append(k, v);
  const upload = fetch(`${first.base}/v1/transcribe`, { method: 'POST', body: form, headers: { authorization: `Bearer ${key}`, 'x-job-id': jobId } }).catch((err: Error) => err);

  // The job runs and holds its reservation (8 minutes → 8 credits).
  await until(async () => (await credits(first.base, key)) === CREDITS - AUDIO_S / 60, 'the reservation of the running job');
  const job = await (await fetch(`${first.base}/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${key}` } })).json();
  expect(job.status).toBe('running');

  first.child.kill('SIGKILL');
  await exited(first.child);
  expect(first.child.signalCode).toBe('SIGKILL');
  expect(await upload).toBeInstanceOf(Error); // the client saw the connection die, with no transcript

  const second = await startServer(env);
  try {
    await until(async () => (await credits(second.base, key)) === CREDITS, 'every reserved credit to come back');
    expect((await fetch(`${second.base}/health`)).status).toBe(200);
    expect(second.child.exitCode).toBeNull();
  } finally {
    second.child.kill('SIGTERM');
    await exited(second.child);
  }
}

describe('kill -9 of a server mid-job refunds its reservation', () => {
  it('embedded database (PGlite): the restarted server refunds at start-up', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-crash-'));
    try {
      const key = await seedAccount(new Database({ url: null, embeddedDir: path.join(dataDir, 'db') }));
      await crashMidJobAndRestart({ DATA_DIR: dataDir }, key);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  }, 400_000);

  it.skipIf(pgSkip !== null)(
    'PostgreSQL: the dead server’s lease expires and the sweeper refunds',
    async () => {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-crash-'));
      const schema = `stt_crash_${randomBytes(6).toString('hex')}`;
      const url = `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
      try {
        // Database with `schema` creates it and migrates into it; the servers use it through search_path.
        const key = await seedAccount(new Database({ url: PG_URL, embeddedDir: 'unused', schema }));
        await crashMidJobAndRestart({ DATA_DIR: dataDir, DATABASE_URL: url }, key);
      } finally {
        const db = new Database({ url: PG_URL, embeddedDir: 'unused', schema });
        await db.start();
        await db.query(`DROP SCHEMA ${schema} CASCADE`).catch(() => {});
        await db.close();
        fs.rmSync(dataDir, { recursive: true, force: true });
      }
    },
    400_000,
  );
});
