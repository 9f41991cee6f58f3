import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { encodeWav, f32leBytesToFloat32, float32ToInt16, float32ToInt16LeBytes, int16LeBytesToFloat32, int16ToFloat32, readWav, rms, WavFormatError } from '../../src/audio/pcm.ts';
import { makeSpeechWav, TEXTS } from '../helpers/audio-fixtures.ts';

function sine(n: number, freq: number, sr: number, amp = 0.5): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = amp * Math.sin((2 * Math.PI * freq * i) / sr);
  return out;
}

/** Build a WAV by hand: arbitrary fmt tag / bits / channels and optional extra chunks. */
function buildWav(opts: { format: number; bits: number; channels: number; sampleRate: number; data: Buffer; extensible?: boolean; extraChunk?: boolean }): Buffer {
  const fmtSize = opts.extensible ? 40 : 16;
  const fmt = Buffer.alloc(8 + fmtSize);
  fmt.write('fmt ', 0, 'ascii');
  fmt.writeUInt32LE(fmtSize, 4);
  fmt.writeUInt16LE(opts.extensible ? 0xfffe : opts.format, 8);
  fmt.writeUInt16LE(opts.channels, 10);
  fmt.writeUInt32LE(opts.sampleRate, 12);
  fmt.writeUInt32LE((opts.sampleRate * opts.channels * opts.bits) / 8, 16);
  fmt.writeUInt16LE((opts.channels * opts.bits) / 8, 20);
  fmt.writeUInt16LE(opts.bits, 22);
  if (opts.extensible) {
    fmt.writeUInt16LE(22, 24);
    fmt.writeUInt16LE(opts.bits, 26);
    fmt.writeUInt32LE(0, 28);
    fmt.writeUInt16LE(opts.format, 32); // SubFormat GUID starts with the format tag
  }
  const extra = opts.extraChunk ? Buffer.concat([Buffer.from('LIST'), Buffer.from([3, 0, 0, 0]), Buffer.from('abc'), Buffer.from([0])]) : Buffer.alloc(0);
  const dataHdr = Buffer.alloc(8);
  dataHdr.write('data', 0, 'ascii');
  dataHdr.writeUInt32LE(opts.data.length, 4);
  const body = Buffer.concat([Buffer.from('WAVE'), fmt, extra, dataHdr, opts.data]);
  const riff = Buffer.alloc(8);
  riff.write('RIFF', 0, 'ascii');
  riff.writeUInt32LE(body.length, 4);
  return Buffer.concat([riff, body]);
}

describe('int16 <-> float32', () => {
  it('round-trips within two LSB and clips out-of-range values', () => {
    const x = new Float32Array([0, 0.5, -0.5, 0.999, -1, 1, 1.7, -3, NaN]);
    const i16 = float32ToInt16(x);
    expect(Array.from(i16)).toEqual([0, 16384, -16384, 32734, -32768, 32767, 32767, -32768, 0]);
    const back = int16ToFloat32(i16);
    for (let i = 0; i < 6; i++) expect(Math.abs(back[i] - x[i])).toBeLessThanOrEqual(2 / 32768);
  });

  it('LE byte conversion matches the Int16Array conversion', () => {
    const x = sine(1000, 440, 16000);
    const bytes = float32ToInt16LeBytes(x);
    expect(bytes.length).toBe(2000);
    const a = int16LeBytesToFloat32(bytes);
    const b = int16ToFloat32(float32ToInt16(x));
    expect(Array.from(a)).toEqual(Array.from(b));
    // Works on unaligned views too.
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    expect(Array.from(int16LeBytesToFloat32(shifted.subarray(1)))).toEqual(Array.from(a));
  });

  it('f32le bytes -> Float32Array copies and aligns', () => {
    const x = new Float32Array([0.25, -0.75, 1e-3]);
    const bytes = new Uint8Array(13);
    bytes.set(new Uint8Array(x.buffer), 1);
    expect(Array.from(f32leBytesToFloat32(bytes.subarray(1)))).toEqual(Array.from(x));
  });
});

