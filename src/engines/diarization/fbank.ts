/**
 * Kaldi-style log-mel filter bank, as WeSpeaker (and pyannote's WeSpeaker wrapper) computes it:
 *
 *   torchaudio.compliance.kaldi.fbank(wav * 32768, num_mel_bins=80, frame_length=25, frame_shift=10,
 *                                     dither=0, sample_frequency=16000, window_type='hamming',
 *                                     use_energy=False)
 *   feats -= feats.mean(0)                                   (CMN, see `applyCmn`)
 *
 * Per frame (snip_edges: T = 1 + (N - 400) // 160): DC removal, pre-emphasis 0.97
 * (x[j] -= 0.97 x[j-1], x[0] -= 0.97 x[0]), symmetric Hamming window, zero-pad to 512, power
 * spectrum, 80 triangular Kaldi-mel filters between 20 Hz and Nyquist (the Nyquist bin has weight 0),
 * log(max(e, float32 eps)). Pure functions; maths in float64, output float32 `[T, nMels]` row-major.
 */
import { Dft } from '../whisper/features.ts';

export interface FbankOptions {
  sampleRate: number;
  numMelBins: number;
  frameLength: number; // samples
  frameShift: number; // samples
  lowFreq: number;
  highFreq: number; // <= 0: offset from Nyquist
  preemphasis: number;
  /** Multiply the [-1,1] input by this before anything else (Kaldi works on int16 values). */
  inputScale: number;
}

export const WESPEAKER_FBANK: FbankOptions = Object.freeze({
  sampleRate: 16000,
  numMelBins: 80,
  frameLength: 400,
  frameShift: 160,
  lowFreq: 20,
  highFreq: 0,
  preemphasis: 0.97,
  inputScale: 32768,
});

export const FLOAT32_EPS = 1.1920928955078125e-7;
const LOG_FLOOR = Math.log(FLOAT32_EPS);

export interface Fbank {
  /** [frames, nMels] row-major. */
  data: Float32Array;
  frames: number;
  nMels: number;
}

export function fbankFrameCount(numSamples: number, o: Pick<FbankOptions, 'frameLength' | 'frameShift'> = WESPEAKER_FBANK): number {
  return numSamples < o.frameLength ? 0 : 1 + Math.floor((numSamples - o.frameLength) / o.frameShift);
}

const melScale = (f: number) => 1127 * Math.log(1 + f / 700);

function nextPow2(n: number): number {
  let m = 1;
  while (m < n) m *= 2;
  return m;
}

interface Bank {
  nFft: number;
  window: Float64Array;
  weights: Float64Array; // [nMels, nFft/2]
  lo: Int32Array;
  hi: Int32Array;
  dft: Dft;
}
const banks = new Map<string, Bank>();

/** torchaudio `get_mel_banks` (no VTLN): [nMels][nFft/2] weights on bins 0..nFft/2-1. */
export function kaldiMelBanks(o: FbankOptions): { weights: Float64Array; nBins: number } {
  const nFft = nextPow2(o.frameLength);
  const nBins = nFft / 2;
  const nyquist = o.sampleRate / 2;
  const high = o.highFreq <= 0 ? nyquist + o.highFreq : o.highFreq;
  const melLow = melScale(o.lowFreq);
  const melHigh = melScale(high);
  const delta = (melHigh - melLow) / (o.numMelBins + 1);
  const binWidth = o.sampleRate / nFft;
  const weights = new Float64Array(o.numMelBins * nBins);
  for (let m = 0; m < o.numMelBins; m++) {
    const left = melLow + m * delta;
    const center = left + delta;
    const right = center + delta;
    for (let k = 0; k < nBins; k++) {
      const mel = melScale(binWidth * k);
      const up = (mel - left) / (center - left);
      const down = (right - mel) / (right - center);
      weights[m * nBins + k] = Math.max(0, Math.min(up, down));
    }
  }
  return { weights, nBins };
}

