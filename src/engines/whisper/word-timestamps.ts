/**
 * Word-level timestamps.
 *
 * Preferred: cross-attention DTW (OpenAI timing.py `find_alignment`): take the cross-attention
 * weights of generation_config `alignment_heads` over the teacher-forced sequence, cut them to the
 * window's audio and re-normalise, standardise each head over tokens, median-filter over time,
 * average heads, run DTW on the negated matrix and read word boundaries off the token→frame path.
 * This needs an export that returns `cross_attentions.{i}` (Optimum `--output_attentions`); the stock
 * onnx-community exports do not. Checked end to end against a numpy port of timing.py in
 * test/engines/whisper/word-timestamps-dtw.test.ts (patched fixture graph).
 *
 * Fallback ('proportional'): split the segment's time span over its words in proportion to their
 * character length. Honest but coarse; the result reports which method was used.
 */

export type WordTimestampMethod = 'cross-attention-dtw' | 'proportional';

export interface WordTiming {
  word: string;
  start: number;
  end: number;
  probability: number;
}

export interface Word {
  word: string;
  tokens: number[];
  /** mean token probability */
  probability: number;
}

/**
 * Row-wise median filter along the last axis of a [rows, cols] matrix, reflect-padded by width/2
 * (torch F.pad mode="reflect", as in OpenAI/HF `median_filter`). Width must be odd; width ≤ 1 copies.
 */
export function medianFilter(x: Float32Array, rows: number, cols: number, width: number): Float32Array {
  const out = new Float32Array(x.length);
  const half = Math.floor(width / 2);
  if (width <= 1 || cols <= half) {
    out.set(x);
    return out;
  }
  const win = new Float64Array(width);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) {
      for (let k = -half; k <= half; k++) {
        let j = c + k;
        if (j < 0) j = -j;
        else if (j >= cols) j = 2 * (cols - 1) - j;
        win[k + half] = x[base + j];
      }
      win.sort();
      out[base + c] = win[half];
    }
  }
  return out;
}

/**
 * Dynamic time warping over a cost matrix [n, m] (OpenAI `dtw_cpu`): monotonic path from (0,0) to
 * (n-1,m-1) with diagonal/vertical/horizontal moves and OpenAI's tie-breaking. Returns aligned
 * index pairs in order.
 */
export function dtw(cost: Float32Array | Float64Array, n: number, m: number): { textIndices: number[]; timeIndices: number[] } {
  const W = m + 1;
  // float32 accumulated cost, as OpenAI's dtw_cpu (np.float32 array): ties and near-ties resolve the same way
  const acc = new Float32Array((n + 1) * W).fill(Infinity);
  const trace = new Int8Array((n + 1) * W).fill(-1);
  acc[0] = 0;
  for (let j = 1; j <= m; j++) {
    for (let i = 1; i <= n; i++) {
      const c0 = acc[(i - 1) * W + j - 1];
      const c1 = acc[(i - 1) * W + j];
      const c2 = acc[i * W + j - 1];
      let c: number;
      let t: number;
      if (c0 < c1 && c0 < c2) (c = c0), (t = 0);
      else if (c1 < c0 && c1 < c2) (c = c1), (t = 1);
      else (c = c2), (t = 2);
      acc[i * W + j] = cost[(i - 1) * m + (j - 1)] + c;
      trace[i * W + j] = t;
    }
  }
  for (let j = 0; j <= m; j++) trace[j] = 2;
  for (let i = 0; i <= n; i++) trace[i * W] = 1;
  let i = n;
  let j = m;
  const text: number[] = [];
  const time: number[] = [];
  while (i > 0 || j > 0) {
    text.push(i - 1);
    time.push(j - 1);
    const t = trace[i * W + j];
    if (t === 0) (i -= 1), (j -= 1);
    else if (t === 1) i -= 1;
    else j -= 1;
  }
  return { textIndices: text.reverse(), timeIndices: time.reverse() };
}

const PUNCT = new Set('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'.split(''));

/**
 * OpenAI split_tokens_on_unicode + split_tokens_on_spaces: tokens are grouped into units that decode
 * to whole characters (a U+FFFD that is also in the full decoded text is a genuine invalid byte and
 * ends the unit), then a new word starts at a unit beginning with a space or being punctuation.
 */
export function splitWords(tokens: number[], logprobs: number[], decode: (ids: number[]) => string): Word[] {
  const full = decode(tokens);
  const units: { text: string; tokens: number[]; probs: number[] }[] = [];
  let cur: number[] = [];
  let curP: number[] = [];
  let offset = 0;
  for (let k = 0; k < tokens.length; k++) {
    cur.push(tokens[k]);
    curP.push(Math.exp(logprobs[k] ?? 0));
    const text = decode(cur);
    const bad = text.indexOf('\ufffd');
    if (bad < 0 || full[offset + bad] === '\ufffd') {
      units.push({ text, tokens: cur, probs: curP });
      offset += text.length;
      cur = [];
      curP = [];
    }
  }
  if (cur.length) units.push({ text: decode(cur), tokens: cur, probs: curP });
  const words: { word: string; tokens: number[]; probs: number[] }[] = [];
  for (const u of units) {
    const withSpace = u.text.startsWith(' ');
    const trimmed = u.text.trim();
    const punct = trimmed.length === 1 && PUNCT.has(trimmed);
    if (words.length === 0 || withSpace || punct) words.push({ word: u.text, tokens: [...u.tokens], probs: [...u.probs] });
    else {
      const w = words[words.length - 1];
      w.word += u.text;
      w.tokens.push(...u.tokens);
      w.probs.push(...u.probs);
    }
  }
  return words.map((w) => ({ word: w.word, tokens: w.tokens, probability: w.probs.reduce((a, b) => a + b, 0) / Math.max(1, w.probs.length) }));
}

