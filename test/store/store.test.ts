import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Segment } from '../../src/formats/transcript.ts';
import { Database } from '../../src/store/database.ts';
import { MIGRATIONS_DIR } from '../../src/store/migrate.ts';
import { createStores, DuplicateEmailError, type Stores, type UsageEvent } from '../../src/store/index.ts';
import { DB_VARIANTS, variantTitle, type TestDatabase } from './test-databases.ts';

const SEGMENTS: Segment[] = [
  {
    start: 0,
    end: 2.5,
    text: ' Hello there.',
    speaker: 'Speaker 1',
    confidence: 0.9,
    words: [
      { word: 'Hello', start: 0, end: 0.5 },
      { word: 'there.', start: 0.6, end: 1 },
    ],
  },
  { start: 3, end: 5, text: ' General Kenobi.', speaker: 'Speaker 2', confidence: 0.8, words: [] },
];

function event(over: Partial<UsageEvent> = {}): UsageEvent {
  return { accountId: null, ip: null, kind: 'transcribe', seconds: 60, minutes: 1, credits: 0, requests: 1, at: new Date(), ...over };
}

for (const variant of DB_VARIANTS) {
  describe.skipIf(variant.skip !== null)(`storage on ${variantTitle(variant)}`, () => {
    let t: TestDatabase;
    let s: Stores;
    let now = new Date('2025-03-10T12:00:00Z');

    beforeAll(async () => {
      t = await variant.open();
      s = createStores(t.db, () => now);
    });
    afterAll(async () => {
      await t?.dispose();
    });
    beforeEach(async () => {
      now = new Date('2025-03-10T12:00:00Z');
      await t.truncate();
    });

    it('migrates once: the log has every migration and re-running applies nothing', async () => {
      const rows = await t.db.query<{ name: string }>('SELECT name FROM schema_migrations');
      expect(rows.map((r) => r.name)).toContain('0001_accounts');
      const { migrate } = await import('../../src/store/migrate.ts');
      const again = await migrate({ query: (q, p) => t.db.query(q, p), exec: async (q) => void (await t.db.query(q)), transaction: (fn) => t.db.transaction(fn) }, { lock: false });
      expect(again).toEqual([]);
    });

    it('accounts: create, unique email (case-insensitive), update, plan, credits never below zero', async () => {
      const a = await s.accounts.create({ email: 'Ann@Example.com', plan: 'paid', credits: 5 });
      expect(a).toMatchObject({ email: 'Ann@Example.com', plan: 'paid', credits: 5, name: '' });
      await expect(s.accounts.create({ email: 'ann@example.com', plan: 'free' })).rejects.toBeInstanceOf(DuplicateEmailError);
      expect((await s.accounts.findByEmail('ANN@example.com'))?.id).toBe(a.id);
      const u = await s.accounts.update(a.id, { name: 'Ann', emailPreferences: { newsletter: false } });
      expect(u).toMatchObject({ name: 'Ann', emailPreferences: { newsletter: false } });
      const u2 = await s.accounts.update(a.id, { emailPreferences: { receipts: true } });
      expect(u2?.emailPreferences).toEqual({ newsletter: false, receipts: true });
      expect((await s.accounts.setPlan(a.id, 'free'))?.plan).toBe('free');
      expect((await s.accounts.addCredits(a.id, 10))?.credits).toBe(15);
      expect((await s.accounts.addCredits(a.id, -100))?.credits).toBe(0);
      expect(await s.accounts.get('not-a-uuid')).toBeNull();
      expect(await s.accounts.addCredits('00000000-0000-4000-8000-000000000000', 1)).toBeNull();
      expect((await s.accounts.list()).map((x) => x.id)).toEqual([a.id]);
    });

    it('keys: scoped to their account, revoked keys are no longer candidates', async () => {
      const a = await s.accounts.create({ email: 'a@x.io', plan: 'free' });
      const b = await s.accounts.create({ email: 'b@x.io', plan: 'free' });
      const k = await s.accounts.insertKey({ accountId: a.id, name: 'ci', lookup: 'abcdefgh', keyHash: 'ff'.repeat(32) });
      expect(k).toMatchObject({ accountId: a.id, name: 'ci', prefix: 'stt_abcdefgh', revokedAt: null });
      expect(await s.accounts.keyCandidates('abcdefgh')).toHaveLength(1);
      expect(await s.accounts.revokeKey(b.id, k.id)).toBe(false);
      expect(await s.accounts.listKeys(b.id)).toEqual([]);
      expect(await s.accounts.revokeKey(a.id, k.id)).toBe(true);
      expect(await s.accounts.keyCandidates('abcdefgh')).toEqual([]);
      expect((await s.accounts.listKeys(a.id))[0].revokedAt).toBeInstanceOf(Date);
    });

    it('50 parallel charges of 1 credit against 20 credits: exactly 20 succeed, balance 0', async () => {
      const a = await s.accounts.create({ email: 'rich@x.io', plan: 'paid', credits: 20 });
      const results = await Promise.all(Array.from({ length: 50 }, () => s.usage.spendCredits(a.id, event({ accountId: a.id, credits: 1 }))));
      expect(results.filter((r) => r !== null)).toHaveLength(20);
      expect(new Set(results.filter((r) => r !== null))).toEqual(new Set(Array.from({ length: 20 }, (_, i) => i)));
      expect((await s.accounts.get(a.id))?.credits).toBe(0);
      const [{ n }] = await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM usage_events WHERE account_id = $1', [a.id]);
      expect(n).toBe(20);
    });

    it('free monthly minutes: atomic under concurrency, per month', async () => {
      const a = await s.accounts.create({ email: 'free@x.io', plan: 'free' });
      const results = await Promise.all(Array.from({ length: 30 }, () => s.usage.spendMonthlyMinutes(a.id, '2025-03-01', 20, event({ accountId: a.id, minutes: 1 }))));
      expect(results.filter((r) => r !== null)).toHaveLength(20);
      expect(await s.usage.monthlyMinutes(a.id, '2025-03-01')).toBe(20);
      // A charge that would cross the limit is refused whole, also as the first of a month.
      expect(await s.usage.spendMonthlyMinutes(a.id, '2025-04-01', 20, event({ accountId: a.id, minutes: 21 }))).toBeNull();
      expect(await s.usage.spendMonthlyMinutes(a.id, '2025-04-01', 20, event({ accountId: a.id, minutes: 20 }))).toBe(20);
    });

    it('anonymous daily reservations: atomic per IP and day, refundable', async () => {
      const results = await Promise.all(Array.from({ length: 12 }, () => s.usage.reserveAnonymous('10.0.0.1', '2025-03-10', 3)));
      expect(results.filter(Boolean)).toHaveLength(3);
      expect(await s.usage.reserveAnonymous('10.0.0.2', '2025-03-10', 3)).toBe(true);
      expect(await s.usage.reserveAnonymous('10.0.0.1', '2025-03-11', 3)).toBe(true);
      await s.usage.refundAnonymous('10.0.0.1', '2025-03-10');
      expect(await s.usage.anonymousCount('10.0.0.1', '2025-03-10')).toBe(2);
      expect(await s.usage.reserveAnonymous('10.0.0.9', '2025-03-10', 0)).toBe(false);
    });

    it('usage: daily breakdown by UTC day', async () => {
      const a = await s.accounts.create({ email: 'u@x.io', plan: 'paid', credits: 100 });
      await s.usage.spendCredits(a.id, event({ accountId: a.id, minutes: 2, credits: 2, at: new Date('2025-03-09T23:59:00Z') }));
      await s.usage.spendCredits(a.id, event({ accountId: a.id, minutes: 3, credits: 3, at: new Date('2025-03-10T00:01:00Z') }));
      await s.usage.record(event({ accountId: a.id, minutes: 1, requests: 0, at: new Date('2025-03-10T00:02:00Z') }));
      await s.usage.record(event({ accountId: a.id, minutes: 9, at: new Date('2025-01-01T00:00:00Z') }));
      const days = await s.usage.daily(a.id, new Date('2025-02-09T00:00:00Z'), new Date('2025-03-11T00:00:00Z'));
      expect(days).toEqual([
        { date: '2025-03-09', minutes: 2, requests: 1, credits: 2 },
        { date: '2025-03-10', minutes: 4, requests: 1, credits: 3 },
      ]);
    });

    it('transcripts: save, get with segments and words, list with filters and pages, delete; owner-scoped', async () => {
      const a = await s.accounts.create({ email: 'ta@x.io', plan: 'free' });
      const b = await s.accounts.create({ email: 'tb@x.io', plan: 'free' });
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        now = new Date(Date.UTC(2025, 2, 1 + i, 12));
        const { id } = await s.transcripts.save({
          ownerId: a.id,
          model: 'small',
          language: i % 2 ? 'de' : 'en',
          duration: 5,
          source: i === 4 ? 'stream' : 'file',
          filename: `f${i}.wav`,
          segments: SEGMENTS,
          text: 'Hello there. General Kenobi.',
        });
        ids.push(id);
      }
      const { id: bId } = await s.transcripts.save({ ownerId: b.id, model: 'small', language: 'en', duration: 1, source: 'file', segments: [], text: '' });
      await s.transcripts.save({ ownerId: null, model: 'small', language: 'en', duration: 1, source: 'file', segments: [], text: 'anon' });

      const got = await s.transcripts.get(a.id, ids[0]);
      expect(got).toMatchObject({ id: ids[0], ownerId: a.id, status: 'completed', language: 'en', filename: 'f0.wav', speakers: ['Speaker 1', 'Speaker 2'] });
      expect(got?.segments).toEqual(SEGMENTS);
      expect(await s.transcripts.get(b.id, ids[0])).toBeNull();
      expect(await s.transcripts.get(a.id, bId)).toBeNull();
      expect(await s.transcripts.get(a.id, 'nope')).toBeNull();

      const all = await s.transcripts.list(a.id, {}, { offset: 0, limit: 2 });
      expect(all.count).toBe(5);
      expect(all.results.map((r) => r.id)).toEqual([ids[4], ids[3]]);
      expect((await s.transcripts.list(a.id, {}, { offset: 4, limit: 2 })).results.map((r) => r.id)).toEqual([ids[0]]);
      expect((await s.transcripts.list(a.id, { language: 'de' }, { offset: 0, limit: 10 })).count).toBe(2);
      expect((await s.transcripts.list(a.id, { status: 'failed' }, { offset: 0, limit: 10 })).count).toBe(0);
      const range = await s.transcripts.list(a.id, { from: new Date('2025-03-02T00:00:00Z'), to: new Date('2025-03-04T00:00:00Z') }, { offset: 0, limit: 10 });
      expect(range.results.map((r) => r.id)).toEqual([ids[2], ids[1]]);

      expect(await s.transcripts.delete(b.id, ids[0])).toBe(false);
      expect(await s.transcripts.delete(a.id, ids[0])).toBe(true);
      expect(await s.transcripts.delete(a.id, ids[0])).toBe(false);
      expect((await s.transcripts.list(a.id, {}, { offset: 0, limit: 10 })).count).toBe(4);
    });

    it('deleting an account deletes its keys, usage and transcripts', async () => {
      const a = await s.accounts.create({ email: 'gone@x.io', plan: 'paid', credits: 3 });
      await s.accounts.insertKey({ accountId: a.id, name: '', lookup: 'zzzzzzzz', keyHash: 'ab'.repeat(32) });
      await s.transcripts.save({ ownerId: a.id, model: 'small', language: 'en', duration: 1, source: 'file', segments: [], text: '' });
      await s.usage.spendCredits(a.id, event({ accountId: a.id, credits: 1 }));
      expect(await s.accounts.delete(a.id)).toBe(true);
      const [{ n }] = await t.db.query<{ n: number }>('SELECT ((SELECT count(*) FROM api_keys) + (SELECT count(*) FROM transcripts) + (SELECT count(*) FROM usage_events))::int AS n');
      expect(n).toBe(0);
    });
  });
}

describe('embedded database on disk', () => {
  it('creates DATA_DIR/db, keeps data across restarts and does not re-run migrations', async () => {
    const dir = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'stt-db-')), 'db');
    try {
      const db1 = new Database({ url: null, embeddedDir: dir });
      await db1.start();
      const { id } = await createStores(db1).accounts.create({ email: 'disk@x.io', plan: 'free' });
      await db1.close();
      const db2 = new Database({ url: null, embeddedDir: dir });
      await db2.start();
      expect((await createStores(db2).accounts.get(id))?.email).toBe('disk@x.io');
      // Each migration ran exactly once, across both starts.
      const files = (await fs.readdir(MIGRATIONS_DIR)).filter((f) => f.endsWith('.up.sql'));
      expect(await db2.query('SELECT name FROM schema_migrations')).toHaveLength(files.length);
      await db2.close();
    } finally {
      await fs.rm(path.dirname(dir), { recursive: true, force: true });
    }
  });

  it('says clearly when used before start()', async () => {
    const db = new Database({ url: null, embeddedDir: 'memory://' });
    await expect(db.query('SELECT 1')).rejects.toThrow(/not started/);
  });
});
