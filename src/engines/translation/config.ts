/**
 * Reads the Hugging Face config files of a T5-family translation export (MADLAD-400: google/madlad400-*-mt in the
 * Optimum ONNX layout). Real checkpoints differ only in these numbers; nothing is hard-coded.
 */
import { join } from 'node:path';
import { readModelJson } from '../seq2seq/hf-files.ts';

export interface TranslationConfig {
  modelType: string;
  dModel: number;
  /** Size of one attention head (T5 `d_kv`): the decoder's past tensors are [batch, numHeads, len, dKv]. */
  dKv: number;
  numHeads: number;
  decoderLayers: number;
  vocabSize: number;
  /** decoder_start_token_id (T5: 0, `<pad>`): the one-token decoder prompt. */
  decoderStartTokenId: number;
  /** eos_token_id (`</s>`): decoding stops there. */
  eosTokenId: number;
  /** pad_token_id: what a shorter source is padded with in a batch (its attention mask is 0 there). */
  padTokenId: number;
  /** Beam search: length_penalty (exponent of the length a finished sequence's score is divided by; HF default 1). */
  lengthPenalty: number;
  /** Beam search: early_stopping (HF default false). */
  earlyStopping: boolean | 'never';
}

const int = (v: unknown): number | undefined => (typeof v === 'number' && Number.isInteger(v) ? v : Array.isArray(v) && Number.isInteger(v[0]) ? v[0] : undefined);

/** generation_config.json wins over config.json (as in HF `generate`). */
export async function loadTranslationConfig(dir: string): Promise<TranslationConfig> {
  const c = await readModelJson(join(dir, 'config.json'));
  const modelType = String(c.model_type ?? '').toLowerCase();
  if (!['t5', 'mt5'].includes(modelType) || c.is_encoder_decoder === false) {
    throw new Error(`${dir} is not a T5/MADLAD translation model (config.json model_type is '${c.model_type}')`);
  }
  const gen = await readModelJson(join(dir, 'generation_config.json'), true);
  const need = (name: string, v: number | undefined): number => {
    if (v === undefined) throw new Error(`${dir}: config lacks ${name}`);
    return v;
  };
  return {
    modelType,
    dModel: need('d_model', int(c.d_model)),
    dKv: need('d_kv', int(c.d_kv)),
    numHeads: need('num_heads', int(c.num_heads)),
    // T5: num_decoder_layers defaults to num_layers
    decoderLayers: need('num_decoder_layers', int(c.num_decoder_layers) ?? int(c.num_layers)),
    vocabSize: need('vocab_size', int(c.vocab_size)),
    decoderStartTokenId: need('decoder_start_token_id', int(gen.decoder_start_token_id) ?? int(c.decoder_start_token_id)),
    eosTokenId: need('eos_token_id', int(gen.eos_token_id) ?? int(c.eos_token_id)),
    padTokenId: need('pad_token_id', int(gen.pad_token_id) ?? int(c.pad_token_id)),
    lengthPenalty: typeof (gen.length_penalty ?? c.length_penalty) === 'number' ? (gen.length_penalty ?? c.length_penalty) : 1,
    earlyStopping: ((v) => (v === true || v === 'never' ? v : false))(gen.early_stopping ?? c.early_stopping),
  };
}
