/**
 * Streaming sample-rate conversion with libsamplerate (WebAssembly build, `full` API keeps the
 * filter state between chunks, so chunk boundaries leave no clicks). Used for live streams that
 * are not at 16 kHz (WebSocket clients at 8/44.1/48 kHz, WebRTC Opus at 48 kHz).
 * Whole-factor downsampling (48 → 16, 32 → 16 kHz) uses the cheaper {@link StreamDecimator}.
 */
import libsamplerate from '@alexanderolsen/libsamplerate-js';
import { StreamDecimator } from './decimator.ts';

// The package is CommonJS (UMD): named ESM imports work under bundlers but not in Node itself.
const { ConverterType, create } = libsamplerate;
type Src = Awaited<ReturnType<typeof create>>;

export class StreamResampler {
  private constructor(
    private src: Src | StreamDecimator | null,
    readonly inputRate: number,
    readonly outputRate: number,
  ) {}

  static async create(inputRate: number, outputRate = 16_000): Promise<StreamResampler> {
    if (inputRate === outputRate) return new StreamResampler(null, inputRate, outputRate);
    if (inputRate % outputRate === 0) return new StreamResampler(new StreamDecimator(inputRate / outputRate), inputRate, outputRate);
    const src = await create(1, inputRate, outputRate, { converterType: ConverterType.SRC_SINC_MEDIUM_QUALITY });
    return new StreamResampler(src, inputRate, outputRate);
  }

  /** Resamples the next chunk of mono audio. */
  process(chunk: Float32Array): Float32Array {
    if (!this.src) return chunk;
    if (this.src instanceof StreamDecimator) return this.src.process(chunk);
    return this.src.full(chunk).slice();
  }

  close(): void {
    if (this.src && !(this.src instanceof StreamDecimator)) this.src.destroy();
    this.src = null;
  }
}
