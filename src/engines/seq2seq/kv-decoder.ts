/**
 * The decoder half of an Optimum / onnx-community encoder-decoder export (Whisper, Moonshine: the same IO names),
 * as ONNX Runtime sessions. Two layouts:
 *  - merged  (decoder_model_merged.onnx): one graph with an If on `use_cache_branch`; the first step
 *    feeds false + empty past tensors [B, heads, 0, headDim], later steps true + previous presents
 *    (encoder KV included, the graph passes it through).
 *  - split   (decoder_model.onnx + decoder_with_past_model.onnx): the first graph returns decoder and
 *    encoder presents, the second takes both and returns decoder presents only, so the encoder KV
 *    of the first step is kept and re-fed.
 * T5-style exports (MADLAD) also take `encoder_attention_mask` (int64 [batch, src], 1 = real token) on the first
 * and the cached steps: fed whenever the graph declares it, from `EncoderOutput.mask` (all ones when absent), kept
 * in the cache for the cached steps.
 * Every call is batched: one session.run for N sequences. Sequences in a batch must share the
 * same length (the exports have no decoder attention mask, so left padding is impossible);
 * callers group by prompt length.
 *
 * The KV cache lives in CPU memory as plain ORT tensors so that rows can be gathered
 * (beam reordering, dropping finished sequences) and concatenated (cross-stream batching): kv-rows.ts.
 */
import { cachedGraph } from '../../models/onnx-graph-cache.ts';
import { quantizeMatMulsNBits } from '../../models/onnx-matmul-nbits.ts';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';

export type DecoderLayout = 'merged' | 'split';

