/**
 * Long files (issue 13): metering before decoding, metering what is really decoded when the
 * container lies, and peak memory that does not grow with the file's length. Real ffmpeg, real
 * Silero VAD, the whisper-mini-random fixture.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DomainError } from '../../src/errors.ts';
import { statusOf } from '../../src/http/error-kinds.ts';
import { createDiarizer } from '../../src/engines/diarization/index.ts';
import { SileroVad } from '../../src/engines/vad/silero-vad.ts';
import type { TranscribeRequest } from '../../src/engines/whisper/index.ts';
import { ModelRegistry } from '../../src/models/registry.ts';
import { DIARIZE_MAX_SECONDS, FileTranscriber } from '../../src/pipeline/file-transcriber.ts';
import { JobRegistry } from '../../src/pipeline/job-registry.ts';
import { SpeechModels } from '../../src/pipeline/speech-models.ts';
import { LocalSpeechWork, type SpeechWork } from '../../src/pipeline/speech-work.ts';
import { METER_TOLERANCE_S, TranscriptionService } from '../../src/pipeline/transcription-service.ts';
import { fixtureDir, TEXTS } from '../helpers/audio-fixtures.ts';
import { MODELS_DIR, REPO_ROOT } from '../helpers/paths.ts';

const execFileP = promisify(execFile);
const ffmpeg = (args: string[]) => execFileP('ffmpeg', ['-v', 'error', '-y', ...args], { timeout: 300_000, killSignal: 'SIGKILL' });
const dir = path.join(fixtureDir(), 'long-audio-v1');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-long-audio-'));

/** Concatenate Ogg/Opus files without re-encoding (the concat demuxer), cached by name. */
async function concatOgg(name: string, parts: string[]): Promise<string> {
  const out = path.join(dir, name);
  if (fs.existsSync(out)) return out;
  const list = path.join(tmp, `${name}.txt`);
  fs.writeFileSync(list, parts.map((p) => `file '${p}'\n`).join(''));
  await ffmpeg(['-f', 'concat', '-safe', '0', '-i', list, '-c', 'copy', `${out}.tmp.ogg`]);
  fs.renameSync(`${out}.tmp.ogg`, out);
  return out;
}

let silence10: string; // 10 min of silence, Opus 6 kb/s
let speech10: string; // ~10 s of espeak-ng speech, then silence to 10 min
let long20: string; // speech10 + silence10
let long3h: string; // speech10 + 17 × silence10 (3 h, ~4 MB)
let liar: string; // chained Ogg: speech10 then 5 s of silence; it declares only its last link (5 s)

