/**
 * Whisper log-mel features, numerically matching Hugging Face `WhisperFeatureExtractor`
 * (and OpenAI `log_mel_spectrogram`): periodic Hann window, center=True reflect padding,
 * power spectrum, slaney-normalised slaney-scale mel filters, log10 (floor 1e-10),
 * dynamic range clamp to max-8, (x+4)/4, drop the last STFT frame.
 *
 * All maths is done in float64 (the reference runs float32/float64 depending on the path);
 * the difference after log10 is far below the 1e-4 target.
 */
import FFT from 'fft.js';

export interface FeatureConfig {
  nMels: number; // feature_size
  nFft: number; // n_fft
  hopLength: number; // hop_length
  samplingRate: number; // sampling_rate
  nSamples: number; // n_samples (30 s chunk)
  nFrames: number; // nb_max_frames (3000)
}

export const DEFAULT_FEATURE_CONFIG: FeatureConfig = {
  nMels: 80,
  nFft: 400,
  hopLength: 160,
  samplingRate: 16000,
  nSamples: 480000,
  nFrames: 3000,
};

/** Build from a HF preprocessor_config.json object. */
export function featureConfigFromPreprocessor(p: Record<string, unknown>): FeatureConfig {
  const num = (k: string, d: number) => (typeof p[k] === 'number' ? (p[k] as number) : d);
  const sr = num('sampling_rate', 16000);
  const hop = num('hop_length', 160);
  const nSamples = num('n_samples', num('chunk_length', 30) * sr);
  return {
    nMels: num('feature_size', 80),
    nFft: num('n_fft', 400),
    hopLength: hop,
    samplingRate: sr,
    nSamples,
    nFrames: num('nb_max_frames', Math.floor(nSamples / hop)),
  };
}

// ---- mel filter bank (HF audio_utils.mel_filter_bank, norm="slaney", mel_scale="slaney") ----

const MIN_LOG_HZ = 1000.0;
const MIN_LOG_MEL = 15.0;
const LOGSTEP = 27.0 / Math.log(6.4);

export function hertzToMelSlaney(f: number): number {
  return f >= MIN_LOG_HZ ? MIN_LOG_MEL + Math.log(f / MIN_LOG_HZ) * LOGSTEP : (3.0 * f) / 200.0;
}

export function melToHertzSlaney(m: number): number {
  return m >= MIN_LOG_MEL ? MIN_LOG_HZ * Math.exp((m - MIN_LOG_MEL) / LOGSTEP) : (200.0 * m) / 3.0;
}

/**
 * Returns filters as [nMels][nFreq] (row-major Float64Array of nMels*nFreq), i.e. the transpose of
 * HF's [nFreq, nMels] matrix, which is the convenient orientation for a per-frame dot product.
 */
export function melFilterBank(nFreq: number, nMels: number, minHz: number, maxHz: number, samplingRate: number): Float64Array {
  const melMin = hertzToMelSlaney(minHz);
  const melMax = hertzToMelSlaney(maxHz);
  const filterFreqs = new Float64Array(nMels + 2);
  for (let i = 0; i < nMels + 2; i++) {
    // np.linspace(mel_min, mel_max, n+2)
    const m = melMin + ((melMax - melMin) * i) / (nMels + 1);
    filterFreqs[i] = melToHertzSlaney(m);
  }
  const half = Math.floor(samplingRate / 2);
  const out = new Float64Array(nMels * nFreq);
  for (let m = 0; m < nMels; m++) {
    const lo = filterFreqs[m];
    const c = filterFreqs[m + 1];
    const hi = filterFreqs[m + 2];
    const enorm = 2.0 / (hi - lo); // slaney area normalisation
    for (let k = 0; k < nFreq; k++) {
      const f = (half * k) / (nFreq - 1); // np.linspace(0, sr//2, nFreq)
      const down = (f - lo) / (c - lo); // == -slopes[:, :-2] / diff[:-1]
      const up = (hi - f) / (hi - c);
      const v = Math.max(0, Math.min(down, up));
      out[m * nFreq + k] = v * enorm;
    }
  }
  return out;
}