/** How ONNX sessions of an engine are created (the options every engine's model takes). */
export interface OnnxSessionOptions {
  executionProvider?: 'cpu' | 'cuda';
  intraOpThreads?: number;
  interOpThreads?: number;
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * false: intra-op threads sleep when out of work instead of spinning (`session.intra_op.allow_spinning=0`). Spinning
   * wins on an idle machine; when the cores are shared (the server's own JavaScript, other sessions, other processes)
   * spinning threads take the cores the work needs (bench:whispercpp: 2× per token on a loaded machine).
   */
  allowSpinning?: boolean;
  /** Where graphs rewritten at load (precision q8) are kept between loads (models/onnx-graph-cache.ts); unset = rewrite every load. */
  graphCacheDir?: string;
}

/** Encoder output rows, [batch, frames, dModel] row-major. */
export interface EncoderOutput {
  data: Float32Array;
  batch: number;
  frames: number;
  dModel: number;
  /** [batch, frames] attention mask of a padded batch (1 = real position, 0 = padding); absent = all real. */
  mask?: BigInt64Array;
}

/**
 * Decoder KV cache for a batch of rows. `decoder`/`encoder` map the *input* names
 * (`past_key_values.{i}.{decoder|encoder}.{key|value}`) to [batch, heads, len, headDim] tensors.
 */
export interface KVCache {
  batch: number;
  pastLength: number;
  decoder: Record<string, ort.Tensor>;
  encoder: Record<string, ort.Tensor>;
  /** Only the merged graph needs `encoder_hidden_states` on cached steps (unused by that branch). */
  encoderHidden: ort.Tensor | null;
  /** int64 [batch, frames] `encoder_attention_mask` of graphs that take one on cached steps (T5), else absent. */
  encoderMask?: ort.Tensor | null;
}

export interface DecoderStepOutput {
  /** [batch, seqLen, vocab] */
  logits: Float32Array;
  seqLen: number;
  vocab: number;
  cache: KVCache;
  /** Per layer [batch, heads, seqLen, frames] when the export exposes cross-attentions (prefill only), else null. */
  crossAttentions: Float32Array[] | null;
}

/** What the decoding algorithms (generate.ts) need of a model: a batched prefill and a batched cached step. */
export interface StepModel {
  prefill(encoder: EncoderOutput, ids: number[][]): Promise<DecoderStepOutput>;
  step(cache: KVCache, tokens: number[]): Promise<DecoderStepOutput>;
}

export function sessionOptions(o: OnnxSessionOptions): ort.InferenceSession.SessionOptions {
  const so: ort.InferenceSession.SessionOptions = {
    executionProviders: o.executionProvider === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
    graphOptimizationLevel: o.graphOptimizationLevel ?? 'all',
  };
  // onnxruntime-node rejects keys that are present but undefined
  if (o.intraOpThreads !== undefined) so.intraOpNumThreads = o.intraOpThreads;
  if (o.interOpThreads !== undefined) so.interOpNumThreads = o.interOpThreads;
  if (o.allowSpinning === false) so.extra = { session: { intra_op: { allow_spinning: '0' } } };
  return so;
}

/**
 * Creates a session from a file, or from `bytes` (a graph rewritten in memory): external data files (large exports)
 * are then found next to the original file. A CUDA failure names the provider.
 */
export async function createSession(path: string, options: ort.InferenceSession.SessionOptions, bytes?: Uint8Array): Promise<ort.InferenceSession> {
  try {
    if (!bytes) return await ort.InferenceSession.create(path, options);
    const session = { ...(options.extra as { session?: object } | undefined)?.session, model_external_initializers_file_folder_path: dirname(path) };
    return await ort.InferenceSession.create(bytes, { ...options, extra: { ...options.extra, session } });
  } catch (e) {
    // the npm package only ships CUDA providers when installed with CUDA binaries (see .npmrc)
    if ((options.executionProviders as string[] | undefined)?.includes('cuda')) throw new Error(`CUDA execution provider unavailable for ${path}: ${(e as Error).message}`);
    throw e;
  }
}

/** Where an export's ONNX files of one precision are, and which decoder layouts it has. */
export function onnxFiles(dir: string, quantized: boolean): { onnxDir: string; file: (name: string) => string; hasEncoder: boolean; hasMerged: boolean; hasSplit: boolean } {
  const onnxDir = existsSync(join(dir, 'onnx')) ? join(dir, 'onnx') : dir;
  const q = quantized ? '_quantized' : '';
  const file = (name: string) => join(onnxDir, `${name}${q}.onnx`);
  return {
    onnxDir,
    file,
    hasEncoder: existsSync(file('encoder_model')),
    hasMerged: existsSync(file('decoder_model_merged')),
    hasSplit: existsSync(file('decoder_model')) && existsSync(file('decoder_with_past_model')),
  };
}

/** The layout to load: the requested one (its files must exist), or for 'auto' merged when present, else split. */
export function chooseLayout(dir: string, quantized: boolean, want: 'auto' | DecoderLayout = 'auto'): DecoderLayout {
  const { onnxDir, file, hasMerged, hasSplit } = onnxFiles(dir, quantized);
  const q = quantized ? '_quantized' : '';
  if (want === 'auto') {
    // Merged (what most hub exports ship and transformers.js uses) once its cached steps fetch only
    // what they need: then as fast as split (bench:asr, docs/benchmarks.md), with one session less.
    if (hasMerged) return 'merged';
    if (hasSplit) return 'split';
    throw new Error(`no decoder${q} ONNX files in ${onnxDir}`);
  }
  if (want === 'merged' && !hasMerged) throw new Error(`missing ${file('decoder_model_merged')}`);
  if (want === 'split' && !hasSplit) throw new Error(`missing ${file('decoder_model')} / decoder_with_past_model${q}.onnx`);
  return want;
}

export interface KVDecoderOptions {
  layout: DecoderLayout;
  /** KV heads and head size of the decoder's self-attention (shape of the merged graph's empty first-step pasts). */
  heads: number;
  headDim: number;
  /** Pre-pack the weights for MLAS GEMMs at session creation (default true); see WhisperModelOptions.prepackDecoder. */
  prepack?: boolean;
  /**
   * Rewrite the (fp32) decoder's constant-weight MatMuls to block-wise 8-bit MatMulNBits at load
   * (models/onnx-matmul-nbits.ts): precision 'q8'. Forces pre-packing: that kernel is ~70× slower per
   * token without its packed weights.
   */
  blockQuantized?: boolean;
}

const ENCODER_MASK = 'encoder_attention_mask';
/** Names the q8 rewrite in the graph cache: change it whenever quantizeMatMulsNBits' output changes. */
const Q8_TAG = 'q8-matmulnbits-v1-block32-acc4';

/** int64 [batch, frames] `encoder_attention_mask` of an encoder output (all ones when it has no mask). */
export function encoderMaskTensor(e: EncoderOutput): ort.Tensor {
  const n = e.batch * e.frames;
  if (e.mask && e.mask.length !== n) throw new Error(`encoder mask has ${e.mask.length} values, expected ${e.batch}×${e.frames}`);
  return new ort.Tensor('int64', e.mask ?? new BigInt64Array(n).fill(1n), [e.batch, e.frames]);
}

export class KVDecoder implements StepModel {
  /** Cumulative wall time in session runs since load (never reset). */
  readonly timing = { decoderMs: 0, decoderRuns: 0 };
  /** `cross_attentions.{i}` outputs of the first-step graph (exported with output_attentions; most exports lack them). */
  readonly crossAttentionOutputs: string[];
  /** Whether the graphs take `encoder_attention_mask` (T5 exports) on the first / the cached steps. */
  private readonly firstTakesMask: boolean;
  private readonly pastTakesMask: boolean;

