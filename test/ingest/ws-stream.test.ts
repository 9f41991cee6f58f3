import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { loadConfig } from '../../config/config.ts';
import { App } from '../../src/app.ts';
import { decodeToPcm16k } from '../../src/audio/ffmpeg.ts';
import { TEXTS, concatWithGaps, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { liveTestEnv } from '../helpers/live-env.ts';
import { StreamClient, stableNeverShrinks } from '../helpers/ws-client.ts';
import { paidKey } from '../helpers/accounts.ts';
import { startNatsServer, type TestNatsServer } from '../bus/nats-server.ts';

const dirs: string[] = [];
async function startApp(env: Record<string, string> = {}): Promise<App> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-ws-'));
  dirs.push(dir);
  const config = loadConfig(liveTestEnv(dir, { ...env }));
  return new App(config, { logger: pino({ level: 'silent' }), gpu: { available: false, name: null, memoryMb: null, detail: 'test' } }).start();
}

let app: App;
let url: string;
let key: string;
/** Streams of the main app authenticate as a paid account (anonymous callers get one stream at a time). */
const connect = (u: string = url) => StreamClient.connect(u, { authorization: `Bearer ${key}` });
let dialogue: { pcm: Float32Array; spans: Array<[number, number]> };
let single: Float32Array;
const CONFIG = { language: 'en', model: 'whisper-mini-random', max_new_tokens: 8 };

