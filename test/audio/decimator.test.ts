import { describe, expect, it } from 'vitest';
import { decimationTaps, StreamDecimator } from '../../src/audio/decimator.ts';
import { StreamResampler } from '../../src/audio/resampler.ts';

function sine(freq: number, rate: number, seconds: number, amp = 0.5): Float32Array {
  return Float32Array.from({ length: Math.round(rate * seconds) }, (_, i) => amp * Math.sin((2 * Math.PI * freq * i) / rate));
}

function rms(x: Float32Array): number {
  return Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);
}

/** Chunked like the wire: uneven sizes, some shorter than the factor. */
function inChunks(d: StreamDecimator, x: Float32Array): Float32Array {
  const out: number[] = [];
  for (let i = 0, k = 0; i < x.length; k++) {
    const n = [1, 4800, 2, 317, 960, 1023][k % 6];
    out.push(...d.process(x.subarray(i, i + n)));
    i += n;
  }
  return Float32Array.from(out);
}

describe('StreamDecimator', () => {
  for (const factor of [2, 3]) {
    const rate = 16000 * factor;

    it(`÷${factor}: a 1 kHz tone keeps its level and phase (after the group delay), one output per ${factor} inputs`, () => {
      const y = inChunks(new StreamDecimator(factor), sine(1000, rate, 1));
      expect(y.length).toBe(16000);
      // Output j is input sample j·factor delayed by (taps − 1)/2 = 16·factor inputs = 16 outputs.
      const want = sine(1000, 16000, 1).subarray(0, 16000 - 16);
      const got = y.subarray(16);
      let maxErr = 0;
      for (let i = 200; i < want.length; i++) maxErr = Math.max(maxErr, Math.abs(got[i] - want[i]));
      expect(maxErr).toBeLessThan(0.005);
    });

    it(`÷${factor}: tones above the new Nyquist are removed (no aliasing)`, () => {
      // 9 kHz at 48k would alias to 7 kHz at 16k; 12 kHz to 4 kHz; 14 kHz at 32k to 2 kHz.
      for (const f of factor === 3 ? [9000, 12000, 20000] : [9000, 14000]) {
        const y = inChunks(new StreamDecimator(factor), sine(f, rate, 0.5));
        expect(rms(y.subarray(200)) / (0.5 / Math.SQRT2), `${f} Hz`).toBeLessThan(10 ** (-70 / 20));
      }
    });

    it(`÷${factor}: chunk boundaries change nothing`, () => {
      const x = Float32Array.from({ length: rate / 2 }, (_, i) => Math.sin(i * 0.37) * 0.4 + Math.sin(i * 0.011) * 0.3);
      const whole = new StreamDecimator(factor).process(x);
      expect(Array.from(inChunks(new StreamDecimator(factor), x))).toEqual(Array.from(whole));
    });
  }

  it('taps are symmetric with unity DC gain', () => {
    const h = decimationTaps(3);
    expect(h.length).toBe(97);
    expect(h.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 5);
    for (let i = 0; i < h.length; i++) expect(h[i]).toBeCloseTo(h[h.length - 1 - i], 7);
  });

  it('refuses a factor that is not a whole number ≥ 2', () => {
    expect(() => new StreamDecimator(1.5)).toThrow(RangeError);
    expect(() => new StreamDecimator(1)).toThrow(RangeError);
  });

  it('StreamResampler uses it for 48 and 32 kHz (not for 44.1 kHz)', async () => {
    const x = sine(12000, 48000, 0.2);
    const r = await StreamResampler.create(48000, 16000);
    const d = new StreamDecimator(3);
    expect(Array.from(r.process(x))).toEqual(Array.from(d.process(x)));
    r.close();
    const r44 = await StreamResampler.create(44100, 16000);
    expect(r44.process(sine(440, 44100, 0.1)).length).toBeGreaterThan(0);
    r44.close();
  });
});
