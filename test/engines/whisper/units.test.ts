/** Pure-function tests on hand-made inputs: logits processors, DTW, median filter, word splitting. */
import { describe, expect, it } from 'vitest';
import { argmax, softmaxOver, suppressTokens, suppressTokensAtBegin } from '../../../src/engines/seq2seq/logits.ts';
import { timestampRules } from '../../../src/engines/whisper/logits-processors.ts';
import { topK, compressionRatio, mulberry32, sampleToken } from '../../../src/engines/seq2seq/generate.ts';
import { dtw, medianFilter, proportionalWordTimes, splitWords, alignTokens, wordTimesFromTokenTimes } from '../../../src/engines/whisper/word-timestamps.ts';

// toy vocabulary: 0..4 text, 5 = eot, 6 = notimestamps, 7.. = timestamps (7 = <|0.00|>)
const EOT = 5,
  NOTS = 6,
  TB = 7,
  V = 12;
const rules = timestampRules({ eot: EOT, noTimestamps: NOTS, timestampBegin: TB, maxInitialTimestampIndex: 2 });
const row = (vals: Record<number, number> = {}, base = 0) => {
  const r = new Float32Array(V).fill(base);
  for (const [k, v] of Object.entries(vals)) r[Number(k)] = v;
  return r;
};
const inf = -Infinity;

describe('logits processors', () => {
  it('suppress tokens always / at begin only', () => {
    const r = row();
    suppressTokens([1, 3])(r, { tokens: [9], beginIndex: 1 });
    expect([r[1], r[3], r[2]]).toEqual([inf, inf, 0]);
    const a = row();
    suppressTokensAtBegin([0, EOT])(a, { tokens: [9, 9], beginIndex: 2 });
    expect([a[0], a[EOT]]).toEqual([inf, inf]);
    const b = row();
    suppressTokensAtBegin([0, EOT])(b, { tokens: [9, 9, 1], beginIndex: 2 });
    expect([b[0], b[EOT]]).toEqual([0, 0]);
  });

  it('first token must be a timestamp within max_initial_timestamp_index', () => {
    const r = row({ 0: 10 });
    rules(r, { tokens: [100], beginIndex: 1 });
    for (let i = 0; i < TB; i++) expect(r[i]).toBe(inf);
    expect([r[TB], r[TB + 1], r[TB + 2]]).toEqual([0, 0, 0]);
    expect(r[TB + 3]).toBe(inf);
  });

  it('after a lone timestamp: timestamp (>= last) or EOT only, never text', () => {
    const r = row({ 1: 5, [EOT]: 0 }, -10);
    rules(r, { tokens: [100, 1, TB + 2], beginIndex: 1 });
    for (let i = 0; i < EOT; i++) expect(r[i]).toBe(inf);
    expect(r[EOT]).toBe(0);
    expect(r[TB + 1]).toBe(inf); // decreasing forbidden
    expect(r[TB + 2]).toBe(-10); // equal allowed to close the pair
  });

  it('after a pair of timestamps: no timestamp; later timestamps strictly increase', () => {
    const r = row({ 1: 5 });
    rules(r, { tokens: [100, TB + 1, 1, TB + 3, TB + 3], beginIndex: 1 });
    for (let i = TB; i < V; i++) expect(r[i]).toBe(inf);
    expect(r[1]).toBe(5);
    const s = row({ 1: 1 });
    rules(s, { tokens: [100, TB + 1, 1, 2], beginIndex: 1 });
    expect([s[TB + 1], s[TB + 2]]).toEqual([inf, 0]);
  });

  it('forces a timestamp when their total probability beats the best text token', () => {
    // text best logit 1.0; five timestamps at 0.0 each: logsumexp = log 5 ≈ 1.609 > 1
    const r = row({ 0: 1, 1: -5, 2: -5, 3: -5, 4: -5, [EOT]: -5 }, 0);
    rules(r, { tokens: [100, 2], beginIndex: 1 });
    for (let i = 0; i < TB; i++) expect(r[i]).toBe(inf);
    const s = row({ 0: 3 }, 0);
    rules(s, { tokens: [100, 2], beginIndex: 1 });
    expect(s[0]).toBe(3);
    expect(s[NOTS]).toBe(inf);
  });

  it('helpers: argmax first max, topK, softmaxOver', () => {
    expect(argmax([1, 3, 3, 2])).toBe(1);
    expect(topK([1, 5, 3, 5, 0, 4], 3)).toEqual([1, 3, 5]);
    expect(topK([2, 1], 4)).toEqual([0, 1]);
    const p = softmaxOver([0, Math.log(3), 100], [0, 1]);
    expect(p[0]).toBeCloseTo(0.25, 10);
  });

  it('compression ratio flags repetition; seeded sampling is reproducible', () => {
    expect(compressionRatio('the same words '.repeat(20))).toBeGreaterThan(2.4);
    expect(compressionRatio('A short varied sentence.')).toBeLessThan(2.4);
    const l = new Float32Array([0, 1, 2, inf]);
    const a = [...Array(20)].map(
      (
        (r) => () =>
          sampleToken(l, 1, r)
      )(mulberry32(5)),
    );
    const b = [...Array(20)].map(
      (
        (r) => () =>
          sampleToken(l, 1, r)
      )(mulberry32(5)),
    );
    expect(a).toEqual(b);
    expect(a.includes(3)).toBe(false);
  });
});

