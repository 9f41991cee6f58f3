/**
 * ONNX Runtime sessions for the Optimum / onnx-community Whisper layout.
 *
 * Encoder: input_features [B, nMels, 3000] -> last_hidden_state [B, 1500, d]; rewritten at load (encoder-graph.ts)
 * so that any even number of frames ≤ 3000 works too (frames/2 positions out).
 * Decoder: the shared KV-cached decoder of encoder-decoder exports (../seq2seq/kv-decoder.ts), merged or split.
 */
import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import { EncoderDecoderModel } from '../seq2seq/encoder-decoder.ts';
import { type DecoderLayout, type EncoderOutput, type KVDecoder, type OnnxSessionOptions, onnxFiles } from '../seq2seq/kv-decoder.ts';
import type { WhisperConfig } from './config.ts';
import { trimmableEncoderGraph } from './encoder-graph.ts';

export type { DecoderLayout, DecoderStepOutput, EncoderOutput, KVCache } from '../seq2seq/kv-decoder.ts';

export interface WhisperModelOptions extends OnnxSessionOptions {
  /** Use the `*_quantized.onnx` (int8 dynamic) files. */
  quantized?: boolean;
  decoderLayout?: 'auto' | DecoderLayout;
  /**
   * Rewrite the encoder at load so it runs on fewer than 3000 frames (encoder-graph.ts); default true.
   * When the graph cannot be rewritten the original is used and `trimmable` is false.
   */
  trimmableEncoder?: boolean;
  /**
   * Pre-pack the decoder's weights for MLAS GEMMs at session creation (default true). Packing is most of the
   * decoder's creation cost (tiny merged: ~0.7 s of CPU → ~0.1 s without); a short-lived process that runs a
   * few steps (the CLI) starts faster without it. The encoder is always packed (cheap to create).
   */
  prepackDecoder?: boolean;
  /**
   * Precision 'q8': rewrite the fp32 decoder's MatMul weights to block-wise 8-bit (onnxruntime's MatMulNBits, 32 rows
   * per block) at load. Faster per token than fp32 and than the int8 files, closer to fp32 than those; the load
   * quantizes (seconds at small size). The encoder stays fp32.
   */
  blockQuantizeDecoder?: boolean;
}

export class WhisperOnnxModel extends EncoderDecoderModel {
  private constructor(
    readonly cfg: WhisperConfig,
    quantized: boolean,
    encoder: ort.InferenceSession,
    decoder: KVDecoder,
    /** The encoder accepts any even number of frames ≤ 3000 (else only 3000). */
    readonly trimmable: boolean,
  ) {
    super(quantized, encoder, decoder);
  }

  static async load(dir: string, cfg: WhisperConfig, opts: WhisperModelOptions = {}): Promise<WhisperOnnxModel> {
    const encoderPath = onnxFiles(dir, !!opts.quantized).file('encoder_model');
    const trimmed = opts.trimmableEncoder === false ? null : trimmableEncoderGraph(await readFile(encoderPath), { maxPositions: cfg.maxSourcePositions, dModel: cfg.dModel });
    const { encoder, decoder } = await EncoderDecoderModel.sessions(dir, { ...opts, heads: cfg.decoderHeads, headDim: cfg.headDim, encoderBytes: trimmed?.bytes });
    return new WhisperOnnxModel(cfg, !!opts.quantized, encoder, decoder, trimmed !== null);
  }

  /** Word-level DTW needs `cross_attentions.{i}` outputs (exported with output_attentions); most exports lack them. */
  get crossAttentionOutputs(): string[] {
    return this.decoder.crossAttentionOutputs;
  }

  get hasCrossAttentions(): boolean {
    return this.decoder.crossAttentionOutputs.length > 0;
  }

  /**
   * Encode a batch of [nMels, frames] feature windows in one run (all of the same `frames`: 3000, or any even
   * number ≤ 3000 when the encoder is `trimmable`; the output then has frames/2 positions).
   */
  async encode(features: Float32Array[], frames = this.cfg.features.nFrames): Promise<EncoderOutput> {
    const { nMels, nFrames } = this.cfg.features;
    if (frames !== nFrames && (!this.trimmable || frames <= 0 || frames > nFrames || frames % 2 !== 0)) {
      throw new Error(
        this.trimmable ? `encoder frames must be an even number in 2..${nFrames}, got ${frames}` : `this encoder only runs on ${nFrames} frames (its graph could not be trimmed), got ${frames}`,
      );
    }
    const per = nMels * frames;
    const buf = new Float32Array(per * features.length);
    features.forEach((f, i) => {
      if (f.length !== per) throw new Error(`features[${i}] has ${f.length} values, expected ${nMels}x${frames}`);
      buf.set(f, i * per);
    });
    return this.runEncoder({ input_features: new ort.Tensor('float32', buf, [features.length, nMels, frames]) });
  }
}
