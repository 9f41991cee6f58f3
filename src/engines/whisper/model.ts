/**
 * ONNX Runtime sessions for the Optimum / onnx-community Whisper layout.
 *
 * Encoder: input_features [B, nMels, 3000] -> last_hidden_state [B, 1500, d]; rewritten at load (encoder-graph.ts)
 * so that any even number of frames ≤ 3000 works too (frames/2 positions out).
 * Decoder, two layouts:
 *  - merged  (decoder_model_merged.onnx): one graph with an If on `use_cache_branch`; the first step
 *    feeds false + empty past tensors [B, heads, 0, headDim], later steps true + previous presents
 *    (encoder KV included, the graph passes it through).
 *  - split   (decoder_model.onnx + decoder_with_past_model.onnx): the first graph returns decoder and
 *    encoder presents, the second takes both and returns decoder presents only, so the encoder KV
 *    of the first step is kept and re-fed.
 * Every call is batched: one session.run for N sequences. Sequences in a batch must share the
 * same length (the exports have no decoder attention mask, so left padding is impossible);
 * callers group by prompt length.
 *
 * The KV cache lives in CPU memory as plain ORT tensors so that rows can be gathered
 * (beam reordering, dropping finished sequences) and concatenated (cross-stream batching).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { WhisperConfig } from './config.ts';
import { trimmableEncoderGraph } from './encoder-graph.ts';

export type DecoderLayout = 'merged' | 'split';

export interface WhisperModelOptions {
  executionProvider?: 'cpu' | 'cuda';
  intraOpThreads?: number;
  interOpThreads?: number;
  /** Use the `*_quantized.onnx` (int8 dynamic) files. */
  quantized?: boolean;
  decoderLayout?: 'auto' | DecoderLayout;
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
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
}

