/**
 * Live captions on Moonshine over WS /v1/stream (real server, fixture `moonshine-mini-random`, espeak-ng speech):
 * `ready` names the model and says word times are proportional; partials while speech goes on; one final per
 * utterance with its words inside it; a language the model lacks is refused like an unknown one.
 */
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

const MODEL = 'moonshine-mini-random';
const CONFIG = { language: 'en', model: MODEL, max_new_tokens: 8 };

let app: App;
let url: string;
let key: string;
let dataDir: string;
let dialogue: { pcm: Float32Array; spans: Array<[number, number]> };
let single: Float32Array;
const connect = () => StreamClient.connect(url, { authorization: `Bearer ${key}` });

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-ws-moonshine-'));
  // DEFAULT_MODEL stays Whisper: Moonshine is chosen per stream by `model`.
  const config = loadConfig(liveTestEnv(dataDir));
  app = await new App(config, { logger: pino({ level: 'silent' }), gpu: { available: false, name: null, memoryMb: null, detail: 'test' } }).start();
  url = `ws://127.0.0.1:${app.port}/v1/stream`;
  key = await paidKey(app);
  const a = await makeSpeechWav(TEXTS.hello);
  const b = await makeSpeechWav(TEXTS.second);
  const joined = await concatWithGaps([a.path, b.path], 2, { padStartS: 0.5, padEndS: 1.5 });
  dialogue = { pcm: await decodeToPcm16k(joined.path), spans: joined.spans as Array<[number, number]> };
  single = await decodeToPcm16k(a.path);
}, 120_000);
afterAll(async () => {
  await app?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function ready(c: StreamClient, config: Record<string, unknown> = CONFIG): Promise<Record<string, unknown>> {
  c.json(config);
  const r = await c.next((m) => m.status === 'ready' || 'error' in m, 60_000);
  expect(r).toMatchObject({ status: 'ready' });
  return r;
}

describe('WS /v1/stream with model=moonshine-mini-random', () => {
  it('ready names the model and proportional word times; finals per utterance with words inside them', async () => {
    const c = await connect();
    const r = await ready(c);
    expect(r).toEqual({ status: 'ready', session_id: expect.stringMatching(/^[0-9a-f-]{36}$/), model: MODEL, word_timestamps: 'proportional' });
    await c.sendPcm(dialogue.pcm, { frameMs: 100, pace: 8 });
    c.json({ action: 'stop' });
    await c.next((m) => m.is_final === true, 60_000);
    expect(await c.closed).toMatchObject({ code: 1000 });
    const finals = c.finals();
    expect(finals.length).toBe(2);
    for (const [k, f] of finals.entries()) {
      const [s, e] = dialogue.spans[k];
      const start = f.start as number;
      const end = f.end as number;
      expect(Math.abs(start - s)).toBeLessThan(0.35);
      expect(Math.abs(end - e)).toBeLessThan(0.6);
      expect((f.text as string).length).toBeGreaterThan(0);
      const words = f.words as Array<{ word: string; start: number; end: number }>;
      expect(words.length).toBeGreaterThan(0);
      for (const w of words) {
        expect(w.start).toBeGreaterThanOrEqual(start);
        expect(w.end).toBeLessThanOrEqual(end);
        expect(w.end).toBeGreaterThanOrEqual(w.start);
      }
      // Proportional times: the words follow each other through the utterance.
      for (let i = 1; i < words.length; i++) expect(words[i].start).toBeGreaterThanOrEqual(words[i - 1].end - 1e-6);
    }
    expect(c.messages.findIndex((m) => m.is_final)).toBe(c.messages.length - 1);
  });

  it('sends stabilised partials while speech goes on (real-time pace)', async () => {
    const c = await connect();
    await ready(c, { ...CONFIG, partial_interval_ms: 200 });
    await c.sendPcm(single, { frameMs: 100, pace: 1 });
    c.json({ action: 'stop' });
    await c.next((m) => m.is_final === true, 60_000);
    const stable = c.stablePrefixes();
    expect(stable.length).toBeGreaterThan(0);
    expect(stableNeverShrinks(stable)).toBe(true);
    expect(c.messages.findIndex((m) => 'partial' in m)).toBeLessThan(c.messages.findIndex((m) => typeof m.text === 'string'));
    expect(c.finals().length).toBe(1);
    // Partials encoded the utterance so far, exactly (no padding, no 30 s window): batched by that length.
    const { byGroup } = (await app.speechModels.get(MODEL)).scheduler.stats;
    const exact = Object.keys(byGroup)
      .filter((k) => k.startsWith('transcribe/exact@'))
      .map((k) => Number(k.slice('transcribe/exact@'.length)));
    expect(exact.length).toBeGreaterThan(0);
    for (const n of exact) expect(n).toBeLessThanOrEqual(single.length + 16_000);
  });

  it('a Whisper stream on the same server still says its own model', async () => {
    const c = await connect();
    const r = await ready(c, { ...CONFIG, model: 'whisper-mini-random' });
    expect(r.model).toBe('whisper-mini-random');
    // This fixture's decoder exports no cross-attentions (unpatched), so Whisper falls back to proportional times too.
    expect(r.word_timestamps).toBe('proportional');
    c.json({ action: 'stop' });
    await c.next((m) => m.is_final === true);
  });

  it("language 'de' on Moonshine → error naming the model and the language, close 1007 (as an unknown language)", async () => {
    const c = await connect();
    c.json({ ...CONFIG, language: 'de' });
    const e = await c.next((m) => 'error' in m || m.status === 'ready', 60_000);
    expect(e.error).toBe(`language: model 'moonshine-mini-random' does not support 'de'; use "auto" or one of: en`);
    expect((await c.closed).code).toBe(1007);
    // The refused stream is freed (the server counts it down after the close: wait for it, bounded).
    for (let i = 0; i < 1500 && app.streams.active > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(app.streams.active).toBe(0);
  });
});

describe('two-pass streams: Moonshine partials, Whisper finals (final_model)', () => {
  /** Rows per group of a model's scheduler so far, summed by kind: finals/files ('transcribe') vs shape-keyed partials. */
  async function rows(model: string): Promise<{ plain: number; shaped: number }> {
    const byGroup = (await app.speechModels.get(model)).scheduler.stats.byGroup as Record<string, number>;
    let plain = 0;
    let shaped = 0;
    for (const [k, n] of Object.entries(byGroup)) {
      if (k === 'transcribe') plain += n;
      else if (k.startsWith('transcribe/')) shaped += n;
    }
    return { plain, shaped };
  }

  it('ready names both models; partials are decoded by Moonshine, finals by Whisper', async () => {
    const moonBefore = await rows(MODEL);
    const whisperBefore = await rows('whisper-mini-random');
    const c = await connect();
    const r = await ready(c, { ...CONFIG, final_model: 'whisper-mini-random', partial_interval_ms: 200 });
    expect(r).toMatchObject({ model: MODEL, final_model: 'whisper-mini-random', word_timestamps: 'proportional' });
    await c.sendPcm(dialogue.pcm, { frameMs: 100, pace: 1 });
    c.json({ action: 'stop' });
    await c.next((m) => m.is_final === true, 120_000);
    expect(c.finals()).toHaveLength(2);
    expect(c.messages.some((m) => 'partial' in m)).toBe(true);
    const moon = await rows(MODEL);
    const whisper = await rows('whisper-mini-random');
    // Moonshine: partials only (exact-length shapes), no final; Whisper: the two finals, no partial.
    expect(moon.shaped).toBeGreaterThan(moonBefore.shaped);
    expect(moon.plain).toBe(moonBefore.plain);
    expect(whisper.plain - whisperBefore.plain).toBe(2);
    expect(whisper.shaped).toBe(whisperBefore.shaped);
  });

  it('a language one of the two models lacks is refused naming that model', async () => {
    const c = await connect();
    c.json({ ...CONFIG, final_model: 'whisper-mini-random', language: 'de' });
    const e = await c.next((m) => 'error' in m || m.status === 'ready', 60_000);
    expect(e.error).toBe(`language: model 'moonshine-mini-random' does not support 'de'; use "auto" or one of: en`);
    expect((await c.closed).code).toBe(1007);
  });

  it('an unknown final_model is refused like an unknown model', async () => {
    const c = await connect();
    c.json({ ...CONFIG, final_model: 'no-such-model' });
    const e = await c.next((m) => 'error' in m || m.status === 'ready', 60_000);
    expect(String(e.error)).toMatch(/no-such-model/);
    expect([1007, 1013, 1008]).toContain((await c.closed).code);
  });
});
