import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeWav, readWav } from '../../../src/audio/pcm.ts';
import { AudioEnhancer } from '../../../src/engines/enhance/audio-enhancer.ts';
import { LoudnessMeter } from '../../../src/engines/enhance/loudness.ts';
import { convertTo, makeSpeechWav } from '../../helpers/audio-fixtures.ts';

const execFileP = promisify(execFile);
const TARGET = -23;
/** Stated margin: RNNoise must improve the SNR against the clean speech by at least this much (5 dB input). */
const SNR_GAIN_DB = 6; // measured: 5.0 dB → 13.8 dB (+8.8)

/** Scale-invariant SNR of `y` against the reference `s` (dB): loudness normalisation does not count. */
function siSnr(s: Float32Array, y: Float32Array): number {
  let dot = 0;
  let ss = 0;
  for (let i = 0; i < s.length; i++) {
    dot += s[i] * y[i];
    ss += s[i] * s[i];
  }
  const a = dot / ss;
  let sig = 0;
  let err = 0;
  for (let i = 0; i < s.length; i++) {
    sig += (a * s[i]) ** 2;
    err += (y[i] - a * s[i]) ** 2;
  }
  return 10 * Math.log10(sig / err);
}

/** Integrated loudness measured by ffmpeg's ebur128 filter (independent of our meter). */
async function ffmpegLufs(path: string): Promise<number> {
  const { stderr } = await execFileP('ffmpeg', ['-nostdin', '-hide_banner', '-i', path, '-af', 'ebur128', '-f', 'null', '-'], { maxBuffer: 64 * 1024 * 1024 });
  const m = /Integrated loudness:\s+I:\s+(-?[\d.]+) LUFS/.exec(stderr);
  if (!m) throw new Error(`no ebur128 summary in ffmpeg output: ${stderr.slice(-500)}`);
  return Number(m[1]);
}

function seededNoise(n: number, seed = 7): Float32Array {
  let x = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    // Gaussian-ish white noise: sum of 4 uniforms from xorshift32.
    let u = 0;
    for (let k = 0; k < 4; k++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      u += (x >>> 0) / 4294967296 - 0.5;
    }
    out[i] = u;
  }
  return out;
}

describe('AudioEnhancer (RNNoise + EBU R128)', () => {
  let enhancer: AudioEnhancer;
  let dir: string;
  let clean: Float32Array;
  let noisyPath: string;
  let inputSnr: number;

  beforeAll(async () => {
    enhancer = await AudioEnhancer.load({ targetLufs: TARGET });
    dir = mkdtempSync(join(tmpdir(), 'enhance-'));
    const speech = await makeSpeechWav('The quarterly budget meeting is moved to Friday afternoon. Please review the design document before Tuesday.', {
      sampleRate: 48000,
      padStartS: 0.5,
      padEndS: 0.5,
    });
    clean = readWav(readFileSync(speech.path)).samples;
    const noise = seededNoise(clean.length);
    let ps = 0;
    let pn = 0;
    for (let i = 0; i < clean.length; i++) {
      ps += clean[i] ** 2;
      pn += noise[i] ** 2;
    }
    const k = Math.sqrt(ps / pn / 10 ** (5 / 10)); // 5 dB SNR over the file
    const noisy = clean.map((v, i) => v + k * noise[i]);
    inputSnr = siSnr(clean, noisy);
    noisyPath = join(dir, 'noisy.wav');
    writeFileSync(noisyPath, encodeWav(noisy, 48000));
  });
  afterAll(async () => {
    await enhancer?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`improves the SNR of espeak speech in white noise at 5 dB by >= ${SNR_GAIN_DB} dB, hits ${TARGET} LUFS within 1 LU, keeps the length`, async () => {
    expect(inputSnr).toBeGreaterThan(4.5);
    expect(inputSnr).toBeLessThan(5.5);
    const r = await enhancer.enhanceFile(noisyPath);
    const outPath = join(dir, 'out.wav');
    writeFileSync(outPath, r.wav);
    const out = readWav(r.wav);
    expect(out.sampleRate).toBe(48000);
    expect(out.channels).toBe(1);
    expect(out.samples.length).toBe(clean.length);
    const outSnr = siSnr(clean, out.samples);
    if (process.env.ENHANCE_DEBUG) console.log({ inputSnr, outSnr, lufs: await ffmpegLufs(outPath), ours: r.outputLufs });
    expect(outSnr - inputSnr).toBeGreaterThanOrEqual(SNR_GAIN_DB);
    expect(Math.abs((await ffmpegLufs(outPath)) - TARGET)).toBeLessThanOrEqual(1);
    expect(Math.abs(r.outputLufs - TARGET)).toBeLessThanOrEqual(1);
  });

  it('our loudness meter agrees with ffmpeg ebur128 within 0.3 LU', async () => {
    const m = new LoudnessMeter();
    m.push(readWav(readFileSync(noisyPath)).samples);
    expect(Math.abs(m.integrated() - (await ffmpegLufs(noisyPath)))).toBeLessThan(0.3);
  });

  it('reads any format ffmpeg reads (mp3) and rejects a file that is not audio with 400', async () => {
    const mp3 = await convertTo(noisyPath, 'mp3');
    const r = await enhancer.enhanceFile(mp3);
    expect(Math.abs(r.durationS - clean.length / 48000)).toBeLessThan(0.1);
    const junk = join(dir, 'junk.mp3');
    writeFileSync(junk, Buffer.from('definitely not audio'.repeat(50)));
    await expect(enhancer.enhanceFile(junk)).rejects.toMatchObject({ kind: 'invalid' });
  });

  it('holds a file whose container declares no duration (WebM written to a pipe) to maxDurationS: 413', async () => {
    const webm = join(dir, 'no-duration.webm');
    // ffmpeg cannot seek back into a pipe to write the duration: ffprobe finds none.
    const { stdout } = await execFileP('ffmpeg', ['-nostdin', '-v', 'error', '-i', noisyPath, '-c:a', 'libopus', '-f', 'webm', 'pipe:1'], { encoding: 'buffer', maxBuffer: 64 << 20 });
    writeFileSync(webm, stdout);
    const probe = await execFileP('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', webm]);
    expect(['', 'N/A']).toContain(probe.stdout.trim());
    const short = await AudioEnhancer.load({ maxDurationS: 2 });
    await expect(short.enhanceFile(webm)).rejects.toMatchObject({ kind: 'too_large', message: 'The audio is longer than 2 s, the enhance-audio limit.' });
    // Within the limit the same file is enhanced whole.
    const r = await (await AudioEnhancer.load({ maxDurationS: 3600 })).enhanceFile(webm);
    expect(Math.abs(r.durationS - clean.length / 48000)).toBeLessThan(0.1);
  });

  it('decodes with src/audio/ffmpeg.ts: its errors (ffmpeg missing: an internal error naming FFMPEG_PATH, for the log) and its cancellation', async () => {
    const noFfmpeg = await AudioEnhancer.load({ ffmpegPath: join(dir, 'no-such-ffmpeg') });
    await expect(noFfmpeg.enhanceFile(noisyPath)).rejects.toMatchObject({
      kind: 'internal',
      code: 'ffmpeg_missing',
      message: expect.stringContaining('or point FFMPEG_PATH / FFPROBE_PATH at the binaries'),
    });
    const cancelled = new AbortController();
    cancelled.abort(new Error('client gone'));
    await expect(enhancer.enhanceFile(noisyPath, cancelled.signal)).rejects.toMatchObject({ code: 'aborted' });
  });
});
