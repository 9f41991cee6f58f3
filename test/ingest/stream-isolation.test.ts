/**
 * Live streams under abuse: captions followers need the owner's key or a share token; a ping-only
 * client does not hold its slot; a revoked key ends a running stream at the next metering tick; a
 * burst of upgrades cannot overrun MAX_STREAMS.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { loadConfig } from '../../config/config.ts';
import { App } from '../../src/app.ts';
import { MODELS_DIR } from '../helpers/paths.ts';
import { StreamClient } from '../helpers/ws-client.ts';
import { paidKey } from '../helpers/accounts.ts';

const dirs: string[] = [];
async function startApp(env: Record<string, string> = {}): Promise<App> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-iso-'));
  dirs.push(dir);
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', MODELS_DIR, DATA_DIR: dir, DEFAULT_MODEL: 'whisper-mini-random', STREAM_IDLE_TIMEOUT_S: '2', STREAM_MAX_FINAL_WAIT_MS: '0', ANON_DAILY_LIMIT: '1000', ...env });
  return new App(config, { logger: pino({ level: 'silent' }), gpu: { available: false, name: null, memoryMb: null, detail: 'test' } }).start();
}

let app: App;
let url: string;
const CONFIG = { language: 'en', model: 'whisper-mini-random', max_new_tokens: 8 };

beforeAll(async () => {
  app = await startApp();
  url = `ws://127.0.0.1:${app.port}/v1/stream`;
});
afterAll(async () => {
  await app?.close();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

async function ready(c: StreamClient): Promise<string> {
  c.json(CONFIG);
  const r = await c.next((m) => m.status === 'ready' || 'error' in m);
  expect(r).toMatchObject({ status: 'ready' });
  return r.session_id as string;
}

/** Connects and reports the upgrade's outcome: 101, or the HTTP status and JSON body of a refusal. */
function tryConnect(u: string, headers: Record<string, string> = {}): Promise<{ status: number; body?: { error: string }; client?: StreamClient }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(u, { headers });
    const client = new StreamClient(ws);
    client.opened.catch(() => {});
    ws.once('open', () => resolve({ status: 101, client }));
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
    });
    ws.once('error', (err) => reject(err));
  });
}

const silence = (seconds: number) => new Float32Array(Math.round(seconds * 16_000));

