/**
 * OpenAI add_word_timestamps post-processing (punctuation merging, word-duration clean-up, segment adjustment) as
 * pure functions: hand-made cases, and a seeded random cross-check against reference_timing.py --post (the numpy
 * port of timing.py) on hand-made alignments full of punctuation, long words and pauses.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../../src/engines/seq2seq/generate.ts';
import {
  addWordTimestamps,
  alignWords,
  lastSpeechEnd,
  mergePunctuations,
  npRound2,
  proportionalWordTimes,
  splitWords,
  truncateAtSentenceEnds,
  withoutEmpty,
  wordDurationLimits,
  type AlignedWord,
} from '../../../src/engines/whisper/word-timestamps.ts';

const SCRIPT = join(import.meta.dirname, 'reference_timing.py');
const pythonOk = (() => {
  const r = spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' });
  return !r.error && r.status === 0;
})();
if (!pythonOk) console.warn('word-postprocess: reference cross-check skipped: python3 with numpy not available');

const w = (word: string, start = 0, end = 0, tokens?: number[]): AlignedWord => ({ word, tokens: tokens ?? [word.length], start, end, probability: 1 });

describe('OpenAI merge_punctuations', () => {
  it('prepends opening punctuation (with its space) to the next word and appends closing punctuation to the previous', () => {
    const a = [w(' He'), w(' said'), w(' "'), w('hello'), w(','), w(' ('), w('world'), w(')'), w('.'), w('"')];
    mergePunctuations(a);
    expect(a.map((x) => x.word)).toEqual([' He', ' said', '', ' "hello,', '', '', ' (world)."', '', '', '']);
    expect(withoutEmpty(a).map((x) => x.word)).toEqual([' He', ' said', ' "hello,', ' (world)."']);
    // tokens travel with the text
    expect(a[3].tokens).toEqual([2, 5, 1]);
    expect(a[6].tokens).toEqual([2, 5, 1, 1, 1]);
  });

  it('prepended runs chain backwards; no space means no prepending; a word ending in a space takes nothing', () => {
    const a = [w(' ¿'), w(' ('), w('Qué'), w(' x'), w('('), w('y ')];
    mergePunctuations(a);
    expect(withoutEmpty(a).map((x) => x.word)).toEqual([' ¿ (Qué', ' x', '(', 'y ']);
    const b = [w('end '), w('.'), w(' next'), w('!'), w('?')];
    mergePunctuations(b);
    // '.' stays (previous ends with a space); '!' and '?' both join ' next'
    expect(withoutEmpty(b).map((x) => x.word)).toEqual(['end ', '.', ' next!?']);
  });

  it("membership is Python's `in` on strings (substring), as in OpenAI", () => {
    const a = [w(' hi'), w('.。'), w(' ok'), w('?!')];
    mergePunctuations(a);
    // '.。' is a substring of the append set, '?!' is not
    expect(withoutEmpty(a).map((x) => x.word)).toEqual([' hi.。', ' ok', '?!']);
  });
});

describe('OpenAI word-duration clean-up and segment adjustment', () => {
  it('median of non-zero durations, capped at 0.7 s; max = 2 × median', () => {
    const l = wordDurationLimits([w('a', 0, 0.2), w('b', 0.2, 0.2), w('c', 0.2, 0.6), w('d', 0.6, 1.2)]);
    expect(l.median).toBe(0.6 - 0.2); // the middle duration of 0.2, 0.4, 0.6 (float64, as numpy)
    expect(l.max).toBe(2 * (0.6 - 0.2));
    expect(wordDurationLimits([w('a', 0, 3), w('b', 3, 5)]).median).toBe(0.7);
    expect(wordDurationLimits([w('a', 1, 1)])).toEqual({ median: 0, max: 0, any: false });
  });

  it('truncates long sentence-end marks from their start and long words after them from their end', () => {
    const a = [w(' Hi', 0, 0.2), w('.', 0.2, 2.2), w(' So', 2.2, 4.0)];
    truncateAtSentenceEnds(a, 0.4);
    expect(a.map((x) => [x.start, x.end])).toEqual([
      [0, 0.2],
      [0.2, 0.2 + 0.4],
      [4.0 - 0.4, 4.0],
    ]);
  });

  it('segment start/end follow the words; a first word after a long pause is shortened', () => {
    // durations 0.2, 0.2, 3.0 → median 0.2, max 0.4; the first word ends 3.4 s after the last speech (> 4 × median)
    const align = [w(' a', 0, 3.0, [1]), w(' b', 3.0, 3.2, [2]), w(' c', 3.2, 3.4, [3])];
    const [seg] = addWordTimestamps([{ start: 0, end: 3.6, textTokens: 3 }], align, { timeOffset: 10, lastSpeechTimestamp: 0 });
    expect(seg.words.map((x) => [x.word, x.start, x.end])).toEqual([
      [' a', 12.6, 13],
      [' b', 13, 13.2],
      [' c', 13.2, 13.4],
    ]);
    // the segment's own start (0) is more than 0.5 s before its first word but not inside it: words win
    expect([seg.start, seg.end]).toEqual([12.6, 13.4]);
  });

  it('a segment timestamp wins over a first/last word that overshoots it by more than 0.5 s', () => {
    const align = [w(' a', 0, 1.0, [1]), w(' b', 1.0, 1.2, [2]), w(' c', 1.2, 4.0, [3])];
    const [seg] = addWordTimestamps([{ start: 0.8, end: 2.0, textTokens: 3 }], align, { timeOffset: 0, lastSpeechTimestamp: 0.9 });
    // median of 1.0, 0.2, 2.8 = 1.0 → capped 0.7
    expect(seg.words[0].start).toBe(Math.max(0, Math.min(1.0 - 0.7, 0.8)));
    expect(seg.words[2].end).toBe(Math.max(1.2 + 0.7, 2.0));
    expect([seg.start, seg.end]).toEqual([0.8, 2.0]);
  });

  it('words are handed back by token count over the whole window; merged punctuation can move to the next segment', () => {
    // segment 1 ends with ' (' which joins the first word of segment 2; ',' of segment 2 joins it too
    const align = [w(' one', 0, 0.2, [1]), w(' (', 0.2, 0.4, [2]), w('two', 0.4, 0.6, [3]), w(',', 0.6, 0.6, [4]), w(' three', 0.6, 0.8, [5])];
    const segs = addWordTimestamps(
      [
        { start: 0, end: 0.4, textTokens: 2 },
        { start: 0.4, end: 0.8, textTokens: 3 },
      ],
      align,
      { timeOffset: 0, lastSpeechTimestamp: 0 },
    );
    // OpenAI: segment 1 consumes ' one' (1 token) and the emptied ' (' entry (0 tokens) and then ' (two' (3 tokens)
    expect(segs.map((s) => s.words.map((x) => x.word))).toEqual([[' one', ' (two,'], [' three']]);
    expect(lastSpeechEnd(segs)).toBe(0.8);
  });

  it('numpy rounding of word times (x·100, half to even, ÷100)', () => {
    expect(npRound2(2.675)).toBe(2.68); // 2.675·100 is exactly 267.5 in binary
    expect(npRound2(0.125)).toBe(0.12);
    expect(npRound2(1.005)).toBe(1);
    expect(npRound2(0.1 + 0.2)).toBe(0.3);
  });

  it('alignWords: word times from token jumps, probability the mean of the token probabilities', () => {
    const words = [
      { word: ' a', tokens: [1, 2], probability: 0 },
      { word: ' b', tokens: [3], probability: 0 },
    ];
    const a = alignWords(words, [0, 0.1, 0.3, 0.5], [0.5, 0.7, 0.9]);
    expect(a.map((x) => [x.start, x.end])).toEqual([
      [0, 0.3],
      [0.3, 0.5],
    ]);
    expect(a[0].probability).toBeCloseTo(0.6, 12);
    expect(() => alignWords(words, [0, 0.1])).toThrow();
  });
});

describe('word splitting and the proportional fallback', () => {
  const table: Record<number, string> = { 1: ' Hello', 2: ',', 3: ' (', 4: 'world', 5: ')', 6: '()', 7: '\n', 8: '日', 9: '本' };
  const decode = (ids: number[]) => ids.map((i) => table[i]).join('');
  it('string.punctuation membership is a substring test; whitespace-only units start a word (OpenAI)', () => {
    // '()' is in string.punctuation; '\n'.strip() == '' is too, so it starts a word that 'world' then continues
    expect(splitWords([1, 6, 7, 4], [], decode).map((x) => x.word)).toEqual([' Hello', '()', '\nworld']);
  });
  it('zh/ja/th/lo/my/yue: every unicode unit is a word', () => {
    expect(splitWords([8, 9], [], decode, 'ja').map((x) => x.word)).toEqual(['日', '本']);
    expect(splitWords([8, 9], [], decode, 'en').map((x) => x.word)).toEqual(['日本']);
  });
  it('proportional fallback on merged words covers the segment span', () => {
    const words = withoutEmpty(mergePunctuations(splitWords([1, 2, 3, 4, 5], [0, 0, 0, 0, 0], decode)));
    expect(words.map((x) => x.word)).toEqual([' Hello,', ' (world)']);
    const t = proportionalWordTimes(words, 1, 2.3);
    expect(t[0].start).toBe(1);
    expect(t.at(-1)!.end).toBe(2.3);
  });
});

describe('add_word_timestamps vs the numpy port of timing.py on random hand-made alignments', () => {
  it.skipIf(!pythonOk)('300 random windows: identical words, word times and segment times', () => {
    const POOL = [' the', ' cat', 'sat', '.', ',', ' (', ')', ' "', '"', "'", ' ¿', '?', '!', '。', '、', ' -', '-', '”', ':', ' Mr', '.', ' on', 'x'];
    const r = mulberry32(12345);
    const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
    const cases: object[] = [];
    const ours: unknown[] = [];
    for (let c = 0; c < 300; c++) {
      const n = 1 + Math.floor(r() * 14);
      const seek = pick([0, 0, 1234, 3000, 4567]);
      let t = 0;
      const alignment: AlignedWord[] = [];
      let tok = 1;
      for (let i = 0; i < n; i++) {
        const start = t;
        // mostly short words, some zero-length, some very long (pauses)
        const steps = r() < 0.2 ? 0 : r() < 0.15 ? 50 + Math.floor(r() * 200) : 1 + Math.floor(r() * 30);
        t = start + steps / 50;
        const tokens = Array.from({ length: 1 + Math.floor(r() * 3) }, () => tok++);
        alignment.push({ word: pick(POOL), tokens, start, end: t, probability: Math.round(r() * 1000) / 1000 });
      }
      const total = alignment.reduce((s, x) => s + x.tokens.length, 0);
      // 1-3 segments over the tokens, with timestamps near (but not at) the word times
      const nSeg = Math.min(total, 1 + Math.floor(r() * 3));
      const cuts = [0, ...Array.from({ length: nSeg - 1 }, (_, i) => Math.floor(((i + 1) * total) / nSeg)), total];
      const offset = (seek * 160) / 16000;
      const segments = cuts.slice(1).map((cut, i) => {
        const a = Math.round(r() * t * 50) / 50;
        const b = Math.round((a + r() * 4) * 50) / 50;
        return { seek, start: Math.round((offset + a) * 1000) / 1000, end: Math.round((offset + b) * 1000) / 1000, tokens: Array.from({ length: cut - cuts[i] }, (_, k) => cuts[i] + k + 1) };
      });
      const lastSpeech = pick([0, offset, offset + 0.5, Math.max(0, offset - 3)]);
      cases.push({ eot: 50257, alignment: alignment.map((x) => ({ ...x })), segments, last_speech_timestamp: lastSpeech });
      ours.push(
        addWordTimestamps(
          segments.map((s) => ({ start: s.start, end: s.end, textTokens: s.tokens.length })),
          alignment.map((x) => ({ ...x, tokens: [...x.tokens] })),
          { timeOffset: offset, lastSpeechTimestamp: lastSpeech },
        ),
      );
    }
    const work = mkdtempSync(join(tmpdir(), 'wordpost-'));
    try {
      const file = join(work, 'cases.json');
      writeFileSync(file, JSON.stringify(cases));
      const py = spawnSync('python3', [SCRIPT, '--post', file], { encoding: 'utf8', timeout: 60_000 });
      expect(py.stderr).toBe('');
      expect(py.status).toBe(0);
      const ref = JSON.parse(py.stdout);
      // exact equality: same float64 operations on both sides
      expect(ours).toEqual(ref);
      const words = (ref as { words: { word: string }[] }[][]).flat().flatMap((s) => s.words);
      const merged = words.filter((x) => x.word.trim().length > 1 && /[.,()"'¿?!。、”:-]/.test(x.word)).length;
      console.log(`add_word_timestamps cross-check: 300 windows, ${words.length} words (${merged} with merged punctuation), identical`);
      expect(merged).toBeGreaterThan(50);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
