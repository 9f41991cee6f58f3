/* eslint-disable @typescript-eslint/no-explicit-any -- response bodies are checked by the assertions */
import mammoth from 'mammoth';
import { pdfText } from '../helpers/documents.ts';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AccessControl } from '../../src/auth/access-control.ts';
import { issueKey } from '../../src/auth/keys.ts';
import type { Segment } from '../../src/formats/transcript.ts';
import type { HttpServer } from '../../src/http/http-server.ts';
import { testHttpServer } from '../helpers/http-server.ts';
import { registerAccountRoutes } from '../../src/http/routes/account-routes.ts';
import { createStores, type Stores } from '../../src/store/index.ts';
import { DB_VARIANTS, variantTitle, type TestDatabase } from '../store/test-databases.ts';

const SEGMENTS: Segment[] = [
  {
    start: 0,
    end: 2.4,
    text: ' Hello, welcome to the meeting.',
    speaker: 'Speaker 1',
    confidence: 0.95,
    words: [
      { word: 'Hello,', start: 0, end: 0.4 },
      { word: 'welcome', start: 0.5, end: 0.9 },
      { word: 'to', start: 1, end: 1.1 },
      { word: 'the', start: 1.2, end: 1.3 },
      { word: 'meeting.', start: 1.4, end: 2.4 },
    ],
  },
  { start: 3, end: 5.5, text: ' =SUM(A1) "quoted", fine.', speaker: 'Speaker 2', confidence: 0.8, words: [] },
];

