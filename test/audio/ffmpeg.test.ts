import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AudioDecodeError, classifyFfmpegFailure, decodeStream, decodeToPcm, decodeToPcm16k, audioDurationS, probeAudio, scanAudioDuration } from '../../src/audio/ffmpeg.ts';
import { readWav, rms } from '../../src/audio/pcm.ts';
import { ALL_FORMATS, convertTo, makeRandomBytesFile, makeSpeechWav, moovPosition, TEXTS, type SpeechWav } from '../helpers/audio-fixtures.ts';
import { statusOf } from '../../src/http/error-kinds.ts';

let speech: SpeechWav;
const converted = new Map<string, string>();
let scratch: string;

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'stt-ffmpeg-test-'));
  speech = await makeSpeechWav(TEXTS.hello, { padStartS: 1, padEndS: 1 });
  // Convert sequentially-ish (2 at a time) to stay friendly to 2 cores.
  const formats = [...ALL_FORMATS, 'video-no-audio'] as const;
  for (let i = 0; i < formats.length; i += 2) {
    await Promise.all(formats.slice(i, i + 2).map(async (f) => converted.set(f, await convertTo(speech.path, f))));
  }
}, 120_000);

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** Lossy codecs and containers add encoder delay / frame padding: allow 150 ms. */
const DURATION_TOLERANCE_S = 0.15;

describe('decodeToPcm16k: every supported format', () => {
  for (const format of ALL_FORMATS) {
    it(`decodes ${format} to 16 kHz mono with the source duration`, async () => {
      const path = converted.get(format)!;
      const pcm = await decodeToPcm16k(path);
      expect(pcm).toBeInstanceOf(Float32Array);
      const durationS = pcm.length / 16000;
      expect(Math.abs(durationS - speech.durationS)).toBeLessThan(DURATION_TOLERANCE_S);
      // Leading pad is silent, the speech part is not (codecs keep the structure).
      expect(rms(pcm, 0, 8000)).toBeLessThan(0.01);
      expect(rms(pcm, 1.2 * 16000, 4.4 * 16000)).toBeGreaterThan(0.02);
    });
  }

  it('the moov-at-end fixtures really have moov after mdat (and faststart ones before)', () => {
    expect(moovPosition(converted.get('m4a-moov-at-end')!)).toBe('end');
    expect(moovPosition(converted.get('mp4-moov-at-end')!)).toBe('end');
    expect(moovPosition(converted.get('m4a')!)).toBe('start');
    expect(moovPosition(converted.get('mp4')!)).toBe('start');
  });

  it('matches the WAV source sample-for-sample (lossless path, 16 kHz source)', async () => {
    const pcm = await decodeToPcm16k(speech.path);
    const wav = readWav(readFileSync(speech.path));
    expect(wav.sampleRate).toBe(16000);
    expect(pcm.length).toBe(wav.samples.length);
    let maxDiff = 0;
    for (let i = 0; i < pcm.length; i++) maxDiff = Math.max(maxDiff, Math.abs(pcm[i] - wav.samples[i]));
    expect(maxDiff).toBeLessThan(1e-6);
  });

  it('handles relative paths and odd file names', async () => {
    const odd = join(scratch, '-weird name: [1].wav');
    writeFileSync(odd, readFileSync(speech.path));
    const pcm = await decodeToPcm16k(odd);
    expect(Math.abs(pcm.length / 16000 - speech.durationS)).toBeLessThan(0.01);
  });

  it('supports startS / maxDurationS', async () => {
    const pcm = await decodeToPcm16k(speech.path, { startS: 1, maxDurationS: 2 });
    expect(pcm.length).toBe(32000);
  });

  it('decodeToPcm: another output rate (48 kHz for enhancement), same duration; a bad rate is refused', async () => {
    const pcm = await decodeToPcm(speech.path, { sampleRate: 48000, maxDurationS: 2 });
    expect(pcm.length).toBe(96000);
    const full = await decodeToPcm(converted.get('mp3')!, { sampleRate: 48000 });
    expect(Math.abs(full.length / 48000 - speech.durationS)).toBeLessThan(DURATION_TOLERANCE_S);
    // The same signal at both rates: equal loudness (resampling keeps the level).
    expect(rms(await decodeToPcm(speech.path, { sampleRate: 48000 }))).toBeCloseTo(rms(await decodeToPcm16k(speech.path)), 2);
    await expect(decodeToPcm(speech.path, { sampleRate: 0 })).rejects.toThrow(/sampleRate must be a positive integer/);
  });
});