describe('word timestamps maths', () => {
  it('DTW follows the cheap diagonal of a hand-made cost matrix', () => {
    // 3 tokens x 6 frames, cheap cells: t0 at f0-1, t1 at f2-3, t2 at f4-5
    const n = 3,
      m = 6;
    const c = new Float32Array(n * m).fill(1);
    [
      [0, 0],
      [0, 1],
      [1, 2],
      [1, 3],
      [2, 4],
      [2, 5],
    ].forEach(([i, j]) => (c[i * m + j] = 0));
    const { textIndices, timeIndices } = dtw(c, n, m);
    expect(textIndices).toEqual([0, 0, 1, 1, 2, 2]);
    expect(timeIndices).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('DTW path is monotonic and ends at the corner', () => {
    const n = 4,
      m = 9;
    const c = Float32Array.from({ length: n * m }, (_, k) => Math.sin(k * 1.7));
    const { textIndices, timeIndices } = dtw(c, n, m);
    expect(textIndices[0]).toBe(0);
    expect(timeIndices[0]).toBe(0);
    expect(textIndices.at(-1)).toBe(n - 1);
    expect(timeIndices.at(-1)).toBe(m - 1);
    for (let k = 1; k < textIndices.length; k++) {
      expect(textIndices[k] - textIndices[k - 1]).toBeGreaterThanOrEqual(0);
      expect(timeIndices[k] - timeIndices[k - 1]).toBeGreaterThanOrEqual(0);
    }
  });

  it('median filter (width 3, reflect padding) on rows', () => {
    const x = new Float32Array([1, 9, 2, 8, 3, 0, 0, 5, 0, 0]);
    const y = medianFilter(x, 2, 5, 3);
    // row 0 padded reflect: [9,1,9,2,8,3,8] -> medians of windows: 9,2,8,3,8
    expect([...y.slice(0, 5)]).toEqual([9, 2, 8, 3, 8]);
    expect([...y.slice(5)]).toEqual([0, 0, 0, 0, 0]);
    expect([...medianFilter(x, 2, 5, 1)]).toEqual([...x]);
  });

  it('alignTokens recovers token onsets from a synthetic attention pattern', () => {
    // 3 rows (2 text tokens + eot) over 20 encoder frames; numFrames 40 mel frames -> 20 columns
    const nTok = 3,
      frames = 20;
    const att = new Float32Array(nTok * frames);
    for (let f = 0; f < frames; f++) att[(f < 8 ? 0 : f < 15 ? 1 : 2) * frames + f] = 1;
    const times = alignTokens([att, att], nTok, frames, 40, 1);
    expect(times.length).toBe(3);
    expect(times[0]).toBeCloseTo(0, 6);
    expect(times[1]).toBeCloseTo(8 / 50, 6);
    expect(times[2]).toBeCloseTo(15 / 50, 6);
    const words = wordTimesFromTokenTimes(
      [
        { word: ' a', tokens: [1], probability: 1 },
        { word: ' b', tokens: [2], probability: 1 },
      ],
      times,
      10,
    );
    expect(words.map((w) => [w.start, w.end])).toEqual([
      [10, 10.16],
      [10.16, 10.3],
    ]);
  });

  it('splits words on spaces/punctuation and spreads time by characters', () => {
    const vocab: Record<number, string> = { 1: ' Hello', 2: ' wor', 3: 'ld', 4: ',', 5: ' ok' };
    const decode = (ids: number[]) => ids.map((i) => vocab[i]).join('');
    const words = splitWords([1, 2, 3, 4, 5], [0, 0, Math.log(0.5), 0, 0], decode);
    expect(words.map((w) => w.word)).toEqual([' Hello', ' world', ',', ' ok']);
    expect(words[1].probability).toBeCloseTo(0.75, 10);
    const t = proportionalWordTimes(words, 1, 2.3);
    expect(t[0].start).toBe(1);
    expect(t.at(-1)!.end).toBe(2.3);
    expect(t[0].end).toBeCloseTo(1.5, 2); // 5 of 13 chars
    for (let k = 1; k < t.length; k++) expect(t[k].start).toBeCloseTo(t[k - 1].end, 2);
  });
});

import { windowSegments } from '../../../src/engines/whisper/segments.ts';

describe('long-form window bookkeeping (OpenAI transcribe)', () => {
  const TB0 = 50364;
  const g = { timestamps: true, timestampBegin: TB0, timePrecision: 0.02, segmentSize: 3000, frameSec: 0.01, inputStride: 2 };
  const ts = (s: number) => TB0 + Math.round(s / 0.02);

  it('pairs split segments; an unfinished tail makes the window seek to the last pair', () => {
    const toks = [ts(0), 1, 2, ts(2), ts(2), 3, ts(5), ts(5), 4, 5];
    const { pieces, seekAdvance } = windowSegments(toks, g);
    expect(pieces.map((p) => [p.start, p.end, p.from, p.to])).toEqual([
      [0, 2, 0, 4],
      [2, 5, 4, 7],
    ]);
    expect(seekAdvance).toBe(500); // 5.00 s = 250 encoder positions * 2 mel frames
  });

  it('a single timestamp ending consumes the whole window', () => {
    const toks = [ts(0), 1, ts(1), ts(1), 2, ts(3)];
    const { pieces, seekAdvance } = windowSegments(toks, { ...g, segmentSize: 1200 });
    expect(pieces.map((p) => [p.start, p.end])).toEqual([
      [0, 1],
      [1, 3],
    ]);
    expect(seekAdvance).toBe(1200);
  });

  it('no pairs: one segment ending at the last timestamp (or the window end)', () => {
    expect(windowSegments([ts(0.3), 1, 2], { ...g, segmentSize: 1100 })).toEqual({ pieces: [{ start: 0, end: 0.3, from: 0, to: 3 }], seekAdvance: 1100 });
    expect(windowSegments([1, 2], { ...g, timestamps: false, segmentSize: 1100 }).pieces[0].end).toBeCloseTo(11, 9);
    expect(windowSegments([ts(0), ts(0)], g).seekAdvance).toBe(3000); // never stalls
  });
});