  private constructor(
    readonly layout: DecoderLayout,
    private readonly first: ort.InferenceSession, // merged, or decoder_model
    private readonly past: ort.InferenceSession, // merged, or decoder_with_past_model
    private readonly heads: number,
    private readonly headDim: number,
    /** The weights were rewritten to 8-bit blocks at load (precision 'q8'). */
    readonly blockQuantized = false,
  ) {
    this.crossAttentionOutputs = first.outputNames.filter((n) => /^cross_attentions\.\d+$/.test(n));
    this.firstTakesMask = first.inputNames.includes(ENCODER_MASK);
    this.pastTakesMask = past.inputNames.includes(ENCODER_MASK);
  }

  /** Loads the decoder session(s) of `dir`'s export in the given precision and layout. */
  static async load(dir: string, quantized: boolean, o: KVDecoderOptions, session: OnnxSessionOptions): Promise<KVDecoder> {
    const { file } = onnxFiles(dir, quantized);
    const so = sessionOptions(session);
    const extra = so.extra as { session?: Record<string, unknown> } | undefined;
    const blockQuantized = !!o.blockQuantized && !quantized;
    const options: ort.InferenceSession.SessionOptions = o.prepack === false && !blockQuantized ? { ...so, extra: { ...extra, session: { ...extra?.session, disable_prepacking: '1' } } } : so;
    const bytes = (f: string) => (blockQuantized ? cachedGraph(f, Q8_TAG, session.graphCacheDir ?? null, (b) => quantizeMatMulsNBits(b, { externalDataDir: dirname(f) }).bytes).bytes : undefined);
    const open = (name: string) => createSession(file(name), options, bytes(file(name)));
    if (o.layout === 'merged') {
      const merged = await open('decoder_model_merged');
      return new KVDecoder('merged', merged, merged, o.heads, o.headDim, blockQuantized);
    }
    const first = await open('decoder_model');
    const past = await open('decoder_with_past_model');
    return new KVDecoder('split', first, past, o.heads, o.headDim, blockQuantized);
  }

  async close(): Promise<void> {
    await this.first.release();
    if (this.past !== this.first) await this.past.release();
  }

  private idsTensor(ids: number[][]): ort.Tensor {
    const b = ids.length;
    const s = ids[0].length;
    const arr = new BigInt64Array(b * s);
    ids.forEach((row, i) => {
      if (row.length !== s) throw new Error('all sequences in a decoder batch must have the same length');
      row.forEach((t, j) => (arr[i * s + j] = BigInt(t)));
    });
    return new ort.Tensor('int64', arr, [b, s]);
  }

  private collect(
    out: ort.InferenceSession.OnnxValueMapType,
    b: number,
    pastLength: number,
    prev: KVCache | null,
    encoderHidden: ort.Tensor | null,
    encoderMask: ort.Tensor | null,
  ): DecoderStepOutput {
    const logitsT = out.logits;
    const decoder: Record<string, ort.Tensor> = {};
    const encoder: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(out)) {
      const m = /^present\.(\d+)\.(decoder|encoder)\.(key|value)$/.exec(name);
      if (!m) continue;
      const inName = `past_key_values.${m[1]}.${m[2]}.${m[3]}`;
      (m[2] === 'decoder' ? decoder : encoder)[inName] = t as ort.Tensor;
    }
    // decoder_with_past does not return encoder presents: keep the first step's.
    // (the merged graph's cache branch only passes it through, so keeping the old tensors is equivalent).
    const enc = prev ? prev.encoder : encoder;
    // Only the first-step graph is required to expose them (split: decoder_with_past has none; merged cached
    // steps do not fetch them), so they are returned when this run produced them.
    const cross = this.crossAttentionOutputs.length && this.crossAttentionOutputs.every((n) => out[n]) ? this.crossAttentionOutputs.map((n) => out[n].data as Float32Array) : null;
    return {
      logits: logitsT.data as Float32Array,
      seqLen: logitsT.dims[1],
      vocab: logitsT.dims[2],
      cache: encoderMask ? { batch: b, pastLength, decoder, encoder: enc, encoderHidden, encoderMask } : { batch: b, pastLength, decoder, encoder: enc, encoderHidden },
      crossAttentions: cross,
    };
  }

