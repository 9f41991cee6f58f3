/** Kaldi fbank front-end (pure) against the WeSpeaker golden features. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readWav } from '../../../src/audio/pcm.ts';
import { applyCmn, fbankFrameCount, kaldiFbank, kaldiMelBanks, WESPEAKER_FBANK } from '../../../src/engines/diarization/fbank.ts';
import { maxAbsDiff, readF32, WESPEAKER_DIR } from './helpers.ts';

const G = join(WESPEAKER_DIR, 'golden');
const audio = readWav(readFileSync(join(G, 'input_3s_16k.wav'))).samples;

describe('kaldi fbank', () => {
  it('frame count follows snip_edges: 1 + (N - 400) // 160', () => {
    expect(fbankFrameCount(48000)).toBe(298);
    expect(fbankFrameCount(399)).toBe(0);
    expect(fbankFrameCount(400)).toBe(1);
    expect(fbankFrameCount(559)).toBe(1);
    expect(fbankFrameCount(560)).toBe(2);
  });

  it('mel banks: 80 non-empty triangles, DC unused, peaks ≤ 1 (narrow low filters peak between bins)', () => {
    const { weights, nBins } = kaldiMelBanks(WESPEAKER_FBANK);
    expect(nBins).toBe(256);
    expect(weights.length).toBe(80 * 256);
    for (let m = 0; m < 80; m++) {
      const row = weights.subarray(m * 256, (m + 1) * 256);
      expect(Math.max(...row)).toBeGreaterThan(0);
      expect(Math.max(...row)).toBeLessThanOrEqual(1);
    }
    // bin 0 (DC) is below 20 Hz: no filter uses it
    for (let m = 0; m < 80; m++) expect(weights[m * 256]).toBe(0);
  });

  it('raw fbank matches the golden [298, 80] within 1e-3 (float64 here vs the float32 reference; measured 4.5e-4)', () => {
    const fb = kaldiFbank(audio);
    expect(fb.frames).toBe(298);
    expect(fb.nMels).toBe(80);
    const golden = readF32(join(G, 'fbank_raw.f32'));
    expect(maxAbsDiff(fb.data, golden)).toBeLessThan(1e-3);
    // exact digital silence hits the log(eps) floor
    expect(Math.min(...golden)).toBeCloseTo(Math.log(1.1920928955078125e-7), 4);
    expect(Math.min(...fb.data)).toBeCloseTo(Math.log(1.1920928955078125e-7), 4);
  });

  it('CMN features match the golden model input within 1e-3', () => {
    const fb = kaldiFbank(audio);
    expect(maxAbsDiff(applyCmn(fb), readF32(join(G, 'feats_cmn.f32')))).toBeLessThan(1e-3);
  });

  it('is a pure function of the samples (no state between calls)', () => {
    const a = kaldiFbank(audio.subarray(0, 8000));
    kaldiFbank(audio);
    const b = kaldiFbank(audio.subarray(0, 8000));
    expect(Array.from(b.data)).toEqual(Array.from(a.data));
    expect(kaldiFbank(new Float32Array(100)).frames).toBe(0);
  });
});
