/** The fraction of a file transcription that is done (pure: no model). */
import { describe, expect, it } from 'vitest';
import { TranscriptionProgress } from '../../src/pipeline/transcription-progress.ts';

describe('TranscriptionProgress', () => {
  it('counts silence passed, finished pieces and the decoded part of pieces in flight', () => {
    const p = new TranscriptionProgress(100);
    expect(p.fraction()).toBe(0);
    p.start(0, 10, 30); // 10 s of silence before it, 20 s in flight
    expect(p.fraction()).toBeCloseTo(0.1, 9);
    p.start(1, 40, 60); // 10 s more silence (30..40)
    expect(p.fraction()).toBeCloseTo(0.2, 9);
    p.advance(0, 5);
    p.advance(1, 15);
    expect(p.coveredSeconds).toBeCloseTo(40, 9);
    expect(p.fraction()).toBeCloseTo(0.4, 9);
    p.finish(0);
    expect(p.fraction()).toBeCloseTo(0.55, 9);
    p.finish(1);
    expect(p.fraction()).toBeCloseTo(0.6, 9);
  });

  it('never goes backwards: a restarted window, a position past the piece, a growing total', () => {
    const p = new TranscriptionProgress(40);
    p.start(0, 0, 20);
    p.advance(0, 10);
    expect(p.fraction()).toBeCloseTo(0.25, 9);
    p.advance(0, 2); // a temperature fallback decodes the window again from its start
    expect(p.coveredSeconds).toBeCloseTo(10, 9);
    p.advance(0, 500); // clamped to the piece
    expect(p.coveredSeconds).toBeCloseTo(20, 9);
    expect(p.fraction()).toBeCloseTo(0.5, 9);
    p.setTotal(80); // the file decodes longer than it declared: 20/80 < 0.5, the fraction stays
    expect(p.totalSeconds).toBe(80);
    expect(p.fraction()).toBeCloseTo(0.5, 9);
    p.setTotal(10); // the total never shrinks
    expect(p.totalSeconds).toBe(80);
    p.start(1, 20, 60);
    p.finish(1);
    p.finish(0);
    expect(p.fraction()).toBeCloseTo(0.75, 9);
  });

  it('ignores unknown pieces, stays within [0, 1], and is 0 without a total', () => {
    const none = new TranscriptionProgress(0);
    none.start(0, 0, 5);
    expect(none.fraction()).toBe(0);
    none.setTotal(5);
    none.finish(0);
    expect(none.fraction()).toBe(1);
    const p = new TranscriptionProgress(10);
    p.advance(7, 3);
    p.finish(7);
    expect(p.fraction()).toBe(0);
    p.start(0, 0, 30); // more audio than declared, total not yet updated
    p.finish(0);
    expect(p.fraction()).toBe(1);
  });
});
