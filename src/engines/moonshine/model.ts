/**
 * ONNX Runtime sessions for a Moonshine export (onnx-community/moonshine-*-ONNX, the layout transformers.js runs).
 *
 * Encoder: input_values float32 [B, samples] (raw 16 kHz mono, no normalisation, no padding to 30 s) →
 * last_hidden_state [B, frames, d] with frames = moonshineFrames(samples): its cost follows the audio's length.
 * The export takes no attention mask, so one encoder batch holds audio of one length (callers group by length).
 * Decoder: the shared KV-cached decoder of encoder-decoder exports (../seq2seq/kv-decoder.ts), merged or split.
 */
import * as ort from 'onnxruntime-node';
import {
  chooseLayout,
  createSession,
  type DecoderLayout,
  type DecoderStepOutput,
  type EncoderOutput,
  type KVCache,
  KVDecoder,
  onnxFiles,
  type OnnxSessionOptions,
  sessionOptions,
  type StepModel,
} from '../seq2seq/kv-decoder.ts';
import { type MoonshineConfig, MOONSHINE_MIN_SAMPLES } from './config.ts';

export interface MoonshineModelOptions extends OnnxSessionOptions {
  /** Use the `*_quantized.onnx` (int8 dynamic) files. */
  quantized?: boolean;
  decoderLayout?: 'auto' | DecoderLayout;
  /** Pre-pack the decoder's weights at session creation (default true; the CLI skips it to start faster). */
  prepackDecoder?: boolean;
}

export class MoonshineOnnxModel implements StepModel {
  /** Cumulative encoder wall time since load (never reset); the decoder's are in `decoder.timing`. */
  readonly timing = { encoderMs: 0 };

  private constructor(
    readonly cfg: MoonshineConfig,
    readonly quantized: boolean,
    private readonly encoder: ort.InferenceSession,
    readonly decoder: KVDecoder,
  ) {}

  static async load(dir: string, cfg: MoonshineConfig, opts: MoonshineModelOptions = {}): Promise<MoonshineOnnxModel> {
    const quantized = !!opts.quantized;
    const layout = chooseLayout(dir, quantized, opts.decoderLayout);
    const encoder = await createSession(onnxFiles(dir, quantized).file('encoder_model'), sessionOptions(opts));
    try {
      const decoder = await KVDecoder.load(dir, quantized, { layout, heads: cfg.decoderKvHeads, headDim: cfg.headDim, prepack: opts.prepackDecoder }, opts);
      return new MoonshineOnnxModel(cfg, quantized, encoder, decoder);
    } catch (e) {
      await encoder.release();
      throw e;
    }
  }

  get layout(): DecoderLayout {
    return this.decoder.layout;
  }

  async close(): Promise<void> {
    await this.encoder.release();
    await this.decoder.close();
  }

  /** Encodes audios of one length (≥ MOONSHINE_MIN_SAMPLES samples) in one run. */
  async encode(audios: Float32Array[]): Promise<EncoderOutput> {
    const n = audios[0]?.length ?? 0;
    if (audios.some((a) => a.length !== n)) throw new Error('one Moonshine encoder batch holds audio of one length (the export takes no attention mask)');
    if (n < MOONSHINE_MIN_SAMPLES) throw new Error(`Moonshine's encoder needs at least ${MOONSHINE_MIN_SAMPLES} samples, got ${n}`);
    const buf = new Float32Array(n * audios.length);
    audios.forEach((a, i) => buf.set(a, i * n));
    const t0 = performance.now(); // timing
    const out = await this.encoder.run({ input_values: new ort.Tensor('float32', buf, [audios.length, n]) });
    this.timing.encoderMs += performance.now() - t0; // timing
    const h = out.last_hidden_state;
    return { data: h.data as Float32Array, batch: h.dims[0], frames: h.dims[1], dModel: h.dims[2] };
  }

  prefill(encoder: EncoderOutput, ids: number[][]): Promise<DecoderStepOutput> {
    return this.decoder.prefill(encoder, ids);
  }

  step(cache: KVCache, tokens: number[]): Promise<DecoderStepOutput> {
    return this.decoder.step(cache, tokens);
  }
}
