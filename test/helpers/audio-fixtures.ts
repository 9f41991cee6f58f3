/**
 * Test audio generator shared by all test suites: real (synthetic) speech from espeak-ng,
 * silence / padding / concatenation with sox, container/codec conversion with ffmpeg.
 *
 * Files are content-addressed in a shared cache dir (os.tmpdir()/stt-audio-fixtures-v1, override
 * with STT_FIXTURE_DIR) and written atomically (tmp + rename), so parallel vitest workers can
 * share them and a second run is instant.
 *
 * Requires espeak-ng, sox, ffmpeg on PATH (`hasAudioTools()` tells whether they are there).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
/** Run a tool with a hard timeout so a bad recipe can never hang the test suite. */
const run = (cmd: string, args: string[]) => execFileP(cmd, args, { timeout: 60_000, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 });

export const FIXTURE_DIR = process.env.STT_FIXTURE_DIR ?? join(tmpdir(), 'stt-audio-fixtures-v1');

export function fixtureDir(): string {
  mkdirSync(FIXTURE_DIR, { recursive: true });
  return FIXTURE_DIR;
}

/** True when espeak-ng, sox and ffmpeg are all runnable. */
export async function hasAudioTools(): Promise<boolean> {
  try {
    await Promise.all([run('espeak-ng', ['--version']), run('sox', ['--version']), run('ffmpeg', ['-version'])]);
    return true;
  } catch {
    return false;
  }
}

function key(parts: unknown): string {
  return createHash('sha1').update(JSON.stringify(parts)).digest('hex').slice(0, 16);
}

/** Produce `file` via `make(tmpPath)` unless it already exists; atomic across processes. */
async function cached(file: string, make: (tmp: string) => Promise<void>): Promise<string> {
  if (existsSync(file) && statSync(file).size > 0) return file;
  fixtureDir();
  const dot = file.lastIndexOf('.');
  const tmp = `${file.slice(0, dot)}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}${file.slice(dot)}`;
  try {
    await make(tmp);
    renameSync(tmp, file);
  } finally {
    if (existsSync(tmp)) rmSync(tmp, { force: true });
  }
  return file;
}

export async function soxDuration(path: string): Promise<number> {
  const { stdout } = await run('soxi', ['-D', path]);
  return Number(stdout.trim());
}

/** Duration per ffprobe (works for every container). */
export async function ffprobeDuration(path: string): Promise<number> {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', path]);
  return Number(stdout.trim());
}

export interface SpeechWavOptions {
  /** espeak-ng voice, default 'en'. */
  voice?: string;
  /** Words per minute, default 160. */
  speed?: number;
  /** Silence before the speech (s), default 0. */
  padStartS?: number;
  /** Silence after the speech (s), default 0. */
  padEndS?: number;
  /** Output sample rate, default 16000. */
  sampleRate?: number;
}

export interface SpeechWav {
  path: string;
  /** Total duration of the file. */
  durationS: number;
  /** Where speech starts/ends (espeak's own leading/trailing silence is trimmed before padding). */
  speechStartS: number;
  speechEndS: number;
}

/**
 * Speak `text` with espeak-ng into a 16-bit mono WAV, trim espeak's leading/trailing silence with
 * sox, then pad with exact amounts of digital silence, so speech positions are known.
 */
export async function makeSpeechWav(text: string, opts: SpeechWavOptions = {}): Promise<SpeechWav> {
  const voice = opts.voice ?? 'en';
  const speed = opts.speed ?? 160;
  const padStartS = opts.padStartS ?? 0;
  const padEndS = opts.padEndS ?? 0;
  const sr = opts.sampleRate ?? 16000;
  const dir = fixtureDir();
  const base = join(dir, `speech-${key({ text, voice, speed, sr })}.wav`);
  await cached(base, async (tmp) => {
    const raw = `${tmp}.raw.wav`;
    try {
      await run('espeak-ng', ['-v', voice, '-s', String(speed), '-w', raw, text]);
      // Trim silence at both ends (reverse trick), resample, 16-bit mono.
      await run('sox', [raw, '-r', String(sr), '-c', '1', '-b', '16', tmp, 'silence', '1', '0.02', '0.5%', 'reverse', 'silence', '1', '0.02', '0.5%', 'reverse']);
    } finally {
      rmSync(raw, { force: true });
    }
  });
  const speechS = await soxDuration(base);
  let path = base;
  if (padStartS > 0 || padEndS > 0) {
    path = join(dir, `speech-${key({ text, voice, speed, sr, padStartS, padEndS })}-padded.wav`);
    await cached(path, async (tmp) => {
      await run('sox', [base, tmp, 'pad', String(padStartS), String(padEndS)]);
    });
  }
  return { path, durationS: padStartS + speechS + padEndS, speechStartS: padStartS, speechEndS: padStartS + speechS };
}

