/**
 * WebRTC ingest over real UDP/DTLS/SCTP on 127.0.0.1 with a werift client (no browser): WHIP
 * signalling, Opus audio → finals on the data channel and on the bus (captions followers), stop,
 * DELETE, disconnects, errors. Pure parts (config, RTP timeline, announced IP) at the top.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { StreamClient } from '../helpers/ws-client.ts';
import { readWav } from '../../src/audio/pcm.ts';
import { OpusDecoder, OpusEncoder, opusAvailability } from '../../src/ingest/opus-decoder.ts';
import { announceIp } from '../../src/ingest/webrtc.ts';
import { WebRtcConfigError, webrtcConfigFromEnv } from '../../config/webrtc.ts';
import { RtpAudioTimeline, seqDelta } from '../../src/ingest/webrtc-rtp.ts';
import { TEXTS, concatWithGaps, hasAudioTools, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { WHISPER_FIXTURE } from '../helpers/paths.ts';
import { startTestServer, type TestServer } from '../e2e/test-server.ts';
import { WebRtcTestClient } from '../e2e/webrtc-client.ts';
import { paidKey } from '../helpers/accounts.ts';

describe('webrtcConfigFromEnv', () => {
  it('defaults: no ICE servers (no external STUN), any port, no announced IP', () => {
    expect(webrtcConfigFromEnv({})).toEqual({ iceServers: [], portRange: undefined, announcedIp: undefined });
    expect(webrtcConfigFromEnv({ WEBRTC_ICE_SERVERS: '', WEBRTC_PORT_MIN: '', WEBRTC_ANNOUNCED_IP: '' })).toEqual({ iceServers: [], portRange: undefined, announcedIp: undefined });
  });

  it('parses ICE servers, the port range and the announced IP', () => {
    const c = webrtcConfigFromEnv({
      WEBRTC_ICE_SERVERS: '[{"urls":"stun:stun.example.org:3478"},{"urls":["turn:turn.example.org:3478?transport=udp"],"username":"u","credential":"p"}]',
      WEBRTC_PORT_MIN: '40000',
      WEBRTC_PORT_MAX: '40100',
      WEBRTC_ANNOUNCED_IP: '203.0.113.7',
    });
    expect(c.iceServers).toHaveLength(2);
    expect(c.iceServers[1]).toMatchObject({ username: 'u', credential: 'p' });
    expect(c.portRange).toEqual([40000, 40100]);
    expect(c.announcedIp).toBe('203.0.113.7');
  });

  it('names the variable and the fix', () => {
    const bad = (env: Record<string, string>, re: RegExp) => {
      let err: unknown;
      try {
        webrtcConfigFromEnv(env);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(WebRtcConfigError);
      expect((err as WebRtcConfigError).problems).toHaveLength(1);
      expect((err as Error).message).toMatch(re);
    };
    bad({ WEBRTC_ICE_SERVERS: '{nope' }, /WEBRTC_ICE_SERVERS=.*expected a JSON array/);
    bad({ WEBRTC_ICE_SERVERS: '[{"urls":"http://x"}]' }, /WEBRTC_ICE_SERVERS=.*entry 0\.urls: urls must be stun:/);
    bad({ WEBRTC_ICE_SERVERS: '[{"urls":"turn:t.example.org"}]' }, /needs "username" and "credential"/);
    bad({ WEBRTC_PORT_MIN: '40000' }, /WEBRTC_PORT_MAX=undefined: set both/);
    bad({ WEBRTC_PORT_MIN: '40100', WEBRTC_PORT_MAX: '40000' }, /WEBRTC_PORT_MAX="40000": must be greater than WEBRTC_PORT_MIN/);
    bad({ WEBRTC_PORT_MIN: 'x', WEBRTC_PORT_MAX: '2' }, /WEBRTC_PORT_MIN="x": expected a number/);
    bad({ WEBRTC_ANNOUNCED_IP: 'my.host' }, /WEBRTC_ANNOUNCED_IP="my.host": expected an IPv4 or IPv6 address/);
  });
});

describe('RtpAudioTimeline', () => {
  const p = (sequenceNumber: number, timestamp: number) => ({ sequenceNumber, timestamp, payload: new Uint8Array([1]) });

  it('plays in-order packets without gaps, drops duplicates and late packets', () => {
    const t = new RtpAudioTimeline();
    expect(t.push(p(10, 1000))).toMatchObject({ kind: 'play', gapSamples: 0 });
    t.played(960);
    expect(t.push(p(11, 1960))).toMatchObject({ kind: 'play', gapSamples: 0 });
    t.played(960);
    expect(t.push(p(11, 1960))).toEqual({ kind: 'drop', reason: 'duplicate' });
    expect(t.push(p(9, 40))).toEqual({ kind: 'drop', reason: 'late' });
    expect(t.push({ ...p(12, 2920), payload: new Uint8Array() })).toEqual({ kind: 'drop', reason: 'empty' });
  });

  it('turns lost packets and DTX into silence of the right length (capped), across wrap-around', () => {
    const t = new RtpAudioTimeline(48_000);
    t.push(p(65534, 4294966000));
    t.played(960);
    // Two packets lost; sequence and timestamp both wrap.
    const s = t.push(p(1, (4294966000 + 3 * 960) >>> 0));
    expect(s).toMatchObject({ kind: 'play', gapSamples: 1920 });
    expect(t.stats.lost).toBe(2);
    t.played(960);
    // 10 s of DTX: capped at 1 s.
    expect(t.push(p(2, (4294966000 + 4 * 960 + 480_000) >>> 0))).toMatchObject({ gapSamples: 48_000 });
    expect(seqDelta(0, 65535)).toBe(1);
    expect(seqDelta(65535, 0)).toBe(-1);
  });
});

describe('announceIp', () => {
  it('rewrites host candidates (one per port) and the connection line', () => {
    const sdp = [
      'v=0',
      'm=audio 9 UDP/TLS/RTP/SAVPF 111',
      'c=IN IP4 0.0.0.0',
      'a=candidate:1 1 udp 2130706431 10.0.0.5 50000 typ host',
      'a=candidate:2 1 udp 2130706431 127.0.0.1 50000 typ host',
      'a=candidate:3 1 udp 1694498815 198.51.100.1 50000 typ srflx raddr 10.0.0.5 rport 50000',
      '',
    ].join('\r\n');
    const out = announceIp(sdp, '203.0.113.7');
    expect(out).toContain('a=candidate:1 1 udp 2130706431 203.0.113.7 50000 typ host');
    expect(out).not.toContain('10.0.0.5 50000 typ host');
    expect(out).not.toContain('127.0.0.1');
    expect(out).toContain('typ srflx');
    expect(out).toContain('c=IN IP4 203.0.113.7');
  });
});

const opus = opusAvailability();
const tools = await hasAudioTools();
const canRun = opus.ok && tools && fs.existsSync(WHISPER_FIXTURE);

describe.skipIf(!opus.ok)('Opus codec (@discordjs/opus)', () => {
  it('round-trips 20 ms frames at 48 kHz', () => {
    const enc = new OpusEncoder();
    const dec = new OpusDecoder();
    const frame = new Float32Array(960).map((_, i) => 0.3 * Math.sin((2 * Math.PI * 440 * i) / 48000));
    let out: Float32Array = new Float32Array(0);
    for (let k = 0; k < 5; k++) out = dec.decode(enc.encode(frame));
    expect(out.length).toBe(960);
    let energy = 0;
    for (const x of out) energy += x * x;
    expect(Math.sqrt(energy / out.length)).toBeGreaterThan(0.1);
  });
});

describe.skipIf(!canRun)(
  `WebRTC ingest (POST /v1/webrtc)${canRun ? '' : ` — skipped: ${!opus.ok ? opus.reason : !tools ? 'needs espeak-ng, sox, ffmpeg' : 'needs the whisper-mini-random fixture (MODELS_DIR)'}`}`,
  () => {
    let srv: TestServer;
    let dialogue: { pcm: Float32Array; spans: Array<[number, number]> };
    const Q = { language: 'en', max_new_tokens: 6 };

    beforeAll(async () => {
      srv = await startTestServer({ STREAM_IDLE_TIMEOUT_S: '3' });
      const a = await makeSpeechWav(TEXTS.hello, { sampleRate: 48000 });
      const b = await makeSpeechWav(TEXTS.second, { sampleRate: 48000 });
      const joined = await concatWithGaps([a.path, b.path], 1.5, { padStartS: 0.5, padEndS: 1 });
      const wav = readWav(fs.readFileSync(joined.path));
      expect(wav.sampleRate).toBe(48000);
      dialogue = { pcm: wav.samples, spans: joined.spans as Array<[number, number]> };
    });
    afterAll(async () => {
      await srv?.close();
    });

    it('GET /v1/webrtc: no ICE servers by default, available', async () => {
      const r = await fetch(`${srv.url}/v1/webrtc`);
      expect(await r.json()).toEqual({ ice_servers: [], available: true });
    });

    it('offer → 201 answer + Location → ready → Opus audio → finals (data channel and captions follower) → stop → is_final → DELETE', async () => {
      const c = new WebRtcTestClient();
      try {
        const res = await c.connect(srv.url, Q);
        expect(res.status).toBe(201);
        expect(res.headers.get('content-type')).toBe('application/sdp');
        expect(res.headers.get('location')).toMatch(/^\/v1\/webrtc\/[0-9a-f-]{36}$/);
        expect(res.headers.get('access-control-expose-headers')).toMatch(/location/);
        const answer = await res.text();
        expect(answer).toMatch(/^v=0/);
        expect(answer).toMatch(/a=candidate:.* 127\.0\.0\.1 /);
        const ready = await c.next((m) => m.status === 'ready');
        expect(ready.session_id).toBe(c.sessionId);
        // Captions of a WebRTC session are not open to anyone holding its id: without credentials the
        // follower is told {"error"} and closed with 1008 (the HTTP 401 with ?refuse=http)…
        const refused = await StreamClient.connect(`ws://127.0.0.1:${srv.port}/v1/stream/${c.sessionId}/captions`);
        expect(await refused.closed).toMatchObject({ code: 1008 });
        expect(refused.messages).toEqual([{ error: expect.stringMatching(/share token/) }]);
        // …but with a share token asked for on the data channel, a follower on the bus sees the same results.
        c.send({ action: 'share' });
        const share = await c.next((m) => 'share_token' in m);
        expect(share.expires_at).toEqual(expect.any(String));
        const follower = new WebSocket(`ws://127.0.0.1:${srv.port}/v1/stream/${c.sessionId}/captions?share_token=${share.share_token}`);
        const followed: Array<Record<string, unknown>> = [];
        follower.on('message', (d) => followed.push(JSON.parse(d.toString())));
        await new Promise((r) => follower.once('open', r));
        expect(srv.webrtc.active).toBe(1);

        // Real time, as a browser sends: faster pacing can overflow UDP buffers on a loaded machine.
        await c.sendPcm48k(dialogue.pcm, { pace: 1 });
        c.send({ action: 'stop' });
        await c.next((m) => m.is_final === true);
        const finals = c.finals();
        expect(finals.map((f) => [f.start, f.end])).toHaveLength(2);
        for (const [k, f] of finals.entries()) {
          const [s, e] = dialogue.spans[k];
          expect(Math.abs((f.start as number) - s)).toBeLessThan(0.4);
          expect(Math.abs((f.end as number) - e)).toBeLessThan(0.7);
          expect((f.text as string).length).toBeGreaterThan(0);
        }
        expect(c.messages.findIndex((m) => m.is_final)).toBe(c.messages.length - 1);
        for (let i = 0; i < 50 && !followed.some((m) => m.is_final); i++) await new Promise((r) => setTimeout(r, 20));
        expect(followed.filter((m) => typeof m.text === 'string').map((m) => m.text)).toEqual(finals.map((f) => f.text));

        const del = await fetch(`${srv.url}${c.location}`, { method: 'DELETE' });
        expect(del.status).toBe(200);
        expect(srv.webrtc.active).toBe(0);
        expect((await fetch(`${srv.url}${c.location}`, { method: 'DELETE' })).status).toBe(404);
        follower.close();
      } finally {
        await c.close();
      }
    });

    it('model=moonshine-mini-random: ready names it (proportional word times), one final per utterance', async () => {
      const c = new WebRtcTestClient();
      try {
        expect((await c.connect(srv.url, { ...Q, model: 'moonshine-mini-random' })).status).toBe(201);
        expect(await c.next((m) => m.status === 'ready')).toMatchObject({ model: 'moonshine-mini-random', word_timestamps: 'proportional' });
        await c.sendPcm48k(dialogue.pcm, { pace: 1 });
        c.send({ action: 'stop' });
        await c.next((m) => m.is_final === true);
        const finals = c.finals();
        expect(finals).toHaveLength(2);
        for (const [k, f] of finals.entries()) {
          expect(Math.abs((f.start as number) - dialogue.spans[k][0])).toBeLessThan(0.4);
          expect((f.text as string).length).toBeGreaterThan(0);
        }
      } finally {
        await c.close();
      }
    });

    it('keeps time through packet loss (lost 20 ms become silence, not a shift)', async () => {
      const c = new WebRtcTestClient();
      try {
        expect((await c.connect(srv.url, Q)).status).toBe(201);
        await c.next((m) => m.status === 'ready');
        await c.sendPcm48k(dialogue.pcm, { pace: 1.5, skipEvery: 10 });
        // DELETE flushes too: the answer comes after the last finals went out.
        const del = await fetch(`${srv.url}${c.location}`, { method: 'DELETE' });
        expect(del.status).toBe(200);
        await c.next((m) => m.is_final === true, 5000);
        const finals = c.finals();
        expect(finals.length).toBe(2);
        expect(Math.abs((finals[1].start as number) - dialogue.spans[1][0])).toBeLessThan(0.4);
      } finally {
        await c.close();
      }
    });

    it('frees the session when the client goes away, and says so in the metrics', async () => {
      const c = new WebRtcTestClient();
      expect((await c.connect(srv.url, Q)).status).toBe(201);
      await c.next((m) => m.status === 'ready');
      await c.sendPcm48k(dialogue.pcm.subarray(0, 48000), { pace: 4 });
      expect(srv.webrtc.active).toBe(1);
      await c.close();
      // werift notices the DTLS close at once, or the idle timeout (3 s) does.
      for (let i = 0; i < 100 && srv.webrtc.sessions().length > 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(srv.webrtc.sessions()).toEqual([]);
      const metrics = await (await fetch(`${srv.url}/metrics`)).text();
      expect(metrics).toMatch(/stt_active_streams\{transport="webrtc"\} 0/);
    });

    it('only the owner may end a session: another key or no key gets 404, a bad key 401', async () => {
      const owner = await paidKey(srv.app);
      const other = await paidKey(srv.app);
      const c = new WebRtcTestClient();
      try {
        expect((await c.connect(srv.url, { ...Q, api_key: owner })).status).toBe(201);
        await c.next((m) => m.status === 'ready');
        const del = (headers: Record<string, string>) => fetch(`${srv.url}${c.location}`, { method: 'DELETE', headers });
        expect((await del({ authorization: `Bearer ${other}` })).status).toBe(404);
        expect((await del({})).status).toBe(404); // same address, but the session is the account's
        expect((await del({ authorization: 'Bearer stt_not_a_key' })).status).toBe(401);
        expect(srv.webrtc.active).toBe(1);
        expect((await del({ authorization: `Bearer ${owner}` })).status).toBe(200);
        expect(srv.webrtc.active).toBe(0);
      } finally {
        await c.close();
      }
    });

    it('admission: a server that requires API keys answers 401 before any WebRTC work', async () => {
      const locked = await startTestServer({ ANON_DAILY_LIMIT: '0' });
      try {
        const c = new WebRtcTestClient();
        const r = await fetch(`${locked.url}/v1/webrtc?language=en`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: await c.offer() });
        expect(r.status).toBe(401);
        expect(((await r.json()) as { error: string }).error).toMatch(/API key required/);
        expect(locked.webrtc.sessions()).toEqual([]);
        await c.close();
      } finally {
        await locked.close();
      }
    });

    it('admission: 503 with Retry-After and the reason while finals are late (STREAM_MAX_FINAL_WAIT_MS)', async () => {
      const busy = await startTestServer({ STREAM_MAX_FINAL_WAIT_MS: '100', MAX_BATCH_SIZE: '1' });
      const c = new WebRtcTestClient();
      try {
        const model = await busy.app.speechModels.get('whisper-mini-random');
        const window = new Float32Array(16_000 * 3);
        const backlog = Array.from({ length: 8 }, (_, i) => model.scheduler.submit({ audio: window, options: { language: 'en', maxNewTokens: 8 } }, { priority: 'final', key: `load-${i}` }));
        await new Promise((r) => setTimeout(r, 300));
        const r = await fetch(`${busy.url}/v1/webrtc?language=en`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: await c.offer() });
        expect(r.status).toBe(503);
        expect(r.headers.get('retry-after')).toBe('5');
        expect(((await r.json()) as { error: string }).error).toMatch(/Server at capacity: live results of model 'whisper-mini-random' are [\d.]+ s behind/);
        expect(busy.webrtc.sessions()).toEqual([]);
        await Promise.all(backlog);
      } finally {
        await c.close();
        await busy.close();
      }
    });

    it('errors: content type 415, not SDP 400, no data channel 400, bad options 400, model not installed 503, unknown session 404', async () => {
      const post = (body: string, type = 'application/sdp', qs = '') => fetch(`${srv.url}/v1/webrtc${qs}`, { method: 'POST', headers: { 'content-type': type }, body });
      let r = await post('{}', 'application/json');
      expect(r.status).toBe(415);
      expect(((await r.json()) as { error: string }).error).toMatch(/Content-Type: application\/sdp/);
      r = await post('hello');
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error: string }).error).toMatch(/not an SDP offer/);
      const noDc = new WebRtcTestClient({ dataChannel: false });
      r = await post(await noDc.offer());
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error: string }).error).toMatch(/no data channel/);
      await noDc.close();
      const c = new WebRtcTestClient();
      const offer = await c.offer();
      r = await post(offer, 'application/sdp', '?language=xx');
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error: string }).error).toMatch(/^language: /);
      r = await post(offer, 'application/sdp', '?max_new_tokens=0');
      expect(((await r.json()) as { error: string }).error).toMatch(/max_new_tokens/);
      r = await post(offer, 'application/sdp', '?model=small');
      expect(r.status).toBe(503);
      expect(((await r.json()) as { error: string }).error).toMatch(/npm run models:pull -- small/);
      await c.close();
      expect(srv.webrtc.sessions()).toEqual([]);
      r = await fetch(`${srv.url}/v1/webrtc/nope`, { method: 'DELETE' });
      expect(r.status).toBe(404);
      r = await fetch(`${srv.url}/v1/webrtc/nope`, { method: 'PATCH' });
      expect(r.status).toBe(405);
      expect(((await r.json()) as { error: string }).error).toMatch(/Trickle ICE is not supported/);
    });
  },
);
