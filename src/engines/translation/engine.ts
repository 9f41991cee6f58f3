/**
 * TranslationEngine: batched text translation with a T5-family encoder-decoder (MADLAD-400). The target language is
 * the `<2xx>` tag the source is prefixed with; a batch of sources is padded (mask 0 on pads) and encoded in one run;
 * decoding starts from decoder_start_token_id and stops at `</s>`, with the decoding machinery shared with the speech
 * engines (../seq2seq: KV cache, greedy, beam search, rows dropped as they finish).
 */
import { basename } from 'node:path';
import { beamSearch, type DecodeIds, type DecodeResult, type DecodeTask, decodeGreedy } from '../seq2seq/generate.ts';
import { type DecoderLayout, onnxFiles } from '../seq2seq/kv-decoder.ts';
import { loadTranslationConfig, type TranslationConfig } from './config.ts';
import { TranslationOnnxModel, type TranslationModelOptions } from './model.ts';
import { TranslationTokenizer } from './tokenizer.ts';

/** New tokens per text when the caller sets none (HF's default max_length of 20 is too short for sentences). */
export const TRANSLATION_DEFAULT_MAX_NEW_TOKENS = 256;

export type TranslationEngineOptions = TranslationModelOptions & {
  id?: string;
  /** 'int8' loads the `*_quantized` files (default fp32, or int8 when the folder has only those, as some exports). */
  precision?: 'fp32' | 'int8';
};

export interface TranslateOptions {
  /** Token budget per text (default {@link TRANSLATION_DEFAULT_MAX_NEW_TOKENS}). */
  maxNewTokens?: number;
  /**
   * 1 (default) = greedy; > 1 = beam search with that many beams (HF `num_beams`, with HF's rules: see
   * `BeamOptions.rules`; length_penalty and early_stopping from the model's generation_config).
   */
  beamSize?: number;
  /**
   * Greedy: compute each token's log-probability (`sumLogprob`; a log-softmax over the vocabulary per row per step,
   * most of the JavaScript work of a step at real vocabulary sizes). Default false; beam search always has them.
   */
  logprobs?: boolean;
}

export interface TranslationItem {
  text: string;
  /** Target language code (the `xx` of a `<2xx>` tag). */
  target: string;
}

export interface Translation {
  text: string;
  /** Generated ids, `</s>` excluded. */
  tokens: number[];
  /** true when the model emitted `</s>` (false = the token budget ran out). */
  finished: boolean;
  /** Sum of the tokens' log-probabilities; null when not computed (greedy without `logprobs`). */
  sumLogprob: number | null;
}

export interface TranslationEngineInfo {
  family: 'translation';
  id: string;
  dir: string;
  modelType: string;
  layout: DecoderLayout;
  quantized: boolean;
  /** Target codes of the vocabulary's `<2xx>` tags. */
  targets: string[];
}

export class TranslationEngine {
  readonly info: TranslationEngineInfo;
  readonly ids: DecodeIds;

  private constructor(
    readonly dir: string,
    readonly config: TranslationConfig,
    readonly tokenizer: TranslationTokenizer,
    readonly model: TranslationOnnxModel,
    id: string,
  ) {
    this.info = { family: 'translation', id, dir, modelType: config.modelType, layout: model.layout, quantized: model.quantized, targets: tokenizer.targets };
    this.ids = { eot: config.eosTokenId, noSpeech: null };
  }

  static async load(dir: string, opts: TranslationEngineOptions = {}): Promise<TranslationEngine> {
    const config = await loadTranslationConfig(dir);
    const tokenizer = await TranslationTokenizer.load(dir);
    const { precision, id, ...modelOpts } = opts;
    const quantized = precision ? precision === 'int8' : (opts.quantized ?? (!onnxFiles(dir, false).hasEncoder && onnxFiles(dir, true).hasEncoder));
    const model = await TranslationOnnxModel.load(dir, config, { ...modelOpts, quantized });
    return new TranslationEngine(dir, config, tokenizer, model, id ?? basename(dir));
  }

  async close(): Promise<void> {
    await this.model.close();
  }

  /** Target language codes this model translates into (from its vocabulary). */
  get targets(): string[] {
    return this.info.targets;
  }

  /** Throws the error an unknown target gets: where the codes are listed. */
  checkTarget(target: string): void {
    if (this.tokenizer.hasTarget(target)) return;
    const some = this.targets.slice(0, 12).join(', ');
    throw new Error(
      `unknown target language "${target}": ${this.info.id} translates into the ${this.targets.length} languages of its vocabulary's <2xx> tags ` +
        `(e.g. ${some}${this.targets.length > 12 ? ', …' : ''}); list them all with \`stt translate --list-targets --model ${this.info.id}\` ` +
        `(the <2xx> tokens of its tokenizer.json)`,
    );
  }

  /** Source ids of each item (`"<2xx> " + text`, `</s>` appended); throws on an unknown target. */
  encodeSources(items: TranslationItem[]): number[][] {
    for (const it of items) this.checkTarget(it.target);
    return items.map((it) => this.tokenizer.encode(it.text, it.target));
  }

  /** Translates a batch into one `target` (see {@link translateBatch}). */
  translate(texts: string[], target: string, opts: TranslateOptions = {}): Promise<Translation[]> {
    if (!Array.isArray(texts) || texts.some((t) => typeof t !== 'string')) throw new Error('texts must be an array of strings');
    return this.translateBatch(
      texts.map((text) => ({ text, target })),
      opts,
    );
  }

  /**
   * Translates a batch, each item into its own target: one padded encoder run, then one decoder batch (greedy) or
   * `beamSize` rows per item (beam search); each item's result equals its single run.
   */
  async translateBatch(items: TranslationItem[], opts: TranslateOptions = {}): Promise<Translation[]> {
    if (!items.length) return [];
    if (items.some((it) => typeof it?.text !== 'string' || typeof it.target !== 'string')) throw new Error('every item needs a text and a target (strings)');
    const maxNewTokens = opts.maxNewTokens ?? TRANSLATION_DEFAULT_MAX_NEW_TOKENS;
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new Error(`maxNewTokens must be a positive integer, got ${opts.maxNewTokens}`);
    const beamSize = opts.beamSize ?? 1;
    if (!Number.isInteger(beamSize) || beamSize < 1) throw new Error(`beamSize must be a positive integer, got ${opts.beamSize}`);
    const sources = this.encodeSources(items);
    const encoder = await this.model.encode(sources);
    const logprobs = beamSize > 1 || opts.logprobs === true;
    const tasks: DecodeTask[] = sources.map(() => ({ prompt: [this.config.decoderStartTokenId], sotIndex: 0, processors: [], maxNewTokens, logprobs }));
    const results: DecodeResult[] =
      beamSize > 1
        ? await beamSearch(this.model, encoder, tasks, this.ids, { beamSize, rules: 'hf', lengthPenalty: this.config.lengthPenalty, earlyStopping: this.config.earlyStopping })
        : await decodeGreedy(this.model, encoder, tasks, this.ids);
    return results.map((r) => ({ text: this.tokenizer.decode(r.tokens), tokens: r.tokens, finished: r.finished, sumLogprob: logprobs ? r.sumLogprob : null }));
  }
}
