/** The live-capacity targets of the load test: a run counts only when every target holds. */
import { describe, expect, it } from 'vitest';
import { LIVE_TARGETS, largestMeetingLiveTargets, type Pcts, type RunResult } from '../../loadtest/stream-load.ts';

const pcts = (p50: number | null, p95: number | null): Pcts => ({ n: 10, p50, p95, p99: p95, max: p95 });
const run = (streams: number, o: Partial<RunResult> & { final?: Pcts; firstPartial?: Pcts } = {}): RunResult =>
  ({ streams, errorCount: 0, missingFinals: 0, final: pcts(0.7, 1.0), firstPartial: pcts(0.2, 0.5), ...o }) as RunResult;

describe('largestMeetingLiveTargets', () => {
  it('takes the largest N whose final p50/p95 and first-partial p50 are all within the targets', () => {
    expect(LIVE_TARGETS).toEqual({ finalP50S: 0.8, finalP95S: 1.2, firstPartialP50S: 0.3 });
    expect(largestMeetingLiveTargets([run(1), run(4), run(8)])).toBe(8);
    expect(largestMeetingLiveTargets([run(1), run(4), run(8, { final: pcts(0.81, 1.0) })])).toBe(4);
    expect(largestMeetingLiveTargets([run(1), run(4, { final: pcts(0.5, 1.21) }), run(8, { firstPartial: pcts(0.31, 0.4) })])).toBe(1);
  });

  it('a run with a missing final, an error or no measurement does not count', () => {
    expect(largestMeetingLiveTargets([run(1, { missingFinals: 1 }), run(2, { errorCount: 1 }), run(4, { final: pcts(null, null) })])).toBeNull();
  });
});
