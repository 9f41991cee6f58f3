/**
 * Weight-free speaker features for the embedded baseline diarizer: per analysis window, the mean
 * MFCC (c1..c19 of the same Kaldi fbank WeSpeaker uses) over its speech frames, each coefficient
 * divided by its typical within-speaker spread, plus the median log-F0 (normalised
 * autocorrelation pitch on a 2x-decimated signal).
 *
 * What separates espeak-ng voices (measured on 1.5 s windows, docs/diarization.md): MFCC means
 * alone split male/female voices perfectly but not two male variants or one voice at two pitches;
 * the median F0 splits those (en+m3 -p30 87 Hz vs -p70 126 Hz, within-voice spread ≈ 4 %).
 */
import type { Fbank } from './fbank.ts';

export const BASELINE_CEPS = 20;
/** Pooled within-speaker standard deviation of c1..c19 window means (espeak-ng voices, 1.5 s). */
const CEP_SCALE = [3.4, 1.0, 2.5, 1.1, 1.4, 1.1, 1.4, 0.8, 0.9, 0.75, 0.8, 0.75, 0.55, 0.5, 0.5, 0.5, 0.45, 0.4, 0.35];
/** log-F0 weight: 1 / the 4 % within-voice spread (tuned: pitch ×2 vs ×1/×3 gave the widest gap between true splits and single-voice noise, docs/diarization.md). */
const F0_WEIGHT = 25;

/** Orthonormal DCT-II of each log-mel frame, keeping c0..c(nCeps-1): [frames, nCeps]. */
export function mfccFromFbank(fb: Fbank, nCeps = BASELINE_CEPS): Float32Array {
  const M = fb.nMels;
  const basis = new Float64Array(nCeps * M);
  for (let c = 0; c < nCeps; c++) for (let m = 0; m < M; m++) basis[c * M + m] = Math.cos((Math.PI * c * (m + 0.5)) / M) * Math.sqrt((c === 0 ? 1 : 2) / M);
  const out = new Float32Array(fb.frames * nCeps);
  for (let t = 0; t < fb.frames; t++) {
    const row = t * M;
    for (let c = 0; c < nCeps; c++) {
      let s = 0;
      const b = c * M;
      for (let m = 0; m < M; m++) s += fb.data[row + m] * basis[b + m];
      out[t * nCeps + c] = s;
    }
  }
  return out;
}

/**
 * log-F0 per fbank frame (10 ms hop) or NaN where unvoiced: normalised autocorrelation over
 * 25 ms at 8 kHz, lags for 80–500 Hz, voiced when the peak exceeds 0.7.
 */
/**
 * `octaveGuard` (e.g. 0.9): take the shortest lag whose correlation is a local peak within that
 * fraction of the best, instead of the best itself: a periodic signal correlates as well at twice
 * its period, and rounding of the lag can make the double period win (an octave-low error). Off by
 * default: the diarization baseline's features and its measured DER were made without it.
 */
export function logF0Track(samples: Float32Array, frames: number, hop = 160, opts: { octaveGuard?: number } = {}): Float64Array {
  const n = samples.length >> 1;
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = 0.5 * (samples[2 * i] + samples[2 * i + 1]);
  const out = new Float64Array(frames).fill(Number.NaN);
  const W = 200;
  const minL = 16;
  const maxL = 100;
  const h = hop >> 1;
  for (let t = 0; t < frames; t++) {
    const a = t * h;
    if (a + W + maxL > n) break;
    let e0 = 0;
    for (let i = 0; i < W; i++) e0 += d[a + i] * d[a + i];
    if (e0 < 1e-4) continue;
    // energy of the lagged window, updated incrementally
    let e1 = 0;
    for (let i = 0; i < W; i++) e1 += d[a + minL + i] * d[a + minL + i];
    let best = 0;
    let bl = 0;
    const rs = opts.octaveGuard ? new Float64Array(maxL + 2) : null;
    for (let L = minL; L <= maxL; L++) {
      if (L > minL) {
        const o = d[a + L - 1];
        const q = d[a + L + W - 1];
        e1 += q * q - o * o;
      }
      let c = 0;
      for (let i = 0; i < W; i++) c += d[a + i] * d[a + i + L];
      const r = c / Math.sqrt(e0 * Math.max(e1, 1e-12));
      if (rs) rs[L] = r;
      if (r > best) {
        best = r;
        bl = L;
      }
    }
    if (rs && best > 0.7) {
      for (let L = minL + 1; L < bl; L++) {
        if (rs[L] >= opts.octaveGuard! * best && rs[L] >= rs[L - 1] && rs[L] >= rs[L + 1]) {
          bl = L;
          break;
        }
      }
    }
    if (best > 0.7) out[t] = Math.log(8000 / bl);
  }
  return out;
}

export interface BaselineFeatures {
  mfcc: Float32Array; // [frames, BASELINE_CEPS]
  logF0: Float64Array; // [frames]
}

export function baselineFeatures(samples: Float32Array, fb: Fbank): BaselineFeatures {
  return { mfcc: mfccFromFbank(fb), logF0: logF0Track(samples, fb.frames) };
}

/**
 * Window vector over frames [a, b) restricted to `speech` frames: scaled mean c1..c19, then
 * weighted median log-F0 (0 where no voiced frame; callers centre per file). null when fewer
 * than `minFrames` speech frames.
 */
export function baselineWindowVector(f: BaselineFeatures, speech: Uint8Array, a: number, b: number, minFrames = 20): Float64Array | null {
  const C = BASELINE_CEPS;
  const v = new Float64Array(C);
  let n = 0;
  const f0: number[] = [];
  for (let t = a; t < b; t++) {
    if (!speech[t]) continue;
    n++;
    for (let c = 1; c < C; c++) v[c - 1] += f.mfcc[t * C + c];
    if (!Number.isNaN(f.logF0[t])) f0.push(f.logF0[t]);
  }
  if (n < minFrames) return null;
  for (let c = 0; c < C - 1; c++) v[c] /= n * CEP_SCALE[c];
  f0.sort((x, y) => x - y);
  v[C - 1] = f0.length >= 5 ? f0[f0.length >> 1] * F0_WEIGHT : Number.NaN;
  return v;
}
