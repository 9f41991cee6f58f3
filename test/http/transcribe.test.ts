import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import SrtParser from 'srt-parser-2';
// @ts-expect-error webvtt-parser ships no types
import { WebVTTParser } from 'webvtt-parser';
import { loadConfig } from '../../config/config.ts';
import { App } from '../../src/app.ts';
import { WhisperTokenizer } from '../../src/engines/whisper/index.ts';
import { loadWhisperConfig } from '../../src/engines/whisper/config.ts';
import { ALL_FORMATS, TEXTS, concatWithGaps, convertTo, makeRandomBytesFile, makeSilenceWav, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { MODELS_DIR, WHISPER_FIXTURE } from '../helpers/paths.ts';
import { paidKey } from '../helpers/accounts.ts';

let app: App;
let base: string;
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-transcribe-'));
const golden = JSON.parse(fs.readFileSync(path.join(WHISPER_FIXTURE, 'golden/golden.json'), 'utf8'));
let speech: { path: string; durationS: number };
let key: string;

beforeAll(async () => {
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', MODELS_DIR, AUTO_PULL: 'false', DATA_DIR: dataDir, DEFAULT_MODEL: 'whisper-mini-random' });
  app = await new App(config, { logger: pino({ level: 'silent' }) }).start();
  base = `http://127.0.0.1:${app.port}`;
  speech = await makeSpeechWav(TEXTS.hello, { padStartS: 0.5, padEndS: 0.5 });
  key = await paidKey(app);
});
afterAll(async () => {
  await app?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function upload(file: string | null, fields: Record<string, string | string[]> = {}, opts: { endpoint?: string; signal?: AbortSignal; headers?: Record<string, string> } = {}) {
  const form = new FormData();
  if (file) form.append('file', await fs.openAsBlob(file), path.basename(file));
  for (const [k, v] of Object.entries(fields)) for (const x of [v].flat()) form.append(k, x);
  const headers = { authorization: `Bearer ${key}`, ...opts.headers };
  return fetch(`${base}${opts.endpoint ?? '/v1/transcribe'}`, { method: 'POST', body: form, signal: opts.signal, headers });
}

/** Small budget: random weights never stop early, and the tests only need the pipeline to run. */
const FAST = { max_new_tokens: '8', temperature: '0' };

describe('POST /v1/transcribe', () => {
  it('gives the golden tokens through the endpoint (fixture model, VAD off, no timestamps)', async () => {
    const cfg = await loadWhisperConfig(WHISPER_FIXTURE);
    const tok = await WhisperTokenizer.load(WHISPER_FIXTURE, cfg.gen);
    for (const name of ['speech', 'jfk']) {
      const r = await upload(path.join(WHISPER_FIXTURE, 'golden', `${name}.wav`), {
        model: 'whisper-mini-random',
        language: 'en',
        vad: 'false',
        timestamps: 'false',
        max_new_tokens: '24',
        temperature: '0',
      });
      expect(r.status).toBe(200);
      const body = await r.json();
      expect(body.text).toBe(tok.decode(golden.inputs[name].generate.notimestamps).trim());
      expect(body.language).toBe('en');
    }
  });

  it('answers in the spec shape for real speech (VAD chunks, words, duration)', async () => {
    const r = await upload(speech.path, { ...FAST, language: 'en' });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-job-id')).toBeTruthy();
    const body = await r.json();
    expect(Object.keys(body).sort()).toEqual(['duration', 'language', 'segments', 'speakers', 'text']);
    expect(body.duration).toBeCloseTo(speech.durationS, 1);
    expect(body.segments.length).toBeGreaterThan(0);
    for (const s of body.segments) {
      expect(Object.keys(s).sort()).toEqual(['confidence', 'end', 'speaker', 'start', 'text', 'words']);
      expect(s.start).toBeGreaterThanOrEqual(0);
      expect(s.end).toBeLessThanOrEqual(body.duration);
      expect(s.confidence).toBeGreaterThanOrEqual(0);
      expect(s.confidence).toBeLessThanOrEqual(1);
      expect(s.words.length).toBeGreaterThan(0);
    }
    expect(body.text).toBe(body.segments.map((s: { text: string }) => s.text).join(' '));
  });

  it('diarize=true labels two alternating voices as two speakers, in order of appearance', async () => {
    const m = await makeSpeechWav(TEXTS.hello, { voice: 'en+m3' });
    const f = await makeSpeechWav(TEXTS.second, { voice: 'en+f4' });
    const dialogue = await concatWithGaps([m.path, f.path, m.path, f.path], 1.2, { padStartS: 0.3, padEndS: 0.5 });
    // Random weights: no timestamps, so each VAD chunk is one segment whose words are spread over it
    // (proportional word times); a budget large enough that every turn gets words.
    const r = await upload(dialogue.path, { language: 'en', temperature: '0', timestamps: 'false', max_new_tokens: '96', diarize: 'true' });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-diarization')).toBe('baseline-mfcc');
    const body = await r.json();
    expect(body.speakers).toEqual(['Speaker 1', 'Speaker 2']);
    // Segments are split at speaker changes: the speaker sequence follows the turns m, f, m, f.
    // Every word that lies mostly inside one reference turn carries that turn's speaker (m = 1, f = 2),
    // and segments never mix speakers (they are split at changes).
    const spans = dialogue.spans as Array<[number, number]>;
    const expected = ['Speaker 1', 'Speaker 2', 'Speaker 1', 'Speaker 2'];
    let checked = 0;
    for (const seg of body.segments) {
      for (const w of seg.words) {
        expect(w.speaker).toBe(seg.speaker);
        const d = w.end - w.start;
        const k = spans.findIndex(([a, b]) => d > 0 && Math.min(b, w.end) - Math.max(a, w.start) > 0.7 * d);
        if (k >= 0) {
          expect(w.speaker, `word ${w.word} ${w.start}-${w.end}`).toBe(expected[k]);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(5);
    const plain = await upload(dialogue.path, { ...FAST, language: 'en', diarize: 'false' });
    const p = await plain.json();
    expect(p.speakers).toEqual([]);
    expect(p.segments.every((s: { speaker: unknown }) => s.speaker === null)).toBe(true);
  });

  it('returns txt, SRT and VTT that parsers accept', async () => {
    const txt = await upload(speech.path, { ...FAST, language: 'en', response_format: 'txt' });
    expect(txt.headers.get('content-type')).toMatch(/text\/plain/);
    expect((await txt.text()).trim().length).toBeGreaterThan(0);
    const srt = await upload(speech.path, { ...FAST, language: 'en', response_format: 'srt' });
    expect(srt.headers.get('content-type')).toMatch(/application\/x-subrip/);
    const cues = new SrtParser().fromSrt(await srt.text());
    expect(cues.length).toBeGreaterThan(0);
    const vtt = await upload(speech.path, { ...FAST, language: 'en', response_format: 'vtt' });
    expect(vtt.headers.get('content-type')).toMatch(/text\/vtt/);
    const tree = new WebVTTParser().parse(await vtt.text(), 'subtitles');
    expect(tree.errors).toEqual([]);
    expect(tree.cues.length).toBeGreaterThan(0);
  });

  it('detects the language when language=auto', async () => {
    const r = await upload(speech.path, { ...FAST, language: 'auto' });
    const body = await r.json();
    const gen = JSON.parse(fs.readFileSync(path.join(WHISPER_FIXTURE, 'generation_config.json'), 'utf8'));
    expect(Object.keys(gen.lang_to_id)).toContain(`<|${body.language}|>`);
  });

  it('skips silence: a silent file gives no text (no hallucination)', async () => {
    const silent = await makeSilenceWav(5);
    const r = await upload(silent, { ...FAST, language: 'en' });
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ text: '', segments: [], duration: 5 });
  });

  it('decodes every listed format', async () => {
    for (const format of ALL_FORMATS) {
      const file = await convertTo(speech.path, format);
      const r = await upload(file, { ...FAST, language: 'en', max_new_tokens: '2' });
      expect(r.status, `${format}: ${r.status}`).toBe(200);
      const body = await r.json();
      expect(Math.abs(body.duration - speech.durationS), format).toBeLessThan(0.15);
      expect(body.segments.length, format).toBeGreaterThan(0);
    }
  }, 240_000);

  it('shares the batcher between uploads running at once', async () => {
    // A wide batching window so that the test does not depend on this machine's load.
    const wide = await new App(
      loadConfig({ PORT: '0', HOST: '127.0.0.1', MODELS_DIR, AUTO_PULL: 'false', DATA_DIR: path.join(dataDir, 'wide'), DEFAULT_MODEL: 'whisper-mini-random', BATCH_WINDOW_MS: '1500' }),
      {
        logger: pino({ level: 'silent' }),
        gpu: app.gpu,
      },
    ).start();
    try {
      const model = await wide.speechModels.get('whisper-mini-random');
      const wideKey = await paidKey(wide);
      const form = async () => {
        const f = new FormData();
        f.append('file', await fs.openAsBlob(speech.path), 'speech.wav');
        for (const [k, v] of Object.entries({ ...FAST, language: 'en' })) f.append(k, v);
        return f;
      };
      const results = await Promise.all(
        [0, 1, 2, 3].map(async () => fetch(`http://127.0.0.1:${wide.port}/v1/transcribe`, { method: 'POST', body: await form(), headers: { authorization: `Bearer ${wideKey}` } })),
      );
      expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200]);
      const { requests, batches, maxBatchSize } = model.scheduler.stats;
      expect(requests).toBe(4);
      expect(maxBatchSize).toBeGreaterThanOrEqual(2);
      expect(batches).toBeLessThan(requests);
    } finally {
      await wide.close();
    }
  });

  it('shows job progress by id while the request runs, and cleans up temp files', async () => {
    const long = await concatWithGaps([speech.path, speech.path, speech.path, speech.path], 1.5);
    const jobId = `job-${Date.now()}`;
    const req = upload(long.path, { ...FAST, language: 'en', max_new_tokens: '24' }, { headers: { 'x-job-id': jobId } });
    const seen: Array<{ status: string; fraction: number }> = [];
    for (let i = 0; i < 400; i++) {
      const r = await fetch(`${base}/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${key}` } });
      if (r.status === 200) {
        const j = await r.json();
        seen.push({ status: j.status, fraction: j.progress.fraction });
        if (j.status === 'completed') break;
      }
      await new Promise((res) => setTimeout(res, 10));
    }
    const res = await req;
    expect(res.status).toBe(200);
    expect(res.headers.get('x-job-id')).toBe(jobId);
    const final = await (await fetch(`${base}/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${key}` } })).json();
    expect(final).toMatchObject({ id: jobId, status: 'completed', progress: { stage: 'done', fraction: 1 } });
    const fractions = seen.map((s) => s.fraction);
    expect(fractions).toEqual([...fractions].sort((a, b) => a - b));
    expect(fs.readdirSync(path.join(dataDir, 'tmp/uploads'))).toEqual([]);
  });

  it('cancels the job when the client disconnects', async () => {
    const long = await concatWithGaps(Array(6).fill(speech.path), 1.5);
    const jobId = `cancel-${Date.now()}`;
    const ac = new AbortController();
    const req = upload(long.path, { language: 'en', max_new_tokens: '440', temperature: '0' }, { signal: ac.signal, headers: { 'x-job-id': jobId } }).catch((e) => e);
    let stage = '';
    for (let i = 0; i < 1000 && stage !== 'transcribing'; i++) {
      const r = await fetch(`${base}/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${key}` } });
      if (r.status === 200) stage = (await r.json()).progress.stage;
      await new Promise((res) => setTimeout(res, 20));
    }
    expect(stage).toBe('transcribing');
    ac.abort();
    await req;
    let status = '';
    for (let i = 0; i < 250 && status !== 'cancelled'; i++) {
      status = (await (await fetch(`${base}/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${key}` } })).json()).status;
      await new Promise((res) => setTimeout(res, 20));
    }
    expect(status).toBe('cancelled');
    for (let i = 0; i < 250 && fs.readdirSync(path.join(dataDir, 'tmp/uploads')).length; i++) await new Promise((res) => setTimeout(res, 20));
    expect(fs.readdirSync(path.join(dataDir, 'tmp/uploads'))).toEqual([]);
  });
});

