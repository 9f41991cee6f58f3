import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { extractFeatures, hertzToMelSlaney, melToHertzSlaney, melFilterBank, Dft, longFormMel, sliceFrames } from '../../../src/engines/whisper/features.ts';
import { GOLDEN_DIR, GOLDEN_NAMES, loadAudio, readF32 } from './helpers.ts';

describe('whisper log-mel features', () => {
  for (const name of GOLDEN_NAMES) {
    it(`matches the HF golden features for ${name} (max abs err <= 1e-4)`, () => {
      const feats = extractFeatures(loadAudio(name));
      const ref = readF32(join(GOLDEN_DIR, `${name}.features.f32`));
      expect(feats.length).toBe(80 * 3000);
      let maxErr = 0;
      for (let i = 0; i < ref.length; i++) maxErr = Math.max(maxErr, Math.abs(feats[i] - ref[i]));
      expect(maxErr).toBeLessThanOrEqual(1e-4);
    });
  }

  it('slaney mel scale round-trips and filters are non-negative', () => {
    for (const f of [0, 200, 999, 1000, 4000, 8000]) expect(melToHertzSlaney(hertzToMelSlaney(f))).toBeCloseTo(f, 6);
    const fb = melFilterBank(201, 80, 0, 8000, 16000);
    expect(fb.every((v) => v >= 0)).toBe(true);
  });

  it('Bluestein DFT equals a naive DFT for n=400', () => {
    const n = 400;
    const re = new Float64Array(n).map((_, i) => Math.sin(i * 0.37) + (i % 7) * 0.1);
    const im = new Float64Array(n).map((_, i) => Math.cos(i * 0.11));
    const oRe = new Float64Array(n);
    const oIm = new Float64Array(n);
    new Dft(n).transform(re, im, oRe, oIm);
    let err = 0;
    for (const k of [0, 1, 17, 200, 399]) {
      let sr = 0;
      let si = 0;
      for (let t = 0; t < n; t++) {
        const a = (-2 * Math.PI * ((t * k) % n)) / n;
        sr += re[t] * Math.cos(a) - im[t] * Math.sin(a);
        si += re[t] * Math.sin(a) + im[t] * Math.cos(a);
      }
      err = Math.max(err, Math.abs(sr - oRe[k]), Math.abs(si - oIm[k]));
    }
    expect(err).toBeLessThan(1e-9);
  });

  it('long-form mel covers the audio plus 30 s of padding', () => {
    const audio = loadAudio('tone');
    const mel = longFormMel(audio);
    expect(mel.contentFrames).toBe(Math.floor(audio.length / 160));
    expect(mel.nFrames).toBe(Math.floor((audio.length + 480000) / 160));
    expect(sliceFrames(mel, 0, 3000).length).toBe(80 * 3000);
  });
});
