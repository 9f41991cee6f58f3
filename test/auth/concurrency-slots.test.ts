/**
 * Concurrency slots shared through the database (SqlConcurrencySlots over concurrency_leases): two
 * AccessControl instances on one database stand for two servers behind a load balancer. On
 * PostgreSQL they use two separate connection pools on the same schema; PGlite (one process per
 * database) shares its one handle. Real databases, no mocks; every test uses its own account or
 * client address.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AccessControl, type Grant } from '../../src/auth/access-control.ts';
import { createConcurrencySlots, InProcessConcurrencySlots, SqlConcurrencySlots, type ConcurrencySlots } from '../../src/auth/concurrency-slots.ts';
import { issueKey } from '../../src/auth/keys.ts';
import { toApiError } from '../../src/http/api-error.ts';
import { statusOf } from '../../src/http/error-kinds.ts';
import { ConcurrencyLeaseStore, createStores, Database, type Stores } from '../../src/store/index.ts';
import { DB_VARIANTS, variantTitle, type DbVariant, type TestDatabase } from '../store/test-databases.ts';
import { apiError } from '../helpers/errors.ts';

const LOCAL_DEFAULT = 'postgres://stt:stt@127.0.0.1:5432/stt_test';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const uniqueIp = () => `10.${[...randomBytes(3)].join('.')}`;

describe('InProcessConcurrencySlots', () => {
  it('counts per key, release is idempotent, picked for PGlite', async () => {
    const slots = new InProcessConcurrencySlots();
    const a = await slots.acquire('k', 2);
    const b = await slots.acquire('k', 2);
    expect(a && b).toBeTruthy();
    expect(await slots.acquire('k', 2)).toBeNull();
    expect(await slots.acquire('other', 1)).not.toBeNull();
    await slots.release(a!);
    await slots.release(a!);
    expect(await slots.inUse('k')).toBe(1);
    expect(await slots.acquire('k', 2)).not.toBeNull();
    expect(await slots.acquire('k', 2)).toBeNull();

    const lite = new Database({ url: null, embeddedDir: 'memory://' });
    expect(createConcurrencySlots(lite, { leaseTtlS: 60 }).kind).toBe('in-process');
    const pgDb = new Database({ url: 'postgres://unused@127.0.0.1/none', embeddedDir: 'unused' });
    expect(createConcurrencySlots(pgDb, { leaseTtlS: 60 })).toBeInstanceOf(SqlConcurrencySlots);
  });
});

/** A second handle on the same database: a separate pool on the same schema (PostgreSQL), the same handle (PGlite). */
async function secondHandle(variant: DbVariant, t: TestDatabase): Promise<{ db: Database; close: () => Promise<void> }> {
  if (variant.name === 'pglite') return { db: t.db, close: async () => {} };
  const [{ s: schema }] = await t.db.query<{ s: string }>('SELECT current_schema() AS s');
  const db = new Database({ url: process.env.TEST_DATABASE_URL || LOCAL_DEFAULT, embeddedDir: 'unused', schema, poolSize: 12 });
  await db.start();
  return { db, close: () => db.close() };
}

