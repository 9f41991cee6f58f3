/**
 * The embedded baseline (no weights) end to end on espeak-ng dialogues with known turns.
 * Tolerance: every reference turn boundary is found within 0.25 s (the DER collar), DER 0 with collar.
 */
import { describe, expect, it } from 'vitest';
import { createDiarizer } from '../../../src/engines/diarization/diarizer.ts';
import { diarizationErrorRate } from '../../../src/engines/diarization/der.ts';
import { makeDialogue, SENTENCES } from './dialogue.ts';

const TOL_S = 0.25;

function alternating(voices: string[][], n: number) {
  return makeDialogue(Array.from({ length: n }, (_, i) => ({ voice: voices[i % voices.length], text: SENTENCES[i], speaker: `S${i % voices.length}` })));
}

describe('baseline-mfcc diarizer on espeak-ng voices', () => {
  it('two alternating voices (en+m3 / en+f4): 2 speakers, correct turns (auto and speakers=2)', async () => {
    const d = await createDiarizer({});
    expect(d.method).toBe('baseline-mfcc');
    const dl = alternating(
      [
        ['-v', 'en+m3'],
        ['-v', 'en+f4'],
      ],
      6,
    );
    for (const speakers of [0, 2]) {
      const turns = await d.diarize(dl.samples, { speakers });
      expect(new Set(turns.map((t) => t.speaker))).toEqual(new Set(['Speaker 1', 'Speaker 2']));
      expect(turns).toHaveLength(dl.reference.length);
      turns.forEach((t, i) => {
        expect(t.speaker).toBe(i % 2 === 0 ? 'Speaker 1' : 'Speaker 2');
        expect(Math.abs(t.start - dl.reference[i].start)).toBeLessThanOrEqual(TOL_S);
        expect(Math.abs(t.end - dl.reference[i].end)).toBeLessThanOrEqual(TOL_S);
      });
      expect(diarizationErrorRate(dl.reference, turns).der).toBe(0);
    }
    await d.close();
  });

  it('same base voice at two pitches (en+m3 -p 30 / -p 70) and a single voice', async () => {
    const d = await createDiarizer({});
    const two = alternating(
      [
        ['-v', 'en+m3', '-p', '30'],
        ['-v', 'en+m3', '-p', '70'],
      ],
      4,
    );
    const turns = await d.diarize(two.samples);
    expect(new Set(turns.map((t) => t.speaker)).size).toBe(2);
    expect(diarizationErrorRate(two.reference, turns).der).toBeLessThan(0.05);
    const one = alternating([['-v', 'en-gb-scotland']], 4);
    const solo = await d.diarize(one.samples);
    expect(new Set(solo.map((t) => t.speaker))).toEqual(new Set(['Speaker 1']));
  });

  it('uses the caller speech regions when given; empty/short input gives no turns', async () => {
    const d = await createDiarizer({});
    const dl = alternating(
      [
        ['-v', 'en+m3'],
        ['-v', 'en+f4'],
      ],
      2,
    );
    const turns = await d.diarize(dl.samples, { speech: dl.reference.map((r) => ({ start: r.start, end: r.end })) });
    expect(turns.map((t) => t.speaker)).toEqual(['Speaker 1', 'Speaker 2']);
    expect(Math.abs(turns[0].start - dl.reference[0].start)).toBeLessThanOrEqual(0.02);
    expect(await d.diarize(new Float32Array(16000))).toEqual([]);
    expect(await d.diarize(new Float32Array(100))).toEqual([]);
  });
});