/** Encoder output rows, [batch, frames, dModel] row-major. */
export interface EncoderOutput {
  data: Float32Array;
  batch: number;
  frames: number;
  dModel: number;
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

function sessionOptions(o: WhisperModelOptions): ort.InferenceSession.SessionOptions {
  const so: ort.InferenceSession.SessionOptions = {
    executionProviders: o.executionProvider === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
    graphOptimizationLevel: o.graphOptimizationLevel ?? 'all',
  };
  // onnxruntime-node rejects keys that are present but undefined
  if (o.intraOpThreads !== undefined) so.intraOpNumThreads = o.intraOpThreads;
  if (o.interOpThreads !== undefined) so.interOpNumThreads = o.interOpThreads;
  return so;
}

/** Where a Whisper folder's ONNX files of one precision are, and which decoder layouts it has. */
export function whisperOnnxFiles(dir: string, quantized: boolean): { onnxDir: string; file: (name: string) => string; hasEncoder: boolean; hasMerged: boolean; hasSplit: boolean } {
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

export class WhisperOnnxModel {
  /** Cumulative wall time in session runs since load (timing counters: `stt transcribe --json`; never reset). */
  readonly timing = { encoderMs: 0, decoderMs: 0, decoderRuns: 0 };

  private constructor(
    readonly cfg: WhisperConfig,
    readonly layout: DecoderLayout,
    readonly quantized: boolean,
    private readonly encoder: ort.InferenceSession,
    private readonly decoderFirst: ort.InferenceSession, // merged, or decoder_model
    private readonly decoderPast: ort.InferenceSession, // merged, or decoder_with_past_model
    readonly crossAttentionOutputs: string[],
    /** The encoder accepts any even number of frames ≤ 3000 (else only 3000). */
    readonly trimmable: boolean,
  ) {}

  static async load(dir: string, cfg: WhisperConfig, opts: WhisperModelOptions = {}): Promise<WhisperOnnxModel> {
    const { onnxDir, file, hasMerged, hasSplit } = whisperOnnxFiles(dir, !!opts.quantized);
    const q = opts.quantized ? '_quantized' : '';
    let layout: DecoderLayout;
    const want = opts.decoderLayout ?? 'auto';
    if (want === 'auto') {
      // Merged (what most hub exports ship and transformers.js uses) once its cached steps fetch only
      // what they need: then as fast as split (bench:asr, docs/benchmarks.md), with one session less.
      if (hasMerged) layout = 'merged';
      else if (hasSplit) layout = 'split';
      else throw new Error(`no decoder${q} ONNX files in ${onnxDir}`);
    } else {
      layout = want;
      if (layout === 'merged' && !hasMerged) throw new Error(`missing ${file('decoder_model_merged')}`);
      if (layout === 'split' && !hasSplit) throw new Error(`missing ${file('decoder_model')} / decoder_with_past_model${q}.onnx`);
    }
    const so = sessionOptions(opts);
    const decoderSo: ort.InferenceSession.SessionOptions = opts.prepackDecoder === false ? { ...so, extra: { session: { disable_prepacking: '1' } } } : so;
    const create = async (path: string, options = decoderSo, bytes?: Uint8Array) => {
      try {
        if (!bytes) return await ort.InferenceSession.create(path, options);
        // From memory: external data files (large exports) are found next to the original file.
        const session = { ...(options.extra as { session?: object } | undefined)?.session, model_external_initializers_file_folder_path: dirname(path) };
        return await ort.InferenceSession.create(bytes, { ...options, extra: { ...options.extra, session } });
      } catch (e) {
        // the npm package only ships CUDA providers when installed with CUDA binaries (see .npmrc)
        if (opts.executionProvider === 'cuda') throw new Error(`CUDA execution provider unavailable for ${path}: ${(e as Error).message}`);
        throw e;
      }
    };
    const encoderPath = file('encoder_model');
    const trimmed = opts.trimmableEncoder === false ? null : trimmableEncoderGraph(await readFile(encoderPath), { maxPositions: cfg.maxSourcePositions, dModel: cfg.dModel });
    const encoder = await create(encoderPath, so, trimmed?.bytes);
    let first: ort.InferenceSession;
    let past: ort.InferenceSession;
    if (layout === 'merged') {
      first = past = await create(file('decoder_model_merged'));
    } else {
      first = await create(file('decoder_model'));
      past = await create(file('decoder_with_past_model'));
    }
    // Word-level DTW needs `cross_attentions.{i}` outputs (exported with output_attentions); most exports lack them.
    const cross = first.outputNames.filter((n) => /^cross_attentions\.\d+$/.test(n));
    return new WhisperOnnxModel(cfg, layout, !!opts.quantized, encoder, first, past, cross, trimmed !== null);
  }

  get hasCrossAttentions(): boolean {
    return this.crossAttentionOutputs.length > 0;
  }

  async close(): Promise<void> {
    await this.encoder.release();
    await this.decoderFirst.release();
    if (this.decoderPast !== this.decoderFirst) await this.decoderPast.release();
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
    const input = new ort.Tensor('float32', buf, [features.length, nMels, frames]);
    const t0 = performance.now(); // timing
    const out = await this.encoder.run({ input_features: input });
    this.timing.encoderMs += performance.now() - t0; // timing
    const h = out.last_hidden_state;
    return { data: h.data as Float32Array, batch: h.dims[0], frames: h.dims[1], dModel: h.dims[2] };
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

  private collect(out: ort.InferenceSession.OnnxValueMapType, b: number, pastLength: number, prev: KVCache | null, encoderHidden: ort.Tensor | null): DecoderStepOutput {
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
      cache: { batch: b, pastLength, decoder, encoder: enc, encoderHidden },
      crossAttentions: cross,
    };
  }

  /**
   * First decoder step over whole prompts (all rows the same length). `encoder` rows must match `ids` rows.
   * Returns logits for every prompt position (needed for no-speech prob at the SOT position).
   */
  async prefill(encoder: EncoderOutput, ids: number[][]): Promise<DecoderStepOutput> {
    const b = ids.length;
    if (encoder.batch !== b) throw new Error(`encoder batch ${encoder.batch} != decoder batch ${b}`);
    const hidden = new ort.Tensor('float32', encoder.data, [b, encoder.frames, encoder.dModel]);
    const feeds: Record<string, ort.Tensor> = { input_ids: this.idsTensor(ids), encoder_hidden_states: hidden };
    if (this.layout === 'merged') {
      const { decoderHeads: h, headDim: d } = this.cfg;
      const empty = new ort.Tensor('float32', new Float32Array(0), [b, h, 0, d]);
      for (const name of this.decoderFirst.inputNames) if (name.startsWith('past_key_values.')) feeds[name] = empty;
      feeds.use_cache_branch = new ort.Tensor('bool', new Uint8Array([0]), [1]);
    }
    const t0 = performance.now(); // timing
    const out = await this.decoderFirst.run(feeds);
    this.countDecoderRun(t0); // timing
    return this.collect(out, b, ids[0].length, null, this.layout === 'merged' ? hidden : null);
  }

  private countDecoderRun(t0: number): void {
    this.timing.decoderMs += performance.now() - t0;
    this.timing.decoderRuns++;
  }

  /** Outputs to fetch on cached merged-decoder steps (null = all). */
  private get cachedStepOutputs(): string[] | null {
    if (this.layout !== 'merged') return null;
    return (this.stepFetches ??= this.decoderPast.outputNames.filter((n) => !/^present\.\d+\.encoder\./.test(n) && !/^cross_attentions\./.test(n)));
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
    // The merged graph's cache branch passes the encoder KV through as outputs ([B, heads, 1500, d] per
    // layer): fetching them would copy it out on every step. Fetch only logits and the decoder KV
    // (and not cross-attentions, which only the teacher-forced alignment pass reads, via prefill).
    const t0 = performance.now(); // timing
    const out = this.cachedStepOutputs ? await this.decoderPast.run(feeds, this.cachedStepOutputs) : await this.decoderPast.run(feeds);
    this.countDecoderRun(t0); // timing
    return this.collect(out, b, cache.pastLength + 1, cache, cache.encoderHidden);
  }
}

// ---- row operations on batched tensors (pure; copy data) ----

/** Gather rows (dim 0) of a tensor. */
export function gatherRows(t: ort.Tensor, rows: number[]): ort.Tensor {
  const per = t.dims.slice(1).reduce((a, b) => a * b, 1);
  const src = t.data as Float32Array;
  const out = new Float32Array(per * rows.length);
  rows.forEach((r, i) => out.set(src.subarray(r * per, (r + 1) * per), i * per));
  return new ort.Tensor('float32', out, [rows.length, ...t.dims.slice(1)]);
}

/** Concatenate tensors along dim 0 (other dims must match). */
export function concatRows(ts: ort.Tensor[]): ort.Tensor {
  if (ts.length === 1) return ts[0];
  const tail = ts[0].dims.slice(1);
  const total = ts.reduce((a, t) => a + (t.data as Float32Array).length, 0);
  const out = new Float32Array(total);
  let off = 0;
  for (const t of ts) {
    out.set(t.data as Float32Array, off);
    off += (t.data as Float32Array).length;
  }
  return new ort.Tensor('float32', out, [ts.reduce((a, t) => a + t.dims[0], 0), ...tail]);
}

const mapValues = (r: Record<string, ort.Tensor>, f: (t: ort.Tensor, k: string) => ort.Tensor) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, f(v, k)]));