for (const variant of DB_VARIANTS) {
  describe.skipIf(variant.skip !== null)(`shared concurrency slots on ${variantTitle(variant)}`, () => {
    let t: TestDatabase;
    let second: { db: Database; close: () => Promise<void> };
    let s1: Stores;
    let s2: Stores;
    const opened: AccessControl[] = [];

    /** A "server": AccessControl with database slots on handle 1 or 2. */
    function server(which: 1 | 2, slotOpts: { ttlS?: number; heartbeatS?: number } = {}): { ac: AccessControl; slots: SqlConcurrencySlots } {
      const s = which === 1 ? s1 : s2;
      const slots = new SqlConcurrencySlots(new ConcurrencyLeaseStore(s.db), { ttlS: slotOpts.ttlS ?? 60, heartbeatS: slotOpts.heartbeatS });
      const ac = new AccessControl({ accounts: s.accounts, usage: s.usage, slots });
      opened.push(ac);
      return { ac, slots };
    }

    async function freeAccount() {
      const account = await s1.accounts.create({ email: `${randomUUID()}@slots.test`, plan: 'free' });
      const { key } = await issueKey(s1.accounts, account.id, 'test');
      return { account, authorization: `Bearer ${key}`, slotKey: `account:${account.id}` };
    }

    async function rows(key: string): Promise<number> {
      const [{ n }] = await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM concurrency_leases WHERE key = $1', [key]);
      return n;
    }

    beforeAll(async () => {
      t = await variant.open();
      second = await secondHandle(variant, t);
      s1 = createStores(t.db);
      s2 = createStores(second.db);
    });
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((ac) => ac.close()));
    });
    afterAll(async () => {
      await second?.close();
      await t?.dispose();
    });

    it('20 concurrent admits of a free account across two servers: exactly 2 granted, 18 × 429', async () => {
      const a = server(1);
      const b = server(2);
      const free = await freeAccount();
      const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => (i % 2 ? a.ac : b.ac).admit({ authorization: free.authorization, ip: '1.1.1.1', kind: 'transcribe' })));
      const granted = results.filter((r): r is PromiseFulfilledResult<Grant> => r.status === 'fulfilled').map((r) => r.value);
      const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => toApiError(r.reason).error);
      expect(granted).toHaveLength(2);
      expect(refused.map((e) => e.status)).toEqual(Array(18).fill(429));
      expect(refused[0].headers['retry-after']).toBe('5');
      expect(await a.slots.inUse(free.slotKey)).toBe(2);
      expect(await b.slots.inUse(free.slotKey)).toBe(2);
      expect(a.slots.heldCount + b.slots.heldCount).toBe(2);
      granted.forEach((g) => g.release());
      await Promise.all([a.ac.settle(), b.ac.settle()]);
      expect(await rows(free.slotKey)).toBe(0);
    });

    it('anonymous (1 per address) and paid (5 per account) limits hold across servers too', async () => {
      const a = server(1);
      const b = server(2);
      const ip = uniqueIp();
      const anon = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => (i % 2 ? a.ac : b.ac).admit({ ip, kind: 'ai' })));
      expect(anon.filter((r) => r.status === 'fulfilled')).toHaveLength(1);

      const account = await s1.accounts.create({ email: `${randomUUID()}@slots.test`, plan: 'paid', credits: 100 });
      const { key } = await issueKey(s1.accounts, account.id, 'test');
      const paid = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => (i % 2 ? a.ac : b.ac).admit({ authorization: `Bearer ${key}`, ip, kind: 'transcribe' })));
      expect(paid.filter((r) => r.status === 'fulfilled')).toHaveLength(5);
      for (const r of [...anon, ...paid]) if (r.status === 'fulfilled') r.value.release();
    });

    it('a slot released on one server can be taken on the other', async () => {
      const a = server(1);
      const b = server(2);
      const free = await freeAccount();
      const auth = { authorization: free.authorization, ip: '1.1.1.1', kind: 'transcribe' as const };
      const g1 = await a.ac.admit(auth);
      const g2 = await a.ac.admit(auth);
      expect((await apiError(b.ac.admit(auth))).status).toBe(429);
      g1.release();
      g1.release();
      await a.ac.settle();
      expect(a.slots.heldCount).toBe(1);
      const g3 = await b.ac.admit(auth);
      expect((await apiError(a.ac.admit(auth))).status).toBe(429);
      expect((await apiError(b.ac.admit(auth))).status).toBe(429);
      g2.release();
      g3.release();
      await Promise.all([a.ac.settle(), b.ac.settle()]);
      expect(await rows(free.slotKey)).toBe(0);
      expect(a.slots.heartbeatRunning || b.slots.heartbeatRunning).toBe(false);
    });

    it('leases of a crashed server (never renewed) free themselves after their TTL; expired rows are deleted', async () => {
      const a = server(1);
      const free = await freeAccount();
      const auth = { authorization: free.authorization, ip: '1.1.1.1', kind: 'transcribe' as const };
      // The crashed server took both slots with a 1 s lease and never renewed them.
      const crashed = new ConcurrencyLeaseStore(second.db);
      const started = Date.now();
      expect(await crashed.acquire(free.slotKey, 2, 1, 'crashed-host:1')).not.toBeNull();
      expect(await crashed.acquire(free.slotKey, 2, 1, 'crashed-host:1')).not.toBeNull();
      expect(await crashed.acquire(free.slotKey, 2, 1, 'crashed-host:1')).toBeNull();
      expect((await apiError(a.ac.admit(auth))).status).toBe(429);

      // Each crashed lease frees its slot once expired: both slots can be taken again after ~1 s.
      const grants: Grant[] = [];
      while (grants.length < 2 && Date.now() - started < 10_000) {
        await sleep(100);
        const g = await a.ac.admit(auth).catch((err: unknown) => {
          if (statusOf(err) !== 429) throw err;
          return null;
        });
        if (g) grants.push(g);
      }
      const waited = Date.now() - started;
      expect(grants).toHaveLength(2);
      expect(waited).toBeGreaterThanOrEqual(900);
      expect(waited).toBeLessThan(5_000);
      // The expired leases were deleted by the acquires: only this server's two are left.
      const [{ n: crashedRows }] = await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM concurrency_leases WHERE key = $1 AND holder = $2', [free.slotKey, 'crashed-host:1']);
      expect(crashedRows).toBe(0);
      expect(await rows(free.slotKey)).toBe(2);
      expect((await apiError(a.ac.admit(auth))).status).toBe(429);
      grants.forEach((g) => g.release());

      // Expired rows of keys nobody asks for again are purged too.
      const other = `ip:${uniqueIp()}`;
      await crashed.acquire(other, 1, 0.2, 'crashed-host:1');
      await sleep(400);
      expect(await crashed.purgeExpired()).toBeGreaterThanOrEqual(1);
      expect(await rows(other)).toBe(0);
    }, 20_000);

    it('the heartbeat keeps a held lease alive past its TTL and stops when nothing is held', async () => {
      const a = server(1, { ttlS: 1, heartbeatS: 0.2 });
      const b = server(2, { ttlS: 1, heartbeatS: 0.2 });
      const ip = uniqueIp();
      const g = await a.ac.admit({ ip, kind: 'ai' });
      expect(a.slots.heartbeatRunning).toBe(true);
      await sleep(2500); // 2.5 TTLs
      expect((await apiError(b.ac.admit({ ip, kind: 'ai' }))).status).toBe(429);
      expect(await b.slots.inUse(`ip:${ip}`)).toBe(1);
      g.release();
      await a.ac.settle();
      expect(a.slots.heartbeatRunning).toBe(false);
      (await b.ac.admit({ ip, kind: 'ai' })).release();
    }, 20_000);

    it('close() frees the leases still held and stops the heartbeat; later admits are 503', async () => {
      const a = server(1);
      const b = server(2);
      const free = await freeAccount();
      const auth = { authorization: free.authorization, ip: '1.1.1.1', kind: 'transcribe' as const };
      await a.ac.admit(auth);
      await a.ac.admit(auth);
      expect((await apiError(b.ac.admit(auth))).status).toBe(429);
      await a.ac.close();
      await a.ac.close();
      expect(a.slots.heartbeatRunning).toBe(false);
      expect(a.slots.heldCount).toBe(0);
      expect(await rows(free.slotKey)).toBe(0);
      (await b.ac.admit(auth)).release();
      expect((await apiError(a.ac.admit(auth))).status).toBe(503);
    });

    it('database errors: acquire is a 503 with Retry-After (no crash, no bypass); heartbeat and release survive them', async () => {
      const broken = variant.name === 'pglite' ? new Database({ url: null, embeddedDir: 'memory://' }) : await secondHandle(variant, t).then((h) => h.db);
      await broken.start();
      const slots = new SqlConcurrencySlots(new ConcurrencyLeaseStore(broken), { ttlS: 60 });
      const ac = new AccessControl({ accounts: s1.accounts, usage: s1.usage, slots });
      opened.push(ac);
      const ip = uniqueIp();
      const held = await ac.admit({ ip: uniqueIp(), kind: 'ai' });
      await broken.close();

      const e = await apiError(ac.admit({ ip, kind: 'ai' }));
      expect(e.status).toBe(503);
      expect(e.message).toMatch(/concurrency slot/);
      expect(e.headers['retry-after']).toBe('5');
      expect((await apiError(ac.admit({ ip, kind: 'transcribe' }))).status).toBe(503);
      const free = await freeAccount();
      expect((await apiError(ac.admit({ authorization: free.authorization, ip, kind: 'transcribe' }))).status).toBe(503);
      // Nothing was counted for the refused requests (the slot comes before the daily quota).
      expect(await s1.usage.anonymousCount(ip, new Date().toISOString().slice(0, 10))).toBe(0);

      await expect(slots.heartbeat()).resolves.toBeUndefined();
      held.release();
      await ac.settle();
      expect(slots.heldCount).toBe(0);
    });
  });
}

// Type-level check: both implementations satisfy the interface AccessControl takes.
const _impls: ConcurrencySlots[] = [new InProcessConcurrencySlots()];
void _impls;
