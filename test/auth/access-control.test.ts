import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AccessControl, billableMinutes, type Grant } from '../../src/auth/access-control.ts';
import { AuthConfigError, authConfigFromEnv } from '../../config/auth.ts';
import { bearerToken, generateKey, hashKey, issueKey, isWellFormedKey } from '../../src/auth/keys.ts';
import { DomainError } from '../../src/errors.ts';
import { statusOf } from '../../src/http/error-kinds.ts';
import { createStores, type Stores } from '../../src/store/index.ts';
import { DB_VARIANTS, variantTitle, type TestDatabase } from '../store/test-databases.ts';
import { apiError } from '../helpers/errors.ts';

describe('keys and config (pure)', () => {
  it('keys are stt_ + 43 base64url characters, distinct, hashed with sha256', () => {
    const k = generateKey();
    expect(isWellFormedKey(k)).toBe(true);
    expect(k).toMatch(/^stt_[A-Za-z0-9_-]{43}$/);
    expect(generateKey()).not.toBe(k);
    expect(hashKey(k)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('parses Bearer headers', () => {
    expect(bearerToken(undefined)).toBeUndefined();
    expect(bearerToken('')).toBeUndefined();
    expect(bearerToken('Bearer abc')).toBe('abc');
    expect(bearerToken('bearer   abc ')).toBe('abc');
    expect(bearerToken('Basic abc')).toBeNull();
    expect(bearerToken('Bearer')).toBeNull();
  });

  it('rounds every started minute up', () => {
    expect(billableMinutes(0)).toBe(0);
    expect(billableMinutes(0.001)).toBe(1);
    expect(billableMinutes(60)).toBe(1);
    expect(billableMinutes(60.0000001)).toBe(1);
    expect(billableMinutes(60.001)).toBe(2);
    expect(billableMinutes(125.4)).toBe(3);
  });

  it('authConfigFromEnv: defaults, overrides, errors naming the variable', () => {
    expect(authConfigFromEnv({})).toEqual({
      anonDailyLimit: 3,
      freeMonthlyMinutes: 600,
      signupEnabled: false,
      concurrencyRetryAfterS: 5,
      concurrencyLeaseTtlS: 60,
      anonDailyAiLimit: 50,
      anonAiMaxRequestBytes: 32 * 1024,
      anonAiMaxUploadBytes: 10 * 1024 * 1024,
    });
    expect(authConfigFromEnv({ CONCURRENCY_LEASE_TTL_S: '15' }).concurrencyLeaseTtlS).toBe(15);
    expect(() => authConfigFromEnv({ CONCURRENCY_LEASE_TTL_S: '0' })).toThrow(/CONCURRENCY_LEASE_TTL_S="0"/);
    expect(authConfigFromEnv({ ANON_DAILY_LIMIT: '10', FREE_MONTHLY_MINUTES: '', SIGNUP_ENABLED: 'true' })).toMatchObject({ anonDailyLimit: 10, freeMonthlyMinutes: 600, signupEnabled: true });
    expect(() => authConfigFromEnv({ ANON_DAILY_LIMIT: '-1' })).toThrow(AuthConfigError);
    expect(() => authConfigFromEnv({ ANON_DAILY_LIMIT: 'x', SIGNUP_ENABLED: 'maybe' })).toThrow(/ANON_DAILY_LIMIT="x".*\n.*SIGNUP_ENABLED="maybe"/);
  });
});

for (const variant of DB_VARIANTS) {
  describe.skipIf(variant.skip !== null)(`AccessControl on ${variantTitle(variant)}`, () => {
    let t: TestDatabase;
    let s: Stores;
    let now: Date;
    const clock = () => now;
    const make = (opts: Partial<ConstructorParameters<typeof AccessControl>[0]> = {}) => new AccessControl({ accounts: s.accounts, usage: s.usage, now: clock, ...opts });

    async function accountWithKey(email: string, plan: 'free' | 'paid', credits = 0) {
      const account = await s.accounts.create({ email, plan, credits });
      const { key, record } = await issueKey(s.accounts, account.id, 'test');
      return { account, key, keyId: record.id, authorization: `Bearer ${key}` };
    }

    beforeAll(async () => {
      t = await variant.open();
      s = createStores(t.db, clock);
    });
    afterAll(async () => {
      await t?.dispose();
    });
    beforeEach(async () => {
      now = new Date('2025-03-10T12:00:00Z');
      await t.truncate();
    });

    it('401: malformed header, unknown key, revoked key (at once)', async () => {
      const ac = make();
      const { account, authorization, keyId } = await accountWithKey('a@x.io', 'paid', 5);
      expect((await apiError(ac.admit({ authorization: 'Basic Zm9v', ip: '1.1.1.1', kind: 'transcribe' }))).status).toBe(401);
      expect((await apiError(ac.admit({ authorization: 'Bearer nope', ip: '1.1.1.1', kind: 'transcribe' }))).status).toBe(401);
      expect((await apiError(ac.admit({ authorization: `Bearer ${generateKey()}`, ip: '1.1.1.1', kind: 'transcribe' }))).status).toBe(401);
      const g = await ac.admit({ authorization, ip: '1.1.1.1', kind: 'transcribe' });
      expect(g).toMatchObject({ tier: 'paid', account: { id: account.id, email: 'a@x.io', plan: 'paid' }, maxFileBytes: 2048 * 1024 * 1024 });
      g.release();
      await s.accounts.revokeKey(account.id, keyId);
      const e = await apiError(ac.admit({ authorization, ip: '1.1.1.1', kind: 'transcribe' }));
      expect(e.status).toBe(401);
      expect(e.message).toMatch(/revoked/);
      expect(e.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
      const none = await apiError(ac.requireAccount(undefined));
      expect(none.status).toBe(401);
      expect(none.headers['www-authenticate']).toBe('Bearer');
    });

    it('413 over the tier file size, before anything is counted', async () => {
      const ac = make();
      const free = await accountWithKey('f@x.io', 'free');
      const e = await apiError(ac.admit({ ip: '2.2.2.2', kind: 'transcribe', declaredBytes: 100 * 1024 * 1024 + 1 }));
      expect(e.status).toBe(413);
      expect(e.message).toMatch(/anonymous tier's limit of 100 MB/);
      expect(await s.usage.anonymousCount('2.2.2.2', '2025-03-10')).toBe(0);
      (await ac.admit({ authorization: free.authorization, ip: '2.2.2.2', kind: 'transcribe', declaredBytes: 400 * 1024 * 1024 })).release();
      expect((await apiError(ac.admit({ authorization: free.authorization, ip: '2.2.2.2', kind: 'transcribe', declaredBytes: 501 * 1024 * 1024 }))).status).toBe(413);
    });

    it('anonymous: 3 per UTC day per IP, 429 with Retry-After until midnight, other IPs unaffected, next day allowed', async () => {
      const ac = make();
      for (let i = 0; i < 3; i++) {
        const g = await ac.admit({ ip: '3.3.3.3', kind: 'transcribe' });
        expect(g).toMatchObject({ tier: 'anonymous', account: null, maxFileBytes: 100 * 1024 * 1024 });
        await g.charge(30);
        g.release();
      }
      const e = await apiError(ac.admit({ ip: '3.3.3.3', kind: 'stream' }));
      expect(e.status).toBe(429);
      expect(e.headers['retry-after']).toBe(String(12 * 3600));
      (await ac.admit({ ip: '4.4.4.4', kind: 'transcribe' })).release();
      // AI calls are not transcriptions.
      (await ac.admit({ ip: '3.3.3.3', kind: 'ai' })).release();
      now = new Date('2025-03-11T00:00:01Z');
      (await ac.admit({ ip: '3.3.3.3', kind: 'transcribe' })).release();
      await ac.settle();
    });

    it('anonymous limit is configurable, from past usage rows too', async () => {
      await t.db.query(`INSERT INTO anon_daily_usage (ip, day, count) VALUES ('5.5.5.5', '2025-03-10', 1)`);
      const ac = make({ config: { anonDailyLimit: 2 } });
      const g = await ac.admit({ ip: '5.5.5.5', kind: 'transcribe' });
      await g.charge(1);
      g.release();
      await ac.settle();
      expect((await apiError(ac.admit({ ip: '5.5.5.5', kind: 'transcribe' }))).status).toBe(429);
      expect((await apiError(make({ config: { anonDailyLimit: 0 } }).admit({ ip: '6.6.6.6', kind: 'transcribe' }))).status).toBe(401);
    });

    it('anonymous: a request released without a charge gives its daily unit back', async () => {
      const ac = make({ config: { anonDailyLimit: 1 } });
      const g = await ac.admit({ ip: '7.7.7.7', kind: 'transcribe' });
      g.release();
      g.release();
      await ac.settle();
      expect(await s.usage.anonymousCount('7.7.7.7', '2025-03-10')).toBe(0);
      const g2 = await ac.admit({ ip: '7.7.7.7', kind: 'transcribe' });
      await g2.charge(5);
      g2.release();
      await ac.settle();
      expect(await s.usage.anonymousCount('7.7.7.7', '2025-03-10')).toBe(1);
    });

    it('429 over the concurrency limit with Retry-After; release frees the slot (idempotent)', async () => {
      const ac = make();
      const anon = await ac.admit({ ip: '8.8.8.8', kind: 'ai' });
      const e = await apiError(ac.admit({ ip: '8.8.8.8', kind: 'ai' }));
      expect(e.status).toBe(429);
      expect(e.headers['retry-after']).toBe('5');
      anon.release();
      anon.release();
      (await ac.admit({ ip: '8.8.8.8', kind: 'ai' })).release();

      const free = await accountWithKey('c@x.io', 'free');
      const grants = [await ac.admit({ authorization: free.authorization, ip: '1.0.0.1', kind: 'transcribe' }), await ac.admit({ authorization: free.authorization, ip: '1.0.0.2', kind: 'stream' })];
      expect((await apiError(ac.admit({ authorization: free.authorization, ip: '1.0.0.3', kind: 'transcribe' }))).status).toBe(429);
      grants[0].release();
      grants[0].release();
      const third = await ac.admit({ authorization: free.authorization, ip: '1.0.0.3', kind: 'transcribe' });
      expect((await apiError(ac.admit({ authorization: free.authorization, ip: '1.0.0.3', kind: 'transcribe' }))).status).toBe(429);
      third.release();
      grants[1].release();

      const paid = await accountWithKey('p@x.io', 'paid', 100);
      const five: Grant[] = [];
      for (let i = 0; i < 5; i++) five.push(await ac.admit({ authorization: paid.authorization, ip: '9.9.9.9', kind: 'transcribe' }));
      expect((await apiError(ac.admit({ authorization: paid.authorization, ip: '9.9.9.9', kind: 'transcribe' }))).status).toBe(429);
      five.forEach((g) => g.release());
      expect(await ac.slots.inUse(`account:${paid.account.id}`)).toBe(0);
    });

    it('free: 600 minutes per UTC month; 429 until next month at admit and at charge; minutes rounded up', async () => {
      const ac = make();
      const free = await accountWithKey('m@x.io', 'free');
      const g = await ac.admit({ authorization: free.authorization, ip: '1.2.3.4', kind: 'transcribe' });
      await g.charge(125.4); // 3 minutes
      g.release();
      expect(await s.usage.monthlyMinutes(free.account.id, '2025-03-01')).toBe(3);
      // Past usage of this month: 596 more minutes → 599 used.
      await t.db.query(`UPDATE monthly_minutes SET minutes = 599 WHERE account_id = $1`, [free.account.id]);
      const g2 = await ac.admit({ authorization: free.authorization, ip: '1.2.3.4', kind: 'transcribe' });
      const over = await apiError(g2.charge(61)); // 2 minutes > 1 left: refused whole
      expect(over.status).toBe(429);
      expect(await s.usage.monthlyMinutes(free.account.id, '2025-03-01')).toBe(599);
      await g2.charge(60);
      g2.release();
      const e = await apiError(ac.admit({ authorization: free.authorization, ip: '1.2.3.4', kind: 'transcribe' }));
      expect(e.status).toBe(429);
      expect(e.message).toMatch(/600 minutes per month/);
      expect(Number(e.headers['retry-after'])).toBe((Date.UTC(2025, 3, 1) - now.getTime()) / 1000);
      now = new Date('2025-04-01T00:00:00Z');
      (await ac.admit({ authorization: free.authorization, ip: '1.2.3.4', kind: 'transcribe' })).release();
    });

    it('paid: credits per started minute; 402 without credits at admit and when a charge cannot be paid', async () => {
      const ac = make();
      const paid = await accountWithKey('cr@x.io', 'paid', 3);
      const g = await ac.admit({ authorization: paid.authorization, ip: '1.1.1.1', kind: 'transcribe' });
      await g.charge(61); // 2 credits
      expect((await s.accounts.get(paid.account.id))?.credits).toBe(1);
      const e = await apiError(g.charge(120)); // total 181 s = 4 minutes → 2 more, only 1 left
      expect(e.status).toBe(402);
      expect((await s.accounts.get(paid.account.id))?.credits).toBe(1);
      await g.charge(50); // total 111 s = 2 minutes: nothing more to pay
      expect((await s.accounts.get(paid.account.id))?.credits).toBe(1);
      g.release();
      await s.accounts.addCredits(paid.account.id, -1);
      const none = await apiError(ac.admit({ authorization: paid.authorization, ip: '1.1.1.1', kind: 'transcribe' }));
      expect(none.status).toBe(402);
      expect(none.message).toBe('No credits remaining. Upgrade your plan.');
    });

    it('streams are metered incrementally: 1 s charges add up to started minutes, one request', async () => {
      const ac = make();
      const paid = await accountWithKey('st@x.io', 'paid', 10);
      const g = await ac.admit({ authorization: paid.authorization, ip: '1.1.1.1', kind: 'stream' });
      await Promise.all(Array.from({ length: 150 }, () => g.charge(1))); // 150 s → 3 minutes
      g.release();
      expect((await s.accounts.get(paid.account.id))?.credits).toBe(7);
      expect(await s.usage.daily(paid.account.id, new Date('2025-03-01'), new Date('2025-04-01'))).toEqual([{ date: '2025-03-10', minutes: 3, requests: 1, credits: 3 }]);
    });

    it('50 parallel 1-minute charges against 20 credits: exactly 20 succeed, balance 0', async () => {
      const ac = make({ tiers: { paid: { concurrent: 100 } } });
      const paid = await accountWithKey('race@x.io', 'paid', 20);
      const grants = await Promise.all(Array.from({ length: 50 }, () => ac.admit({ authorization: paid.authorization, ip: '1.1.1.1', kind: 'transcribe' })));
      const results = await Promise.allSettled(grants.map((g) => g.charge(60)));
      grants.forEach((g) => g.release());
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(20);
      const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(failures.every((f) => f.reason instanceof DomainError && statusOf(f.reason) === 402)).toBe(true);
      expect((await s.accounts.get(paid.account.id))?.credits).toBe(0);
    });
  });
}