/** Periodic Hann window (torch.hann_window / HF window_function(periodic=True)). */
export function hannWindow(n: number): Float64Array {
  const w = new Float64Array(n);
  for (let i = 0; i < n; i++) w[i] = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / n);
  return w;
}

// ---- DFT of arbitrary length via fft.js ----

/**
 * Exact N-point DFT for any N. fft.js only handles powers of two and Whisper's n_fft is 400,
 * so non-power-of-two sizes use Bluestein's chirp-z algorithm (two power-of-two FFTs per call).
 * Zero-padding to 512 would change the frequency bins and break parity with the reference.
 * `transform` takes one complex input (re, im) so two real frames can be packed in one call.
 */
export class Dft {
  readonly n: number;
  private readonly m: number;
  private readonly fft: FFT;
  private readonly pow2: boolean;
  private readonly chirpRe: Float64Array; // e^{-i pi n^2 / N}
  private readonly chirpIm: Float64Array;
  private readonly bSpec: number[]; // FFT of the conjugate chirp, length m complex
  private readonly bufA: number[];
  private readonly bufB: number[];

  constructor(n: number) {
    this.n = n;
    this.pow2 = (n & (n - 1)) === 0 && n >= 2;
    let m = 2;
    const need = this.pow2 ? n : 2 * n - 1;
    while (m < need) m *= 2;
    this.m = m;
    this.fft = new FFT(m);
    this.chirpRe = new Float64Array(n);
    this.chirpIm = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      // reduce n^2 mod 2N before the trig call to keep the angle exact
      const a = (Math.PI * ((i * i) % (2 * n))) / n;
      this.chirpRe[i] = Math.cos(a);
      this.chirpIm[i] = -Math.sin(a);
    }
    this.bufA = this.fft.createComplexArray();
    this.bufB = this.fft.createComplexArray();
    this.bSpec = this.fft.createComplexArray();
    if (!this.pow2) {
      const b = this.fft.createComplexArray();
      for (let i = 0; i < 2 * m; i++) b[i] = 0;
      for (let i = 0; i < n; i++) {
        b[2 * i] = this.chirpRe[i];
        b[2 * i + 1] = -this.chirpIm[i];
        if (i > 0) {
          b[2 * (m - i)] = this.chirpRe[i];
          b[2 * (m - i) + 1] = -this.chirpIm[i];
        }
      }
      this.fft.transform(this.bSpec, b);
    }
  }

  /** Complex DFT of (re, im) into (outRe, outIm), all length n. */
  transform(re: Float64Array, im: Float64Array, outRe: Float64Array, outIm: Float64Array): void {
    const { n, m, bufA, bufB } = this;
    if (this.pow2) {
      for (let i = 0; i < n; i++) {
        bufA[2 * i] = re[i];
        bufA[2 * i + 1] = im[i];
      }
      this.fft.transform(bufB, bufA);
      for (let k = 0; k < n; k++) {
        outRe[k] = bufB[2 * k];
        outIm[k] = bufB[2 * k + 1];
      }
      return;
    }
    const cr = this.chirpRe;
    const ci = this.chirpIm;
    for (let i = 0; i < n; i++) {
      bufA[2 * i] = re[i] * cr[i] - im[i] * ci[i];
      bufA[2 * i + 1] = re[i] * ci[i] + im[i] * cr[i];
    }
    for (let i = 2 * n; i < 2 * m; i++) bufA[i] = 0;
    this.fft.transform(bufB, bufA);
    const bs = this.bSpec;
    for (let k = 0; k < m; k++) {
      const ar = bufB[2 * k];
      const ai = bufB[2 * k + 1];
      const br = bs[2 * k];
      const bi = bs[2 * k + 1];
      bufB[2 * k] = ar * br - ai * bi;
      bufB[2 * k + 1] = ar * bi + ai * br;
    }
    this.fft.inverseTransform(bufA, bufB);
    for (let k = 0; k < n; k++) {
      const xr = bufA[2 * k];
      const xi = bufA[2 * k + 1];
      outRe[k] = xr * cr[k] - xi * ci[k];
      outIm[k] = xr * ci[k] + xi * cr[k];
    }
  }

  private spRe: Float64Array | null = null;
  private spIm: Float64Array | null = null;

  /**
   * Power spectra (bins 0..powA.length-1) of two real frames with one complex transform:
   * z = a + i b  =>  A_k = (Z_k + conj Z_{N-k}) / 2,  B_k = (Z_k - conj Z_{N-k}) / (2i).
   * `re` holds frame a, `im` frame b (zeros when there is no second frame).
   */
  powerSpectra2(re: Float64Array, im: Float64Array, powA: Float64Array, powB: Float64Array): void {
    const n = this.n;
    const oRe = (this.spRe ??= new Float64Array(n));
    const oIm = (this.spIm ??= new Float64Array(n));
    this.transform(re, im, oRe, oIm);
    for (let k = 0; k < powA.length; k++) {
      const nk = k === 0 ? 0 : n - k;
      const zr = oRe[k];
      const zi = oIm[k];
      const cr = oRe[nk];
      const ci = -oIm[nk];
      const ar = (zr + cr) / 2;
      const ai = (zi + ci) / 2;
      const br = (zi - ci) / 2;
      const bi = -(zr - cr) / 2;
      powA[k] = ar * ar + ai * ai;
      powB[k] = br * br + bi * bi;
    }
  }
}

