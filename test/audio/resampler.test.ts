import { describe, expect, it } from 'vitest';
import { StreamResampler } from '../../src/audio/resampler.ts';

function sine(freq: number, rate: number, seconds: number): Float32Array {
  return Float32Array.from({ length: Math.round(rate * seconds) }, (_, i) => 0.5 * Math.sin((2 * Math.PI * freq * i) / rate));
}

/** Dominant frequency by zero crossings (enough for a clean sine). */
function zeroCrossingHz(x: Float32Array, rate: number): number {
  let n = 0;
  for (let i = 1; i < x.length; i++) if (x[i - 1] < 0 && x[i] >= 0) n++;
  return n / (x.length / rate);
}

describe('StreamResampler', () => {
  for (const rate of [8000, 44100, 48000]) {
    it(`${rate} Hz → 16 kHz in uneven chunks keeps pitch, level and length`, async () => {
      const r = await StreamResampler.create(rate, 16000);
      const input = sine(440, rate, 2);
      const out: Float32Array[] = [];
      for (let i = 0, k = 0; i < input.length; k++) {
        const n = [317, 960, 1024, 4410][k % 4];
        out.push(r.process(input.subarray(i, i + n)));
        i += n;
      }
      r.close();
      const y = Float32Array.from(out.flatMap((c) => Array.from(c)));
      expect(Math.abs(y.length - 32000)).toBeLessThan(400); // filter delay only
      const mid = y.subarray(2000, 30000);
      expect(zeroCrossingHz(mid, 16000)).toBeCloseTo(440, -1);
      const rms = Math.sqrt(mid.reduce((s, v) => s + v * v, 0) / mid.length);
      expect(rms).toBeCloseTo(0.5 / Math.SQRT2, 2);
    });
  }

  it('passes 16 kHz through untouched', async () => {
    const r = await StreamResampler.create(16000, 16000);
    const x = sine(100, 16000, 0.1);
    expect(r.process(x)).toBe(x);
  });
});