describe('POST /v1/transcribe errors', () => {
  const err = async (r: Response) => ({ status: r.status, error: (await r.json()).error as string });

  it('400 for a missing file, naming the field', async () => {
    expect(await err(await upload(null, { language: 'en' }))).toEqual({ status: 400, error: expect.stringMatching(/Missing file.*'file'/) });
  });

  it('400 for a request that is not multipart', async () => {
    const r = await fetch(`${base}/v1/transcribe`, { method: 'POST', body: JSON.stringify({ file: 'x' }), headers: { 'content-type': 'application/json' } });
    expect(await err(r)).toEqual({ status: 400, error: expect.stringMatching(/multipart\/form-data/) });
  });

  it('400 naming the allowed values for bad parameters', async () => {
    expect(await err(await upload(speech.path, { response_format: 'docx' }))).toEqual({ status: 400, error: "response_format must be one of json, txt, srt, vtt (got 'docx')" });
    expect((await err(await upload(speech.path, { language: 'klingon' }))).error).toMatch(/language must be 'auto' or a language code from GET \/v1\/languages/);
    expect((await err(await upload(speech.path, { diarize: 'maybe' }))).error).toBe("diarize must be true or false (got 'maybe')");
    expect((await err(await upload(speech.path, { speakers: '-1' }))).error).toBe("speakers must be an integer from 0 to 32 (got '-1')");
  });

  it('503 with the pull command for a model that is not installed; 400 for an unknown one', async () => {
    expect(await err(await upload(speech.path, { model: 'small' }))).toEqual({ status: 503, error: expect.stringContaining('npm run models:pull -- small') });
    const unknown = await err(await upload(speech.path, { model: 'whisper-huge-v9' }));
    expect(unknown.status).toBe(400);
    expect(unknown.error).toMatch(/whisper-mini-random/);
  });

  it('400 for a video without audio, random bytes and an empty file', async () => {
    const noAudio = await convertTo(speech.path, 'video-no-audio');
    expect(await err(await upload(noAudio, FAST))).toEqual({ status: 400, error: expect.stringMatching(/no audio/i) });
    const junk = await makeRandomBytesFile(50_000, 'mp3');
    const j = await err(await upload(junk, FAST));
    expect(j.status).toBe(400);
    expect(j.error.length).toBeGreaterThan(10);
    const empty = path.join(dataDir, 'empty.wav');
    fs.writeFileSync(empty, '');
    expect(await err(await upload(empty, FAST))).toEqual({ status: 400, error: expect.stringMatching(/empty/) });
  });

  it('413 above the upload limit', async () => {
    const small = await new App(loadConfig({ PORT: '0', HOST: '127.0.0.1', MODELS_DIR, AUTO_PULL: 'false', DATA_DIR: path.join(dataDir, 'small'), MAX_UPLOAD_MB: '1' }), {
      logger: pino({ level: 'silent' }),
      gpu: app.gpu,
    }).start();
    try {
      const big = path.join(dataDir, 'big.wav');
      fs.writeFileSync(big, Buffer.alloc(3 * 1024 * 1024, 1));
      const form = new FormData();
      form.append('file', await fs.openAsBlob(big), 'big.wav');
      const r = await fetch(`http://127.0.0.1:${small.port}/v1/transcribe`, { method: 'POST', body: form });
      expect(await err(r)).toEqual({ status: 413, error: expect.stringMatching(/larger than the limit of 1(\.\d)? MB/) });
    } finally {
      await small.close();
    }
  });
});

