/**
 * ONNX Runtime sessions for a Moonshine export (onnx-community/moonshine-*-ONNX, the layout transformers.js runs).
 *
 * Encoder: input_values float32 [B, samples] (raw 16 kHz mono, no normalisation, no padding to 30 s) →
 * last_hidden_state [B, frames, d] with frames = moonshineFrames(samples): its cost follows the audio's length.
 * The export takes no attention mask, so one encoder batch holds audio of one length (callers group by length).
 * Decoder: the shared KV-cached decoder of encoder-decoder exports (../seq2seq/kv-decoder.ts), merged or split.
 */
import * as ort from 'onnxruntime-node';
import { EncoderDecoderModel } from '../seq2seq/encoder-decoder.ts';
import type { DecoderLayout, EncoderOutput, KVDecoder, OnnxSessionOptions } from '../seq2seq/kv-decoder.ts';
import { type MoonshineConfig, MOONSHINE_MIN_SAMPLES } from './config.ts';

export interface MoonshineModelOptions extends OnnxSessionOptions {
  /** Use the `*_quantized.onnx` (int8 dynamic) files. */
  quantized?: boolean;
  decoderLayout?: 'auto' | DecoderLayout;
  /** Pre-pack the decoder's weights at session creation (default true; the CLI skips it to start faster). */
  prepackDecoder?: boolean;
  /** Precision 'q8': the fp32 decoder's MatMul weights as 8-bit blocks, rewritten at load (as Whisper's). */
  blockQuantizeDecoder?: boolean;
}

export class MoonshineOnnxModel extends EncoderDecoderModel {
  private constructor(
    readonly cfg: MoonshineConfig,
    quantized: boolean,
    encoder: ort.InferenceSession,
    decoder: KVDecoder,
  ) {
    super(quantized, encoder, decoder);
  }

  static async load(dir: string, cfg: MoonshineConfig, opts: MoonshineModelOptions = {}): Promise<MoonshineOnnxModel> {
    const { encoder, decoder } = await EncoderDecoderModel.sessions(dir, { ...opts, heads: cfg.decoderKvHeads, headDim: cfg.headDim });
    return new MoonshineOnnxModel(cfg, !!opts.quantized, encoder, decoder);
  }

  /** Encodes audios of one length (≥ MOONSHINE_MIN_SAMPLES samples) in one run. */
  async encode(audios: Float32Array[]): Promise<EncoderOutput> {
    const n = audios[0]?.length ?? 0;
    if (audios.some((a) => a.length !== n)) throw new Error('one Moonshine encoder batch holds audio of one length (the export takes no attention mask)');
    if (n < MOONSHINE_MIN_SAMPLES) throw new Error(`Moonshine's encoder needs at least ${MOONSHINE_MIN_SAMPLES} samples, got ${n}`);
    const buf = new Float32Array(n * audios.length);
    audios.forEach((a, i) => buf.set(a, i * n));
    return this.runEncoder({ input_values: new ort.Tensor('float32', buf, [audios.length, n]) });
  }
}
