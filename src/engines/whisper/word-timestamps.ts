/**
 * Word-level timestamps.
 *
 * Preferred: cross-attention DTW (OpenAI timing.py `find_alignment`): take the cross-attention
 * weights of generation_config `alignment_heads` over the teacher-forced sequence, cut them to the
 * window's audio and re-normalise, standardise each head over tokens, median-filter over time,
 * average heads, run DTW on the negated matrix and read word boundaries off the token→frame path.
 * Then OpenAI `add_word_timestamps`: the window's text is split into words as a whole, long words at
 * sentence ends are truncated to twice the median word duration, punctuation is merged into its
 * neighbour word (`mergePunctuations`), words are handed back to their segments and the segment start/end
 * follow the words (`addWordTimestamps`). This needs an export that returns `cross_attentions.{i}`
 * (Optimum `--output_attentions`, or `npm run models:attentions`); the stock onnx-community exports do not.
 * Checked end to end against a numpy port of timing.py in test/engines/whisper/word-timestamps-dtw.test.ts.
 *
 * Fallback ('proportional'): split the segment's time span over its words (punctuation merged as above)
 * in proportion to their character length. Honest but coarse; the result reports which method was used.
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

/** Python `string.punctuation`; OpenAI tests `subword.strip() in string.punctuation` (a substring test). */
const PUNCTUATION = '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~';
/** Languages OpenAI splits into unicode units instead of space-separated words. */
const NO_SPACE_LANGUAGES = new Set(['zh', 'ja', 'th', 'lo', 'my', 'yue']);
/** OpenAI `transcribe()` defaults. */
export const PREPEND_PUNCTUATIONS = '"\'“¿([{-';
export const APPEND_PUNCTUATIONS = '"\'.。,，!！?？:：”)]}、';

/**
 * OpenAI split_tokens_on_unicode + split_tokens_on_spaces: tokens are grouped into units that decode
 * to whole characters (a U+FFFD that is also in the full decoded text is a genuine invalid byte and
 * ends the unit), then a new word starts at a unit beginning with a space or being punctuation. For
 * zh/ja/th/lo/my/yue (OpenAI `split_to_word_tokens`) every unit is a word.
 */
