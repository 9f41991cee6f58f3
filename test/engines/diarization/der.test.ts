import { describe, expect, it } from 'vitest';
import { diarizationErrorRate, maxWeightAssignment, parseRttm, toRttm } from '../../../src/engines/diarization/der.ts';

const rttm = (rows: Array<[number, number, string]>) => rows.map(([s, d, n]) => `SPEAKER f 1 ${s} ${d} <NA> <NA> ${n} <NA> <NA>`).join('\n');
const REF = parseRttm(
  rttm([
    [0, 10, 'A'],
    [10, 10, 'B'],
    [20, 10, 'A'],
  ]),
);

describe('RTTM', () => {
  it('parses and writes SPEAKER lines, filters by file', () => {
    expect(REF).toEqual([
      { start: 0, end: 10, speaker: 'A' },
      { start: 10, end: 20, speaker: 'B' },
      { start: 20, end: 30, speaker: 'A' },
    ]);
    expect(parseRttm(toRttm(REF, 'x'), 'x')).toEqual(REF);
    expect(parseRttm(toRttm(REF, 'x'), 'y')).toEqual([]);
    expect(parseRttm(';; comment\n\nSPKR-INFO f 1 <NA> <NA> <NA> unknown A <NA> <NA>\n')).toEqual([]);
  });
});

describe('DER (collar = ±c around reference boundaries)', () => {
  it('perfect hypothesis with other names → 0, mapping found', () => {
    const hyp = REF.map((t) => ({ ...t, speaker: t.speaker === 'A' ? 'spk2' : 'spk1' }));
    const r = diarizationErrorRate(REF, hyp, { collar: 0 });
    expect(r.der).toBe(0);
    expect(r.mapping).toEqual({ A: 'spk2', B: 'spk1' });
    expect(r.total).toBe(30);
  });

  it('missed speech, false alarm and confusion, no collar', () => {
    const hyp = parseRttm(
      rttm([
        [0, 8, 'x'],
        [10, 10, 'y'],
        [20, 5, 'y'],
        [25, 5, 'x'],
        [30, 3, 'x'],
      ]),
    );
    const r = diarizationErrorRate(REF, hyp, { collar: 0 });
    expect(r.missed).toBeCloseTo(2); // 8-10 nobody
    expect(r.falseAlarm).toBeCloseTo(3); // 30-33
    expect(r.confusion).toBeCloseTo(5); // 20-25 labelled y (= B) while A speaks
    expect(r.der).toBeCloseTo(10 / 30);
  });

  it('the collar forgives boundary errors up to ±0.25 s', () => {
    const hyp = parseRttm(
      rttm([
        [0.2, 10, 'x'],
        [10.2, 9.6, 'y'],
        [19.8, 10.1, 'x'],
      ]),
    );
    expect(diarizationErrorRate(REF, hyp).der).toBe(0);
    expect(diarizationErrorRate(REF, hyp, { collar: 0 }).der).toBeGreaterThan(0);
    const r = diarizationErrorRate(REF, hyp, { collar: 0 });
    // 0-0.2 missed, 10-10.2 A→x continues into B: confusion, 19.8-20 B labelled x: confusion, 29.9-30 missed
    expect(r.missed).toBeCloseTo(0.3);
    expect(r.confusion).toBeCloseTo(0.4);
    // unscored: [0, 0.25], [9.75, 10.25], [19.75, 20.25], [29.75, 30] → 30 - 1.5
    expect(diarizationErrorRate(REF, REF).total).toBeCloseTo(28.5);
  });

  it('overlapped reference speech counts every speaker; one hypothesis speaker for two reference speakers', () => {
    const ref = parseRttm(
      rttm([
        [0, 10, 'A'],
        [5, 10, 'B'],
      ]),
    );
    const hyp = parseRttm(rttm([[0, 15, 'x']]));
    const r = diarizationErrorRate(ref, hyp, { collar: 0 });
    expect(r.total).toBeCloseTo(20);
    expect(r.missed).toBeCloseTo(5); // overlap 5-10: 2 ref, 1 hyp
    expect(r.confusion).toBeCloseTo(5); // 10-15 B labelled x (x ↔ A)
    expect(r.der).toBeCloseTo(0.5);
  });

  it('more hypothesis speakers than reference, empty inputs', () => {
    const hyp = parseRttm(
      rttm([
        [0, 10, 'x'],
        [10, 5, 'y'],
        [15, 5, 'z'],
        [20, 10, 'x'],
      ]),
    );
    const r = diarizationErrorRate(REF, hyp, { collar: 0 });
    expect(r.confusion).toBeCloseTo(5);
    expect(r.der).toBeCloseTo(5 / 30);
    expect(diarizationErrorRate(REF, [], { collar: 0 }).der).toBe(1);
    expect(diarizationErrorRate([], [], {}).der).toBe(0);
  });

  it('Hungarian assignment is optimal (vs brute force on random 4x5 matrices)', () => {
    let seed = 3;
    const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 10;
    const perms = (n: number, k: number): number[][] =>
      k === 0
        ? [[]]
        : perms(n, k - 1).flatMap((p) =>
            Array.from({ length: n }, (_, j) => j)
              .filter((j) => !p.includes(j))
              .map((j) => [...p, j]),
          );
    for (let trial = 0; trial < 20; trial++) {
      const w = Array.from({ length: 4 }, () => Array.from({ length: 5 }, rand));
      const a = maxWeightAssignment(w);
      const got = a.reduce((s, j, i) => s + w[i][j], 0);
      const best = Math.max(...perms(5, 4).map((p) => p.reduce((s, j, i) => s + w[i][j], 0)));
      expect(got).toBeCloseTo(best, 9);
    }
  });
});