describe('probeAudio', () => {
  it('reports format, duration and the audio codec', async () => {
    const info = await probeAudio(converted.get('mp3')!);
    expect(info.formatName).toBe('mp3');
    expect(info.hasAudio).toBe(true);
    expect(info.audioStreams[0].codec).toBe('mp3');
    expect(info.audioStreams[0].sampleRate).toBe(16000);
    expect(info.audioStreams[0].channels).toBe(1);
    expect(Math.abs(info.durationS! - speech.durationS)).toBeLessThan(0.2);
  });

  it('reports video + audio streams of an mp4', async () => {
    const info = await probeAudio(converted.get('mp4-moov-at-end')!);
    expect(info.formatName).toContain('mp4');
    expect(info.videoStreams).toBe(1);
    expect(info.audioStreams.map((a) => a.codec)).toEqual(['aac']);
  });

  it('reports hasAudio=false for a video without sound', async () => {
    const info = await probeAudio(converted.get('video-no-audio')!);
    expect(info.hasAudio).toBe(false);
    expect(info.videoStreams).toBe(1);
  });

  it('audioDurationS: the declared duration, else a packet scan for a container that declares none (live WebM)', async () => {
    const ogg = converted.get('opus')!;
    const declared = await probeAudio(ogg);
    expect(await audioDurationS(ogg, declared)).toBe(declared.durationS);
    const live = join(scratch, 'live.webm');
    execFileSync('ffmpeg', ['-v', 'error', '-y', '-i', speech.path, '-c:a', 'libopus', '-f', 'webm', '-live', '1', live]);
    const info = await probeAudio(live);
    expect(info.durationS).toBeUndefined(); // nothing to meter before decoding, without the scan
    const scanned = await audioDurationS(live, info);
    expect(Math.abs(scanned - speech.durationS)).toBeLessThan(0.1);
    expect(await scanAudioDuration(live)).toBe(scanned);
  });

  it('rejects random bytes with a 400', async () => {
    const err = await probeAudio(await makeRandomBytesFile(20_000, 'mp3')).catch((e) => e);
    expect(err).toBeInstanceOf(AudioDecodeError);
    expect(statusOf(err)).toBe(400);
  });
});