const isIdentity = (rows: number[], n: number) => rows.length === n && rows.every((r, i) => r === i);

/**
 * Select/reorder rows of a cache (beam search reordering, dropping finished sequences).
 * `sameAudio` = caller guarantees row i of the result uses the same audio as row i before
 * (true for beam reordering within groups), which lets the big encoder KV be reused uncopied.
 */
export function selectCacheRows(c: KVCache, rows: number[], sameAudio = false): KVCache {
  if (isIdentity(rows, c.batch)) return c;
  const keepEnc = sameAudio && rows.length === c.batch;
  return {
    batch: rows.length,
    pastLength: c.pastLength,
    decoder: mapValues(c.decoder, (t) => gatherRows(t, rows)),
    encoder: keepEnc ? c.encoder : mapValues(c.encoder, (t) => gatherRows(t, rows)),
    encoderHidden: c.encoderHidden && !keepEnc ? gatherRows(c.encoderHidden, rows) : c.encoderHidden,
  };
}

/** Concatenate caches of equal past length (e.g. two streams at the same decoding position). */
export function concatCaches(cs: KVCache[]): KVCache {
  if (cs.length === 1) return cs[0];
  const len = cs[0].pastLength;
  if (cs.some((c) => c.pastLength !== len)) throw new Error('caches must have the same past length to be concatenated');
  const keys = (r: Record<string, ort.Tensor>) => Object.keys(r);
  return {
    batch: cs.reduce((a, c) => a + c.batch, 0),
    pastLength: len,
    decoder: Object.fromEntries(keys(cs[0].decoder).map((k) => [k, concatRows(cs.map((c) => c.decoder[k]))])),
    encoder: Object.fromEntries(keys(cs[0].encoder).map((k) => [k, concatRows(cs.map((c) => c.encoder[k]))])),
    encoderHidden: cs[0].encoderHidden ? concatRows(cs.map((c) => c.encoderHidden!)) : null,
  };
}

/** Rows of an encoder output (e.g. repeat each audio `beam` times, or regroup across streams). */
export function selectEncoderRows(e: EncoderOutput, rows: number[]): EncoderOutput {
  if (isIdentity(rows, e.batch)) return e;
  const per = e.frames * e.dModel;
  const out = new Float32Array(per * rows.length);
  rows.forEach((r, i) => out.set(e.data.subarray(r * per, (r + 1) * per), i * per));
  return { data: out, batch: rows.length, frames: e.frames, dModel: e.dModel };
}

export function concatEncoderOutputs(es: EncoderOutput[]): EncoderOutput {
  if (es.length === 1) return es[0];
  const out = new Float32Array(es.reduce((a, e) => a + e.data.length, 0));
  let off = 0;
  for (const e of es) {
    out.set(e.data, off);
    off += e.data.length;
  }
  return { data: out, batch: es.reduce((a, e) => a + e.batch, 0), frames: es[0].frames, dModel: es[0].dModel };
}
