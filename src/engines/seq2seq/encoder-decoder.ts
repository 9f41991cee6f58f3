/**
 * An encoder-decoder export as ONNX Runtime sessions: one encoder session and the shared KV-cached decoder. What
 * differs between families is only the encoder's input (Whisper: log-mel features; Moonshine: raw samples), so each
 * family's model extends this with its own `encode`.
 */
import type * as ort from 'onnxruntime-node';
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
} from './kv-decoder.ts';

export interface EncoderDecoderLoadOptions extends OnnxSessionOptions {
  quantized?: boolean;
  decoderLayout?: 'auto' | DecoderLayout;
  /** Pre-pack the decoder's weights at session creation (default true; a short-lived CLI starts faster without). */
  prepackDecoder?: boolean;
  /** Precision 'q8': the fp32 decoder's MatMul weights as 8-bit blocks, rewritten at load (KVDecoderOptions.blockQuantized). */
  blockQuantizeDecoder?: boolean;
  /** Decoder self-attention KV heads and head size (the merged graph's empty first-step pasts). */
  heads: number;
  headDim: number;
  /** The encoder graph rewritten in memory (else the file is loaded as it is). */
  encoderBytes?: Uint8Array;
}

export abstract class EncoderDecoderModel implements StepModel {
  /** Cumulative encoder wall time since load (never reset); the decoder's are in `decoder.timing`. */
  readonly timing = { encoderMs: 0 };

  protected constructor(
    readonly quantized: boolean,
    private readonly encoder: ort.InferenceSession,
    readonly decoder: KVDecoder,
  ) {}

  /** Creates the encoder session and the decoder of `dir`'s export; the encoder is released if the decoder fails. */
  protected static async sessions(dir: string, o: EncoderDecoderLoadOptions): Promise<{ encoder: ort.InferenceSession; decoder: KVDecoder }> {
    const quantized = !!o.quantized;
    const layout = chooseLayout(dir, quantized, o.decoderLayout);
    const encoder = await createSession(onnxFiles(dir, quantized).file('encoder_model'), sessionOptions(o), o.encoderBytes);
    try {
      return { encoder, decoder: await KVDecoder.load(dir, quantized, { layout, heads: o.heads, headDim: o.headDim, prepack: o.prepackDecoder, blockQuantized: o.blockQuantizeDecoder }, o) };
    } catch (e) {
      await encoder.release();
      throw e;
    }
  }

  get layout(): DecoderLayout {
    return this.decoder.layout;
  }

  /** The weights that run: the fp32 files, the int8 files, or the fp32 decoder rewritten to 8-bit blocks. */
  get precision(): 'fp32' | 'int8' | 'q8' {
    return this.quantized ? 'int8' : this.decoder.blockQuantized ? 'q8' : 'fp32';
  }

  async close(): Promise<void> {
    await this.encoder.release();
    await this.decoder.close();
  }

  /** One encoder run (timed) → its `last_hidden_state` rows. */
  protected async runEncoder(feeds: Record<string, ort.Tensor>): Promise<EncoderOutput> {
    const t0 = performance.now(); // timing
    const out = await this.encoder.run(feeds);
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
