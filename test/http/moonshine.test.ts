/**
 * Moonshine through the HTTP surfaces of a real server (fixture folder `moonshine-mini-random`, embedded database):
 * POST /v1/transcribe gives the golden greedy text and says how word times were made; languages and tasks the model
 * lacks are a 400 that says which it has; the OpenAI-compatible routes serve it by `model=`; GET /v1/models lists the
 * Moonshine registry ids and the folder with their language codes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.ts';
import { MoonshineTokenizer } from '../../src/engines/moonshine/index.ts';
import { paidKey } from '../helpers/accounts.ts';
import { TEXTS, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { MODELS_DIR } from '../helpers/paths.ts';
import { TestApps } from '../helpers/test-apps.ts';

const MODEL = 'moonshine-mini-random';
const DIR = path.join(MODELS_DIR, MODEL);
const golden: { inputs: Record<string, { wav: string; greedy: number[] }> } = JSON.parse(fs.readFileSync(path.join(DIR, 'golden/golden.json'), 'utf8'));

const apps = new TestApps();
let app: App;
let base: string;
let key: string;
let speech: { path: string; durationS: number };

beforeAll(async () => {
  app = await apps.start();
  base = `http://127.0.0.1:${app.port}`;
  key = await paidKey(app);
  speech = await makeSpeechWav(TEXTS.hello, { padStartS: 0.5, padEndS: 0.5 });
}, 120_000);
afterAll(() => apps.closeAll());

async function upload(file: string, fields: Record<string, string | string[]>, endpoint = '/v1/transcribe') {
  const form = new FormData();
  form.append('file', await fs.openAsBlob(file), path.basename(file));
  for (const [k, v] of Object.entries(fields)) for (const x of [v].flat()) form.append(k, x);
  return fetch(`${base}${endpoint}`, { method: 'POST', body: form, headers: { authorization: `Bearer ${key}` } });
}

const GREEDY = { model: MODEL, vad: 'false', max_new_tokens: '24', temperature: '0' };
type Seg = { start: number; end: number; text: string; words: Array<{ word: string; start: number; end: number }> };

describe('POST /v1/transcribe with model=moonshine-mini-random', () => {
  for (const name of Object.keys(golden.inputs)) {
    it(`${name}: the text of the 24 golden greedy tokens; X-Word-Timestamps says proportional`, async () => {
      const tok = await MoonshineTokenizer.load(DIR);
      const expected = tok.decode(golden.inputs[name].greedy).trim();
      expect(expected.length).toBeGreaterThan(0);
      const r = await upload(path.join(DIR, 'golden', golden.inputs[name].wav), { ...GREEDY, language: 'en', word_timestamps: 'true' });
      expect(r.status).toBe(200);
      expect(r.headers.get('x-word-timestamps')).toBe('proportional');
      const body = await r.json();
      expect(body.text).toBe(expected);
      expect(body.language).toBe('en');
      expect(body.segments).toHaveLength(1);
      const [s] = body.segments as Seg[];
      expect(s.text).toBe(expected);
      expect(s.words.length).toBeGreaterThan(0);
      for (const w of s.words) {
        expect(w.start).toBeGreaterThanOrEqual(s.start);
        expect(w.end).toBeLessThanOrEqual(s.end);
        expect(w.end).toBeGreaterThanOrEqual(w.start);
      }
    });
  }

  it('without word timestamps: the same text, no words, X-Word-Timestamps none; language=auto answers en', async () => {
    const tok = await MoonshineTokenizer.load(DIR);
    const r = await upload(path.join(DIR, 'golden', 'jfk.wav'), { ...GREEDY, language: 'auto', word_timestamps: 'false' });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-word-timestamps')).toBe('none');
    const body = await r.json();
    expect(body.text).toBe(tok.decode(golden.inputs.jfk.greedy).trim());
    expect(body.language).toBe('en');
    expect((body.segments as Seg[]).every((s) => s.words.length === 0)).toBe(true);
  });

  it('VAD chunks of real speech: segments inside the file, words inside their segments', async () => {
    const r = await upload(speech.path, { model: MODEL, language: 'en', max_new_tokens: '8', temperature: '0' });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-word-timestamps')).toBe('proportional');
    const body = await r.json();
    expect(body.duration).toBeCloseTo(speech.durationS, 1);
    expect(body.segments.length).toBeGreaterThan(0);
    for (const s of body.segments as Seg[]) {
      expect(s.start).toBeGreaterThanOrEqual(0);
      expect(s.end).toBeLessThanOrEqual(body.duration);
      expect(s.words.length).toBeGreaterThan(0);
      for (const w of s.words) {
        expect(w.start).toBeGreaterThanOrEqual(s.start);
        expect(w.end).toBeLessThanOrEqual(s.end);
      }
    }
    // The speech lies after 0.5 s of padding: VAD trimmed it, the segment does not start at 0.
    expect(body.segments[0].start).toBeGreaterThan(0.2);
  });

  it('language=de → 400 naming the model and its language; task=translate → 400', async () => {
    const wav = path.join(DIR, 'golden', 'jfk.wav');
    const de = await upload(wav, { ...GREEDY, language: 'de' });
    expect(de.status).toBe(400);
    expect((await de.json()).error).toBe(`Model '${MODEL}' does not support language 'de'. Use 'auto' or one of: en.`);
    const tr = await upload(wav, { ...GREEDY, language: 'en', task: 'translate' });
    expect(tr.status).toBe(400);
    expect((await tr.json()).error).toMatch(new RegExp(`^Model '${MODEL}' cannot translate: task=translate needs a multilingual Whisper model`));
  });
});

describe('OpenAI-compatible routes with model=moonshine-mini-random', () => {
  it('/v1/audio/transcriptions: json → {text} (the golden text at temperature 0), verbose_json with words', async () => {
    const tok = await MoonshineTokenizer.load(DIR);
    const wav = path.join(DIR, 'golden', 'speech.wav');
    const r = await upload(wav, { model: MODEL, language: 'en', temperature: '0' }, '/v1/audio/transcriptions');
    expect(r.status).toBe(200);
    const j = await r.json();
    expect(Object.keys(j)).toEqual(['text']);
    // No token budget on this route: the model's own limit. Greedy is deterministic, so the golden 24 are its start.
    expect(j.text.startsWith(tok.decode(golden.inputs.speech.greedy).trim())).toBe(true);

    const v = await (
      await upload(speech.path, { model: MODEL, language: 'en', temperature: '0', response_format: 'verbose_json', 'timestamp_granularities[]': ['word', 'segment'] }, '/v1/audio/transcriptions')
    ).json();
    expect(v).toMatchObject({ task: 'transcribe', language: 'english' });
    expect(v.segments.length).toBeGreaterThan(0);
    expect(v.words.length).toBeGreaterThan(0);
  }, 120_000);

  it('/v1/audio/translations: 400 in the OpenAI error shape (Moonshine only transcribes)', async () => {
    const r = await upload(speech.path, { model: MODEL, temperature: '0' }, '/v1/audio/translations');
    expect(r.status).toBe(400);
    expect((await r.json()).error).toMatchObject({ message: expect.stringMatching(/cannot translate/), type: 'invalid_request_error' });
  });
});

describe('GET /v1/models', () => {
  it('lists moonshine-tiny and moonshine-base (English, not installed) and the fixture folder as asr with its language codes', async () => {
    const body = await (await fetch(`${base}/v1/models`)).json();
    const byId = new Map((body.models as Array<{ id: string }>).map((m) => [m.id, m]));
    expect(byId.get('moonshine-tiny')).toEqual({ id: 'moonshine-tiny', name: 'Moonshine Tiny', languages: 1, language_codes: ['en'], speed: 'very_fast', installed: false });
    expect(byId.get('moonshine-base')).toEqual({ id: 'moonshine-base', name: 'Moonshine Base', languages: 1, language_codes: ['en'], speed: 'very_fast', installed: false });
    expect(byId.get(MODEL)).toMatchObject({ id: MODEL, languages: 1, language_codes: ['en'], installed: true });
    // Multilingual Whisper: no code list (99 languages, GET /v1/languages).
    expect(byId.get('whisper-mini-random')).toMatchObject({ languages: 99 });
    expect(byId.get('whisper-mini-random')).not.toHaveProperty('language_codes');
    const data = body.data as Array<{ id: string; kind: string; installed: boolean }>;
    expect(data.find((m) => m.id === MODEL)).toMatchObject({ object: 'model', kind: 'asr', installed: true });
    expect(data.find((m) => m.id === 'moonshine-tiny')).toMatchObject({ kind: 'asr', installed: false });
  });
});
