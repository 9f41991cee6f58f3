/**
 * Speech enhancement: any input format (probed and decoded to 48 kHz mono by src/audio/ffmpeg.ts) → RNNoise denoising (the @jitsi/rnnoise-wasm build; its weights are compiled into the wasm) in
 * 10 ms frames → loudness normalisation to an EBU R128 integrated target (default -23 LUFS) with a
 * -1 dBFS peak limiter → 48 kHz mono 16-bit WAV of exactly the input's duration.
 *
 * RNNoise delays its output by two frames (960 samples); the enhancer feeds that much silence at the end
 * and drops it at the start, so output sample i lines up with input sample i.
 */
// @ts-expect-error: the package ships no types; the sync build embeds the wasm (no file loading).
import createRNNWasmModuleSync from '@jitsi/rnnoise-wasm/dist/rnnoise-sync.js';
import { AudioDecodeError, decodeToPcm, probeAudio } from '../../audio/ffmpeg.ts';
import { LoudnessMeter } from './loudness.ts';
import { encodeWav } from '../../audio/pcm.ts';

export const ENHANCE_SAMPLE_RATE = 48000;
export const RNNOISE_FRAME = 480;
export const RNNOISE_DELAY = 960;

interface RnnoiseModule {
  HEAPF32: Float32Array;
  _malloc(bytes: number): number;
  _free(ptr: number): void;
  _rnnoise_create(model?: number): number;
  _rnnoise_destroy(state: number): void;
  _rnnoise_process_frame(state: number, out: number, inp: number): number;
}

export interface AudioEnhancerOptions {
  /** Integrated loudness target in LUFS (EBU R128: -23; podcasts often -16). */
  targetLufs?: number;
  /** Sample peak ceiling in dBFS after normalisation. Default -1. */
  peakCeilingDb?: number;
  /** Longest accepted input (the whole file is held in memory, ~0.4 GB per hour). Default 1 hour. */
  maxDurationS?: number;
  ffmpegPath?: string;
  /** Skip denoising (loudness only). */
  denoise?: boolean;
}

export interface EnhanceResult {
  wav: Buffer;
  sampleRate: number;
  samples: number;
  durationS: number;
  /** Integrated loudness of the denoised audio before and after normalisation (LUFS; -Infinity = silence). */
  inputLufs: number;
  outputLufs: number;
  gainDb: number;
}

export class AudioEnhancer {
  private constructor(
    private readonly rn: RnnoiseModule,
    private readonly opts: Required<Omit<AudioEnhancerOptions, 'ffmpegPath'>> & { ffmpegPath?: string },
  ) {}

  static async load(opts: AudioEnhancerOptions = {}): Promise<AudioEnhancer> {
    const rn = (await createRNNWasmModuleSync()) as RnnoiseModule;
    return new AudioEnhancer(rn, {
      targetLufs: opts.targetLufs ?? -23,
      peakCeilingDb: opts.peakCeilingDb ?? -1,
      maxDurationS: opts.maxDurationS ?? 3600,
      denoise: opts.denoise ?? true,
      ffmpegPath: opts.ffmpegPath,
    });
  }

  get targetLufs(): number {
    return this.opts.targetLufs;
  }

  /** Enhances an audio/video file of any format ffmpeg reads. Throws AudioDecodeError (400) for bad files. */
  async enhanceFile(path: string, signal?: AbortSignal): Promise<EnhanceResult> {
    const info = await probeAudio(path, { signal, ffmpegPath: this.opts.ffmpegPath });
    if (info.durationS !== undefined && info.durationS > this.opts.maxDurationS) {
      throw new AudioDecodeError('decode_failed', `The audio is ${Math.round(info.durationS)} s long; enhance-audio accepts at most ${this.opts.maxDurationS} s.`, { kind: 'too_large' });
    }
    const pcm = await this.decode48k(path, signal);
    return this.enhancePcm(pcm, signal);
  }

  /** Denoises and normalises 48 kHz mono float samples ([-1, 1]). */
  enhancePcm(input: Float32Array, signal?: AbortSignal): EnhanceResult {
    const n = input.length;
    const denoised = this.opts.denoise ? this.denoise(input, signal) : Int16Array.from(input, (v) => Math.max(-32768, Math.min(32767, Math.round(v * 32768))));
    const meter = new LoudnessMeter();
    meter.push(denoised, 1 / 32768);
    const inputLufs = meter.integrated();
    const gainDb = Number.isFinite(inputLufs) ? this.opts.targetLufs - inputLufs : 0;
    const out = this.applyGainLimited(denoised, 10 ** (gainDb / 20) / 32768);
    const after = new LoudnessMeter();
    after.push(out);
    const wav = encodeWav(out, ENHANCE_SAMPLE_RATE);
    return { wav, sampleRate: ENHANCE_SAMPLE_RATE, samples: n, durationS: n / ENHANCE_SAMPLE_RATE, inputLufs, outputLufs: after.integrated(), gainDb };
  }

