/**
 * Batched decoding of encoder-decoder models (Whisper, Moonshine): greedy / sampling (`BatchDecoder`, step-wise
 * so a scheduler can drive it), beam search (`beamSearch`), temperature fallback (`decodeWithFallback`).
 * Everything runs on a {@link StepModel} (a batched prefill and a batched cached step), whatever the encoder.
 *
 * Semantics follow HF `generate` for the token rules (logits processors) and OpenAI
 * `decoding.py` for the bookkeeping (sum/avg logprob, no-speech probability at the SOT position,
 * beam ranking, fallback criteria).
 */
import { deflateSync } from 'node:zlib';
import type { EncoderOutput, KVCache, StepModel } from './kv-decoder.ts';
import { selectCacheRows, selectEncoderRows } from './kv-rows.ts';
import { applyProcessors, argmax, type LogitsProcessor, logSumExp } from './logits.ts';

export interface DecodeTask {
  /** Full decoder prompt (Whisper: [<|startofprev|>, prev text…]? + [sot, lang, task, <|notimestamps|>?]; Moonshine: [bos]). */
  prompt: number[];
  /** Index of the start token in `prompt` (the no-speech probability is read there when the model has one). */
  sotIndex: number;
  /** Logits processors for this row (built by whisperLogitsProcessors). */
  processors: LogitsProcessor[];
  maxNewTokens: number;
  /** 0 = greedy argmax, > 0 = sampling from softmax(logits / T). */
  temperature?: number;
  /** Random source for sampling, [0, 1). */
  random?: () => number;
  /**
   * Compute each token's log-probability (a log-softmax over the whole vocabulary per token: most of the
   * JavaScript work of a step). Default true; false (live partials, which show only text): logprobs are NaN.
   */
  logprobs?: boolean;
  /**
   * Called once per decoding step of this row with the token it kept and how many it has generated (EOT is not
   * reported); beam search reports its best live beam. Progress reporting: it must be cheap, it runs every step.
   */
  onToken?: (token: number, generated: number) => void;
}

export interface DecodeResult {
  /** Generated tokens, EOT excluded (timestamp tokens included). */
  tokens: number[];
  /** log p of each generated token (after processors, before temperature). */
  tokenLogprobs: number[];
  sumLogprob: number;
  /** OpenAI: sum_logprob / (len(tokens) + 1). */
  avgLogprob: number;
  noSpeechProb: number;
  /** true when EOT was produced (false = token budget exhausted). */
  finished: boolean;
  temperature: number;
}

export interface DecodeIds {
  eot: number;
  /** Whisper's <|nospeech|>; null for models without one (noSpeechProb is then NaN). */
  noSpeech: number | null;
}

/** Seeded PRNG (mulberry32) so that sampling fallbacks are reproducible. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Sample from softmax(logits / T). */
export function sampleToken(logits: Float32Array, temperature: number, random: () => number): number {
  let m = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > m) m = logits[i];
  let s = 0;
  const p = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i] === -Infinity ? 0 : Math.exp((logits[i] - m) / temperature);
    p[i] = v;
    s += v;
  }
  let r = random() * s;
  for (let i = 0; i < p.length; i++) {
    r -= p[i];
    if (r < 0 && p[i] > 0) return i;
  }
  return argmax(logits);
}

/** zlib compression ratio of the text (OpenAI's repetition detector). */
export function compressionRatio(text: string): number {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length === 0) return 0;
  return bytes.length / deflateSync(bytes).length;
}

/** Row `r`, position `pos` of a [batch, seq, vocab] logits buffer, copied (processors mutate it). */
function logitsRow(logits: Float32Array, seqLen: number, vocab: number, r: number, pos: number): Float32Array {
  const off = (r * seqLen + pos) * vocab;
  return logits.slice(off, off + vocab);
}

/** Probability of the no-speech token at the start position of row `r` (NaN when the model has none). */
function noSpeechProb(logits: Float32Array, seqLen: number, vocab: number, r: number, pos: number, ids: DecodeIds): number {
  if (ids.noSpeech === null) return Number.NaN;
  const off = (r * seqLen + pos) * vocab;
  const row = logits.subarray(off, off + vocab);
  return Math.exp(row[ids.noSpeech] - logSumExp(row));
}

/**
 * Step-wise batched greedy/sampling decoder over rows that share one prompt length.
 * Usage: `const d = await BatchDecoder.start(model, enc, tasks, ids); while (!d.done) await d.step();`
 * Finished rows are dropped from the KV cache so later steps only compute live rows.
 */
