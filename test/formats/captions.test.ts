import { describe, expect, it } from 'vitest';
import SrtParser from 'srt-parser-2';
// @ts-expect-error webvtt-parser ships no types
import { WebVTTParser } from 'webvtt-parser';
import { toCues, toSrt, toTxt, toVtt, wrapLines } from '../../src/formats/captions.ts';
import type { Transcript } from '../../src/formats/transcript.ts';

const words = (text: string, start: number, step: number) => text.split(' ').map((w, i) => ({ word: w, start: start + i * step, end: start + (i + 1) * step - 0.02 }));

const long = 'the quick brown fox jumps over the lazy dog while the band plays on and the crowd cheers loudly at the end of a very long day';
const transcript: Transcript = {
  text: `${long} Short <tag> & reply.`,
  language: 'en',
  duration: 40,
  segments: [
    { start: 0, end: 14, text: long, speaker: 'Speaker 1', confidence: 0.9, words: words(long, 0, 0.5) },
    { start: 20, end: 22.5, text: 'Short <tag> & reply.', speaker: 'Speaker 2', confidence: 0.8, words: [] },
  ],
  speakers: ['Speaker 1', 'Speaker 2'],
};

describe('captions', () => {
  it('wraps at word boundaries', () => {
    expect(wrapLines('aaa bbb ccc ddd'.split(' '), 7)).toEqual(['aaa bbb', 'ccc ddd']);
    expect(wrapLines(['supercalifragilistic', 'x'], 5)).toEqual(['supercalifragilistic', 'x']);
  });

  it('keeps cues within 2 lines of 42 chars and 7 s, ordered and non-overlapping', () => {
    const cues = toCues(transcript.segments);
    expect(cues.length).toBeGreaterThanOrEqual(3);
    for (const [i, c] of cues.entries()) {
      expect(c.lines.length).toBeLessThanOrEqual(2);
      for (const l of c.lines) expect(l.length).toBeLessThanOrEqual(42);
      expect(c.end - c.start).toBeLessThanOrEqual(7);
      expect(c.end).toBeGreaterThan(c.start);
      if (i) expect(c.start).toBeGreaterThanOrEqual(cues[i - 1].end);
    }
    // Every word survives, in order.
    expect(cues.flatMap((c) => c.lines.join(' ').split(' ')).join(' ')).toBe(transcript.text);
  });

  it('produces SRT that a parser reads back with speakers and times', () => {
    const srt = toSrt(transcript);
    const parsed = new SrtParser().fromSrt(srt);
    expect(parsed.length).toBe(toCues(transcript.segments).length);
    expect(parsed[0].startTime).toBe('00:00:00,000');
    expect(parsed[0].text.startsWith('Speaker 1: the quick')).toBe(true);
    expect(parsed.at(-1)!.text).toBe('Speaker 2: Short <tag> & reply.');
    expect(parsed.at(-1)!.endTime).toBe('00:00:22,500');
  });

  it('produces WebVTT that a strict parser accepts without errors', () => {
    const vtt = toVtt(transcript);
    const tree = new WebVTTParser().parse(vtt, 'subtitles');
    expect(tree.errors).toEqual([]);
    expect(tree.cues.length).toBe(toCues(transcript.segments).length);
    expect(tree.cues[0].startTime).toBe(0);
    expect(tree.cues.at(-1).endTime).toBeCloseTo(22.5);
    expect(vtt).toContain('<v Speaker 2>Short &lt;tag&gt; &amp; reply.');
  });

  it('writes plain text with speaker labels only when diarized', () => {
    expect(toTxt(transcript)).toBe(`Speaker 1: ${long}\nSpeaker 2: Short <tag> & reply.\n`);
    const plain = { ...transcript, segments: transcript.segments.map((s) => ({ ...s, speaker: null })) };
    expect(toTxt(plain)).toBe(transcript.text + '\n');
  });
});