describe('decode errors', () => {
  it('video without audio -> 400 "no audio stream"', async () => {
    const err = await decodeToPcm16k(converted.get('video-no-audio')!).catch((e) => e);
    expect(err).toBeInstanceOf(AudioDecodeError);
    expect(statusOf(err)).toBe(400);
    expect(err.code).toBe('no_audio_stream');
    expect(err.message).toMatch(/no audio/i);
  });

  it('random bytes -> 400 with a clear message', async () => {
    for (const ext of ['mp3', 'wav', 'bin']) {
      const err = await decodeToPcm16k(await makeRandomBytesFile(50_000, ext, 7)).catch((e) => e);
      expect(err).toBeInstanceOf(AudioDecodeError);
      expect(statusOf(err)).toBe(400);
      expect(err.code).toBe('corrupt_or_unsupported');
      expect(err.message).toMatch(/corrupt|not a supported/i);
      expect(err.message).toMatch(/convert|retry|check/i);
    }
  });

  it('truncated m4a (moov lost) -> 400 corrupt', async () => {
    const trunc = join(scratch, 'truncated.m4a');
    writeFileSync(trunc, readFileSync(converted.get('m4a-moov-at-end')!).subarray(0, 4000));
    const err = await decodeToPcm16k(trunc).catch((e) => e);
    expect(err).toBeInstanceOf(AudioDecodeError);
    expect(statusOf(err)).toBe(400);
    expect(err.message).toMatch(/corrupt|truncated/i);
  });

  it('empty file -> 400 empty_file', async () => {
    const empty = join(scratch, 'empty.wav');
    writeFileSync(empty, Buffer.alloc(0));
    const err = await decodeToPcm16k(empty).catch((e) => e);
    expect(err).toBeInstanceOf(AudioDecodeError);
    expect(statusOf(err)).toBe(400);
    expect(err.code).toBe('empty_file');
    expect(err.message).toMatch(/empty/i);
  });

  it('a valid container with zero audio samples -> 400 empty_output (not an empty transcript)', async () => {
    const zero = join(scratch, 'zero.wav');
    const header = readFileSync(speech.path).subarray(0, 44);
    header.writeUInt32LE(36, 4);
    header.writeUInt32LE(0, 40);
    writeFileSync(zero, header);
    const err = await decodeToPcm16k(zero).catch((e) => e);
    expect(err).toBeInstanceOf(AudioDecodeError);
    expect(statusOf(err)).toBe(400);
    expect(err.code).toBe('empty_output');
    expect(err.message).toMatch(/zero audio samples/);
  });

  it('missing file -> 400 file_not_found', async () => {
    const err = await decodeToPcm16k(join(scratch, 'nope.wav')).catch((e) => e);
    expect(err).toBeInstanceOf(AudioDecodeError);
    expect(err.code).toBe('file_not_found');
  });

  it('ffmpeg missing on the server -> 500 telling to install ffmpeg', async () => {
    // readPlainWav false: a plain 16 kHz mono WAV needs no ffmpeg at all (test/audio/plain-wav.test.ts)
    const err = await decodeToPcm16k(speech.path, { ffmpegPath: '/nonexistent/ffmpeg', readPlainWav: false }).catch((e) => e);
    expect(err).toBeInstanceOf(AudioDecodeError);
    expect(err.kind).toBe('internal');
    expect(statusOf(err)).toBe(500);
    expect(err.code).toBe('ffmpeg_missing');
    expect(err.message).toMatch(/install ffmpeg/i);
    const perr = await probeAudio(speech.path, { ffprobePath: '/nonexistent/ffprobe' }).catch((e) => e);
    expect(statusOf(perr)).toBe(500);
    expect(perr.message).toMatch(/ffprobe is not installed/i);
    const serr = await (async () => {
      for await (const _ of decodeStream(speech.path, { ffmpegPath: '/nonexistent/ffmpeg' })) void _;
    })().catch((e) => e);
    expect(serr).toBeInstanceOf(AudioDecodeError);
    expect(statusOf(serr)).toBe(500);
  });

  it('classifies known ffmpeg messages', () => {
    expect(classifyFfmpegFailure("Stream map '0:a:0' matches no streams.", 1).code).toBe('no_audio_stream');
    expect(classifyFfmpegFailure('x.mp3: Invalid data found when processing input', 1).code).toBe('corrupt_or_unsupported');
    expect(classifyFfmpegFailure('[mov] moov atom not found', 1).code).toBe('corrupt_or_unsupported');
    expect(classifyFfmpegFailure('Decoder (codec foo) not found for input stream #0:0', 1).code).toBe('unsupported_codec');
    const generic = classifyFfmpegFailure('something odd happened', 69);
    expect(generic.code).toBe('decode_failed');
    expect(generic.kind).toBe('invalid');
    expect(statusOf(generic)).toBe(400);
    expect(generic.message).toContain('something odd happened');
  });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('abort', () => {
  it('kills ffmpeg when the signal aborts (blocked on a FIFO that never gets data)', async () => {
    const fifo = join(scratch, 'never.fifo');
    execFileSync('mkfifo', [fifo]);
    const ac = new AbortController();
    let child: ChildProcess | undefined;
    const p = decodeToPcm16k(fifo, { signal: ac.signal, onProcess: (c) => (child = c) });
    await new Promise((r) => setTimeout(r, 200));
    expect(child?.pid).toBeTypeOf('number');
    expect(isAlive(child!.pid!)).toBe(true);
    const t0 = Date.now();
    ac.abort();
    const err = await p.catch((e) => e);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(err).toBeInstanceOf(AudioDecodeError);
    expect(err.code).toBe('aborted');
    expect(child!.signalCode).toBe('SIGKILL');
    expect(isAlive(child!.pid!)).toBe(false);
  });

  it('rejects immediately with an already-aborted signal', async () => {
    const ac = new AbortController();
    ac.abort();
    const err = await decodeToPcm16k(speech.path, { signal: ac.signal }).catch((e) => e);
    expect(err.code).toBe('aborted');
  });

  it('kills ffmpeg when a decodeStream consumer aborts mid-way', async () => {
    const long = await makeSpeechWav(TEXTS.long);
    const ac = new AbortController();
    let child: ChildProcess | undefined;
    const err = await (async () => {
      for await (const _chunk of decodeStream(long.path, { signal: ac.signal, chunkSamples: 512, onProcess: (c) => (child = c) })) {
        void _chunk;
        ac.abort();
      }
    })().catch((e) => e);
    expect(err).toBeInstanceOf(AudioDecodeError);
    expect(err.code).toBe('aborted');
    expect(child!.exitCode === null ? child!.signalCode : 'exited').toBeTruthy();
    expect(isAlive(child!.pid!)).toBe(false);
  });
});

describe('decodeStream', () => {
  it('yields fixed-size chunks that concatenate to the full decode', async () => {
    const path = converted.get('m4a-moov-at-end')!;
    const full = await decodeToPcm16k(path);
    const chunks: Float32Array[] = [];
    for await (const c of decodeStream(path, { chunkSamples: 4096 })) chunks.push(c);
    expect(chunks.slice(0, -1).every((c) => c.length === 4096)).toBe(true);
    const total = chunks.reduce((n, c) => n + c.length, 0);
    expect(total).toBe(full.length);
    let off = 0;
    let maxDiff = 0;
    for (const c of chunks) {
      for (let i = 0; i < c.length; i++) maxDiff = Math.max(maxDiff, Math.abs(c[i] - full[off + i]));
      off += c.length;
    }
    expect(maxDiff).toBe(0);
  });

  it('breaking out early kills ffmpeg', async () => {
    let child: ChildProcess | undefined;
    for await (const _ of decodeStream(speech.path, { chunkSamples: 512, onProcess: (c) => (child = c) })) {
      void _;
      break;
    }
    expect(child!.exitCode !== null || child!.signalCode !== null).toBe(true);
    expect(isAlive(child!.pid!)).toBe(false);
  });

  it('throws the same typed errors', async () => {
    const err = await (async () => {
      for await (const _ of decodeStream(converted.get('video-no-audio')!)) void _;
    })().catch((e) => e);
    expect(err).toBeInstanceOf(AudioDecodeError);
    expect(err.code).toBe('no_audio_stream');
  });
});
