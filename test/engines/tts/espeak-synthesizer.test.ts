import { describe, expect, it } from 'vitest';
import { matchLoudness, medianF0Hz, pitchSettingFor, speechRms } from '../../../src/engines/tts/espeak-synthesizer.ts';

/** A voiced-like test signal: harmonics 1–5 of f0 with falling amplitude, 16 kHz. */
function harmonic(f0: number, seconds: number, sr = 16_000): Float32Array {
  const out = new Float32Array(Math.round(seconds * sr));
  for (let i = 0; i < out.length; i++) {
    let v = 0;
    for (let k = 1; k <= 5; k++) v += Math.sin((2 * Math.PI * f0 * k * i) / sr) / k;
    out[i] = 0.3 * v;
  }
  return out;
}

describe('medianF0Hz (the pitch the TTS matches)', () => {
  it.each([90, 120, 180, 250, 320])('finds %d Hz within 3 %', (f0) => {
    const hz = medianF0Hz(harmonic(f0, 1));
    expect(hz).not.toBeNull();
    expect(Math.abs(hz! - f0) / f0).toBeLessThan(0.03);
  });

  it('null for silence and noise', () => {
    expect(medianF0Hz(new Float32Array(16_000))).toBeNull();
    let seed = 1;
    const noise = Float32Array.from({ length: 16_000 }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5) * 0.5);
    expect(medianF0Hz(noise)).toBeNull();
  });
});

describe('pitchSettingFor', () => {
  const cal: Array<[number, number]> = [
    [10, 82],
    [30, 90],
    [50, 101],
    [70, 128],
    [90, 155],
    [99, 168],
  ];
  it('interpolates between calibration points and clamps at the ends', () => {
    expect(pitchSettingFor(101, cal)).toBe(50);
    expect(pitchSettingFor(114.5, cal)).toBe(60);
    expect(pitchSettingFor(40, cal)).toBe(10);
    expect(pitchSettingFor(400, cal)).toBe(99);
  });
  it('ignores a point that breaks the rise (espeak at its lowest settings)', () => {
    const glitch: Array<[number, number]> = [[0, 107], ...cal];
    expect(pitchSettingFor(101, glitch)).toBe(pitchSettingFor(101, cal));
    expect(pitchSettingFor(85, glitch)).toBe(pitchSettingFor(85, cal));
    expect(pitchSettingFor(85, cal)).toBe(18);
  });
});

describe('loudness', () => {
  it('speechRms ignores pauses; matchLoudness reaches the target without passing -1 dBFS', () => {
    const s = new Float32Array(32_000);
    s.set(
      harmonic(150, 1).map((v) => v * 0.2),
      0,
    ); // 1 s of sound, 1 s of silence
    const alone = speechRms(s.subarray(0, 16_000), 16_000);
    expect(speechRms(s, 16_000)).toBeCloseTo(alone, 5);
    const out = matchLoudness(s.slice(), 16_000, 0.1);
    expect(speechRms(out, 16_000)).toBeCloseTo(0.1, 3);
    const loud = matchLoudness(s.slice(), 16_000, 5);
    expect(Math.max(...loud.map(Math.abs))).toBeLessThanOrEqual(0.8911);
  });
});