describe('encodeWav / readWav', () => {
  it('round-trips mono PCM16', () => {
    const x = sine(16000, 300, 16000, 0.8);
    const wav = encodeWav(x, 16000);
    expect(wav.length).toBe(44 + 32000);
    expect(wav.toString('ascii', 0, 4)).toBe('RIFF');
    const r = readWav(wav);
    expect(r).toMatchObject({ sampleRate: 16000, channels: 1, bitsPerSample: 16, encoding: 'pcm' });
    expect(r.durationS).toBe(1);
    let maxDiff = 0;
    for (let i = 0; i < x.length; i++) maxDiff = Math.max(maxDiff, Math.abs(r.samples[i] - x[i]));
    expect(maxDiff).toBeLessThan(1 / 16000);
  });

  it('reads float32 / float64 / 24-bit / 8-bit / stereo / extensible WAVs and skips odd chunks', () => {
    const n = 100;
    const x = sine(n, 1000, 16000, 0.5);
    const f32 = Buffer.alloc(n * 4);
    x.forEach((v, i) => f32.writeFloatLE(v, i * 4));
    const f64 = Buffer.alloc(n * 8);
    x.forEach((v, i) => f64.writeDoubleLE(v, i * 8));
    const s24 = Buffer.alloc(n * 3);
    x.forEach((v, i) => s24.writeIntLE(Math.round(v * 8388607), i * 3, 3));
    const u8 = Buffer.alloc(n);
    x.forEach((v, i) => (u8[i] = Math.round(v * 127) + 128));
    const stereo = Buffer.alloc(n * 4);
    x.forEach((v, i) => {
      stereo.writeInt16LE(Math.round(v * 32767), i * 4);
      stereo.writeInt16LE(0, i * 4 + 2);
    });
    const cases: Array<[Buffer, number]> = [
      [buildWav({ format: 3, bits: 32, channels: 1, sampleRate: 16000, data: f32 }), 1e-7],
      [buildWav({ format: 3, bits: 64, channels: 1, sampleRate: 16000, data: f64, extraChunk: true }), 1e-7],
      [buildWav({ format: 1, bits: 24, channels: 1, sampleRate: 16000, data: s24, extensible: true }), 1e-6],
      [buildWav({ format: 1, bits: 8, channels: 1, sampleRate: 16000, data: u8 }), 1 / 100],
      [buildWav({ format: 3, bits: 32, channels: 1, sampleRate: 16000, data: f32, extensible: true, extraChunk: true }), 1e-7],
    ];
    for (const [buf, tol] of cases) {
      const r = readWav(buf);
      expect(r.samples.length).toBe(n);
      for (let i = 0; i < n; i++) expect(Math.abs(r.samples[i] - x[i])).toBeLessThan(tol);
    }
    const st = readWav(buildWav({ format: 1, bits: 16, channels: 2, sampleRate: 8000, data: stereo }));
    expect(st.channels).toBe(2);
    expect(st.sampleRate).toBe(8000);
    expect(st.channelData[1].every((v) => v === 0)).toBe(true);
    for (let i = 0; i < n; i++) expect(Math.abs(st.samples[i] - x[i] / 2)).toBeLessThan(1e-4);
  });

  it('rejects non-WAV input and unsupported codecs with WavFormatError', () => {
    expect(() => readWav(Buffer.from('hello world, not a wav'))).toThrow(WavFormatError);
    const alaw = buildWav({ format: 6, bits: 8, channels: 1, sampleRate: 8000, data: Buffer.alloc(10) });
    expect(() => readWav(alaw)).toThrow(/Unsupported WAV codec/);
  });

  it('reads the espeak/sox fixture (real-world header)', async () => {
    const w = await makeSpeechWav(TEXTS.hello, { padStartS: 0.5 });
    const r = readWav(readFileSync(w.path));
    expect(r.sampleRate).toBe(16000);
    expect(Math.abs(r.durationS - w.durationS)).toBeLessThan(1e-3);
    expect(rms(r.samples, 0, 7000)).toBe(0);
    expect(rms(r.samples, 8000 + 1600)).toBeGreaterThan(0.02);
  });
});
