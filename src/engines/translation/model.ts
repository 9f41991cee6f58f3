/**
 * ONNX Runtime sessions for a T5-family export in the Optimum layout (MADLAD-400).
 *
 * Encoder: input_ids + attention_mask int64 [B, src] → last_hidden_state [B, src, d_model]. A batch of sources is
 * padded on the right with the pad id, mask 0 there; the mask travels with the encoder output so the decoder's
 * cross-attention ignores the padding (`encoder_attention_mask`, fed by the shared decoder).
 * Decoder: the shared KV-cached decoder of encoder-decoder exports (../seq2seq/kv-decoder.ts), split or merged.
 */
import * as ort from 'onnxruntime-node';
import { EncoderDecoderModel } from '../seq2seq/encoder-decoder.ts';
import type { DecoderLayout, EncoderOutput, KVDecoder, OnnxSessionOptions } from '../seq2seq/kv-decoder.ts';
import type { TranslationConfig } from './config.ts';

export interface TranslationModelOptions extends OnnxSessionOptions {
  /** Use the `*_quantized.onnx` (int8 dynamic) files. */
  quantized?: boolean;
  decoderLayout?: 'auto' | DecoderLayout;
  /** Pre-pack the decoder's weights at session creation (default true; a short-lived CLI starts faster without). */
  prepackDecoder?: boolean;
}

export class TranslationOnnxModel extends EncoderDecoderModel {
  private constructor(
    readonly cfg: TranslationConfig,
    quantized: boolean,
    encoder: ort.InferenceSession,
    decoder: KVDecoder,
  ) {
    super(quantized, encoder, decoder);
  }

  static async load(dir: string, cfg: TranslationConfig, opts: TranslationModelOptions = {}): Promise<TranslationOnnxModel> {
    const { encoder, decoder } = await EncoderDecoderModel.sessions(dir, { ...opts, heads: cfg.numHeads, headDim: cfg.dKv });
    return new TranslationOnnxModel(cfg, !!opts.quantized, encoder, decoder);
  }

  /** Encodes token sequences in one run, right-padded to the longest; the output carries the attention mask. */
  async encode(sources: number[][]): Promise<EncoderOutput> {
    if (!sources.length || sources.some((s) => !s.length)) throw new Error('every source needs at least one token');
    const b = sources.length;
    const n = Math.max(...sources.map((s) => s.length));
    const ids = new BigInt64Array(b * n).fill(BigInt(this.cfg.padTokenId));
    const mask = new BigInt64Array(b * n);
    sources.forEach((s, i) => {
      s.forEach((t, j) => (ids[i * n + j] = BigInt(t)));
      mask.fill(1n, i * n, i * n + s.length);
    });
    const out = await this.runEncoder({ input_ids: new ort.Tensor('int64', ids, [b, n]), attention_mask: new ort.Tensor('int64', mask, [b, n]) });
    return { ...out, mask };
  }
}
