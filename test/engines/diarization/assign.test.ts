import { describe, expect, it } from 'vitest';
import { assignSpeakers } from '../../../src/engines/diarization/assign.ts';
import type { SpeakerTurn } from '../../../src/engines/diarization/diarizer.ts';
import type { Segment } from '../../../src/formats/transcript.ts';

const seg = (start: number, end: number, words: Array<[string, number, number]>): Segment => ({
  start,
  end,
  text: words.map((w) => w[0]).join(' '),
  speaker: null,
  confidence: 0.9,
  words: words.map(([word, s, e]) => ({ word, start: s, end: e })),
});

const turns: SpeakerTurn[] = [
  { start: 0, end: 4.1, speaker: 'Speaker 1' },
  { start: 4.3, end: 8, speaker: 'Speaker 2' },
  { start: 8.5, end: 10, speaker: 'Speaker 1' },
];

describe('assignSpeakers', () => {
  it('labels every segment and word by maximum overlap', () => {
    const input = [
      seg(0.2, 3.9, [
        ['Hello', 0.2, 0.8],
        ['there', 0.9, 1.5],
      ]),
      seg(4.4, 7.5, [['Hi', 4.4, 5]]),
    ];
    const r = assignSpeakers(input, turns);
    expect(r.segments.map((s) => s.speaker)).toEqual(['Speaker 1', 'Speaker 2']);
    expect(r.segments.flatMap((s) => s.words.map((w) => w.speaker))).toEqual(['Speaker 1', 'Speaker 1', 'Speaker 2']);
    expect(r.speakers).toEqual(['Speaker 1', 'Speaker 2']);
  });

  it('splits a segment at the speaker change, using word times', () => {
    const input = [
      seg(2, 6, [
        ['so', 2, 2.5],
        ['agreed.', 2.6, 4.0],
        ['What', 4.35, 4.7],
        ['about', 4.8, 5.2],
        ['it?', 5.3, 6],
      ]),
    ];
    const r = assignSpeakers(input, turns);
    expect(r.segments).toHaveLength(2);
    expect(r.segments[0]).toMatchObject({ start: 2, end: 4.0, text: 'so agreed.', speaker: 'Speaker 1' });
    expect(r.segments[1]).toMatchObject({ start: 4.35, end: 6, text: 'What about it?', speaker: 'Speaker 2' });
    expect(r.segments[1].words.every((w) => w.speaker === 'Speaker 2')).toBe(true);
    expect(r.segments[0].confidence).toBe(0.9);
  });

  it('A-B-A inside one segment gives three pieces; speakers in order of first appearance', () => {
    const input = [
      seg(3, 9.5, [
        ['one', 3, 3.5],
        ['two', 5, 5.5],
        ['three', 8.6, 9.5],
      ]),
    ];
    const r = assignSpeakers(input, [
      { start: 0, end: 4, speaker: 'Speaker 2' },
      { start: 4, end: 8, speaker: 'Speaker 1' },
      { start: 8, end: 10, speaker: 'Speaker 2' },
    ]);
    expect(r.segments.map((s) => [s.text, s.speaker])).toEqual([
      ['one', 'Speaker 2'],
      ['two', 'Speaker 1'],
      ['three', 'Speaker 2'],
    ]);
    expect(r.speakers).toEqual(['Speaker 2', 'Speaker 1']);
  });

  it('segments without words, words in gaps (nearest turn), no turns at all; input untouched', () => {
    const input = [seg(8.1, 8.4, [['hm', 8.15, 8.3]]), { ...seg(4.5, 5, []), text: 'no words' }];
    const copy = structuredClone(input);
    const r = assignSpeakers(input, turns);
    expect(r.segments.map((s) => s.speaker)).toEqual(['Speaker 2', 'Speaker 2']);
    expect(input).toEqual(copy);
    const none = assignSpeakers(input, []);
    expect(none.speakers).toEqual([]);
    expect(none.segments.map((s) => s.speaker)).toEqual([null, null]);
  });
});