/** Digital silence (optionally with a little white noise, amplitude in [0,1]). */
export async function makeSilenceWav(durationS: number, opts: { sampleRate?: number; noiseAmplitude?: number } = {}): Promise<string> {
  const sr = opts.sampleRate ?? 16000;
  const noise = opts.noiseAmplitude ?? 0;
  const path = join(fixtureDir(), `silence-${key({ durationS, sr, noise })}.wav`);
  return cached(path, async (tmp) => {
    const args = ['-n', '-r', String(sr), '-c', '1', '-b', '16', tmp, 'synth', String(durationS)];
    if (noise > 0) args.push('whitenoise', 'vol', String(noise));
    else args.push('sine', '0', 'vol', '0');
    await run('sox', args);
  });
}

export interface ConcatResult {
  path: string;
  durationS: number;
  /** [start, end] of each input inside the output, seconds. */
  spans: Array<[number, number]>;
}

/** Concatenate WAVs (same rate/channels) with `gapS` seconds of silence between them (sox). */
export async function concatWithGaps(paths: string[], gapS: number, opts: { padStartS?: number; padEndS?: number } = {}): Promise<ConcatResult> {
  const padStartS = opts.padStartS ?? 0;
  const padEndS = opts.padEndS ?? 0;
  const durations = await Promise.all(paths.map(soxDuration));
  const out = join(fixtureDir(), `concat-${key({ paths, gapS, padStartS, padEndS, durations })}.wav`);
  const spans: Array<[number, number]> = [];
  let t = padStartS;
  durations.forEach((d, i) => {
    spans.push([t, t + d]);
    t += d + (i < durations.length - 1 ? gapS : 0);
  });
  await cached(out, async (tmp) => {
    const sr = (await run('soxi', ['-r', paths[0]])).stdout.trim();
    const gap = `${tmp}.gap.wav`;
    try {
      await run('sox', ['-n', '-r', sr, '-c', '1', '-b', '16', gap, 'synth', String(gapS), 'sine', '0', 'vol', '0']);
      const inputs: string[] = [];
      paths.forEach((p, i) => {
        if (i > 0) inputs.push(gap);
        inputs.push(p);
      });
      await run('sox', [...inputs, tmp, 'pad', String(padStartS), String(padEndS)]);
    } finally {
      rmSync(gap, { force: true });
    }
  });
  return { path: out, durationS: t + padEndS, spans };
}

/** Every upload format the server claims to accept, plus the tricky variants. */
export const ALL_FORMATS = ['mp3', 'wav', 'flac', 'ogg', 'm4a', 'aac', 'opus', 'wma', 'mp4', 'webm', 'mkv', 'avi', 'mov', 'wmv', 'mpg', 'mpeg', 'm4a-moov-at-end', 'mp4-moov-at-end'] as const;
export type FixtureFormat = (typeof ALL_FORMATS)[number] | 'video-no-audio';

interface FormatRecipe {
  ext: string;
  /** Add a tiny lavfi colour video stream. */
  video?: boolean;
  args: string[];
}

const TINY_VIDEO = ['-f', 'lavfi', '-i', 'color=c=black:s=64x64:r=10'];