beforeAll(async () => {
  fs.mkdirSync(dir, { recursive: true });
  silence10 = path.join(dir, 'silence-600.ogg');
  if (!fs.existsSync(silence10)) await ffmpeg(['-f', 'lavfi', '-i', 'anullsrc=r=16000:cl=mono', '-t', '600', '-c:a', 'libopus', '-b:a', '6k', silence10]);
  speech10 = path.join(dir, 'speech-600.ogg');
  if (!fs.existsSync(speech10)) {
    const wav = path.join(tmp, 'speech.wav');
    await execFileP('espeak-ng', ['-w', wav, `${TEXTS.hello} ${TEXTS.second}`]);
    await ffmpeg(['-i', wav, '-af', 'apad=whole_dur=600', '-ar', '16000', '-ac', '1', '-c:a', 'libopus', '-b:a', '6k', speech10]);
  }
  long20 = await concatOgg('long-20min.ogg', [speech10, silence10]);
  long3h = await concatOgg('long-3h.ogg', [speech10, ...Array(17).fill(silence10)]);
  const tail5 = path.join(dir, 'silence-5.ogg');
  if (!fs.existsSync(tail5)) await ffmpeg(['-f', 'lavfi', '-i', 'anullsrc=r=16000:cl=mono', '-t', '5', '-c:a', 'libopus', '-b:a', '6k', tail5]);
  liar = path.join(dir, 'chained-liar.ogg');
  if (!fs.existsSync(liar)) fs.writeFileSync(liar, Buffer.concat([fs.readFileSync(speech10), fs.readFileSync(tail5)]));
}, 600_000);

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('metering long files (in process: real ffmpeg, VAD and model)', () => {
  let models: SpeechModels;
  let vad: SileroVad;
  let jobs: JobRegistry;
  const ffmpegLog = path.join(tmp, 'ffmpeg-calls.log');
  /** Pieces the model was given (offset unknown here: their lengths), observed around the real work. */
  const given: number[] = [];
  let service: TranscriptionService;

  beforeAll(async () => {
    // Every ffmpeg run is logged (args), then the real ffmpeg runs.
    const wrapper = path.join(tmp, 'ffmpeg-logged.sh');
    fs.writeFileSync(wrapper, `#!/bin/sh\necho "$*" >> '${ffmpegLog}'\nexec ffmpeg "$@"\n`, { mode: 0o755 });
    process.env.FFMPEG_PATH = wrapper;
    models = new SpeechModels({ registry: await ModelRegistry.create(MODELS_DIR), logger: pino({ level: 'silent' }), maxBatch: 8, batchWindowMs: 10, inference: {} });
    vad = await SileroVad.load();
    jobs = new JobRegistry();
    const local = new LocalSpeechWork();
    const work: SpeechWork = {
      decodesLocally: true,
      transcribe: (m, req: TranscribeRequest, ctl) => {
        given.push(req.audio.length);
        return local.transcribe(m, req, ctl);
      },
      detectLanguage: (m, audio, ctl) => local.detectLanguage(m, audio, ctl),
    };
    service = new TranscriptionService({ models, transcriber: new FileTranscriber({ vad, work }), jobs });
  }, 120_000);
  afterAll(async () => {
    delete process.env.FFMPEG_PATH;
    await jobs?.close();
    await models?.close();
    await vad?.close();
  });

  const decodes = () =>
    fs.existsSync(ffmpegLog)
      ? fs
          .readFileSync(ffmpegLog, 'utf8')
          .split('\n')
          .filter((l) => l.includes('pcm_f32le')).length
      : 0;
  const req = { model: 'whisper-mini-random', language: 'en', maxNewTokens: 4, temperature: 0 };

  it('a 3 h file: the hook gets ~3 h before anything is decoded, and its 402 ends the job with no decode at all', async () => {
    const calls: Array<{ seconds: number; decodesSoFar: number }> = [];
    const before = decodes();
    const err = await service
      .transcribeFile({
        ...req,
        path: long3h,
        beforeTranscribe: async (seconds) => {
          calls.push({ seconds, decodesSoFar: decodes() - before });
          throw new DomainError('payment_required', 'Not enough credits');
        },
      })
      .then(
        () => null,
        (e: unknown) => e as Error,
      );
    expect(statusOf(err)).toBe(402);
    expect(calls).toHaveLength(1);
    expect(Math.abs(calls[0].seconds - 3 * 3600)).toBeLessThan(1);
    expect(calls[0].decodesSoFar).toBe(0);
    expect(decodes() - before).toBe(0); // refused: ffmpeg never decoded a sample
    expect(given).toHaveLength(0);
  }, 120_000);

  it('diarize=true on 3 h: 413 naming the cap and diarize=false, before metering or decoding', async () => {
    const diarizer = await createDiarizer();
    const withDiarizer = new TranscriptionService({ models, transcriber: new FileTranscriber({ vad, diarizer }), jobs });
    const metered: number[] = [];
    const before = decodes();
    const err = await withDiarizer.transcribeFile({ ...req, path: long3h, diarize: true, beforeTranscribe: async (s) => void metered.push(s) }).then(
      () => null,
      (e: unknown) => e as Error,
    );
    await diarizer.close();
    expect(statusOf(err)).toBe(413);
    expect(err?.message).toContain(`${DIARIZE_MAX_SECONDS / 3600} h`);
    expect(err?.message).toContain('diarize=false');
    expect(metered).toEqual([]);
    expect(decodes() - before).toBe(0);
  }, 120_000);

  it('diarization by default (diarizeBestEffort) on 3 h: the transcript comes back without speakers, saying why, and the diarizer never runs', async () => {
    const diarizer = await createDiarizer();
    let diarized = 0;
    const diarize = diarizer.diarize.bind(diarizer);
    diarizer.diarize = (...args: Parameters<typeof diarize>) => (diarized++, diarize(...args));
    const withDiarizer = new TranscriptionService({ models, transcriber: new FileTranscriber({ vad, diarizer }), jobs });
    const metered: number[] = [];
    try {
      const r = await withDiarizer.transcribeFile({ ...req, path: long3h, diarize: true, diarizeBestEffort: true, beforeTranscribe: async (s) => void metered.push(s) });
      expect(Math.abs(metered[0] - 3 * 3600)).toBeLessThan(1);
      expect(r.diarization).toBeNull();
      expect(r.diarizationSkipped).toMatch(/skipped: audio longer than 2 h/);
      expect(r.speakers).toEqual([]);
      expect(Math.abs(r.deliveredSeconds - 3 * 3600)).toBeLessThan(2);
      expect(diarized).toBe(0);
    } finally {
      await diarizer.close();
    }
  }, 300_000);

  it('a 20 min file: metered once with its duration before the (single) decode, transcribed, delivered = decoded', async () => {
    const calls: Array<{ seconds: number; decodesSoFar: number }> = [];
    const more: number[] = [];
    const before = decodes();
    const r = await service.transcribeFile({
      ...req,
      path: long20,
      beforeTranscribe: async (seconds) => void calls.push({ seconds, decodesSoFar: decodes() - before }),
      meterMore: async (s) => void more.push(s),
    });
    expect(calls).toEqual([{ seconds: expect.closeTo(1200, 0) as number, decodesSoFar: 0 }]);
    expect(more).toEqual([]);
    expect(decodes() - before).toBe(1);
    expect(Math.abs(r.deliveredSeconds - 1200)).toBeLessThan(1);
    expect(r.meteredSeconds).toBeGreaterThanOrEqual(r.deliveredSeconds - METER_TOLERANCE_S);
    expect(r.segments.length).toBeGreaterThan(0);
    expect(r.segments[r.segments.length - 1].end).toBeLessThan(30); // the speech is at the start
  }, 600_000);

  it('a chained Ogg that declares 5 s is metered for the ~605 s it really decodes; refused → nothing past the metered audio is transcribed', async () => {
    const calls: Array<{ kind: string; seconds: number }> = [];
    const r = await service.transcribeFile({
      ...req,
      path: liar,
      beforeTranscribe: async (seconds) => void calls.push({ kind: 'before', seconds }),
      meterMore: async (seconds) => void calls.push({ kind: 'more', seconds }),
    });
    expect(calls[0].kind).toBe('before');
    expect(calls[0].seconds).toBeLessThan(6); // what the container says
    expect(r.deliveredSeconds).toBeGreaterThan(600); // what it holds
    const metered = calls.reduce((s, c) => s + c.seconds, 0);
    expect(metered).toBeCloseTo(r.meteredSeconds, 6);
    expect(metered).toBeGreaterThanOrEqual(r.deliveredSeconds - METER_TOLERANCE_S);
    expect(calls.slice(1).every((c) => c.kind === 'more')).toBe(true);

    // meterMore refuses: the job stops with its error, and the model never saw audio past 5 s + tolerance
    given.length = 0;
    const err = await service
      .transcribeFile({
        ...req,
        path: liar,
        beforeTranscribe: async () => {},
        meterMore: async () => {
          throw new DomainError('payment_required', 'Not enough credits for the rest');
        },
      })
      .then(
        () => null,
        (e: unknown) => e as Error,
      );
    expect(statusOf(err)).toBe(402);
    expect(err?.message).toContain('for the rest');
    // The first speech chunk ends after 7 s, so the VAD could not emit it before the refusal.
    expect(given).toEqual([]);
  }, 600_000);
});