export class BatchDecoder {
  private cache: KVCache | null = null;
  /** indices (into tasks) of rows still in the cache, in cache order */
  private live: number[] = [];
  private readonly seqs: number[][];
  private readonly res: DecodeResult[];

  private constructor(
    private readonly model: StepModel,
    private readonly tasks: DecodeTask[],
    private readonly ids: DecodeIds,
  ) {
    this.seqs = tasks.map((t) => [...t.prompt]);
    this.res = tasks.map((t) => ({
      tokens: [],
      tokenLogprobs: [],
      sumLogprob: 0,
      avgLogprob: 0,
      noSpeechProb: NaN,
      finished: false,
      temperature: t.temperature ?? 0,
    }));
  }

  /** Runs the prompt (prefill) and picks the first token of every row. `encoder` row i belongs to task i. */
  static async start(model: StepModel, encoder: EncoderOutput, tasks: DecodeTask[], ids: DecodeIds): Promise<BatchDecoder> {
    const d = new BatchDecoder(model, tasks, ids);
    const len = tasks[0].prompt.length;
    if (tasks.some((t) => t.prompt.length !== len)) throw new Error('BatchDecoder: all prompts must have the same length');
    const out = await model.prefill(
      encoder,
      tasks.map((t) => t.prompt),
    );
    tasks.forEach((t, r) => {
      d.res[r].noSpeechProb = noSpeechProb(out.logits, out.seqLen, out.vocab, r, t.sotIndex, ids);
    });
    d.cache = out.cache;
    d.live = tasks.map((_, i) => i);
    d.consume(out.logits, out.seqLen, out.vocab, out.seqLen - 1);
    return d;
  }

  get done(): boolean {
    return this.live.length === 0;
  }

  /** Batch size of the next step. */
  get liveRows(): number {
    return this.live.length;
  }

  /** Picks the next token of every live row from logits at `pos`, then drops finished rows. */
  private consume(logits: Float32Array, seqLen: number, vocab: number, pos: number): void {
    const keep: number[] = [];
    this.live.forEach((ti, r) => {
      const task = this.tasks[ti];
      const res = this.res[ti];
      const seq = this.seqs[ti];
      // in place: this step's logits are not read again
      const off = (r * seqLen + pos) * vocab;
      const row = logits.subarray(off, off + vocab);
      applyProcessors(task.processors, row, { tokens: seq, beginIndex: task.prompt.length });
      const T = task.temperature ?? 0;
      const tok = T > 0 ? sampleToken(row, T, task.random ?? Math.random) : argmax(row);
      const lp = task.logprobs === false ? Number.NaN : row[tok] - logSumExp(row);
      res.sumLogprob += lp;
      if (tok === this.ids.eot) {
        res.finished = true;
        return;
      }
      seq.push(tok);
      res.tokens.push(tok);
      res.tokenLogprobs.push(lp);
      task.onToken?.(tok, res.tokens.length);
      if (res.tokens.length < task.maxNewTokens) keep.push(r);
    });
    const next = keep.map((r) => this.live[r]);
    if (next.length !== this.live.length && this.cache) this.cache = next.length ? selectCacheRows(this.cache, keep) : null;
    this.live = next;
  }

  /** One cached decoder step for all live rows (a single session.run). */
  async step(): Promise<void> {
    if (this.done || !this.cache) return;
    const last = this.live.map((ti) => this.seqs[ti][this.seqs[ti].length - 1]);
    const out = await this.model.step(this.cache, last);
    this.cache = out.cache;
    this.consume(out.logits, out.seqLen, out.vocab, 0);
  }

  results(): DecodeResult[] {
    return this.res.map((r) => ({ ...r, avgLogprob: r.sumLogprob / (r.tokens.length + 1) }));
  }
}

/** Greedy / sampling decode of a batch; rows with different prompt lengths run as separate groups. */
export async function decodeGreedy(model: StepModel, encoder: EncoderOutput, tasks: DecodeTask[], ids: DecodeIds): Promise<DecodeResult[]> {
  const out: DecodeResult[] = new Array(tasks.length);
  for (const group of groupByPromptLength(tasks)) {
    const enc = selectEncoderRows(encoder, group);
    const d = await BatchDecoder.start(
      model,
      enc,
      group.map((i) => tasks[i]),
      ids,
    );
    while (!d.done) await d.step();
    d.results().forEach((r, j) => (out[group[j]] = r));
  }
  return out;
}