describe('POST /v1/audio/transcriptions (OpenAI-compatible)', () => {
  const oa = (fields: Record<string, string | string[]>) => upload(speech.path, { model: 'whisper-1', temperature: '0', ...fields }, { endpoint: '/v1/audio/transcriptions' });

  it('json → {text}; text; srt; vtt', async () => {
    const j = await (await oa({ language: 'en' })).json();
    expect(Object.keys(j)).toEqual(['text']);
    const t = await oa({ language: 'en', response_format: 'text' });
    expect(t.headers.get('content-type')).toMatch(/text\/plain/);
    expect((await oa({ language: 'en', response_format: 'srt' })).headers.get('content-type')).toMatch(/subrip/);
    expect((await oa({ language: 'en', response_format: 'vtt' })).headers.get('content-type')).toMatch(/vtt/);
  }, 150_000); // four full transcriptions (the random model spends its whole token budget each time)

  it('verbose_json with segments and word timestamps', async () => {
    const r = await oa({ language: 'en', response_format: 'verbose_json', 'timestamp_granularities[]': ['word', 'segment'] });
    expect(r.status).toBe(200);
    const v = await r.json();
    expect(v).toMatchObject({ task: 'transcribe', language: 'english' });
    expect(v.duration).toBeCloseTo(speech.durationS, 1);
    expect(v.segments[0]).toEqual(
      expect.objectContaining({
        id: 0,
        start: expect.any(Number),
        end: expect.any(Number),
        text: expect.any(String),
        tokens: expect.any(Array),
        avg_logprob: expect.any(Number),
        compression_ratio: expect.any(Number),
        no_speech_prob: expect.any(Number),
        temperature: 0,
      }),
    );
    expect(v.words.length).toBeGreaterThan(0);
    expect(v.words[0]).toEqual({ word: expect.any(String), start: expect.any(Number), end: expect.any(Number) });
  });

  it('400 for bad fields', async () => {
    const r = await oa({ response_format: 'xml' });
    expect(r.status).toBe(400);
    // OpenAI's error object (message, type, param, code), as the SDKs parse it.
    expect((await r.json()).error).toMatchObject({ message: expect.stringMatching(/json, text, srt, verbose_json, vtt/), type: 'invalid_request_error', param: 'response_format' });
    const g = await oa({ 'timestamp_granularities[]': 'char' });
    expect((await g.json()).error).toMatchObject({ message: expect.stringMatching(/word and\/or segment/), param: 'timestamp_granularities' });
    const t = await oa({ temperature: '3' });
    expect((await t.json()).error).toMatchObject({ message: expect.stringMatching(/temperature must be a number from 0 to 1/), code: 'invalid_request' });
  });
});