describe('peak memory does not grow with the file length (child process)', () => {
  async function measure(file: string): Promise<{ maxRssMB: number; status: number; deliveredSeconds: number; segments: number }> {
    const { stdout } = await execFileP(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'bench/long-audio.ts'), file, '--tokens', '4'], {
      cwd: REPO_ROOT,
      env: { ...process.env, MODELS_DIR },
      timeout: 900_000,
      killSignal: 'SIGKILL',
      maxBuffer: 16 * 1024 * 1024,
    });
    return JSON.parse(stdout.trim().split('\n').pop()!);
  }

  it('3 h (mostly silence) stays under 600 MB and within 1.3× of the 20 min file', async () => {
    const short = await measure(long20);
    const long = await measure(long3h);
    console.log(`[long-audio] peak RSS: 20 min ${short.maxRssMB} MB, 3 h ${long.maxRssMB} MB`);
    expect(short.status).toBe(200);
    expect(long.status).toBe(200);
    expect(long.deliveredSeconds).toBeGreaterThan(3 * 3600 - 1);
    expect(long.segments).toBe(short.segments); // same speech, more silence
    expect(long.maxRssMB).toBeLessThan(600);
    expect(long.maxRssMB).toBeLessThan(1.3 * short.maxRssMB);
  }, 1_200_000);
});