export function groupByPromptLength(tasks: DecodeTask[]): number[][] {
  const m = new Map<number, number[]>();
  tasks.forEach((t, i) => {
    const g = m.get(t.prompt.length) ?? [];
    g.push(i);
    m.set(t.prompt.length, g);
  });
  return [...m.values()];
}

// ---- beam search (OpenAI BeamSearchDecoder + MaximumLikelihoodRanker, or Hugging Face `generate`) ----

export interface BeamOptions {
  beamSize: number;
  /**
   * Whose rules (they pick different sequences once the end token is emitted):
   * - 'openai' (default; Whisper, Moonshine): every end-token candidate of a step's ranking is finished until
   *   round(beamSize * patience) are; then the search stops. Ranked by sum / length without the end token.
   * - 'hf' (translation; transformers' `_beam_search`): only end-token candidates among a step's top `beamSize`
   *   finish; the best `beamSize` finished are kept, scored sum / length ** lengthPenalty with the end token
   *   counted; the search goes on while a running beam could still beat the worst of them (or, with
   *   `earlyStopping`, until `beamSize` are finished). At the budget, the step's top `beamSize` finish too.
   */
  rules?: 'openai' | 'hf';
  /** OpenAI patience: stop after round(beamSize * patience) finished candidates. */
  patience?: number;
  /**
   * OpenAI: null = rank by sum_logprob / length (default); a number uses the GNMT penalty.
   * HF: the exponent of the length (default 1).
   */
  lengthPenalty?: number | null;
  /**
   * HF `early_stopping`: true stops once `beamSize` sequences are finished; false (default) stops when the best
   * running beam at its current length cannot beat the worst finished one; 'never' assumes it could grow to the budget.
   */
  earlyStopping?: boolean | 'never';
}

/** A next-token candidate of one beam: its new sum, token, beam index, cache row and log-probability. */
interface Candidate {
  sum: number;
  tok: number;
  beam: number;
  row: number;
  lp: number;
}

interface Beam {
  seq: number[]; // prompt + generated
  sum: number;
  lps: number[];
}

/**
 * Beam search over a batch (each task gets `beamSize` rows in one decoder batch; beams of one
 * audio share its encoder rows, so reordering never copies the encoder KV).
 * Candidates per step: top beamSize+1 of every beam; EOT candidates become finished sequences.
 * With beamSize 1 and no EOT this is exactly greedy.
 */
export async function beamSearch(model: StepModel, encoder: EncoderOutput, tasks: DecodeTask[], ids: DecodeIds, opts: BeamOptions): Promise<DecodeResult[]> {
  const out: DecodeResult[] = new Array(tasks.length);
  for (const group of groupByPromptLength(tasks)) {
    const enc = selectEncoderRows(encoder, group);
    const res = await beamSearchGroup(
      model,
      enc,
      group.map((i) => tasks[i]),
      ids,
      opts,
    );
    res.forEach((r, j) => (out[group[j]] = r));
  }
  return out;
}

