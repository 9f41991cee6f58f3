/**
 * Reads the Hugging Face config files of a Whisper export. Real checkpoints differ only in these
 * numbers (mel bins, layers, heads, alignment heads, language table), so nothing is hard-coded.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { featureConfigFromPreprocessor, type FeatureConfig } from './features.ts';

/** Whisper's decoder context in every published size: no request may ask for more tokens than this. */
export const WHISPER_MAX_TOKENS = 448;

export interface WhisperConfig {
  dModel: number;
  decoderLayers: number;
  decoderHeads: number;
  headDim: number;
  vocabSize: number;
  maxTargetPositions: number; // decoder context (448)
  maxSourcePositions: number; // encoder frames after conv stride (1500)
  nMels: number;
  medianFilterWidth: number;
  features: FeatureConfig;
  gen: WhisperGenerationConfig;
}

export interface WhisperGenerationConfig {
  decoderStartTokenId: number; // <|startoftranscript|>
  eosTokenId: number; // <|endoftext|>
  noTimestampsTokenId: number; // <|notimestamps|>; timestamps begin at +1
  prevSotTokenId: number; // <|startofprev|>
  suppressTokens: number[];
  beginSuppressTokens: number[];
  maxInitialTimestampIndex: number | null;
  alignmentHeads: [number, number][];
  langToId: Record<string, number>; // "<|en|>" -> id
  taskToId: Record<string, number>;
  isMultilingual: boolean;
  maxLength: number;
}

async function readJson(path: string): Promise<Record<string, any>> {
  return JSON.parse(await readFile(path, 'utf8'));
}

async function readJsonOptional(path: string): Promise<Record<string, any>> {
  try {
    return await readJson(path);
  } catch {
    return {};
  }
}

export async function loadWhisperConfig(dir: string): Promise<WhisperConfig> {
  const cfg = await readJson(join(dir, 'config.json'));
  const gen = await readJsonOptional(join(dir, 'generation_config.json'));
  const pre = await readJsonOptional(join(dir, 'preprocessor_config.json'));
  const dModel: number = cfg.d_model;
  const heads: number = cfg.decoder_attention_heads;
  const features = featureConfigFromPreprocessor({ feature_size: cfg.num_mel_bins, ...pre });
  if (features.nMels !== cfg.num_mel_bins) throw new Error(`mel bins mismatch: preprocessor ${features.nMels} vs config ${cfg.num_mel_bins}`);
  const noTs: number = gen.no_timestamps_token_id ?? 50363;
  return {
    dModel,
    decoderLayers: cfg.decoder_layers,
    decoderHeads: heads,
    headDim: dModel / heads,
    vocabSize: cfg.vocab_size,
    maxTargetPositions: cfg.max_target_positions ?? WHISPER_MAX_TOKENS,
    maxSourcePositions: cfg.max_source_positions ?? 1500,
    nMels: cfg.num_mel_bins,
    medianFilterWidth: cfg.median_filter_width ?? 7,
    features,
    gen: {
      decoderStartTokenId: gen.decoder_start_token_id ?? cfg.decoder_start_token_id ?? 50258,
      eosTokenId: gen.eos_token_id ?? cfg.eos_token_id ?? 50257,
      noTimestampsTokenId: noTs,
      prevSotTokenId: gen.prev_sot_token_id ?? noTs - 2,
      suppressTokens: gen.suppress_tokens ?? cfg.suppress_tokens ?? [],
      beginSuppressTokens: gen.begin_suppress_tokens ?? cfg.begin_suppress_tokens ?? [],
      maxInitialTimestampIndex: gen.max_initial_timestamp_index ?? null,
      alignmentHeads: gen.alignment_heads ?? [],
      langToId: gen.lang_to_id ?? {},
      taskToId: gen.task_to_id ?? { transcribe: noTs - 4, translate: noTs - 5 },
      isMultilingual: gen.is_multilingual ?? Object.keys(gen.lang_to_id ?? {}).length > 0,
      maxLength: gen.max_length ?? cfg.max_target_positions ?? WHISPER_MAX_TOKENS,
    },
  };
}
