import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeToPcm, decodeToPcm16k } from '../../src/audio/ffmpeg.ts';
import { WHISPER_FIXTURE } from '../helpers/paths.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plain-wav-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const jfk = path.join(WHISPER_FIXTURE, 'golden', 'jfk.wav'); // 16 kHz mono s16
const convert = (args: string[], name: string) => {
  const out = path.join(dir, name);
  execFileSync('ffmpeg', ['-v', 'error', '-y', '-i', jfk, ...args, out]);
  return out;
};

/** Decodes with and without the in-process WAV path; counts the ffmpeg processes each started. */
async function both(file: string, sampleRate = 16000) {
  let spawned = 0;
  const fast = await decodeToPcm(file, { sampleRate, onProcess: () => spawned++ });
  const fastSpawned = spawned;
  const viaFfmpeg = await decodeToPcm(file, { sampleRate, readPlainWav: false, onProcess: () => spawned++ });
  return { fast, viaFfmpeg, fastSpawned, ffmpegSpawned: spawned - fastSpawned };
}

describe('plain WAV files are read without ffmpeg, to the same samples', () => {
  it('16 kHz mono 16-bit PCM: no ffmpeg, bit-identical to ffmpeg', async () => {
    const r = await both(jfk);
    expect(r.fastSpawned).toBe(0);
    expect(r.ffmpegSpawned).toBe(1);
    expect(r.fast.length).toBeGreaterThan(16000);
    expect(Buffer.from(r.fast.buffer)).toEqual(Buffer.from(r.viaFfmpeg.buffer));
  });

  it('16 kHz mono 32-bit float: no ffmpeg, bit-identical', async () => {
    const r = await both(convert(['-c:a', 'pcm_f32le'], 'f32.wav'));
    expect(r.fastSpawned).toBe(0);
    expect(Buffer.from(r.fast.buffer)).toEqual(Buffer.from(r.viaFfmpeg.buffer));
  });

  it('anything needing conversion goes through ffmpeg: stereo, another rate, 24-bit, or another target rate', async () => {
    for (const [args, name, rate] of [
      [['-ac', '2'], 'stereo.wav', 16000],
      [['-ar', '44100'], '44k.wav', 16000],
      [['-c:a', 'pcm_s24le'], 's24.wav', 16000],
      [[], 'same.wav', 48000],
    ] as const) {
      const r = await both(convert([...args], name), rate);
      expect(r.fastSpawned, name).toBe(1);
      expect(Buffer.from(r.fast.buffer), name).toEqual(Buffer.from(r.viaFfmpeg.buffer));
    }
  });

  it('a start offset or a duration limit is ffmpeg’s job; a WAV that only claims to be one still gets ffmpeg’s error', async () => {
    let spawned = 0;
    const cut = await decodeToPcm16k(jfk, { maxDurationS: 1, onProcess: () => spawned++ });
    expect(spawned).toBe(1);
    expect(cut.length).toBe(16000);
    const fake = path.join(dir, 'fake.wav');
    fs.writeFileSync(fake, Buffer.concat([Buffer.from('RIFF\x10\x00\x00\x00WAVEjunk', 'latin1'), Buffer.alloc(64, 7)]));
    await expect(decodeToPcm16k(fake)).rejects.toMatchObject({ name: 'AudioDecodeError' });
  });
});