async function beamSearchGroup(model: StepModel, encoder: EncoderOutput, tasks: DecodeTask[], ids: DecodeIds, opts: BeamOptions): Promise<DecodeResult[]> {
  const K = Math.max(1, opts.beamSize);
  const maxCandidates = Math.max(1, Math.round(K * (opts.patience ?? 1)));
  const B = tasks.length;
  const promptLen = tasks[0].prompt.length;
  const pre = await model.prefill(
    encoder,
    tasks.map((t) => t.prompt),
  );
  const noSpeech = tasks.map((t, r) => noSpeechProb(pre.logits, pre.seqLen, pre.vocab, r, t.sotIndex, ids));
  const hf = opts.rules === 'hf';
  const hfLength = (n: number) => n ** (opts.lengthPenalty ?? 1);
  // score: HF's sum / length ** penalty, fixed when the sequence finishes (OpenAI ranks at the end instead)
  const finished: { seq: number[]; sum: number; lps: number[]; eot: boolean; score: number }[][] = tasks.map(() => []);
  let beams: Beam[][] = tasks.map((t) => [{ seq: [...t.prompt], sum: 0, lps: [] }]);
  // rows of the current cache: [task, beam]
  let rows: [number, number][] = tasks.map((_, i) => [i, 0]);
  let cache: KVCache | null = pre.cache;
  let logits = pre.logits;
  let seqLen = pre.seqLen;
  let pos = pre.seqLen - 1;
  const vocab = pre.vocab;
  const active = tasks.map(() => true);

  for (let step = 0; ; step++) {
    const next: Beam[][] = tasks.map(() => []);
    const src: number[][] = tasks.map(() => []); // cache row of each new beam
    /**
     * HF's step for one item: an end token among the top K candidates (or, at the budget, any of the top K)
     * finishes, scored with its length counting that token, and replaces the worst of K finished when better;
     * the first K other candidates run on.
     */
    const hfSelect = (cands: Candidate[], ti: number, generated: number, atBudget: boolean) => {
      for (let rank = 0; rank < cands.length && (rank < K || next[ti].length < K); rank++) {
        const c = cands[rank];
        const beam = beams[ti][c.beam];
        const eot = c.tok === ids.eot;
        if (eot || atBudget) {
          if (rank >= K) continue;
          const fin = eot ? { seq: beam.seq, lps: beam.lps } : { seq: [...beam.seq, c.tok], lps: [...beam.lps, c.lp] };
          const entry = { ...fin, sum: c.sum, eot, score: c.sum / hfLength(generated) };
          const list = finished[ti];
          if (list.length < K) list.push(entry);
          else {
            let worst = 0;
            for (let w = 1; w < list.length; w++) if (list[w].score < list[worst].score) worst = w;
            if (entry.score > list[worst].score) list[worst] = entry;
          }
        } else if (next[ti].length < K) {
          next[ti].push({ seq: [...beam.seq, c.tok], sum: c.sum, lps: [...beam.lps, c.lp] });
          src[ti].push(c.row);
        }
      }
    };
    for (let ti = 0; ti < B; ti++) {
      if (!active[ti]) continue;
      const task = tasks[ti];
      const cands: Candidate[] = [];
      rows.forEach(([t, b], r) => {
        if (t !== ti) return;
        const beam = beams[ti][b];
        const row = logitsRow(logits, seqLen, vocab, r, pos);
        applyProcessors(task.processors, row, { tokens: beam.seq, beginIndex: promptLen });
        const lse = logSumExp(row);
        for (const tok of topK(row, K + 1)) {
          const lp = row[tok] - lse;
          if (lp === -Infinity) continue;
          cands.push({ sum: beam.sum + lp, tok, beam: b, row: r, lp });
        }
      });
      cands.sort((a, b) => b.sum - a.sum);
      const generated = step + 1;
      if (hf) hfSelect(cands, ti, generated, generated >= task.maxNewTokens);
      else
        for (const c of cands) {
          const beam = beams[ti][c.beam];
          if (c.tok === ids.eot) {
            if (finished[ti].length < maxCandidates) finished[ti].push({ seq: beam.seq, sum: c.sum, lps: beam.lps, eot: true, score: 0 });
          } else if (next[ti].length < K) {
            next[ti].push({ seq: [...beam.seq, c.tok], sum: c.sum, lps: [...beam.lps, c.lp] });
            src[ti].push(c.row);
          }
          if (next[ti].length >= K && finished[ti].length >= maxCandidates) break;
        }
      const best = next[ti][0];
      if (best) task.onToken?.(best.seq[best.seq.length - 1], generated);
      if (hf) {
        // transformers' _check_early_stop_heuristic (early_stopping False: the best running beam at its current length)
        // (an item stops here for good, so no candidate is kept once no running beam can win)
        const full = finished[ti].length >= K;
        const hypothetical = opts.earlyStopping === 'never' && (opts.lengthPenalty ?? 1) > 0 ? task.maxNewTokens : generated;
        const improvable = !full || !best || best.sum / hfLength(hypothetical) > Math.min(...finished[ti].map((f) => f.score));
        if (!improvable || (opts.earlyStopping === true && full) || !best || generated >= task.maxNewTokens) {
          active[ti] = false;
          next[ti] = [];
          src[ti] = [];
        }
      } else if (finished[ti].length >= maxCandidates || next[ti].length === 0 || generated >= task.maxNewTokens) {
        active[ti] = false;
        // budget exhausted: unfinished beams count as candidates (OpenAI finalize)
        for (const b of next[ti].slice(0, Math.max(0, maxCandidates - finished[ti].length))) finished[ti].push({ ...b, eot: false, score: 0 });
        next[ti] = [];
        src[ti] = [];
      }
    }
    beams = next;
    const newRows: [number, number][] = [];
    const gather: number[] = [];
    for (let ti = 0; ti < B; ti++) next[ti].forEach((_, b) => (newRows.push([ti, b]), gather.push(src[ti][b])));
    if (newRows.length === 0) break;
    // Rows only move within an audio's group unless a whole audio finished: reuse encoder KV then.
    const sameAudio = newRows.length === rows.length && newRows.every(([t], i) => rows[i][0] === t);
    cache = selectCacheRows(cache!, gather, sameAudio);
    rows = newRows;
    const o = await model.step(
      cache,
      rows.map(([t, b]) => beams[t][b].seq[beams[t][b].seq.length - 1]),
    );
    cache = o.cache;
    logits = o.logits;
    seqLen = o.seqLen;
    pos = 0;
  }

  return tasks.map((task, ti) => {
    const cands = finished[ti];
    const score = (c: { seq: number[]; sum: number; score: number }) => {
      if (hf) return c.score;
      const len = c.seq.length - promptLen;
      const penalty = opts.lengthPenalty == null ? len : ((5 + len) / 6) ** opts.lengthPenalty;
      return c.sum / Math.max(penalty, 1e-9);
    };
    let best = cands[0];
    for (const c of cands) if (score(c) > score(best)) best = c;
    const tokens = best ? best.seq.slice(promptLen) : [];
    const sum = best ? best.sum : 0;
    return {
      tokens,
      tokenLogprobs: best ? best.lps : [],
      sumLogprob: sum,
      avgLogprob: sum / (tokens.length + 1),
      noSpeechProb: noSpeech[ti],
      finished: !!best?.eot,
      temperature: 0,
    };
  });
}

