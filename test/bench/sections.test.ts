/** bench/lib/sections.ts: bench:asr's --sections parsing and per-part peak marks. */
import { describe, expect, it } from 'vitest';
import { ASR_SECTIONS, PeakMarks, parseSections } from '../../bench/lib/sections.ts';

describe('parseSections', () => {
  it('takes a comma-separated list of known sections, in any order, duplicates once', () => {
    expect([...parseSections('6')]).toEqual(['6']);
    expect([...parseSections('6b, 1,6b')].sort()).toEqual(['1', '6b']);
    expect([...parseSections(ASR_SECTIONS.join(','))]).toEqual([...ASR_SECTIONS]);
  });

  it('refuses unknown names and an empty list', () => {
    expect(() => parseSections('7')).toThrow(/unknown section "7"/);
    expect(() => parseSections('6,knobs')).toThrow(/unknown section "knobs"/);
    expect(() => parseSections('')).toThrow(/at least one/);
    expect(() => parseSections(' , ')).toThrow(/at least one/);
  });
});

describe('PeakMarks', () => {
  const MB = 2 ** 20;
  it('each mark holds the largest sample since the previous mark, its end value included', () => {
    const p = new PeakMarks();
    p.sample(100 * MB);
    p.sample(300 * MB);
    p.sample(200 * MB);
    expect(p.mark('a', 150 * MB)).toEqual({ part: 'a', peakMb: 300 });
    p.sample(120 * MB);
    expect(p.mark('b', 180 * MB)).toEqual({ part: 'b', peakMb: 180 });
    expect(p.mark('c', 50 * MB)).toEqual({ part: 'c', peakMb: 50 });
    expect(p.marks.map((m) => m.peakMb)).toEqual([300, 180, 50]);
  });

  it('reset drops the samples of an unreported stretch', () => {
    const p = new PeakMarks();
    p.sample(900 * MB);
    p.reset();
    expect(p.mark('after', 10 * MB).peakMb).toBe(10);
  });
});
