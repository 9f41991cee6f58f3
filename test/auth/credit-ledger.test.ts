/**
 * Reserve before the work, settle after (src/auth/credit-ledger.ts, src/store/credit-reservations.ts,
 * Grant.reserve/settle): arithmetic with the minute rounding, refunds, idempotence, races and lease
 * expiry, on PostgreSQL and PGlite.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AccessControl } from '../../src/auth/access-control.ts';
import { CreditLedger } from '../../src/auth/credit-ledger.ts';
import { issueKey } from '../../src/auth/keys.ts';
import { DomainError } from '../../src/errors.ts';
import { statusOf } from '../../src/http/error-kinds.ts';
import { createStores, type Stores } from '../../src/store/index.ts';
import { DB_VARIANTS, variantTitle, type TestDatabase } from '../store/test-databases.ts';
import { apiError } from '../helpers/errors.ts';

/** Polls `check` until it returns true (generous bound: CI is a busy 2-core machine). */
async function until(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

for (const variant of DB_VARIANTS) {
  describe.skipIf(variant.skip !== null)(`credit reservations on ${variantTitle(variant)}`, () => {
    let t: TestDatabase;
    let s: Stores;
    const now = new Date('2025-03-10T12:00:00Z');
    const clock = () => now;
    const acs: AccessControl[] = [];
    const make = (opts: Partial<ConstructorParameters<typeof AccessControl>[0]> = {}) => {
      const ac = new AccessControl({ accounts: s.accounts, usage: s.usage, now: clock, ...opts });
      acs.push(ac);
      return ac;
    };
    const credits = async (id: string) => (await s.accounts.get(id))!.credits;

    async function account(email: string, plan: 'free' | 'paid', amount = 0) {
      const a = await s.accounts.create({ email, plan, credits: amount });
      const { key } = await issueKey(s.accounts, a.id, 'test');
      return { id: a.id, authorization: `Bearer ${key}` };
    }

    beforeAll(async () => {
      t = await variant.open();
      s = createStores(t.db, clock);
    });
    afterAll(async () => {
      for (const ac of acs) await ac.close();
      await t?.dispose();
    });
    beforeEach(async () => {
      for (const ac of acs.splice(0)) await ac.close();
      await t.truncate();
      await t.db.query('TRUNCATE credit_reservations');
    });

    it('paid: reserves ceil(minutes) up front, settles what was delivered, refunds the rest, logs one event', async () => {
      const ac = make();
      const paid = await account('p@x.io', 'paid', 10);
      const g = await ac.admit({ authorization: paid.authorization, ip: '1.1.1.1', kind: 'transcribe' });
      await g.reserve(125.4); // 3 minutes
      expect(await credits(paid.id)).toBe(7);
      expect(await s.usage.reservations.list(paid.id)).toMatchObject([{ unit: 'credits', amount: 3, seconds: 125.4 }]);
      expect(await g.settle(61)).toEqual({ charged: 2, refunded: 1 });
      expect(await credits(paid.id)).toBe(8);
      expect(await s.usage.reservations.list(paid.id)).toEqual([]);
      // Settling again, or releasing after settling, changes nothing.
      expect(await g.settle(125.4)).toBeNull();
      g.release();
      await ac.settle();
      expect(await credits(paid.id)).toBe(8);
      expect(await s.usage.daily(paid.id, new Date('2025-03-01'), new Date('2025-04-01'))).toEqual([{ date: '2025-03-10', minutes: 2, requests: 1, credits: 2 }]);
    });

    it('never charges more than reserved; a top-up reserves only the extra started minutes', async () => {
      const ac = make();
      const paid = await account('top@x.io', 'paid', 4);
      const g = await ac.admit({ authorization: paid.authorization, ip: '1.1.1.1', kind: 'transcribe' });
      await g.reserve(30); // 1 minute
      await g.reserve(25); // 55 s: still 1 minute, nothing more
      expect(await credits(paid.id)).toBe(3);
      await g.reserve(10); // 65 s: 2 minutes
      expect(await credits(paid.id)).toBe(2);
      const e = await apiError(g.reserve(180)); // 245 s = 5 minutes: 3 more, only 2 left
      expect(e.status).toBe(402);
      expect(e.message).toBe('Not enough credits: this audio needs 3 more credits (1 credit = 1 minute, rounded up). Upgrade your plan.');
      expect(await credits(paid.id)).toBe(2);
      expect(await g.settle(600)).toEqual({ charged: 2, refunded: 0 }); // delivered more than reserved: capped
      g.release();
      expect(await credits(paid.id)).toBe(2);
    });

    it('release without settle refunds everything: paid credits, free minutes, the anonymous daily unit', async () => {
      const ac = make({ config: { anonDailyLimit: 1, freeMonthlyMinutes: 10 } });
      const paid = await account('r@x.io', 'paid', 5);
      const free = await account('f@x.io', 'free');
      const gp = await ac.admit({ authorization: paid.authorization, ip: '1.1.1.1', kind: 'transcribe' });
      const gf = await ac.admit({ authorization: free.authorization, ip: '1.1.1.1', kind: 'transcribe' });
      const ga = await ac.admit({ ip: '9.9.9.9', kind: 'transcribe' });
      await gp.reserve(240);
      await gf.reserve(240);
      await ga.reserve(240);
      expect(await credits(paid.id)).toBe(1);
      expect(await s.usage.monthlyMinutes(free.id, '2025-03-01')).toBe(4);
      expect(await s.usage.anonymousCount('9.9.9.9', '2025-03-10')).toBe(1);
      expect((await s.usage.reservations.list()).map((r) => r.unit).sort()).toEqual(['anonymous', 'credits', 'minutes']);
      for (const g of [gp, gf, ga]) g.release();
      await ac.settle();
      expect(await credits(paid.id)).toBe(5);
      expect(await s.usage.monthlyMinutes(free.id, '2025-03-01')).toBe(0);
      expect(await s.usage.anonymousCount('9.9.9.9', '2025-03-10')).toBe(0);
      expect(await s.usage.reservations.list()).toEqual([]);
      expect(await s.usage.daily(paid.id, new Date('2025-03-01'), new Date('2025-04-01'))).toEqual([]);
    });

    it('free: reserved minutes count against the month (429 with the usual message); settle keeps the delivered minutes', async () => {
      const ac = make({ config: { freeMonthlyMinutes: 5 } });
      const free = await account('fm@x.io', 'free');
      const g1 = await ac.admit({ authorization: free.authorization, ip: '1.1.1.1', kind: 'transcribe' });
      const g2 = await ac.admit({ authorization: free.authorization, ip: '1.1.1.1', kind: 'transcribe' });
      await g1.reserve(240); // 4 of 5 minutes reserved
      const e = await apiError(g2.reserve(120));
      expect(e.status).toBe(429);
      expect(e.message).toMatch(/^Free plan limit of 5 minutes per month reached/);
      expect(e.headers?.['retry-after']).toBeDefined();
      expect(await g1.settle(0.5)).toEqual({ charged: 1, refunded: 3 });
      await g2.reserve(120);
      g2.release();
      g1.release();
      await ac.settle();
      expect(await s.usage.monthlyMinutes(free.id, '2025-03-01')).toBe(1);
    });

    it('anonymous: a settled request keeps its daily unit and logs its minutes', async () => {
      const ac = make({ config: { anonDailyLimit: 1 } });
      const g = await ac.admit({ ip: '8.8.8.8', kind: 'transcribe' });
      await g.reserve(90);
      expect(await g.settle(90)).toEqual({ charged: 2, refunded: 0 });
      g.release();
      await ac.settle();
      expect(await s.usage.anonymousCount('8.8.8.8', '2025-03-10')).toBe(1);
      expect((await apiError(ac.admit({ ip: '8.8.8.8', kind: 'transcribe' }))).status).toBe(429);
    });

    it('30 parallel 1-minute reservations against 20 credits: exactly 20 fit, 10 × 402; all refunded on release', async () => {
      const ac = make({ tiers: { paid: { concurrent: 100 } } });
      const paid = await account('race@x.io', 'paid', 20);
      const grants = await Promise.all(Array.from({ length: 30 }, () => ac.admit({ authorization: paid.authorization, ip: '1.1.1.1', kind: 'transcribe' })));
      const results = await Promise.allSettled(grants.map((g) => g.reserve(60)));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(20);
      expect(results.every((r) => r.status === 'fulfilled' || (r.reason instanceof DomainError && statusOf(r.reason) === 402))).toBe(true);
      expect(await credits(paid.id)).toBe(0);
      // Half deliver 30 s (1 credit each); the others fail.
      const ok = grants.filter((_, i) => results[i].status === 'fulfilled');
      await Promise.all(ok.slice(0, 10).map((g) => g.settle(30)));
      grants.forEach((g) => g.release());
      await ac.settle();
      expect(await credits(paid.id)).toBe(10);
    });

    it('settle is exactly-once under concurrent calls (two servers settling the same reservation)', async () => {
      const paid = await account('once@x.io', 'paid', 10);
      const store = s.usage.reservations;
      const id = await store.reserve({ accountId: paid.id, ip: null, kind: 'transcribe', unit: 'credits', amount: 5, seconds: 300, holder: 'a', ttlS: 60 });
      expect(id).not.toBeNull();
      const delivered = { seconds: 100, minutes: 2, at: now };
      const results = await Promise.all([store.settle(id!, delivered), store.settle(id!, delivered), store.release(id!), store.sweep({ all: true })]);
      const settled = results.slice(0, 2).filter((r) => r !== null);
      const released = results[2];
      const swept = results[3] as unknown[];
      // Exactly one of the four ended it.
      expect(settled.length + (released === null ? 0 : 1) + swept.length).toBe(1);
      const balance = await credits(paid.id);
      expect(balance === 8 || balance === 10).toBe(true);
      const events = await s.usage.daily(paid.id, new Date('2025-03-01'), new Date('2025-04-01'));
      expect(events.length).toBe(settled.length);
    });

    it('an expired lease (dead server) is refunded by the sweeper of another server, once; a late settle does nothing', async () => {
      const paid = await account('dead@x.io', 'paid', 10);
      // What a killed server leaves: a reservation whose lease nobody renews.
      const orphan = await s.usage.reservations.reserve({ accountId: paid.id, ip: null, kind: 'transcribe', unit: 'credits', amount: 4, seconds: 200, holder: 'dead-server', ttlS: 1 });
      expect(orphan).not.toBeNull();
      expect(await credits(paid.id)).toBe(6);
      const other = new CreditLedger(s.usage.reservations, { ttlS: 1, sweepS: 0.2, holder: 'live-server' });
      await other.start();
      try {
        await until(async () => (await credits(paid.id)) === 10, 'the sweeper to refund the expired reservation');
        expect(await s.usage.reservations.list()).toEqual([]);
        expect(await s.usage.reservations.settle(orphan!, { seconds: 200, minutes: 4, at: now })).toBeNull();
        expect(await s.usage.reservations.release(orphan!)).toBeNull();
        expect(await other.sweep({ all: true })).toEqual([]);
        expect(await credits(paid.id)).toBe(10);
      } finally {
        await other.close();
      }
    });

    it('a lapsed lease still settles; one swept before the settle (late renewals) is charged directly for what was delivered', async () => {
      const ac = make();
      const paid = await account('late@x.io', 'paid', 10);
      // Lapsed, not swept: the holder is alive, only its renewals were late — the settle stands.
      const g1 = await ac.admit({ authorization: paid.authorization, ip: '1.1.1.1', kind: 'transcribe' });
      await g1.reserve(150); // 3 credits
      await t.db.query(`UPDATE credit_reservations SET expires_at = clock_timestamp() - interval '1 minute'`);
      expect(await g1.settle(90)).toEqual({ charged: 2, refunded: 1 });
      expect(await credits(paid.id)).toBe(8);
      g1.release();
      // Swept (another server's sweeper refunded it in full) before the settle: the delivered audio is charged now.
      const g2 = await ac.admit({ authorization: paid.authorization, ip: '1.1.1.1', kind: 'transcribe' });
      await g2.reserve(150);
      expect(await credits(paid.id)).toBe(5);
      await t.db.query(`UPDATE credit_reservations SET expires_at = clock_timestamp() - interval '1 minute'`);
      expect(await s.usage.reservations.sweep()).toHaveLength(1);
      expect(await credits(paid.id)).toBe(8);
      expect(await g2.settle(90)).toEqual({ charged: 2, refunded: 0 });
      expect(await credits(paid.id)).toBe(6);
      g2.release();
      await ac.settle();
      expect(await credits(paid.id)).toBe(6);
    });

    it('the heartbeat keeps a running job’s reservation alive past its TTL', async () => {
      const paid = await account('alive@x.io', 'paid', 10);
      const ledger = new CreditLedger(s.usage.reservations, { ttlS: 1, sweepS: 0.2 });
      await ledger.start();
      try {
        const id = await ledger.reserve({ accountId: paid.id, ip: null, kind: 'transcribe', unit: 'credits', amount: 3, seconds: 150 });
        const started = Date.now();
        // Three TTLs with the sweeper running every 0.2 s: a lease that was not renewed would be gone.
        await until(async () => Date.now() - started > 3000, 'three lease lifetimes');
        expect(await s.usage.reservations.list(paid.id)).toHaveLength(1);
        expect(await credits(paid.id)).toBe(7);
        expect(await ledger.settle(id!, { seconds: 150, minutes: 3, at: now })).toEqual({ charged: 3, refunded: 0 });
      } finally {
        await ledger.close();
      }
    });

    it('sole server (embedded database): start() refunds every reservation left, expired or not', async () => {
      const paid = await account('sole@x.io', 'paid', 10);
      await s.usage.reservations.reserve({ accountId: paid.id, ip: null, kind: 'transcribe', unit: 'credits', amount: 6, seconds: 360, holder: 'previous-run', ttlS: 3600 });
      expect(await credits(paid.id)).toBe(4);
      const shared = new CreditLedger(s.usage.reservations, { ttlS: 60 });
      await shared.start(); // PostgreSQL-style start: an unexpired lease may be another live server's
      await shared.close();
      expect(await credits(paid.id)).toBe(4);
      const sole = new CreditLedger(s.usage.reservations, { ttlS: 60, soleServer: true });
      await sole.start();
      await sole.close();
      expect(await credits(paid.id)).toBe(10);
    });
  });
}