export function splitWords(tokens: number[], logprobs: number[], decode: (ids: number[]) => string, language?: string): Word[] {
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
    const punct = PUNCTUATION.includes(u.text.trim());
    const unitWords = language !== undefined && NO_SPACE_LANGUAGES.has(language);
    if (words.length === 0 || withSpace || punct || unitWords) words.push({ word: u.text, tokens: [...u.tokens], probs: [...u.probs] });
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
export function alignTokens(heads: Float32Array[], nRows: number, nFrames: number, numFrames: number, medianWidth: number, first = 0, count = nRows - first): number[] {
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

/** A word of the window-wide alignment (OpenAI `WordTiming`): times in seconds relative to the window, unrounded. */
export interface AlignedWord {
  word: string;
  tokens: number[];
  start: number;
  end: number;
  probability: number;
}

/**
 * OpenAI `find_alignment` tail: word i starts at the jump of its first token and ends at the jump of the next
 * word's first token (`jumpTimes` from `alignTokens`: one per text token plus one for the end). Probability =
 * mean of `tokenProbs` over the word's tokens (OpenAI: the teacher-forced pass's softmax over text tokens),
 * else the word's own probability.
 */
export function alignWords(words: Word[], jumpTimes: number[], tokenProbs?: number[]): AlignedWord[] {
  const out: AlignedWord[] = [];
  let k = 0;
  for (const w of words) {
    const from = k;
    k += w.tokens.length;
    if (k >= jumpTimes.length) throw new Error(`alignWords: ${k + 1} jump times needed, got ${jumpTimes.length}`);
    let probability = w.probability;
    if (tokenProbs) {
      let sum = 0;
      for (let i = from; i < k; i++) sum += tokenProbs[i];
      probability = sum / (k - from);
    }
    out.push({ word: w.word, tokens: [...w.tokens], start: jumpTimes[from], end: jumpTimes[k], probability });
  }
  return out;
}

/**
 * OpenAI `merge_punctuations`, in place: a word that starts with a space and is (trimmed) one of `prepended`
 * moves into the following word (scanning backwards, so runs chain); a word that is one of `appended` moves
 * into the previous word unless that ends with a space. Emptied entries stay (word '', no tokens), as in
 * OpenAI, so token counts still walk the segments; `withoutEmpty` drops them. Membership is Python's `in`
 * on strings (substring), as there.
 */
export function mergePunctuations<T extends { word: string; tokens: number[] }>(alignment: T[], prepended: string = PREPEND_PUNCTUATIONS, appended: string = APPEND_PUNCTUATIONS): T[] {
  let i = alignment.length - 2;
  let j = alignment.length - 1;
  while (i >= 0) {
    const previous = alignment[i];
    const following = alignment[j];
    if (previous.word.startsWith(' ') && prepended.includes(previous.word.trim())) {
      following.word = previous.word + following.word;
      following.tokens = [...previous.tokens, ...following.tokens];
      previous.word = '';
      previous.tokens = [];
    } else j = i;
    i -= 1;
  }
  i = 0;
  j = 1;
  while (j < alignment.length) {
    const previous = alignment[i];
    const following = alignment[j];
    if (!previous.word.endsWith(' ') && appended.includes(following.word)) {
      previous.word = previous.word + following.word;
      previous.tokens = [...previous.tokens, ...following.tokens];
      following.word = '';
      following.tokens = [];
    } else i = j;
    j += 1;
  }
  return alignment;
}

export function withoutEmpty<T extends { word: string }>(words: T[]): T[] {
  return words.filter((w) => w.word !== '');
}

/** OpenAI: median of the non-zero word durations, capped at 0.7 s; max = twice that. */
export function wordDurationLimits(alignment: { start: number; end: number }[]): { median: number; max: number; any: boolean } {
  const d = alignment.map((w) => w.end - w.start).filter((x) => x !== 0);
  let median = 0;
  if (d.length) {
    d.sort((a, b) => a - b);
    const h = d.length >> 1;
    median = d.length % 2 ? d[h] : (d[h - 1] + d[h]) / 2;
  }
  median = Math.min(0.7, median);
  return { median, max: median * 2, any: d.length > 0 };
}

const SENTENCE_END_MARKS = '.。!！?？';

/**
 * OpenAI's "truncate long words at sentence boundaries", in place: a word longer than `maxDuration` that is a
 * sentence-end mark is cut to `maxDuration` from its start; one that follows a sentence-end mark, from its end.
 */
export function truncateAtSentenceEnds(alignment: AlignedWord[], maxDuration: number): void {
  for (let i = 1; i < alignment.length; i++) {
    const w = alignment[i];
    if (w.end - w.start > maxDuration) {
      if (SENTENCE_END_MARKS.includes(w.word)) w.end = w.start + maxDuration;
      else if (SENTENCE_END_MARKS.includes(alignment[i - 1].word)) w.start = w.end - maxDuration;
    }
  }
}

export interface WordSegmentInput {
  /** segment times in seconds (absolute) before the word adjustment */
  start: number;
  end: number;
  /** number of text tokens (< EOT) of the segment, in window order */
  textTokens: number;
}

export interface WordSegmentOutput {
  start: number;
  end: number;
  words: WordTiming[];
}

export interface AddWordTimestampsOptions {
  /** window start in seconds (OpenAI `seek * HOP_LENGTH / SAMPLE_RATE`) */
  timeOffset: number;
  /** end of the last speech before this window (OpenAI `last_speech_timestamp`; 0 at the start) */
  lastSpeechTimestamp: number;
  prependPunctuations?: string;
  appendPunctuations?: string;
}

/**
 * OpenAI `add_word_timestamps` after `find_alignment`, as a pure function. `alignment`: the words of the whole
 * window (`alignWords`, times relative to the window; it is modified). Steps: median/max word duration; long
 * words at sentence boundaries truncated; punctuation merged; words handed back to the segments by token count
 * (emptied entries skipped), times `round(time_offset + t, 2)`; per segment, a too-long first word after a pause
 * is shortened (and the second, when both are long); segment start/end take the first/last word's unless the
 * word overshoots the segment's own timestamp by more than 0.5 s, in which case the word is pulled in instead
 * (OpenAI's rule, which can still leave that word up to one median word duration outside the segment).
 */
export function addWordTimestamps(segments: WordSegmentInput[], alignment: AlignedWord[], opts: AddWordTimestampsOptions): WordSegmentOutput[] {
  const { median: medianDuration, max: maxDuration, any } = wordDurationLimits(alignment);
  if (any) truncateAtSentenceEnds(alignment, maxDuration);
  mergePunctuations(alignment, opts.prependPunctuations ?? PREPEND_PUNCTUATIONS, opts.appendPunctuations ?? APPEND_PUNCTUATIONS);

  let lastSpeech = opts.lastSpeechTimestamp;
  let wordIndex = 0;
  return segments.map((seg) => {
    let savedTokens = 0;
    const words: WordTiming[] = [];
    let { start, end } = seg;
    while (wordIndex < alignment.length && savedTokens < seg.textTokens) {
      const timing = alignment[wordIndex];
      if (timing.word) {
        words.push({ word: timing.word, start: npRound2(opts.timeOffset + timing.start), end: npRound2(opts.timeOffset + timing.end), probability: timing.probability });
      }
      savedTokens += timing.tokens.length;
      wordIndex += 1;
    }
    if (words.length > 0) {
      const first = words[0];
      const last = words[words.length - 1];
      // truncate a long first (and second) word after a pause
      if (first.end - lastSpeech > medianDuration * 4 && (first.end - first.start > maxDuration || (words.length > 1 && words[1].end - first.start > maxDuration * 2))) {
        if (words.length > 1 && words[1].end - words[1].start > maxDuration) {
          const boundary = Math.max(words[1].end / 2, words[1].end - maxDuration);
          first.end = words[1].start = boundary;
        }
        first.start = Math.max(0, first.end - maxDuration);
      }
      // prefer the segment-level start timestamp if the first word is too long
      if (start < first.end && start - 0.5 > first.start) first.start = Math.max(0, Math.min(first.end - medianDuration, start));
      else start = first.start;
      // prefer the segment-level end timestamp if the last word is too long
      if (end > last.start && end + 0.5 < last.end) last.end = Math.max(last.start + medianDuration, end);
      else end = last.end;
      lastSpeech = end;
    }
    return { start, end, words };
  });
}

/** OpenAI `get_end`: end of the last word of the last segment with words, else the last segment's end. */
export function lastSpeechEnd(segments: { end: number; words?: { end: number }[] }[]): number | undefined {
  for (let i = segments.length - 1; i >= 0; i--) {
    const w = segments[i].words;
    if (w && w.length) return w[w.length - 1].end;
  }
  return segments.length ? segments[segments.length - 1].end : undefined;
}

/**
 * OpenAI's `round(time_offset + timing.start, 2)`: the times are numpy float64, whose `__round__` is numpy's
 * `around` — multiply by 100, round half to even (`rint`), divide by 100 — not Python's correctly rounded
 * `round` on floats.
 */
export function npRound2(x: number): number {
  const y = x * 100;
  let r = Math.round(y);
  if (r - y === 0.5 && r % 2 !== 0) r -= 1;
  return r / 100;
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