// ---- log-mel ----

export interface LogMel {
  /** [nMels, nFrames] row-major. */
  data: Float32Array;
  nMels: number;
  nFrames: number;
}

const filterCache = new Map<string, Float64Array>();
function cachedFilters(cfg: FeatureConfig): Float64Array {
  const key = `${cfg.nFft}/${cfg.nMels}/${cfg.samplingRate}`;
  let f = filterCache.get(key);
  if (!f) {
    f = melFilterBank(1 + Math.floor(cfg.nFft / 2), cfg.nMels, 0, cfg.samplingRate / 2, cfg.samplingRate);
    filterCache.set(key, f);
  }
  return f;
}

/**
 * Log-mel of the whole signal as given (no 30 s padding): frames = floor(len/hop) (the last
 * STFT frame is dropped, as in the reference). The max-8 clamp is global over this signal,
 * which is why callers decide the padding before calling (see `extractFeatures`).
 */
export function logMelSpectrogram(audio: Float32Array, cfg: FeatureConfig = DEFAULT_FEATURE_CONFIG): LogMel {
  const { nFft, hopLength, nMels } = cfg;
  const nFreq = 1 + Math.floor(nFft / 2);
  const pad = Math.floor(nFft / 2);
  const len = audio.length;
  if (len <= pad) throw new Error(`audio too short for reflect padding (${len} samples)`);
  const totalFrames = 1 + Math.floor(len / hopLength); // center=True
  const nOut = totalFrames - 1; // drop the last frame
  const window = hannWindow(nFft);
  const filters = cachedFilters(cfg);
  const dft = new Dft(nFft);

  // reflect-padded sample accessor (numpy/torch "reflect": edge sample not repeated)
  const sample = (j: number): number => {
    let i = j - pad;
    if (i < 0) i = -i;
    else if (i >= len) i = 2 * (len - 1) - i;
    return audio[i];
  };

  const mel = new Float64Array(nMels * nOut);
  const re = new Float64Array(nFft);
  const im = new Float64Array(nFft);
  const powA = new Float64Array(nFreq);
  const powB = new Float64Array(nFreq);

  // each triangular filter is non-zero on a short band: only visit that band (≈40x fewer products)
  const lo = new Int32Array(nMels);
  const hi = new Int32Array(nMels);
  for (let m = 0; m < nMels; m++) {
    let a = 0;
    let b = nFreq;
    while (a < nFreq && filters[m * nFreq + a] === 0) a++;
    while (b > a && filters[m * nFreq + b - 1] === 0) b--;
    lo[m] = a;
    hi[m] = b;
  }
  const melFrame = (pow: Float64Array, t: number) => {
    for (let m = 0; m < nMels; m++) {
      let s = 0;
      const row = m * nFreq;
      for (let k = lo[m]; k < hi[m]; k++) s += filters[row + k] * pow[k];
      mel[m * nOut + t] = s;
    }
  };

  // two real frames per complex DFT: z = a + i b  =>  A_k = (Z_k + conj Z_{N-k})/2, B_k = (Z_k - conj Z_{N-k})/(2i)
  // A frame of digital silence (the padding of a short window) has power 0 in every bin, so its mel column
  // stays 0 (the array's initial value): skip its DFT. Exact, and most of a short window's frames.
  let lastNonZero = len - 1;
  while (lastNonZero >= 0 && audio[lastNonZero] === 0) lastNonZero--;
  const silent = (start: number) => {
    const first = start - pad; // audio index of the frame's first sample
    if (first <= lastNonZero) return false;
    const last = start + nFft - 1 - pad; // beyond the end it reflects back, down to 2(len-1)-last
    return (last >= len ? 2 * (len - 1) - last : last) > lastNonZero;
  };
  for (let t = 0; t < nOut; t += 2) {
    const hasB = t + 1 < nOut;
    const sa = t * hopLength;
    const sb = (t + 1) * hopLength;
    if (silent(sa) && (!hasB || silent(sb))) continue;
    for (let i = 0; i < nFft; i++) {
      re[i] = sample(sa + i) * window[i];
      im[i] = hasB ? sample(sb + i) * window[i] : 0;
    }
    dft.powerSpectra2(re, im, powA, powB);
    melFrame(powA, t);
    if (hasB) melFrame(powB, t + 1);
  }

  let max = -Infinity;
  for (let i = 0; i < mel.length; i++) {
    const v = Math.log10(Math.max(mel[i], 1e-10));
    mel[i] = v;
    if (v > max) max = v;
  }
  const floor = max - 8.0;
  const out = new Float32Array(mel.length);
  for (let i = 0; i < mel.length; i++) out[i] = (Math.max(mel[i], floor) + 4.0) / 4.0;
  return { data: out, nMels, nFrames: nOut };
}