function bank(o: FbankOptions): Bank {
  const key = JSON.stringify(o);
  let b = banks.get(key);
  if (!b) {
    const nFft = nextPow2(o.frameLength);
    const { weights, nBins } = kaldiMelBanks(o);
    const lo = new Int32Array(o.numMelBins);
    const hi = new Int32Array(o.numMelBins);
    for (let m = 0; m < o.numMelBins; m++) {
      let a = 0;
      let z = nBins;
      while (a < nBins && weights[m * nBins + a] === 0) a++;
      while (z > a && weights[m * nBins + z - 1] === 0) z--;
      lo[m] = a;
      hi[m] = z;
    }
    const window = new Float64Array(o.frameLength);
    for (let n = 0; n < o.frameLength; n++) window[n] = 0.54 - 0.46 * Math.cos((2 * Math.PI * n) / (o.frameLength - 1));
    b = { nFft, window, weights, lo, hi, dft: new Dft(nFft) };
    banks.set(key, b);
  }
  return b;
}

/** Raw Kaldi fbank (no CMN) of a whole signal. */
export function kaldiFbank(samples: Float32Array, o: FbankOptions = WESPEAKER_FBANK): Fbank {
  const T = fbankFrameCount(samples.length, o);
  const M = o.numMelBins;
  const out = new Float32Array(T * M);
  if (T === 0) return { data: out, frames: 0, nMels: M };
  const { nFft, window, weights, lo, hi, dft } = bank(o);
  const L = o.frameLength;
  const nBins = nFft / 2;
  const re = new Float64Array(nFft);
  const im = new Float64Array(nFft);
  const pa = new Float64Array(nBins);
  const pb = new Float64Array(nBins);
  const frame = new Float64Array(L);

  const prep = (t: number, dst: Float64Array) => {
    const s0 = t * o.frameShift;
    let mean = 0;
    for (let i = 0; i < L; i++) {
      frame[i] = samples[s0 + i] * o.inputScale;
      mean += frame[i];
    }
    mean /= L;
    for (let i = 0; i < L; i++) frame[i] -= mean;
    for (let i = L - 1; i > 0; i--) frame[i] -= o.preemphasis * frame[i - 1];
    frame[0] -= o.preemphasis * frame[0];
    for (let i = 0; i < L; i++) dst[i] = frame[i] * window[i];
    for (let i = L; i < nFft; i++) dst[i] = 0;
  };
  const melOut = (pow: Float64Array, t: number) => {
    for (let m = 0; m < M; m++) {
      let s = 0;
      const row = m * nBins;
      for (let k = lo[m]; k < hi[m]; k++) s += weights[row + k] * pow[k];
      out[t * M + m] = s > FLOAT32_EPS ? Math.log(s) : LOG_FLOOR;
    }
  };

  // two real frames per complex FFT (z = a + i b)
  for (let t = 0; t < T; t += 2) {
    const hasB = t + 1 < T;
    prep(t, re);
    if (hasB) prep(t + 1, im);
    else im.fill(0);
    dft.powerSpectra2(re, im, pa, pb);
    melOut(pa, t);
    if (hasB) melOut(pb, t + 1);
  }
  return { data: out, frames: T, nMels: M };
}

/** Cepstral mean normalisation over frames [from, to) of `fb` into a new [to-from, nMels] array. */
export function applyCmn(fb: Fbank, from = 0, to = fb.frames): Float32Array {
  const M = fb.nMels;
  const n = to - from;
  const out = new Float32Array(n * M);
  if (n <= 0) return out;
  const mean = new Float64Array(M);
  for (let t = from; t < to; t++) for (let m = 0; m < M; m++) mean[m] += fb.data[t * M + m];
  for (let m = 0; m < M; m++) mean[m] /= n;
  for (let t = 0; t < n; t++) for (let m = 0; m < M; m++) out[t * M + m] = fb.data[(from + t) * M + m] - mean[m];
  return out;
}
