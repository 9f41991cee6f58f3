import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/observability/metrics.ts';
import type { SchedulerLoad } from '../../src/pipeline/batch-scheduler.ts';
import { FORECAST_MIN, StreamAdmission, forecastLoad, loadCapacity } from '../../src/pipeline/stream-admission.ts';

/** A measured load over a 30 s window (ms of busy time and requests per priority). */
function load(busy: Partial<Record<'final' | 'file' | 'partial', number>>, requests: Partial<Record<'final' | 'file' | 'partial', number>> = {}, windowMs = 30_000): SchedulerLoad {
  const busyMs = { final: 0, file: 0, partial: 0, ...busy };
  return {
    windowMs,
    busyMs,
    requests: { final: 0, file: 0, partial: 0, ...requests },
    busyFraction: (busyMs.final + busyMs.file + busyMs.partial) / windowMs,
    finalBusyFraction: busyMs.final / windowMs,
    fileBusyFraction: busyMs.file / windowMs,
    partialBusyFraction: busyMs.partial / windowMs,
  };
}
const OLD = 60_000;

describe('forecastLoad', () => {
  it('abstains with no stream, only young streams, or too little live model time', () => {
    expect(forecastLoad(load({ final: 20_000 }), [])).toEqual({ abstain: true, why: 'no_streams' });
    expect(forecastLoad(load({ final: 20_000 }), [FORECAST_MIN.streamAgeMs - 1, 2000])).toEqual({ abstain: true, why: 'young_streams' });
    expect(forecastLoad(load({ final: FORECAST_MIN.busyMs - 1, file: 29_000 }), [OLD])).toEqual({ abstain: true, why: 'little_data' });
    expect(forecastLoad(load({}, {}, 0), [OLD])).toEqual({ abstain: true, why: 'little_data' });
    expect(forecastLoad(load({ final: FORECAST_MIN.busyMs }), [OLD]).abstain).toBe(false);
  });

  it('finals count whole: with every stream older than the window, required × (n+1)/n', () => {
    // 4 streams, finals 12 s of 30 s = 0.4 → one stream 0.1 → five 0.5.
    const f = forecastLoad(load({ final: 12_000 }, { final: 40 }), [OLD, OLD, OLD, OLD]);
    expect(f).toEqual({ abstain: false, streams: 4, current: 0.4, perStream: 0.1, predicted: 0.5 });
  });

  it('file chunks are not a stream’s load', () => {
    const f = forecastLoad(load({ final: 12_000, file: 15_000 }, { final: 40, file: 20 }), [OLD, OLD, OLD, OLD]);
    expect(f).toMatchObject({ current: 0.4, predicted: 0.5 });
  });

  it('partials count at the rate they were served (widening their interval comes too late to make room)', () => {
    const f = forecastLoad(load({ final: 3000, partial: 6000, file: 9000 }, { final: 10, partial: 60, file: 3 }), [OLD, OLD]);
    expect(f).toMatchObject({ abstain: false, current: 9000 / 30_000, predicted: (9000 / 30_000) * 1.5 });
  });

  it('a stream younger than the window counts for the part it was there', () => {
    // One old stream and one of 15 s: 1.5 streams' worth of load in the window.
    const f = forecastLoad(load({ final: 9000 }), [OLD, 15_000]);
    expect(f).toMatchObject({ abstain: false, streams: 2, current: 0.3 });
    if (f.abstain) throw new Error('unreachable');
    expect(f.perStream).toBeCloseTo(0.2, 12);
    expect(f.predicted).toBeCloseTo(0.6, 12);
  });
});

describe('loadCapacity', () => {
  const over = forecastLoad(load({ final: 12_000 }), [OLD]); // 0.4 now, 0.8 with one more
  it('refuses the stream that would take the load past the limit, with the model, the load and the limit', () => {
    expect(loadCapacity('whisper-tiny', over, { maxLoad: 0.75, retryAfterS: 7 })).toEqual({
      ok: false,
      reason: 'capacity_forecast',
      retryAfterS: 7,
      message: "Server at capacity: one more stream would take model 'whisper-tiny' to 80 % of its time (1 stream uses 40 %; limit 75 %). Retry in 7 s or connect to another instance.",
    });
  });
  it('admits at the limit, when off, and when the forecast abstains', () => {
    expect(loadCapacity('m', over, { maxLoad: 0.8 })).toEqual({ ok: true });
    expect(loadCapacity('m', over, { maxLoad: 0 })).toEqual({ ok: true });
    expect(loadCapacity('m', { abstain: true, why: 'no_streams' }, { maxLoad: 0.1 })).toEqual({ ok: true });
  });
});

describe('StreamAdmission with the forecast', () => {
  const model = (lagMs: number, l: SchedulerLoad) => ({ id: 'm', scheduler: { finalWaitMs: () => lagMs, load: () => l }, liveLag: { p90Ms: () => 0 } });
  const opts = { maxFinalWaitMs: 3000, rampIntervalMs: 5000, maxLoad: 0.75 };

  it('refuses by forecast while the lag is still under its limit; the lag rule refuses first when over it', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const adm = new StreamAdmission(opts, { metrics });
    expect(adm.admit(model(0, load({ final: 12_000 })), 'websocket', 0, [OLD])).toMatchObject({ ok: false, reason: 'capacity_forecast' });
    expect(adm.admit(model(0, load({ final: 6000 })), 'websocket', 0, [OLD])).toEqual({ ok: true });
    expect(adm.admit(model(4000, load({ final: 12_000 })), 'websocket', 0, [OLD])).toMatchObject({ ok: false, reason: 'capacity' });
    // Streams too young: the forecast abstains, the lag rule alone decides.
    expect(adm.admit(model(0, load({ final: 12_000 })), 'websocket', 0, [1000])).toEqual({ ok: true });
    const text = (await metrics.render()).body;
    expect(text).toContain('stt_streams_refused_total{transport="websocket",reason="capacity_forecast"} 1');
    expect(text).toContain('stt_streams_refused_total{transport="websocket",reason="capacity"} 1');
  });

  it('maxLoad 0 (or a model without load()) leaves the lag rule alone', () => {
    const adm = new StreamAdmission({ ...opts, maxLoad: 0 });
    expect(adm.admit(model(0, load({ final: 29_000 })), 'websocket', 0, [OLD])).toEqual({ ok: true });
    const noLoad = { id: 'x', scheduler: { finalWaitMs: () => 0 }, liveLag: { p90Ms: () => 0 } };
    expect(new StreamAdmission(opts).admit(noLoad, 'websocket', 0, [OLD])).toEqual({ ok: true });
  });
});