  /**
   * First decoder step over whole prompts (all rows the same length). `encoder` rows must match `ids` rows.
   * Returns logits for every prompt position (Whisper reads the no-speech probability at the SOT position).
   */
  async prefill(encoder: EncoderOutput, ids: number[][]): Promise<DecoderStepOutput> {
    const b = ids.length;
    if (encoder.batch !== b) throw new Error(`encoder batch ${encoder.batch} != decoder batch ${b}`);
    const hidden = new ort.Tensor('float32', encoder.data, [b, encoder.frames, encoder.dModel]);
    const feeds: Record<string, ort.Tensor> = { input_ids: this.idsTensor(ids), encoder_hidden_states: hidden };
    const mask = this.firstTakesMask || this.pastTakesMask ? encoderMaskTensor(encoder) : null;
    if (mask && this.firstTakesMask) feeds[ENCODER_MASK] = mask;
    if (this.layout === 'merged') {
      const empty = new ort.Tensor('float32', new Float32Array(0), [b, this.heads, 0, this.headDim]);
      for (const name of this.first.inputNames) if (name.startsWith('past_key_values.')) feeds[name] = empty;
      feeds.use_cache_branch = new ort.Tensor('bool', new Uint8Array([0]), [1]);
    }
    const t0 = performance.now(); // timing
    const out = await this.first.run(feeds);
    this.countRun(t0); // timing
    return this.collect(out, b, ids[0].length, null, this.layout === 'merged' ? hidden : null, this.pastTakesMask ? mask : null);
  }

  private countRun(t0: number): void {
    this.timing.decoderMs += performance.now() - t0;
    this.timing.decoderRuns++;
  }

  /** Outputs to fetch on cached merged-decoder steps (null = all). */
  private get cachedStepOutputs(): string[] | null {
    if (this.layout !== 'merged') return null;
    return (this.stepFetches ??= this.past.outputNames.filter((n) => !/^present\.\d+\.encoder\./.test(n) && !/^cross_attentions\./.test(n)));
  }
  private stepFetches: string[] | undefined;

  /** One cached step: `tokens[i]` is appended to row i. Logits are [batch, 1, vocab]. */
  async step(cache: KVCache, tokens: number[]): Promise<DecoderStepOutput> {
    const b = tokens.length;
    if (cache.batch !== b) throw new Error(`cache batch ${cache.batch} != ${b} tokens`);
    const feeds: Record<string, ort.Tensor> = { input_ids: this.idsTensor(tokens.map((t) => [t])), ...cache.decoder, ...cache.encoder };
    if (this.layout === 'merged') {
      feeds.encoder_hidden_states = cache.encoderHidden!;
      feeds.use_cache_branch = new ort.Tensor('bool', new Uint8Array([1]), [1]);
    }
    if (this.pastTakesMask) {
      if (!cache.encoderMask) throw new Error('this decoder takes encoder_attention_mask: the cache must come from its prefill');
      feeds[ENCODER_MASK] = cache.encoderMask;
    }
    // The merged graph's cache branch passes the encoder KV through as outputs ([B, heads, frames, d] per
    // layer): fetching them would copy it out on every step. Fetch only logits and the decoder KV
    // (and not cross-attentions, which only the teacher-forced alignment pass reads, via prefill).
    const t0 = performance.now(); // timing
    const out = this.cachedStepOutputs ? await this.past.run(feeds, this.cachedStepOutputs) : await this.past.run(feeds);
    this.countRun(t0); // timing
    return this.collect(out, b, cache.pastLength + 1, cache, cache.encoderHidden, cache.encoderMask ?? null);
  }
}