  /** RNNoise over the whole signal, delay-compensated; 16-bit scale (what RNNoise expects). */
  private denoise(input: Float32Array, signal?: AbortSignal): Int16Array {
    const n = input.length;
    const out = new Int16Array(n);
    const rn = this.rn;
    const state = rn._rnnoise_create();
    const ptr = rn._malloc(RNNOISE_FRAME * 4);
    try {
      const frames = Math.ceil((n + RNNOISE_DELAY) / RNNOISE_FRAME);
      for (let f = 0; f < frames; f++) {
        if ((f & 1023) === 0 && signal?.aborted) throw new AudioDecodeError('aborted', 'enhancement cancelled');
        const heap = rn.HEAPF32; // re-read: memory growth replaces the buffer
        const base = ptr >> 2;
        const start = f * RNNOISE_FRAME;
        for (let j = 0; j < RNNOISE_FRAME; j++) {
          const i = start + j;
          heap[base + j] = i < n ? input[i] * 32768 : 0;
        }
        rn._rnnoise_process_frame(state, ptr, ptr);
        for (let j = 0; j < RNNOISE_FRAME; j++) {
          const o = start + j - RNNOISE_DELAY;
          if (o >= 0 && o < n) {
            const v = Math.round(rn.HEAPF32[base + j]);
            out[o] = v > 32767 ? 32767 : v < -32768 ? -32768 : v;
          }
        }
      }
    } finally {
      rn._free(ptr);
      rn._rnnoise_destroy(state);
    }
    return out;
  }

  /** Gain, then a look-ahead peak limiter (5 ms window, 50 ms release) at the ceiling. */
  private applyGainLimited(x: Int16Array, scale: number): Float32Array {
    const n = x.length;
    const y = new Float32Array(n);
    const ceiling = 10 ** (this.opts.peakCeilingDb / 20);
    let peak = 0;
    for (let i = 0; i < n; i++) {
      y[i] = x[i] * scale;
      peak = Math.max(peak, Math.abs(y[i]));
    }
    if (peak <= ceiling) return y;
    const need = new Float32Array(n);
    for (let i = 0; i < n; i++) need[i] = Math.abs(y[i]) > ceiling ? ceiling / Math.abs(y[i]) : 1;
    const W = Math.round(0.005 * ENHANCE_SAMPLE_RATE);
    // Sliding-window minimum over [i - W, i + W] (monotonic deque).
    const env = new Float32Array(n);
    const dq: number[] = [];
    let head = 0;
    for (let i = 0, j = 0; i < n; i++) {
      for (; j < Math.min(n, i + W + 1); j++) {
        while (dq.length > head && need[dq[dq.length - 1]] >= need[j]) dq.pop();
        dq.push(j);
      }
      while (dq[head] < i - W) head++;
      env[i] = need[dq[head]];
      if (head > 4096) {
        dq.splice(0, head);
        head = 0;
      }
    }
    const release = 1 - Math.exp(-1 / (0.05 * ENHANCE_SAMPLE_RATE));
    let g = 1;
    for (let i = 0; i < n; i++) {
      g = env[i] < g ? env[i] : g + (env[i] - g) * release;
      y[i] *= g;
    }
    return y;
  }

  /**
   * The whole input at 48 kHz. A container may declare no duration (or a wrong one): ffmpeg stops one
   * second past the limit (-t), so memory stays bounded and a longer input is still told apart.
   */
  private async decode48k(path: string, signal?: AbortSignal): Promise<Float32Array> {
    const limitS = this.opts.maxDurationS;
    const pcm = await decodeToPcm(path, { sampleRate: ENHANCE_SAMPLE_RATE, maxDurationS: limitS + 1, signal, ffmpegPath: this.opts.ffmpegPath });
    if (pcm.length > limitS * ENHANCE_SAMPLE_RATE) {
      throw new AudioDecodeError('decode_failed', `The audio is longer than ${limitS} s, the enhance-audio limit.`, { kind: 'too_large' });
    }
    return pcm;
  }

  async close(): Promise<void> {}
}
