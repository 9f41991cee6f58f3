import { describe, expect, it } from 'vitest';
import { ThreadShare } from '../../src/pipeline/thread-share.ts';

describe('ThreadShare', () => {
  it('charges a batch that runs alone its whole time', () => {
    const share = new ThreadShare();
    const t = share.begin(1000);
    expect(share.charged(t, 1400)).toBe(400);
    expect(share.end(t, 1500)).toBe(500);
    expect(share.running).toBe(0);
  });

  it('splits an overlap equally, so the charges add up to the time any batch ran', () => {
    const share = new ThreadShare();
    // a: 0 → 1000, b: 500 → 1500, c: 600 → 700 (three at once for 100 ms)
    const a = share.begin(0);
    const b = share.begin(500);
    expect(share.charged(a, 600)).toBe(550);
    expect(share.charged(b, 600)).toBe(50);
    const c = share.begin(600);
    expect(share.end(c, 700)).toBeCloseTo(100 / 3, 12);
    expect(share.end(a, 1000)).toBeCloseTo(500 + 100 / 2 + 100 / 3 + 300 / 2, 12);
    expect(share.end(b, 1500)).toBeCloseTo(100 / 2 + 100 / 3 + 300 / 2 + 500, 12);
    const total = share.charged(a, 2000) + share.charged(b, 2000) + share.charged(c, 2000);
    expect(total).toBeCloseTo(1500, 9); // the union of the three intervals, not their sum (2100)
  });

  it('charges nothing for idle time between batches, nor twice for a ticket ended twice', () => {
    const share = new ThreadShare();
    const a = share.begin(0);
    expect(share.end(a, 100)).toBe(100);
    expect(share.end(a, 900)).toBe(100);
    const b = share.begin(5000);
    expect(share.charged(b, 5200)).toBe(200);
    expect(share.charged(a, 5200)).toBe(100);
  });

  it('charges nothing for a clock that steps back', () => {
    const share = new ThreadShare();
    const a = share.begin(1000);
    expect(share.charged(a, 1200)).toBe(200);
    expect(share.charged(a, 900)).toBe(200);
    expect(share.end(a, 1300)).toBe(300);
  });
});