beforeAll(async () => {
  app = await startApp();
  url = `ws://127.0.0.1:${app.port}/v1/stream`;
  key = await paidKey(app);
  const a = await makeSpeechWav(TEXTS.hello);
  const b = await makeSpeechWav(TEXTS.second);
  const joined = await concatWithGaps([a.path, b.path], 2, { padStartS: 0.5, padEndS: 1.5 });
  dialogue = { pcm: await decodeToPcm16k(joined.path), spans: joined.spans as Array<[number, number]> };
  single = await decodeToPcm16k(a.path);
});
afterAll(async () => {
  await app?.close();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

async function ready(c: StreamClient, config: Record<string, unknown> = CONFIG): Promise<string> {
  c.json(config);
  const r = await c.next((m) => m.status === 'ready' || 'error' in m);
  expect(r).toMatchObject({ status: 'ready' });
  return r.session_id as string;
}

describe('WS /v1/stream protocol', () => {
  it('config → ready → PCM → finals per utterance → stop → is_final → close 1000', async () => {
    const c = await connect();
    const id = await ready(c);
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    await c.sendPcm(dialogue.pcm, { frameMs: 100, pace: 8 });
    c.json({ action: 'stop' });
    await c.next((m) => m.is_final === true);
    expect(await c.closed).toMatchObject({ code: 1000 });
    const finals = c.finals();
    expect(finals.length).toBe(2);
    for (const [k, f] of finals.entries()) {
      const [s, e] = dialogue.spans[k];
      expect(Math.abs((f.start as number) - s)).toBeLessThan(0.35);
      expect(Math.abs((f.end as number) - e)).toBeLessThan(0.6);
      expect((f.text as string).length).toBeGreaterThan(0);
      expect((f.words as unknown[]).length).toBeGreaterThan(0);
    }
    // Every final comes before is_final.
    expect(c.messages.findIndex((m) => m.is_final)).toBe(c.messages.length - 1);
  });

  it('sends stabilised partials while speech goes on (real-time pace)', async () => {
    const c = await connect();
    await ready(c, { ...CONFIG, partial_interval_ms: 200 });
    await c.sendPcm(single, { frameMs: 100, pace: 1 });
    c.json({ action: 'stop' });
    await c.next((m) => m.is_final === true);
    const stable = c.stablePrefixes();
    expect(stable.length).toBeGreaterThan(0);
    expect(stableNeverShrinks(stable)).toBe(true);
    expect(c.messages.findIndex((m) => 'partial' in m)).toBeLessThan(c.messages.findIndex((m) => typeof m.text === 'string'));
  });

  it('stop flushes the last words when audio ends mid-utterance', async () => {
    const c = await connect();
    await ready(c);
    await c.sendPcm(single.subarray(0, Math.round(single.length * 0.8)));
    c.json({ action: 'stop' });
    await c.next((m) => m.is_final === true);
    expect(c.finals().length).toBe(1);
  });

  it('accepts 48 kHz audio when the config says so (resampled)', async () => {
    const c = await connect();
    await ready(c, { ...CONFIG, sample_rate: 48000 });
    const up = new Float32Array(single.length * 3);
    for (let i = 0; i < up.length; i++) up[i] = single[Math.floor(i / 3)];
    // 48 kHz samples, sent as if they were 16 kHz frames of 3× the count.
    await c.sendPcm(up);
    c.json({ action: 'stop' });
    await c.next((m) => m.is_final === true);
    const [f] = c.finals();
    expect(f.end as number).toBeCloseTo(single.length / 16000, 0);
  });

  it('serves several streams at once', async () => {
    const clients = await Promise.all([0, 1, 2, 3].map(() => connect()));
    await Promise.all(clients.map((c) => ready(c)));
    await Promise.all(
      clients.map(async (c) => {
        await c.sendPcm(dialogue.pcm, { pace: 8 });
        c.json({ action: 'stop' });
      }),
    );
    await Promise.all(clients.map((c) => c.next((m) => m.is_final === true)));
    for (const c of clients) expect(c.finals().length).toBe(2);
  });

  it('frees a stream at once when the client disconnects mid-utterance', async () => {
    const c = await connect();
    await ready(c);
    await c.sendPcm(single.subarray(0, single.length / 2));
    expect(app.streams.active).toBeGreaterThanOrEqual(1);
    c.ws.terminate();
    for (let i = 0; i < 50 && app.streams.active > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(app.streams.active).toBe(0);
    const metrics = await (await fetch(`http://127.0.0.1:${app.port}/metrics`)).text();
    expect(metrics).toMatch(/stt_active_streams\{transport="websocket"\} 0/);
    // The server is fine: the next stream works.
    const d = await connect();
    await ready(d);
    d.json({ action: 'stop' });
    await d.next((m) => m.is_final === true);
  });
});

describe('WS /v1/stream errors', () => {
  const expectError = async (c: StreamClient, pattern: RegExp, code: number) => {
    const e = await c.next((m) => 'error' in m);
    expect(e.error).toMatch(pattern);
    expect((await c.closed).code).toBe(code);
  };

  it('audio before the config → 1003', async () => {
    const c = await connect();
    c.ws.send(Buffer.alloc(320));
    await expectError(c, /expected the JSON config message first/, 1003);
  });

  it('bad config: not JSON, unknown language, bad sample rate → 1007 naming the field', async () => {
    let c = await connect();
    c.ws.send('{nope');
    await expectError(c, /not valid JSON/, 1007);
    c = await connect();
    c.json({ ...CONFIG, language: 'xx' });
    await expectError(c, /^language: /, 1007);
    c = await connect();
    c.json({ ...CONFIG, sample_rate: 96000 });
    await expectError(c, /^sample_rate: /, 1007);
  });

  it('a model that is not installed → error with the pull command, 1013 (what a REST call gets 503 for)', async () => {
    const c = await connect();
    c.json({ ...CONFIG, model: 'small' });
    await expectError(c, /npm run models:pull -- small/, 1013);
  });

  it('odd byte counts → 1007, oversized frames → 1009, text instead of audio → 1003', async () => {
    let c = await connect();
    await ready(c);
    c.ws.send(Buffer.alloc(321));
    await expectError(c, /odd byte count/, 1007);
    c = await connect();
    await ready(c);
    c.ws.send(Buffer.alloc(300 * 1024));
    await expectError(c, /exceeds the limit/, 1009);
    c = await connect();
    await ready(c);
    c.ws.send('hello there');
    await expectError(c, /control messages are \{"action":"stop"\}/, 1003);
  });

  it('idle streams are closed with a message (1008)', async () => {
    // Its own server with a 2 s idle timeout: the main one waits 60 s, so that streams of a busy
    // machine that become ready one after another are not closed while they wait for each other.
    const quick = await startApp({ STREAM_IDLE_TIMEOUT_S: '2' });
    try {
      const c = await StreamClient.connect(`ws://127.0.0.1:${quick.port}/v1/stream`);
      await ready(c);
      await expectError(c, /no audio for 2 s/, 1008);
    } finally {
      await quick.close();
    }
  });

  it('refuses streams over MAX_STREAMS: the upgrade is accepted, {"error"} sent, closed 1013 (HTTP 503 with ?refuse=http)', async () => {
    const small = await startApp({ MAX_STREAMS: '1' });
    try {
      const u = `ws://127.0.0.1:${small.port}/v1/stream`;
      const first = await StreamClient.connect(u);
      const refused = await StreamClient.connect(u);
      expect(await refused.closed).toMatchObject({ code: 1013 });
      expect(refused.messages).toEqual([{ error: 'Too many live streams (limit 1); retry later.' }]);
      await expect(StreamClient.connect(`${u}?refuse=http`)).rejects.toThrow(/HTTP 503/);
      // The refused sockets never counted: the first stream still works and is the only one.
      expect(small.streams.active).toBe(1);
      await ready(first);
      first.ws.close();
    } finally {
      await small.close();
    }
  });

  it('refuses new streams with 1013 while finals are late (STREAM_MAX_FINAL_WAIT_MS); a running stream keeps its finals', async () => {
    const busy = await startApp({ STREAM_MAX_FINAL_WAIT_MS: '100', MAX_BATCH_SIZE: '1', ANON_DAILY_LIMIT: '100' });
    try {
      const u = `ws://127.0.0.1:${busy.port}/v1/stream`;
      const k = await paidKey(busy);
      const running = await StreamClient.connect(u, { authorization: `Bearer ${k}` });
      await ready(running);
      // A backlog of finals on the model's scheduler, one per model call.
      const model = await busy.speechModels.get('whisper-mini-random');
      const window = single.subarray(0, 16_000 * 3);
      const backlog = Array.from({ length: 8 }, (_, i) => model.scheduler.submit({ audio: window, options: { language: 'en', maxNewTokens: 8 } }, { priority: 'final', key: `load-${i}` }));
      await new Promise((r) => setTimeout(r, 300));
      expect(model.scheduler.finalWaitMs()).toBeGreaterThan(100);
      const refused = await StreamClient.connect(u, { authorization: `Bearer ${k}` });
      refused.json(CONFIG);
      const err = await refused.next((m) => 'error' in m || m.status === 'ready');
      expect(err.error).toMatch(/Server at capacity: live results of model 'whisper-mini-random' are [\d.]+ s behind \(limit 0\.1 s\)/);
      expect((await refused.closed).code).toBe(1013);
      const metrics = await (await fetch(`http://127.0.0.1:${busy.port}/metrics`)).text();
      expect(metrics).toMatch(/stt_streams_refused_total\{transport="websocket",reason="capacity"\} 1/);
      // The stream admitted before the overload still gets its final.
      await running.sendPcm(single, { pace: 8 });
      running.json({ action: 'stop' });
      await running.next((m) => m.is_final === true);
      expect(running.finals().length).toBe(1);
      await Promise.all(backlog);
      // Its lateness was measured (arrival of the audio that ended the utterance → final sent).
      const after = await (await fetch(`http://127.0.0.1:${busy.port}/metrics`)).text();
      expect(Number(after.match(/stt_final_lag_seconds_count\{model="whisper-mini-random"\} (\d+)/)?.[1])).toBe(1);
    } finally {
      await busy.close();
    }
  });

  it('shutdown flushes live streams: finals, is_final, close 1001', async () => {
    const other = await startApp();
    const c = await StreamClient.connect(`ws://127.0.0.1:${other.port}/v1/stream`);
    await ready(c);
    await c.sendPcm(single);
    await new Promise((r) => setTimeout(r, 300)); // let the audio reach the server
    await other.close();
    expect((await c.closed).code).toBe(1001);
    expect(c.finals().length).toBe(1);
    expect(c.messages.at(-1)).toEqual({ is_final: true });
  });
});

describe('WS /v1/stream accounts', () => {
  it('refuses a bad key with {"error"} and close 1008 (HTTP 401 with ?refuse=http) and accepts ?api_key= for browsers', async () => {
    const refused = await StreamClient.connect(url, { authorization: 'Bearer stt_nope' });
    expect(await refused.closed).toMatchObject({ code: 1008 });
    expect(refused.messages).toEqual([{ error: expect.stringMatching(/API key/i) }]);
    await expect(StreamClient.connect(`${url}?refuse=http`, { authorization: 'Bearer stt_nope' })).rejects.toThrow(/HTTP 401/);
    const c = await StreamClient.connect(`${url}?api_key=${key}`);
    await ready(c);
    c.json({ action: 'stop' });
    await c.next((m) => m.is_final === true);
  });

  it('saves the stream as a transcript of its owner', async () => {
    const own = await paidKey(app);
    const c = await StreamClient.connect(url, { authorization: `Bearer ${own}` });
    await ready(c);
    await c.sendPcm(dialogue.pcm, { pace: 8 });
    c.json({ action: 'stop' });
    await c.next((m) => m.is_final === true);
    let list: { count: number; results: Array<{ id: string }> } = { count: 0, results: [] };
    for (let i = 0; i < 50 && list.count === 0; i++) {
      list = await (await fetch(`http://127.0.0.1:${app.port}/api/v1/transcripts/`, { headers: { authorization: `Bearer ${own}` } })).json();
      if (!list.count) await new Promise((r) => setTimeout(r, 50));
    }
    expect(list.count).toBe(1);
    const t = await (await fetch(`http://127.0.0.1:${app.port}/api/v1/transcripts/${list.results[0].id}/`, { headers: { authorization: `Bearer ${own}` } })).json();
    expect(t.source).toBe('stream');
    expect(t.segments.map((s: { text: string }) => s.text)).toEqual(c.finals().map((f) => f.text));
  });
});

describe('captions followers (bus fan-out)', () => {
  it('a follower of /v1/stream/:id/captions sees the same finals; replay=true gets them afterwards', async () => {
    const c = await connect();
    const id = await ready(c);
    const follower = await connect(`${url}/${id}/captions`);
    await new Promise((r) => setTimeout(r, 100));
    await c.sendPcm(dialogue.pcm, { pace: 8 });
    c.json({ action: 'stop' });
    await c.next((m) => m.is_final === true);
    await follower.next((m) => m.is_final === true);
    expect(follower.finals()).toEqual(c.finals());
    const late = await connect(`${url}/${id}/captions?replay=true`);
    await late.next((m) => m.is_final === true);
    expect(late.finals()).toEqual(c.finals());
  });

  it('over NATS: a follower on a second server sees a stream on the first', async () => {
    let nats: TestNatsServer | null = null;
    try {
      nats = await startNatsServer();
      const a = await startApp({ NATS_URL: nats.url });
      const b = await startApp({ NATS_URL: nats.url });
      try {
        const c = await StreamClient.connect(`ws://127.0.0.1:${a.port}/v1/stream`);
        const id = await ready(c);
        // An anonymous stream is followed with a share token, on any server of the cluster.
        c.json({ action: 'share' });
        const token = (await c.next((m) => 'share_token' in m)).share_token as string;
        const refused = await StreamClient.connect(`ws://127.0.0.1:${b.port}/v1/stream/${id}/captions`);
        expect(await refused.closed).toMatchObject({ code: 1008 });
        expect(refused.messages).toEqual([{ error: expect.stringMatching(/share token/) }]);
        const follower = await StreamClient.connect(`ws://127.0.0.1:${b.port}/v1/stream/${id}/captions?share_token=${token}`);
        await new Promise((r) => setTimeout(r, 300));
        await c.sendPcm(dialogue.pcm, { pace: 8 });
        c.json({ action: 'stop' });
        await c.next((m) => m.is_final === true);
        await follower.next((m) => m.is_final === true);
        expect(follower.finals()).toEqual(c.finals());
        expect(follower.finals().length).toBe(2);
        // JetStream keeps the session: a late follower on server B replays it from the start.
        const late = await StreamClient.connect(`ws://127.0.0.1:${b.port}/v1/stream/${id}/captions?replay=1&share_token=${token}`);
        await late.next((m) => m.is_final === true);
        expect(late.finals()).toEqual(c.finals());
      } finally {
        await a.close();
        await b.close();
      }
    } finally {
      await nats?.stop();
    }
  });
});