/** Proportional fallback: the span [start, end] split over words by character length. */
export function proportionalWordTimes(words: Word[], start: number, end: number): WordTiming[] {
  const lens = words.map((w) => Math.max(1, w.word.trim().length));
  const total = lens.reduce((a, b) => a + b, 0);
  let t = start;
  return words.map((w, i) => {
    const d = ((end - start) * lens[i]) / total;
    const r = { word: w.word, start: round2(t), end: round2(i === words.length - 1 ? end : t + d), probability: w.probability };
    t += d;
    return r;
  });
}

/**
 * Token→time alignment from cross-attention of the alignment heads (OpenAI `timing.find_alignment`).
 * `heads`: one [nRows, nFrames] attention-probability matrix per alignment head, over the whole
 * teacher-forced sequence `[sot, lang, task, <|notimestamps|>, text…, <|endoftext|>]`; `numFrames`: mel
 * frames of real audio in the window. As OpenAI: cut to numFrames/2 encoder positions (50 per second)
 * and re-normalise each row over them (softmax of the cut logits), standardise every column over all
 * rows (unbiased=False), median-filter along time, average the heads, keep rows
 * [first, first + count) (OpenAI: from `<|notimestamps|>` to the last text token), DTW on the negation.
 * Returns, per kept row, the time (s, relative to the window) of its first DTW path point. With OpenAI's
 * rows [<|notimestamps|>, text_0 … text_{n-1}] (the row of the token that predicts the next one), entry k
 * is the start of text token k and entry n ends the last word. Defaults (first 0, count nRows): every row.
 */
export function alignTokens(
  heads: Float32Array[],
  nRows: number,
  nFrames: number,
  numFrames: number,
  medianWidth: number,
  first = 0,
  count = nRows - first,
): number[] {
  if (first < 0 || count < 1 || first + count > nRows) throw new Error(`alignTokens: rows [${first}, ${first + count}) outside 0..${nRows}`);
  const cols = Math.max(1, Math.min(nFrames, Math.floor(numFrames / 2)));
  const sum = new Float64Array(count * cols);
  for (const h of heads) {
    // cut to the audio part and re-normalise each row (OpenAI re-applies softmax to the cut logits)
    const w = new Float32Array(nRows * cols);
    for (let t = 0; t < nRows; t++) {
      let z = 0;
      for (let c = 0; c < cols; c++) z += h[t * nFrames + c];
      const inv = z > 0 ? 1 / z : 0;
      for (let c = 0; c < cols; c++) w[t * cols + c] = h[t * nFrames + c] * inv;
    }
    // standardise each time column over all rows (torch.std_mean(dim=-2, unbiased=False))
    for (let c = 0; c < cols; c++) {
      let mean = 0;
      for (let t = 0; t < nRows; t++) mean += w[t * cols + c];
      mean /= nRows;
      let v = 0;
      for (let t = 0; t < nRows; t++) v += (w[t * cols + c] - mean) ** 2;
      const std = Math.sqrt(v / nRows) || 1;
      for (let t = 0; t < nRows; t++) w[t * cols + c] = (w[t * cols + c] - mean) / std;
    }
    const f = medianFilter(w, nRows, cols, medianWidth);
    for (let i = 0; i < sum.length; i++) sum[i] += f[first * cols + i];
  }
  // negated head mean, float32 like torch's matrix
  const matrix = new Float32Array(count * cols);
  for (let i = 0; i < matrix.length; i++) matrix[i] = -(sum[i] / heads.length);
  const { textIndices, timeIndices } = dtw(matrix, count, cols);
  // jumps: first path point of every row
  const times: number[] = [];
  let prev = -1;
  for (let k = 0; k < textIndices.length; k++) {
    if (textIndices[k] !== prev) {
      times.push(timeIndices[k] / 50); // 50 encoder positions per second
      prev = textIndices[k];
    }
  }
  return times;
}

/** Group per-token start times into word timings (OpenAI: word start = first token's jump, end = next word's). */
export function wordTimesFromTokenTimes(words: Word[], tokenTimes: number[], offset: number): WordTiming[] {
  const out: WordTiming[] = [];
  let k = 0;
  for (const w of words) {
    const start = tokenTimes[k] ?? tokenTimes[tokenTimes.length - 1] ?? 0;
    k += w.tokens.length;
    const end = tokenTimes[k] ?? tokenTimes[tokenTimes.length - 1] ?? start;
    out.push({ word: w.word, start: round2(offset + start), end: round2(offset + end), probability: w.probability });
  }
  return out;
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