describe('POST /v1/transcribe with accounts (tiers, credits, saved transcripts)', () => {
  it('anonymous: ANON_DAILY_LIMIT per IP, then 429 with Retry-After; bad key 401; no credits 402', async () => {
    const anon = await new App(
      loadConfig({ PORT: '0', HOST: '127.0.0.1', MODELS_DIR, AUTO_PULL: 'false', DATA_DIR: path.join(dataDir, 'anon'), DEFAULT_MODEL: 'whisper-mini-random', ANON_DAILY_LIMIT: '2' }),
      {
        logger: pino({ level: 'silent' }),
        gpu: app.gpu,
      },
    ).start();
    try {
      const send = async (headers: Record<string, string> = {}) => {
        const form = new FormData();
        form.append('file', await fs.openAsBlob(speech.path), 'speech.wav');
        for (const [k, v] of Object.entries({ ...FAST, language: 'en' })) form.append(k, v);
        return fetch(`http://127.0.0.1:${anon.port}/v1/transcribe`, { method: 'POST', body: form, headers });
      };
      expect((await send()).status).toBe(200);
      expect((await send()).status).toBe(200);
      const third = await send();
      expect(third.status).toBe(429);
      expect(Number(third.headers.get('retry-after'))).toBeGreaterThan(0);
      expect((await third.json()).error).toMatch(/anonymous|per day|API key/i);
      const bad = await send({ authorization: 'Bearer stt_not-a-real-key' });
      expect(bad.status).toBe(401);
      expect((await bad.json()).error.length).toBeGreaterThan(5);
      const broke = await paidKey(anon, 0);
      const r402 = await send({ authorization: `Bearer ${broke}` });
      expect(r402.status).toBe(402);
    } finally {
      await anon.close();
    }
  });

  it('charges 1 credit per started minute and saves the transcript for its owner only', async () => {
    const mine = await paidKey(app, 10);
    const other = await paidKey(app, 10);
    const before = await (await fetch(`${base}/api/v1/account/`, { headers: { authorization: `Bearer ${mine}` } })).json();
    const r = await upload(speech.path, { ...FAST, language: 'en' }, { headers: { authorization: `Bearer ${mine}` } });
    expect(r.status).toBe(200);
    const id = r.headers.get('x-transcript-id');
    expect(id).toBeTruthy();
    const after = await (await fetch(`${base}/api/v1/account/`, { headers: { authorization: `Bearer ${mine}` } })).json();
    expect(before.credits - after.credits).toBe(1);
    const saved = await fetch(`${base}/api/v1/transcripts/${id}/`, { headers: { authorization: `Bearer ${mine}` } });
    expect(saved.status).toBe(200);
    const t = await saved.json();
    expect(t.segments.length).toBeGreaterThan(0);
    expect(t.model).toBe('whisper-mini-random');
    const theirs = await fetch(`${base}/api/v1/transcripts/${id}/`, { headers: { authorization: `Bearer ${other}` } });
    expect(theirs.status).toBe(404);
  });
});