const RECIPES: Record<FixtureFormat, FormatRecipe> = {
  mp3: { ext: 'mp3', args: ['-c:a', 'libmp3lame', '-b:a', '64k'] },
  wav: { ext: 'wav', args: ['-c:a', 'pcm_s16le', '-ar', '44100', '-ac', '2'] },
  flac: { ext: 'flac', args: ['-c:a', 'flac'] },
  ogg: { ext: 'ogg', args: ['-c:a', 'libvorbis', '-q:a', '3'] },
  m4a: { ext: 'm4a', args: ['-c:a', 'aac', '-b:a', '64k', '-movflags', '+faststart'] },
  aac: { ext: 'aac', args: ['-c:a', 'aac', '-b:a', '64k', '-f', 'adts'] },
  opus: { ext: 'opus', args: ['-c:a', 'libopus', '-b:a', '32k'] },
  wma: { ext: 'wma', args: ['-c:a', 'wmav2', '-b:a', '64k'] },
  mp4: { ext: 'mp4', video: true, args: ['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-b:a', '64k', '-movflags', '+faststart'] },
  webm: { ext: 'webm', video: true, args: ['-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '50k', '-c:a', 'libopus', '-b:a', '32k'] },
  mkv: { ext: 'mkv', video: true, args: ['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'libvorbis'] },
  avi: { ext: 'avi', video: true, args: ['-c:v', 'mpeg4', '-c:a', 'libmp3lame', '-b:a', '64k'] },
  mov: { ext: 'mov', video: true, args: ['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-b:a', '64k'] },
  wmv: { ext: 'wmv', video: true, args: ['-c:v', 'wmv2', '-c:a', 'wmav2', '-b:a', '64k'] },
  mpg: { ext: 'mpg', video: true, args: ['-c:v', 'mpeg1video', '-r', '25', '-c:a', 'mp2', '-b:a', '128k', '-f', 'mpeg'] },
  mpeg: { ext: 'mpeg', video: true, args: ['-c:v', 'mpeg2video', '-r', '25', '-c:a', 'mp2', '-b:a', '128k', '-f', 'vob'] },
  // No +faststart: ffmpeg's mov muxer writes moov after mdat by default.
  'm4a-moov-at-end': { ext: 'm4a', args: ['-c:a', 'aac', '-b:a', '64k', '-f', 'ipod'] },
  'mp4-moov-at-end': { ext: 'mp4', video: true, args: ['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-b:a', '64k', '-f', 'mp4'] },
  'video-no-audio': { ext: 'mp4', video: true, args: ['-an', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p'] },
};

/** Convert `src` (any audio file) to `format`; returns the cached output path. */
export async function convertTo(src: string, format: FixtureFormat): Promise<string> {
  const recipe = RECIPES[format];
  if (!recipe) throw new Error(`unknown fixture format ${format}`);
  const st = statSync(src);
  const out = join(fixtureDir(), `conv-${key({ src, size: st.size, mtime: st.mtimeMs, format })}-${format}.${recipe.ext}`);
  return cached(out, async (tmp) => {
    const args = ['-nostdin', '-hide_banner', '-v', 'error', '-y', '-i', src];
    if (recipe.video) args.push(...TINY_VIDEO, '-map', '1:v:0');
    if (format === 'video-no-audio') {
      // No audio to end on: bound the infinite lavfi source explicitly.
      args.push('-t', String(await ffprobeDuration(src)));
    } else {
      args.push('-map', '0:a:0');
      if (recipe.video) args.push('-shortest');
    }
    args.push(...recipe.args, tmp);
    await run('ffmpeg', args);
  });
}

/** Where the moov atom sits in an ISO-BMFF file: 'start' if before mdat, 'end' otherwise. */
export function moovPosition(path: string): 'start' | 'end' | 'none' {
  const buf = readFileSync(path);
  let off = 0;
  let seenMdat = false;
  while (off + 8 <= buf.length) {
    let size = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    if (size === 1) size = Number(buf.readBigUInt64BE(off + 8));
    if (type === 'moov') return seenMdat ? 'end' : 'start';
    if (type === 'mdat') seenMdat = true;
    if (size < 8) break;
    off += size;
  }
  return 'none';
}

/** Random bytes with a given extension (a "corrupt upload"). */
export async function makeRandomBytesFile(bytes: number, ext = 'mp3', seed = 1): Promise<string> {
  const path = join(fixtureDir(), `random-${bytes}-${seed}.${ext}`);
  return cached(path, async (tmp) => {
    const { writeFileSync } = await import('node:fs');
    const buf = Buffer.alloc(bytes);
    let x = (seed * 2654435761) >>> 0;
    for (let i = 0; i < bytes; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      buf[i] = x & 0xff;
    }
    writeFileSync(tmp, buf);
  });
}

/** Standard test texts. */
export const TEXTS = {
  hello: 'Hello world. This is a test of the speech recognition server.',
  second: 'The quick brown fox jumps over the lazy dog near the river bank.',
  long: [
    'Speech recognition converts spoken language into written text.',
    'Modern systems use neural networks trained on many thousands of hours of audio.',
    'A voice activity detector finds the parts of a recording that contain speech.',
    'Long recordings are split into chunks of at most thirty seconds for the model.',
    'Each chunk is transcribed separately and the results are joined together.',
    'Streaming servers must keep latency low while handling many connections at once.',
    'Batching requests across streams makes better use of the available processors.',
    'Careful error messages tell users what went wrong and how they can fix it.',
  ].join(' '),
};