for (const variant of DB_VARIANTS) {
  describe.skipIf(variant.skip !== null)(`account REST API on ${variantTitle(variant)}`, () => {
    let t: TestDatabase;
    let s: Stores;
    let server: HttpServer;
    let base: string;
    let now: Date;
    let access: AccessControl;
    const clock = () => now;

    async function user(email: string, plan: 'free' | 'paid' = 'free', credits = 0) {
      const account = await s.accounts.create({ email, plan, credits });
      const { key } = await issueKey(s.accounts, account.id, 'test');
      const headers = { authorization: `Bearer ${key}` };
      const api = (path: string, init: RequestInit = {}) => fetch(`${base}${path}`, { ...init, headers: { ...headers, ...(init.headers as Record<string, string>) } });
      return { account, key, headers, api };
    }

    const save = (ownerId: string | null, over: Partial<Parameters<Stores['transcripts']['save']>[0]> = {}) =>
      s.transcripts.save({
        ownerId,
        model: 'large-v3-turbo',
        language: 'en',
        duration: 5.5,
        source: 'file',
        filename: 'meeting.mp3',
        segments: SEGMENTS,
        text: 'Hello, welcome to the meeting. =SUM(A1) "quoted", fine.',
        ...over,
      });

    beforeAll(async () => {
      t = await variant.open();
      s = createStores(t.db, clock);
      access = new AccessControl({ accounts: s.accounts, usage: s.usage, now: clock, config: { signupEnabled: true } });
      server = testHttpServer();
      registerAccountRoutes(server, { access, ...s, cloud: [], now: clock });
      await server.start();
      base = `http://127.0.0.1:${server.port}`;
    });
    afterAll(async () => {
      await server?.close();
      await t?.dispose();
    });
    beforeEach(async () => {
      now = new Date('2025-03-10T12:00:00Z');
      await t.truncate();
    });

    it('401 on every route without a key, with a bad key, and with a revoked key', async () => {
      const routes: Array<[string, string]> = [
        ['GET', '/api/v1/account/'],
        ['PUT', '/api/v1/account/'],
        ['GET', '/api/v1/transcripts/'],
        ['GET', '/api/v1/transcripts/00000000-0000-4000-8000-000000000000/'],
        ['DELETE', '/api/v1/transcripts/00000000-0000-4000-8000-000000000000/'],
        ['GET', '/api/v1/transcripts/00000000-0000-4000-8000-000000000000/export/txt/'],
        ['GET', '/api/v1/keys/'],
        ['POST', '/api/v1/keys/'],
        ['DELETE', '/api/v1/keys/00000000-0000-4000-8000-000000000000/'],
        ['GET', '/api/v1/usage/'],
        ['GET', '/api/v1/cloud/'],
      ];
      for (const [method, path] of routes) {
        const r = await fetch(`${base}${path}`, { method, body: method === 'PUT' || method === 'POST' ? '{}' : undefined });
        expect(r.status, `${method} ${path}`).toBe(401);
        expect(((await r.json()) as any).error).toMatch(/API key required/);
      }
      const bad = await fetch(`${base}/api/v1/account/`, { headers: { authorization: 'Bearer stt_nope' } });
      expect(bad.status).toBe(401);
      expect((await bad.json()) as any).toEqual({ error: 'Invalid or revoked API key.' });

      const u = await user('rev@x.io');
      const keys = (await (await u.api('/api/v1/keys/')).json()) as any;
      expect((await u.api(`/api/v1/keys/${keys.results[0].id}/`, { method: 'DELETE' })).status).toBe(204);
      expect((await u.api('/api/v1/account/')).status).toBe(401);
    });

    it('GET/PUT account: limits, editable fields only, 400 on bad input, 409 on a taken email', async () => {
      const u = await user('acc@x.io', 'free');
      await user('taken@x.io');
      const a = (await (await u.api('/api/v1/account/')).json()) as any;
      expect(a).toMatchObject({
        id: u.account.id,
        email: 'acc@x.io',
        plan: 'free',
        credits: 0,
        email_preferences: {},
        limits: { max_file_mb: 500, concurrent: 2, monthly_minutes: 600, minutes_used_this_month: 0 },
      });
      const put = await u.api('/api/v1/account/', { method: 'PUT', body: JSON.stringify({ name: 'Acc', email_preferences: { newsletter: true } }), headers: { 'content-type': 'application/json' } });
      expect(put.status).toBe(200);
      expect((await put.json()) as any).toMatchObject({ name: 'Acc', email_preferences: { newsletter: true } });
      const plan = await u.api('/api/v1/account/', { method: 'PUT', body: JSON.stringify({ plan: 'paid', credits: 1e6 }) });
      expect(plan.status).toBe(400);
      expect(((await plan.json()) as any).error).toMatch(/only name, email and email_preferences can be changed/);
      expect((await u.api('/api/v1/account/', { method: 'PUT', body: JSON.stringify({ email: 'nope' }) })).status).toBe(400);
      expect((await u.api('/api/v1/account/', { method: 'PUT', body: '{bad' })).status).toBe(400);
      const dup = await u.api('/api/v1/account/', { method: 'PUT', body: JSON.stringify({ email: 'TAKEN@x.io' }) });
      expect(dup.status).toBe(409);
      // Generic: neither the address nor that an account has it (no help to enumerate accounts).
      const dupError = ((await dup.json()) as any).error as string;
      expect(dupError).not.toMatch(/taken@x\.io|exist|account with/i);
      expect(dupError).toMatch(/cannot be used/);
      const paid = await user('p@x.io', 'paid', 42);
      expect((await (await paid.api('/api/v1/account/')).json()) as any).toMatchObject({ plan: 'paid', credits: 42, limits: { max_file_mb: 2048, concurrent: 5, monthly_minutes: null } });
    });

    it("tenant isolation: B can never list, read, export or delete A's transcripts (404, not 403)", async () => {
      const a = await user('a@x.io');
      const b = await user('b@x.io');
      const { id } = await save(a.account.id);
      await save(null); // anonymous: listed by nobody
      expect(((await (await b.api('/api/v1/transcripts/')).json()) as any).count).toBe(0);
      expect(((await (await a.api('/api/v1/transcripts/')).json()) as any).count).toBe(1);
      for (const path of [`/api/v1/transcripts/${id}/`, ...['txt', 'json', 'pdf'].map((f) => `/api/v1/transcripts/${id}/export/${f}/`)]) {
        const r = await b.api(path);
        expect(r.status, path).toBe(404);
        expect((await r.json()) as any).toEqual({ error: 'Transcript not found.' });
      }
      expect((await b.api(`/api/v1/transcripts/${id}/`, { method: 'DELETE' })).status).toBe(404);
      expect((await a.api(`/api/v1/transcripts/${id}/`)).status).toBe(200);
      expect((await a.api('/api/v1/transcripts/not-a-uuid/')).status).toBe(404);
      // Keys too.
      const aKeys = (await (await a.api('/api/v1/keys/')).json()) as any;
      expect((await b.api(`/api/v1/keys/${aKeys.results[0].id}/`, { method: 'DELETE' })).status).toBe(404);
      expect((await a.api('/api/v1/account/')).status).toBe(200);
    });

    it('transcript detail has segments and words; DELETE removes it', async () => {
      const a = await user('d@x.io');
      const { id } = await save(a.account.id);
      const r = await a.api(`/api/v1/transcripts/${id}`);
      const body = (await r.json()) as any;
      expect(body).toMatchObject({
        id,
        status: 'completed',
        model: 'large-v3-turbo',
        language: 'en',
        duration: 5.5,
        source: 'file',
        filename: 'meeting.mp3',
        speakers: ['Speaker 1', 'Speaker 2'],
        created_at: '2025-03-10T12:00:00.000Z',
      });
      expect(body.segments).toEqual(SEGMENTS);
      expect(body.segments[0].words[1]).toEqual({ word: 'welcome', start: 0.5, end: 0.9 });
      expect((await a.api(`/api/v1/transcripts/${id}/`, { method: 'DELETE' })).status).toBe(204);
      expect((await a.api(`/api/v1/transcripts/${id}/`)).status).toBe(404);
      expect((await a.api(`/api/v1/transcripts/${id}/`, { method: 'DELETE' })).status).toBe(404);
    });

    it('list: DRF pagination and filters by status, language and date range', async () => {
      const a = await user('l@x.io');
      const ids: string[] = [];
      for (let i = 0; i < 7; i++) {
        now = new Date(Date.UTC(2025, 2, 1 + i, 12));
        ids.push((await save(a.account.id, { language: i < 5 ? 'en' : 'de', status: i === 6 ? 'failed' : 'completed', source: i % 2 ? 'stream' : 'file' })).id);
      }
      const p1 = (await (await a.api('/api/v1/transcripts/?page_size=3&language=en')).json()) as any;
      expect(p1.count).toBe(5);
      expect(p1.previous).toBeNull();
      expect(p1.results.map((r: { id: string }) => r.id)).toEqual([ids[4], ids[3], ids[2]]);
      expect(p1.results[0]).not.toHaveProperty('segments');
      const next = new URL(p1.next);
      expect(Object.fromEntries(next.searchParams)).toEqual({ page: '2', page_size: '3', language: 'en' });
      const p2 = (await (await a.api(next.pathname + next.search)).json()) as any;
      expect(p2.results.map((r: { id: string }) => r.id)).toEqual([ids[1], ids[0]]);
      expect(p2.next).toBeNull();
      expect(new URL(p2.previous).searchParams.get('page')).toBe('1');
      expect((await a.api('/api/v1/transcripts/?page=9')).status).toBe(404);
      expect(((await (await a.api('/api/v1/transcripts/?status=failed')).json()) as any).results.map((r: { id: string }) => r.id)).toEqual([ids[6]]);
      const range = (await (await a.api('/api/v1/transcripts/?created_after=2025-03-02&created_before=2025-03-04')).json()) as any;
      expect(range.results.map((r: { id: string }) => r.id)).toEqual([ids[3], ids[2], ids[1]]);
      const dt = (await (await a.api('/api/v1/transcripts/?created_after=2025-03-02T13:00:00Z')).json()) as any;
      expect(dt.count).toBe(5);
      for (const bad of ['page=0', 'page_size=101', 'page=x', 'status=done', 'language=english', 'created_after=yesterday']) {
        const r = await a.api(`/api/v1/transcripts/?${bad}`);
        expect(r.status, bad).toBe(400);
        expect(((await r.json()) as any).error).toBeTruthy();
      }
    });

    it('exports txt, srt, vtt, json, csv, docx and pdf (parsed back); 400 for an unknown format', async () => {
      const a = await user('e@x.io');
      const { id } = await save(a.account.id);
      const get = async (f: string) => {
        const r = await a.api(`/api/v1/transcripts/${id}/export/${f}/`);
        expect(r.status, f).toBe(200);
        expect(r.headers.get('content-disposition')).toBe(`attachment; filename="meeting.${f}"`);
        return r;
      };
      const txt = await (await get('txt')).text();
      expect(txt).toBe('Speaker 1: Hello, welcome to the meeting.\nSpeaker 2: =SUM(A1) "quoted", fine.\n');
      const srt = await get('srt');
      expect(srt.headers.get('content-type')).toMatch(/application\/x-subrip/);
      expect(await srt.text()).toMatch(/^1\n00:00:00,000 --> 00:00:02,400\nSpeaker 1: Hello, welcome to the meeting\.\n/);
      const vtt = await get('vtt');
      expect(vtt.headers.get('content-type')).toMatch(/text\/vtt/);
      expect(await vtt.text()).toMatch(/^WEBVTT\n\n00:00:00\.000 --> 00:00:02\.400\n<v Speaker 1>Hello/);
      const json = (await (await get('json')).json()) as any;
      expect(json).toMatchObject({ id, segments: SEGMENTS, text: expect.stringContaining('welcome') });
      const csv = await (await get('csv')).text();
      expect(csv).toBe('start,end,speaker,text,confidence\r\n0,2.4,Speaker 1,"Hello, welcome to the meeting.",0.95\r\n3,5.5,Speaker 2,"\'=SUM(A1) ""quoted"", fine.",0.8\r\n');
      const docx = await get('docx');
      expect(docx.headers.get('content-type')).toMatch(/wordprocessingml/);
      const { value: docText } = await mammoth.extractRawText({ buffer: Buffer.from(await docx.arrayBuffer()) });
      expect(docText).toContain('Transcript: meeting.mp3');
      expect(docText).toContain('[00:00:00] Speaker 1: Hello, welcome to the meeting.');
      expect(docText).toContain('[00:00:03] Speaker 2: =SUM(A1) "quoted", fine.');
      const pdf = await get('pdf');
      expect(pdf.headers.get('content-type')).toBe('application/pdf');
      const pdfBuf = Buffer.from(await pdf.arrayBuffer());
      expect(pdfBuf.subarray(0, 5).toString()).toBe('%PDF-');
      const text = (await pdfText(pdfBuf)).replace(/\s+/g, ' ');
      expect(text).toContain('Transcript: meeting.mp3');
      expect(text).toMatch(/Speaker 1: ?Hello, welcome to the meeting\./);
      const bad = await a.api(`/api/v1/transcripts/${id}/export/odt/`);
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as any).error).toMatch(/txt, srt, vtt, json, csv, docx, pdf/);
    });

    it('keys: list without secrets, create returns the raw key once and it works, revoke works at once', async () => {
      const a = await user('k@x.io');
      const created = await a.api('/api/v1/keys/', { method: 'POST', body: JSON.stringify({ name: 'laptop' }) });
      expect(created.status).toBe(201);
      const k = (await created.json()) as any;
      expect(k).toMatchObject({ name: 'laptop', revoked: false, last_used_at: null });
      expect(k.key).toMatch(/^stt_[A-Za-z0-9_-]{43}$/);
      expect(k.key.startsWith(k.prefix)).toBe(true);
      const list = (await (await a.api('/api/v1/keys/')).json()) as any;
      expect(list.count).toBe(2);
      expect(JSON.stringify(list)).not.toContain(k.key);
      expect(list.results.every((r: Record<string, unknown>) => !('key' in r))).toBe(true);
      const withNew = (path: string, init: RequestInit = {}) => fetch(`${base}${path}`, { ...init, headers: { authorization: `Bearer ${k.key}` } });
      expect((await withNew('/api/v1/account/')).status).toBe(200);
      const empty = await a.api('/api/v1/keys/', { method: 'POST' });
      expect(empty.status).toBe(201);
      expect((await a.api('/api/v1/keys/', { method: 'POST', body: JSON.stringify({ name: 'x'.repeat(101) }) })).status).toBe(400);
      expect((await a.api(`/api/v1/keys/${k.id}/`, { method: 'DELETE' })).status).toBe(204);
      expect((await withNew('/api/v1/account/')).status).toBe(401);
      const after = (await (await a.api('/api/v1/keys/')).json()) as any;
      expect(after.results.find((r: { id: string }) => r.id === k.id)).toMatchObject({ revoked: true });
      expect((await a.api('/api/v1/keys/not-a-uuid/', { method: 'DELETE' })).status).toBe(404);
    });

    it('usage: 30 UTC days, oldest first, from metered requests', async () => {
      const a = await user('u@x.io', 'paid', 100);
      now = new Date('2025-03-01T10:00:00Z');
      let g = await access.admit({ authorization: `Bearer ${a.key}`, ip: '1.1.1.1', kind: 'transcribe' });
      await g.charge(90);
      g.release();
      now = new Date('2025-03-10T10:00:00Z');
      g = await access.admit({ authorization: `Bearer ${a.key}`, ip: '1.1.1.1', kind: 'stream' });
      await g.charge(30);
      await g.charge(45);
      g.release();
      now = new Date('2025-02-01T10:00:00Z'); // outside the window
      g = await access.admit({ authorization: `Bearer ${a.key}`, ip: '1.1.1.1', kind: 'transcribe' });
      await g.charge(600);
      g.release();
      now = new Date('2025-03-10T23:00:00Z');
      const u = (await (await a.api('/api/v1/usage/')).json()) as any;
      expect(u.days).toHaveLength(30);
      expect(u.from).toBe('2025-02-09');
      expect(u.to).toBe('2025-03-10');
      expect(u.days.find((d: { date: string }) => d.date === '2025-03-01')).toEqual({ date: '2025-03-01', minutes: 2, requests: 1, credits: 2 });
      expect(u.days[29]).toEqual({ date: '2025-03-10', minutes: 2, requests: 1, credits: 2 });
      expect(u).toMatchObject({ total_minutes: 4, total_requests: 2, total_credits: 4 });
    });

    it('cloud: empty list unless configured', async () => {
      const a = await user('c@x.io');
      expect((await (await a.api('/api/v1/cloud/')).json()) as any).toEqual({ count: 0, next: null, previous: null, results: [] });
    });

    it('signup (enabled here): free account and a key that works; 400 bad email, 409 taken', async () => {
      const r = await fetch(`${base}/api/v1/signup`, { method: 'POST', body: JSON.stringify({ email: 'new@x.io' }) });
      expect(r.status).toBe(201);
      const body = (await r.json()) as any;
      expect(body.account).toMatchObject({ email: 'new@x.io', plan: 'free', credits: 0 });
      const me = await fetch(`${base}/api/v1/account/`, { headers: { authorization: `Bearer ${body.key.key}` } });
      expect(((await me.json()) as any).email).toBe('new@x.io');
      expect((await fetch(`${base}/api/v1/signup`, { method: 'POST', body: JSON.stringify({ email: 'no' }) })).status).toBe(400);
      const dup = await fetch(`${base}/api/v1/signup`, { method: 'POST', body: JSON.stringify({ email: 'NEW@x.io' }) });
      expect(dup.status).toBe(409);
      expect(((await dup.json()) as any).error).not.toMatch(/new@x\.io|exist|account with/i);
    });

    it('email changes: a taken address gets a generic answer, and probes are limited per account per day whatever they find', async () => {
      const u = await user('prober@x.io', 'free');
      await user('victim@x.io');
      const put = (email: string) => u.api('/api/v1/account/', { method: 'PUT', body: JSON.stringify({ email }) });
      const taken = await put('victim@x.io');
      expect(taken.status).toBe(409);
      expect(((await taken.json()) as any).error).not.toMatch(/victim|exist|account with/i);
      // Same address again (case-insensitively): not an attempt, nothing to count.
      expect((await put('PROBER@x.io')).status).toBe(200);
      for (const e of ['free1@x.io', 'free2@x.io', 'free3@x.io', 'free4@x.io']) expect((await put(e)).status).toBe(200);
      // The sixth attempt of the day is refused before any lookup, taken or not.
      for (const e of ['victim@x.io', 'free5@x.io']) {
        const r = await put(e);
        expect(r.status).toBe(429);
        expect(r.headers.get('retry-after')).toBeTruthy();
        expect(((await r.json()) as any).error).toMatch(/Too many email changes today/);
      }
      expect((await (await u.api('/api/v1/account/')).json()) as any).toMatchObject({ email: 'free4@x.io' });
      // Tomorrow (UTC) it works again.
      now = new Date(now.getTime() + 86_400_000);
      expect((await put('free5@x.io')).status).toBe(200);
    });
  });
}

describe('signup is off by default', () => {
  it('POST /api/v1/signup is 404 when not enabled', async () => {
    const { Database } = await import('../../src/store/database.ts');
    const db = new Database({ url: null, embeddedDir: 'memory://' }); // never started: the route must not touch it
    const s = createStores(db);
    const server = testHttpServer({ maxJsonBodyBytes: 1024, shutdownTimeoutMs: 1000 });
    registerAccountRoutes(server, { access: new AccessControl({ accounts: s.accounts, usage: s.usage }), ...s });
    await server.start();
    try {
      const r = await fetch(`http://127.0.0.1:${server.port}/api/v1/signup`, { method: 'POST', body: '{"email":"a@b.c"}' });
      expect(r.status).toBe(404);
    } finally {
      await server.close();
    }
  });
});