/** Zero-pad or trim a waveform to `n` samples. */
export function padOrTrimAudio(audio: Float32Array, n: number): Float32Array {
  if (audio.length === n) return audio;
  const out = new Float32Array(n);
  out.set(audio.length > n ? audio.subarray(0, n) : audio);
  return out;
}

/**
 * The reference single-window input: audio padded/trimmed to 30 s, then log-mel
 * → [nMels, 3000] (what HF's feature extractor returns for audio ≤ 30 s), or its first `frames` frames.
 */
export function extractFeatures(audio: Float32Array, cfg: FeatureConfig = DEFAULT_FEATURE_CONFIG, frames = cfg.nFrames): Float32Array {
  // Only the first `frames` frames (trimmed encoder): the STFT of the 30 s padded signal, cut. Frame t reads
  // samples t·hop ± nFft/2, so padding to frames·hop + nFft keeps every kept frame away from the reflected end;
  // when the audio ends within the kept frames the others are silence, which never holds the global max, so the
  // max-8 floor is the same too.
  const n = frames >= cfg.nFrames ? cfg.nSamples : Math.min(cfg.nSamples, frames * cfg.hopLength + cfg.nFft);
  const mel = logMelSpectrogram(padOrTrimAudio(audio, n), cfg);
  if (mel.nFrames !== frames) return sliceFrames(mel, 0, frames);
  return mel.data;
}

/**
 * Long-form input (OpenAI transcribe()): log-mel of the audio followed by 30 s of silence, so
 * every window slice [seek, seek+3000) is full. `contentFrames` is the number of frames
 * that belong to real audio.
 */
export function longFormMel(audio: Float32Array, cfg: FeatureConfig = DEFAULT_FEATURE_CONFIG): LogMel & { contentFrames: number } {
  const padded = new Float32Array(audio.length + cfg.nSamples);
  padded.set(audio);
  const mel = logMelSpectrogram(padded, cfg);
  return { ...mel, contentFrames: Math.floor(audio.length / cfg.hopLength) };
}

/** Copy frames [start, start+n) of a mel into a new [nMels, n] array, zero-padding past the end. */
export function sliceFrames(mel: LogMel, start: number, n: number): Float32Array {
  const out = new Float32Array(mel.nMels * n);
  const avail = Math.max(0, Math.min(n, mel.nFrames - start));
  for (let m = 0; m < mel.nMels; m++) {
    const src = m * mel.nFrames + start;
    out.set(mel.data.subarray(src, src + avail), m * n);
  }
  return out;
}
