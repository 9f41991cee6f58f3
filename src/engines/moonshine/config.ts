/**
 * Reads the Hugging Face config files of a Moonshine export (UsefulSensors/moonshine-{tiny,base}, the
 * onnx-community ONNX layout). Real checkpoints differ only in these numbers; nothing is hard-coded.
 */
import { join } from 'node:path';
import { readModelJson } from '../seq2seq/hf-files.ts';

export interface MoonshineConfig {
  hiddenSize: number;
  decoderLayers: number;
  /** KV heads of the decoder's attention (the shape of its past tensors). */
  decoderKvHeads: number;
  headDim: number;
  vocabSize: number;
  /** Decoder context: prompt + generated tokens never exceed it. */
  maxPositions: number;
  /** decoder_start_token_id (<s>) */
  startTokenId: number;
  /** eos_token_id (</s>) */
  eosTokenId: number;
  samplingRate: number;
  /** Tokens per second of audio HF's Moonshine examples budget (`max_length = seconds × 6.5`). */
  tokensPerSecond: number;
}

/** Generated tokens per second of audio that the Moonshine model card budgets (`token_limit_factor = 6.5 / 16000`). */
export const MOONSHINE_TOKENS_PER_SECOND = 6.5;

const num = (v: unknown, fallback: number): number => (typeof v === 'number' && Number.isFinite(v) ? v : fallback);

export async function loadMoonshineConfig(dir: string): Promise<MoonshineConfig> {
  const c = await readModelJson(join(dir, 'config.json'));
  if (String(c.model_type).toLowerCase() !== 'moonshine') throw new Error(`${dir} is not a Moonshine model (config.json model_type is '${c.model_type}')`);
  const gen = await readModelJson(join(dir, 'generation_config.json'), true);
  const pre = await readModelJson(join(dir, 'preprocessor_config.json'), true);
  const hidden = num(c.hidden_size, 0);
  const heads = num(c.decoder_num_attention_heads, 0);
  if (!hidden || !heads) throw new Error(`${dir}/config.json lacks hidden_size / decoder_num_attention_heads`);
  // HF MoonshineAttention: head_dim = hidden / heads, padded up to pad_head_dim_to_multiple_of when set
  let headDim = hidden / heads;
  const padTo = num(c.pad_head_dim_to_multiple_of, 0);
  if (padTo) headDim = Math.ceil(headDim / padTo) * padTo;
  return {
    hiddenSize: hidden,
    decoderLayers: num(c.decoder_num_hidden_layers, 0),
    decoderKvHeads: num(c.decoder_num_key_value_heads, heads),
    headDim,
    vocabSize: num(c.vocab_size, 0),
    maxPositions: num(c.max_position_embeddings, 512),
    startTokenId: num(gen.decoder_start_token_id, num(c.decoder_start_token_id, 1)),
    eosTokenId: num(gen.eos_token_id, num(c.eos_token_id, 2)),
    samplingRate: num(pre.sampling_rate, 16000),
    tokensPerSecond: MOONSHINE_TOKENS_PER_SECOND,
  };
}

/**
 * Encoder positions for `samples` raw samples: three strided convolutions (kernel 127 stride 64, kernel 7 stride 3,
 * kernel 3 stride 2), so the cost follows the audio's length. 0 when the audio is too short for one position.
 */
export function moonshineFrames(samples: number): number {
  const c1 = Math.floor((samples - 127) / 64) + 1;
  const c2 = Math.floor((c1 - 7) / 3) + 1;
  const f = Math.floor((c2 - 3) / 2) + 1;
  return Math.max(0, f);
}

/** Fewest samples the encoder accepts (one output position). */
export const MOONSHINE_MIN_SAMPLES = 127 + 64 * (7 - 1 + 3 * (3 - 1));