describe('captions followers need the owner\'s key or a share token', () => {
  it('refuses followers without credentials (401), with another tenant\'s key (404) or a bad key (401)', async () => {
    const owner = await paidKey(app);
    const other = await paidKey(app);
    const c = await StreamClient.connect(url, { authorization: `Bearer ${owner}` });
    const id = await ready(c);
    const captions = `${url}/${id}/captions`;

    const none = await tryConnect(`${captions}?replay=true`);
    expect(none.status).toBe(401);
    expect(none.body?.error).toMatch(/owner's API key .* or a share token/);
    const stranger = await tryConnect(captions, { authorization: `Bearer ${other}` });
    expect(stranger.status).toBe(404);
    expect(stranger.body?.error).toMatch(/No live session/);
    // The same 404 as for a session that does not exist: ids cannot be probed.
    const missing = await tryConnect(`${url}/00000000-0000-4000-8000-000000000000/captions`, { authorization: `Bearer ${other}` });
    expect(missing.status).toBe(404);
    expect((await tryConnect(captions, { authorization: 'Bearer stt_not_a_key' })).status).toBe(401);
    expect((await tryConnect(`${captions}?share_token=guessed`)).status).toBe(404);

    // The owner's key (header or ?api_key=) follows.
    const own = await tryConnect(`${captions}?api_key=${owner}`);
    expect(own.status).toBe(101);
    own.client!.ws.close();
    c.json({ action: 'stop' });
    await c.next((m) => m.is_final === true);
  });

  it('an anonymous stream shares with a token from {"action":"share"}; the token follows live and in replay', async () => {
    const c = await StreamClient.connect(url);
    const id = await ready(c);
    expect((await tryConnect(`${url}/${id}/captions`, { authorization: `Bearer ${await paidKey(app)}` })).status).toBe(404);
    c.json({ action: 'share' });
    const share = await c.next((m) => 'share_token' in m || 'error' in m);
    expect(share).toMatchObject({ share_token: expect.stringMatching(/^[A-Za-z0-9_-]{32}$/), expires_at: expect.any(String) });
    expect(Date.parse(share.expires_at as string)).toBeGreaterThan(Date.now());
    const live = await tryConnect(`${url}/${id}/captions?share_token=${share.share_token}`);
    expect(live.status).toBe(101);
    c.json({ action: 'stop' });
    await c.next((m) => m.is_final === true);
    await live.client!.next((m) => m.is_final === true);
    // After the end, replay with the token still works; a wrong token still does not.
    const late = await tryConnect(`${url}/${id}/captions?replay=true&share_token=${share.share_token}`);
    expect(late.status).toBe(101);
    await late.client!.next((m) => m.is_final === true);
    expect((await tryConnect(`${url}/${id}/captions?replay=true&share_token=${String(share.share_token).slice(1)}x`)).status).toBe(404);
  });
});

describe('idle timeout counts audio only', () => {
  it('a client that only pings (JSON ping and WebSocket ping frames) is closed by the idle timeout', async () => {
    const c = await StreamClient.connect(url);
    await ready(c);
    const pinger = setInterval(() => {
      if (c.ws.readyState !== WebSocket.OPEN) return;
      c.json({ action: 'ping' });
      c.ws.ping();
    }, 250);
    try {
      // STREAM_IDLE_TIMEOUT_S=2: the close comes after about 2 s; the bound is generous.
      const closed = await Promise.race([c.closed, new Promise<null>((r) => setTimeout(() => r(null), 30_000))]);
      expect(closed).not.toBeNull();
      expect(closed!.code).toBe(1008);
      expect(c.messages.some((m) => m.status === 'pong')).toBe(true);
      expect(c.messages.find((m) => 'error' in m)?.error).toMatch(/no data for 2 s/);
    } finally {
      clearInterval(pinger);
    }
    for (let i = 0; i < 500 && app.streams.active > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(app.streams.active).toBe(0);
  }, 60_000);
});

describe('metering ticks re-check the key', () => {
  it('a stream whose key is revoked mid-stream ends with a clear error and 1008', async () => {
    const key = await paidKey(app);
    const headers = { authorization: `Bearer ${key}` };
    const c = await StreamClient.connect(url, headers);
    await ready(c);
    await c.sendPcm(silence(12), { pace: 8 }); // past the first 10 s metering tick (at 8× real time: the session refuses a flood)
    const keys = (await (await fetch(`http://127.0.0.1:${app.port}/api/v1/keys/`, { headers })).json()) as { results: Array<{ id: string }> };
    expect((await fetch(`http://127.0.0.1:${app.port}/api/v1/keys/${keys.results[0].id}/`, { method: 'DELETE', headers })).status).toBe(204);
    // Keep streaming: a following tick sees the revoked key (bounded: 5 minutes of audio at most).
    for (let i = 0; i < 60 && !c.messages.some((m) => 'error' in m) && c.ws.readyState === WebSocket.OPEN; i++) {
      await c.sendPcm(silence(5), { pace: 8 });
      await new Promise((r) => setTimeout(r, 100));
    }
    const err = await c.next((m) => 'error' in m, 30_000);
    expect(err.error).toMatch(/API key of this stream was revoked/);
    expect((await c.closed).code).toBe(1008);
  }, 120_000);
});

describe('metering ticks re-check the credits', () => {
  it('a paid stream that runs out of credits ends with a clear error and 1008 (not only at the next paid minute)', async () => {
    const account = await app.stores.accounts.create({ email: `one-${Date.now()}@test.local`, plan: 'paid', credits: 1 });
    const { issueKey } = await import('../../src/auth/index.ts');
    const key = (await issueKey(app.stores.accounts, account.id, 't')).key;
    const c = await StreamClient.connect(url, { authorization: `Bearer ${key}` });
    await ready(c);
    // One credit pays the first minute; the stream must end before it goes on unpaid (bounded: 5 minutes of audio).
    for (let i = 0; i < 60 && !c.messages.some((m) => 'error' in m) && c.ws.readyState === WebSocket.OPEN; i++) {
      await c.sendPcm(silence(5), { pace: 8 });
      await new Promise((r) => setTimeout(r, 100));
    }
    const err = await c.next((m) => 'error' in m, 30_000);
    expect(err.error).toMatch(/credits/i);
    expect((await c.closed).code).toBe(1008);
    expect((await app.stores.accounts.get(account.id))!.credits).toBe(0);
  }, 120_000);
});

describe('MAX_STREAMS under a burst', () => {
  it('50 upgrades at once against MAX_STREAMS=20: exactly 20 open, 30 get 503 with the JSON error; after they close, new ones are admitted', async () => {
    const small = await startApp({ MAX_STREAMS: '20', STREAM_IDLE_TIMEOUT_S: '60' });
    try {
      const u = `ws://127.0.0.1:${small.port}/v1/stream`;
      // Ten paid accounts of five concurrent streams each: the tier limit is not what refuses.
      const keys = await Promise.all(Array.from({ length: 10 }, () => paidKey(small)));
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => tryConnect(u, { authorization: `Bearer ${keys[i % 10]}` })));
      const opened = results.filter((r) => r.status === 101);
      const refused = results.filter((r) => r.status !== 101);
      expect(opened.length).toBe(20);
      expect(refused.length).toBe(30);
      for (const r of refused) {
        expect(r.status).toBe(503);
        expect(r.body?.error).toMatch(/Too many live streams \(limit 20\)/);
      }
      await Promise.all(opened.map((r) => ready(r.client!)));
      expect(small.streams.active).toBe(20);
      for (const r of opened) r.client!.ws.close();
      await Promise.all(opened.map((r) => r.client!.closed));
      for (let i = 0; i < 500 && small.streams.active > 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(small.streams.active).toBe(0);
      const again = await Promise.all(Array.from({ length: 20 }, (_, i) => tryConnect(u, { authorization: `Bearer ${keys[i % 10]}` })));
      expect(again.map((r) => r.status)).toEqual(Array(20).fill(101));
      await Promise.all(again.map((r) => ready(r.client!)));
      for (const r of again) r.client!.ws.close();
    } finally {
      await small.close();
    }
  }, 180_000);
});
