import { describe, expect, it } from 'vitest';
import { RecentWindow } from '../../src/pipeline/recent-window.ts';
import { liveLagMs } from '../../src/pipeline/stream-admission.ts';

describe('RecentWindow', () => {
  it('quantiles over the values of the last windowMs only', () => {
    const w = new RecentWindow(1000);
    expect(w.quantile(0.9, 0)).toBe(0);
    for (let i = 1; i <= 10; i++) w.add(i * 100, i * 10); // values 100…1000 at t = 10…100
    expect(w.quantile(0.9, 100)).toBe(1000);
    expect(w.quantile(0.5, 100)).toBe(600);
    expect(w.quantile(0, 100)).toBe(100);
    expect(w.quantile(0.9, 1055)).toBe(1000); // t ≤ 55 aged out: 600…1000 left
    expect(w.size).toBe(5);
    expect(w.quantile(0.9, 2000)).toBe(0);
    expect(w.size).toBe(0);
  });
});

describe('liveLagMs', () => {
  it('is the longer of the queue wait of finals and the p90 lateness of finals at their streams', () => {
    const model = (wait: number, lag: number) => ({ scheduler: { finalWaitMs: () => wait }, liveLag: { p90Ms: () => lag } });
    expect(liveLagMs(model(1200, 300))).toBe(1200);
    expect(liveLagMs(model(100, 4500))).toBe(4500);
  });
});
