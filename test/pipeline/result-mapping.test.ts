/**
 * The one decode → result mapping (formats/transcript.ts): rounding, confidence, word offsets,
 * what is dropped, and how a stream final merges a decode's segments.
 */
import { describe, expect, it } from 'vitest';
import { mergeSegments, segmentConfidence, toSegment, toSegments, transcriptText, type DecodedSegment, type Segment } from '../../src/formats/transcript.ts';

const seg = (over: Partial<DecodedSegment> = {}): DecodedSegment => ({ start: 0, end: 1, text: ' Hello there.', avgLogprob: Math.log(0.9), ...over });

describe('toSegments: engine decode + offset → result segments', () => {
  it('shifts segment and word times by the offset and rounds them to 0.01 s', () => {
    const offset = 1.23456; // a sample-exact chunk start (19753 / 16000 s)
    const [s] = toSegments(
      {
        segments: [
          seg({
            start: 0.5,
            end: 1.476,
            words: [
              { word: ' Hello', start: 0.5, end: 0.86 },
              { word: ' there.', start: 0.86, end: 1.48 },
            ],
          }),
        ],
      },
      offset,
    );
    expect(s.start).toBe(1.73); // 1.73456
    expect(s.end).toBe(2.71); // 2.71056
    expect(s.words).toEqual([
      { word: 'Hello', start: 1.73, end: 2.09 }, // 2.09456
      { word: 'there.', start: 2.09, end: 2.71 }, // 2.71456
    ]);
    expect(s.text).toBe('Hello there.');
    expect(s.speaker).toBeNull();
  });

  it('rounds halves up at 0.01 s (not 0.001 s as streams did)', () => {
    const [s] = toSegments({ segments: [seg({ start: 0.005, end: 0.536 })] }, 0);
    expect([s.start, s.end]).toEqual([0.01, 0.54]);
  });

  it('gives each segment exp(avgLogprob), clamped to [0, 1] and rounded to 0.001', () => {
    const out = toSegments(
      {
        segments: [seg({ text: 'a', avgLogprob: -0.10269582663774311 }), seg({ text: 'b', avgLogprob: -2 }), seg({ text: 'c', avgLogprob: 0.3 }), seg({ text: 'd', avgLogprob: -Infinity })],
      },
      0,
    );
    expect(out.map((s) => s.confidence)).toEqual([0.902, 0.135, 1, 0]);
    expect(segmentConfidence(Math.log(0.95))).toBe(0.95);
  });

  it('drops segments without text and words that are empty once trimmed', () => {
    const out = toSegments(
      {
        segments: [
          seg({ text: '   ' }),
          seg({
            text: ' kept',
            words: [
              { word: ' ', start: 0, end: 0.1 },
              { word: ' kept', start: 0.1, end: 0.5 },
              { word: '', start: 0.5, end: 0.6 },
            ],
          }),
        ],
      },
      2,
    );
    expect(out).toHaveLength(1);
    expect(out[0].words).toEqual([{ word: 'kept', start: 2.1, end: 2.5 }]);
    expect(toSegment(seg({ text: '' }), 0)).toBeNull();
  });

  it('cuts a segment end that overshoots the audio at `until`, and only then', () => {
    expect(toSegments({ segments: [seg({ start: 1, end: 9 })] }, 10, 12.5)[0]).toMatchObject({ start: 11, end: 12.5 });
    expect(toSegments({ segments: [seg({ start: 1, end: 2 })] }, 10, 12.5)[0]).toMatchObject({ start: 11, end: 12 });
  });

  it('joins segment texts with one space', () => {
    expect(transcriptText([{ text: 'One.' }, { text: 'Two.' }])).toBe('One. Two.');
  });
});

describe('mergeSegments: a stream final over several decode segments', () => {
  const a: Segment = { start: 1.2, end: 1.5, text: 'Hi.', speaker: null, confidence: 0.2, words: [{ word: 'Hi.', start: 1.2, end: 1.5 }] };
  const b: Segment = { start: 1.6, end: 3, text: 'How are you?', speaker: null, confidence: 0.75, words: [{ word: 'How', start: 1.6, end: 1.9 }] };

  it('spans the utterance, keeps text and words in order, weights confidence by text length', () => {
    const m = mergeSegments([a, b], { start: 1.0123, end: 3.4567 });
    expect(m).toEqual({
      start: 1.01,
      end: 3.46,
      text: 'Hi. How are you?',
      speaker: null,
      // (0.2 × 3 + 0.75 × 12) / 15
      confidence: 0.64,
      words: [...a.words, ...b.words],
    });
  });

  it('segments of one window (one confidence) give the final that very confidence', () => {
    const c = 0.123;
    expect(
      mergeSegments(
        [
          { ...a, confidence: c },
          { ...b, confidence: c },
          { ...b, text: 'x', confidence: c },
        ],
        { start: 0, end: 4 },
      ).confidence,
    ).toBe(c);
    expect(mergeSegments([a], { start: 0, end: 4 }).confidence).toBe(a.confidence);
  });
});
