/**
 * Sentence embedder on onnxruntime-node in the sentence-transformers / Xenova all-MiniLM-L6-v2 layout:
 *   tokenizer.json (WordPiece, via @huggingface/tokenizers) → input_ids, attention_mask, token_type_ids
 *   (int64 [batch, seq]) → last_hidden_state [batch, seq, hidden] → mean over attention_mask → L2 normalise.
 * Truncation keeps [CLS] … [SEP] (max_seq_length from sentence_bert_config.json, 256 for MiniLM).
 * No HTTP, no batching policy: `embed()` runs one padded batch; EmbeddingService (src/pipeline) batches across requests.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import * as ort from 'onnxruntime-node';

export interface SentenceEmbedderOptions {
  /** Use onnx/model_quantized.onnx (int8) instead of onnx/model.onnx (fp32). */
  quantized?: boolean;
  intraOpThreads?: number;
  executionProvider?: 'cpu' | 'cuda';
  /** Override max_seq_length (tokens including [CLS] and [SEP]). */
  maxSeqLength?: number;
}

function readJson(path: string): Record<string, unknown> | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
}

export class SentenceEmbedder {
  private closed = false;
  private readonly hasTokenTypes: boolean;

  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly tokenizer: Tokenizer,
    readonly dimensions: number,
    readonly maxSeqLength: number,
    private readonly clsId: number,
    private readonly sepId: number,
    private readonly padId: number,
    readonly modelPath: string,
  ) {
    if (!session.inputNames.includes('input_ids') || !session.inputNames.includes('attention_mask')) {
      throw new Error(`Unexpected embedder inputs ${JSON.stringify(session.inputNames)} in ${modelPath} (need input_ids, attention_mask)`);
    }
    if (!session.outputNames.includes('last_hidden_state')) {
      throw new Error(`Unexpected embedder outputs ${JSON.stringify(session.outputNames)} in ${modelPath} (need last_hidden_state)`);
    }
    this.hasTokenTypes = session.inputNames.includes('token_type_ids');
  }

  static async load(dir: string, opts: SentenceEmbedderOptions = {}): Promise<SentenceEmbedder> {
    const file = opts.quantized ? 'model_quantized.onnx' : 'model.onnx';
    const modelPath = [join(dir, 'onnx', file), join(dir, file)].find((p) => existsSync(p));
    if (!modelPath) throw new Error(`No ${file} in ${dir}/onnx or ${dir}`);
    const tokJson = readJson(join(dir, 'tokenizer.json'));
    if (!tokJson) throw new Error(`No readable tokenizer.json in ${dir}`);
    const tokCfg = readJson(join(dir, 'tokenizer_config.json')) ?? {};
    const tokenizer = new Tokenizer(tokJson, tokCfg);
    const config = readJson(join(dir, 'config.json')) ?? {};
    const st = readJson(join(dir, 'sentence_bert_config.json')) ?? {};
    const truncation = tokJson.truncation as { max_length?: number } | null;
    const maxSeqLength = opts.maxSeqLength ?? (typeof st.max_seq_length === 'number' ? st.max_seq_length : (truncation?.max_length ?? 256));
    const pooling = readJson(join(dir, '1_Pooling', 'config.json'));
    if (pooling && pooling.pooling_mode_mean_tokens === false) {
      throw new Error(`${dir}/1_Pooling/config.json asks for a pooling mode other than mean tokens: not supported`);
    }
    const cls = tokenizer.token_to_id('[CLS]');
    const sep = tokenizer.token_to_id('[SEP]');
    if (cls === undefined || sep === undefined) throw new Error(`tokenizer.json in ${dir} has no [CLS]/[SEP] tokens (not a BERT WordPiece tokenizer)`);
    const pad = tokenizer.token_to_id('[PAD]') ?? (typeof config.pad_token_id === 'number' ? config.pad_token_id : 0);
    const so: ort.InferenceSession.SessionOptions = {
      executionProviders: opts.executionProvider === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
      graphOptimizationLevel: 'all',
      interOpNumThreads: 1,
      executionMode: 'sequential',
    };
    if (opts.intraOpThreads) so.intraOpNumThreads = opts.intraOpThreads;
    const session = await ort.InferenceSession.create(modelPath, so);
    const dims = typeof config.hidden_size === 'number' ? config.hidden_size : 384;
    return new SentenceEmbedder(session, tokenizer, dims, maxSeqLength, cls, sep, pad, modelPath);
  }

  /** Token ids with [CLS] … [SEP], the content truncated so that the whole fits maxSeqLength. */
  tokenize(text: string): number[] {
    const ids = this.tokenizer.encode(text, { add_special_tokens: false }).ids;
    const body = ids.slice(0, Math.max(0, this.maxSeqLength - 2));
    return [this.clsId, ...body, this.sepId];
  }

  /** Number of content tokens (no specials, no truncation): for chunking text to fit. */
  countTokens(text: string): number {
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids.length;
  }

  /** Embeds texts in one padded batch → L2-normalised vectors. */
  async embed(texts: string[]): Promise<Float32Array[]> {
    if (this.closed) throw new Error('SentenceEmbedder is closed');
    if (texts.length === 0) return [];
    const toks = texts.map((t) => this.tokenize(t));
    return this.embedIds(toks);
  }

  async embedIds(toks: number[][]): Promise<Float32Array[]> {
    const B = toks.length;
    const L = Math.max(...toks.map((t) => t.length));
    const ids = new BigInt64Array(B * L).fill(BigInt(this.padId));
    const mask = new BigInt64Array(B * L);
    toks.forEach((t, b) => {
      for (let i = 0; i < t.length; i++) {
        ids[b * L + i] = BigInt(t[i]);
        mask[b * L + i] = 1n;
      }
    });
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, [B, L]),
      attention_mask: new ort.Tensor('int64', mask, [B, L]),
    };
    if (this.hasTokenTypes) feeds.token_type_ids = new ort.Tensor('int64', new BigInt64Array(B * L), [B, L]);
    const out = await this.session.run(feeds, ['last_hidden_state']);
    const h = out.last_hidden_state.data as Float32Array;
    const D = h.length / (B * L);
    const result: Float32Array[] = [];
    for (let b = 0; b < B; b++) {
      // Accumulate in float64: padding must not change the result beyond float32 rounding.
      const acc = new Float64Array(D);
      const n = toks[b].length;
      for (let i = 0; i < n; i++) {
        const off = (b * L + i) * D;
        for (let d = 0; d < D; d++) acc[d] += h[off + d];
      }
      let norm = 0;
      for (let d = 0; d < D; d++) {
        acc[d] /= n;
        norm += acc[d] * acc[d];
      }
      norm = Math.max(Math.sqrt(norm), 1e-12);
      const v = new Float32Array(D);
      for (let d = 0; d < D; d++) v[d] = acc[d] / norm;
      result.push(v);
    }
    return result;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.session.release();
  }
}

/** Cosine similarity (vectors need not be normalised). */
export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / (Math.sqrt(na) * Math.sqrt(nb) || 1);
}