/** Indices of the k largest values (descending, first index wins ties). */
export function topK(x: ArrayLike<number>, k: number): number[] {
  const idx: number[] = [];
  const val: number[] = [];
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (idx.length === k && !(v > val[k - 1])) continue;
    let j = idx.length < k ? idx.length : k - 1; // slot to fill (the last one is dropped when full)
    while (j > 0 && val[j - 1] < v) {
      idx[j] = idx[j - 1];
      val[j] = val[j - 1];
      j--;
    }
    idx[j] = i;
    val[j] = v;
  }
  return idx;
}

// ---- temperature fallback ----

export interface FallbackOptions {
  temperatures: number[];
  beamSize: number;
  patience?: number;
  lengthPenalty?: number | null;
  /** OpenAI default 2.4; null disables. */
  compressionRatioThreshold: number | null;
  /** OpenAI default -1.0; null disables. */
  logprobThreshold: number | null;
  /** OpenAI default 0.6; null disables. */
  noSpeechThreshold: number | null;
  seed: number;
}

export interface FallbackResult extends DecodeResult {
  compressionRatio: number;
}

/**
 * OpenAI decode_with_fallback over a batch: decode all rows at T0 (beam search when beamSize > 1),
 * re-decode the rows that look like failures (too repetitive, or too unlikely unless it is
 * silence) at the next temperature by sampling, and keep the last attempt.
 */
export async function decodeWithFallback(
  model: StepModel,
  encoder: EncoderOutput,
  tasks: DecodeTask[],
  ids: DecodeIds,
  decodeText: (tokens: number[]) => string,
  o: FallbackOptions,
): Promise<FallbackResult[]> {
  const results: FallbackResult[] = new Array(tasks.length);
  let pending = tasks.map((_, i) => i);
  for (let ti = 0; ti < o.temperatures.length && pending.length; ti++) {
    const T = o.temperatures[ti];
    const enc = selectEncoderRows(encoder, pending);
    // one PRNG per row seeded only by (seed, attempt): a row samples the same tokens whatever batch it is in
    const sub = pending.map((i) => ({ ...tasks[i], temperature: T, random: mulberry32(o.seed + 7919 * ti) }));
    const res =
      T === 0 && o.beamSize > 1 ? await beamSearch(model, enc, sub, ids, { beamSize: o.beamSize, patience: o.patience, lengthPenalty: o.lengthPenalty }) : await decodeGreedy(model, enc, sub, ids);
    const retry: number[] = [];
    res.forEach((r, j) => {
      const i = pending[j];
      const cr = compressionRatio(decodeText(r.tokens));
      results[i] = { ...r, temperature: T, compressionRatio: cr };
      let needsFallback = false;
      if (o.compressionRatioThreshold !== null && cr > o.compressionRatioThreshold) needsFallback = true;
      if (o.logprobThreshold !== null && r.avgLogprob < o.logprobThreshold) needsFallback = true;
      // silence: a low-confidence result is fine, do not retry
      if (o.noSpeechThreshold !== null && r.noSpeechProb > o.noSpeechThreshold && o.logprobThreshold !== null && r.avgLogprob < o.logprobThreshold) needsFallback = false;
      if (needsFallback) retry.push(i);
    });
    pending = retry;
  }
  return results;
}
