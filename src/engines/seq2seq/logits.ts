/**
 * Logits processors and numeric helpers shared by the encoder-decoder engines (Whisper, Moonshine), rule-for-rule
 * the Hugging Face processors `generate` installs from a generation_config.
 *
 * Each processor mutates one row of logits (Float32Array of vocab size) in place, given the
 * full token sequence of that row (prompt included) and the index of the first generated token.
 * Processors are pure apart from that in-place write, so they can be unit-tested on toy vocabularies.
 */

export interface ProcessorContext {
  /** All tokens of this row so far: prompt + generated. */
  tokens: readonly number[];
  /** Index in `tokens` of the first generated token (= prompt length). */
  beginIndex: number;
}

export type LogitsProcessor = (logits: Float32Array, ctx: ProcessorContext) => void;

/** HF SuppressTokensLogitsProcessor: these ids can never be generated. */
export function suppressTokens(ids: readonly number[]): LogitsProcessor {
  return (logits) => {
    for (const id of ids) if (id < logits.length) logits[id] = -Infinity;
  };
}

/**
 * HF SuppressTokensAtBeginLogitsProcessor: at the first generated position only (e.g. blank " " and EOT,
 * so the model cannot start with a space or end immediately).
 */
export function suppressTokensAtBegin(ids: readonly number[]): LogitsProcessor {
  return (logits, ctx) => {
    if (ctx.tokens.length !== ctx.beginIndex) return;
    for (const id of ids) if (id < logits.length) logits[id] = -Infinity;
  };
}

export function applyProcessors(procs: readonly LogitsProcessor[], logits: Float32Array, ctx: ProcessorContext): Float32Array {
  for (const p of procs) p(logits, ctx);
  return logits;
}

// ---- small numeric helpers shared by the decoders ----

/** First index of the maximum (torch.argmax tie rule). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  let bv = -Infinity;
  for (let i = 0; i < x.length; i++) {
    if (x[i] > bv) {
      bv = x[i];
      best = i;
    }
  }
  return best;
}

/** log-sum-exp of a row (float64 accumulation). */
export function logSumExp(x: ArrayLike<number>, from = 0, to = x.length): number {
  let m = -Infinity;
  for (let i = from; i < to; i++) if (x[i] > m) m = x[i];
  if (m === -Infinity) return -Infinity;
  let s = 0;
  for (let i = from; i < to; i++) s += Math.exp(x[i] - m);
  return Math.log(s) + m;
}

/** In-place log-softmax into a Float64Array. */
export function logSoftmax(x: ArrayLike<number>): Float64Array {
  const lse = logSumExp(x);
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] - lse;
  return out;
}

/** Softmax over a subset of indices (e.g. language tokens). */
export function softmaxOver(x: ArrayLike<number>, ids: readonly number[]): number[] {
  let m = -Infinity;
  for (const i of ids) if (x[i] > m) m = x[i];
  const e = ids.map((i) => Math.exp(x[i] - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}
