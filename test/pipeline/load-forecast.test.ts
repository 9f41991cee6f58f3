import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/observability/metrics.ts';
import type { SchedulerLoad } from '../../src/pipeline/batch-scheduler.ts';
import { type AdmissionModel, FORECAST_MIN, StreamAdmission, forecastLoad, loadCapacity } from '../../src/pipeline/stream-admission.ts';

/** A measured load over a 30 s window (ms of busy time and requests per priority). */
function load(busy: Partial<Record<'final' | 'file' | 'partial', number>>, requests: Partial<Record<'final' | 'file' | 'partial', number>> = {}, windowMs = 30_000): SchedulerLoad {
  const busyMs = { final: 0, file: 0, partial: 0, ...busy };
  return {
    windowMs,
    busyMs,
    // a model busy with finals has served some (FORECAST_MIN.finals) unless a test says otherwise
    requests: { final: busyMs.final > 0 ? FORECAST_MIN.finals : 0, file: 0, partial: 0, ...requests },
    busyFraction: (busyMs.final + busyMs.file + busyMs.partial) / windowMs,
    finalBusyFraction: busyMs.final / windowMs,
    fileBusyFraction: busyMs.file / windowMs,
    partialBusyFraction: busyMs.partial / windowMs,
  };
}
const OLD = 60_000;

/** The forecast of a server with one model: every stream decodes partials and finals on it. */
function forecastLoadOne(l: SchedulerLoad, agesMs: number[]) {
  const m = 'm';
  return forecastLoad(
    new Map([[m, l]]),
    agesMs.map((ageMs) => ({ partial: m, final: m, ageMs })),
    { partial: m, final: m },
  );
}

describe('forecastLoad, one model', () => {
  it('abstains with no stream, only young streams, or too little live model time', () => {
    expect(forecastLoadOne(load({ final: 20_000 }), [])).toEqual({ abstain: true, why: 'no_streams' });
    expect(forecastLoadOne(load({ final: 20_000 }), [FORECAST_MIN.streamAgeMs - 1, 2000])).toEqual({ abstain: true, why: 'young_streams' });
    expect(forecastLoadOne(load({ final: FORECAST_MIN.busyMs - 1, file: 29_000 }), [OLD])).toEqual({ abstain: true, why: 'little_data' });
    expect(forecastLoadOne(load({}, {}, 0), [OLD])).toEqual({ abstain: true, why: 'little_data' });
    expect(forecastLoadOne(load({ final: FORECAST_MIN.busyMs }), [OLD]).abstain).toBe(false);
  });

  it('abstains while no final has been served: what finals cost is not known yet', () => {
    // Long first utterances: 5 s of partials, no final yet. Partials alone would say one stream costs 0.05.
    expect(forecastLoadOne(load({ partial: 3000 }, { final: 0, partial: 20 }), [5000, 5000])).toEqual({ abstain: true, why: 'little_data' });
    // One final served: the final cost counts, partials need none (a stream may ask for none).
    const f = forecastLoadOne(load({ final: 600 }, { final: FORECAST_MIN.finals, partial: 0 }), [5000, 5000]);
    expect(f.abstain).toBe(false);
  });

  it('finals count whole: with every stream older than the window, required × (n+1)/n', () => {
    // 4 streams, finals 12 s of 30 s = 0.4 → one stream 0.1 → five 0.5.
    const f = forecastLoadOne(load({ final: 12_000 }, { final: 40 }), [OLD, OLD, OLD, OLD]);
    expect(f).toEqual({ abstain: false, streams: 4, current: 0.4, perStream: 0.1, predicted: 0.5, remembered: false });
  });

  it('file chunks are not a stream’s load', () => {
    const f = forecastLoadOne(load({ final: 12_000, file: 15_000 }, { final: 40, file: 20 }), [OLD, OLD, OLD, OLD]);
    expect(f).toMatchObject({ current: 0.4, predicted: 0.5 });
  });

  it('partials count at the rate they were served (widening their interval comes too late to make room)', () => {
    const f = forecastLoadOne(load({ final: 3000, partial: 6000, file: 9000 }, { final: 10, partial: 60, file: 3 }), [OLD, OLD]);
    if (f.abstain) throw new Error('abstained');
    expect(f.current).toBeCloseTo(9000 / 30_000, 12);
    expect(f.predicted).toBeCloseTo((9000 / 30_000) * 1.5, 12);
  });

  it('a stream younger than the window counts for the part it was there', () => {
    // One old stream and one of 15 s: 1.5 streams' worth of load in the window.
    const f = forecastLoadOne(load({ final: 9000 }), [OLD, 15_000]);
    expect(f).toMatchObject({ abstain: false, streams: 2, current: 0.3 });
    if (f.abstain) throw new Error('unreachable');
    expect(f.perStream).toBeCloseTo(0.2, 12);
    expect(f.predicted).toBeCloseTo(0.6, 12);
  });
});

describe('forecastLoad, streams that ended within the window', () => {
  it('count for the part of the window they were there, not among the streams that go on', () => {
    const m = 'm';
    // 12 s of finals in 30 s by 4 streams, 3 of which just ended: one stream costs 0.1, not 0.4.
    const streams = [{ partial: m, final: m, ageMs: OLD }, ...Array.from({ length: 3 }, () => ({ partial: m, final: m, ageMs: OLD, endedMsAgo: 1 }))];
    const f = forecastLoad(new Map([[m, load({ final: 12_000 })]]), streams, { partial: m, final: m });
    if (f.abstain) throw new Error('abstained');
    expect(f.streams).toBe(1);
    expect(f.perStream).toBeCloseTo(12_000 / 30_000 / (1 + 3 * (29_999 / 30_000)), 12);
    expect(f.predicted).toBeCloseTo(2 * f.perStream, 12);
    // One that ended 15 s ago after 45 s was there for half of the window.
    const half = forecastLoad(
      new Map([[m, load({ final: 9000 })]]),
      [
        { partial: m, final: m, ageMs: OLD },
        { partial: m, final: m, ageMs: 45_000, endedMsAgo: 15_000 },
      ],
      { partial: m, final: m },
    );
    if (half.abstain) throw new Error('abstained');
    expect(half.streams).toBe(1);
    expect(half.predicted).toBeCloseTo(0.4, 12);
    // With none left running, a new stream is alone: no forecast.
    expect(forecastLoad(new Map([[m, load({ final: 12_000 })]]), streams.slice(1), { partial: m, final: m })).toEqual({ abstain: true, why: 'no_streams' });
  });
});

describe('forecastLoad, several models (one inference thread)', () => {
  it('weighs a stream of one model against the streams of every model: their workers take turns', () => {
    // tiny: 4 streams, finals 12 s of 30 (0.1 each); small: 2 streams, finals 9 s of 30 (0.15 each).
    const loads = new Map([
      ['tiny', load({ final: 12_000 })],
      ['small', load({ final: 9000 })],
    ]);
    const streams = [...Array.from({ length: 4 }, () => ({ partial: 'tiny', final: 'tiny', ageMs: OLD })), ...Array.from({ length: 2 }, () => ({ partial: 'small', final: 'small', ageMs: OLD }))];
    const f = forecastLoad(loads, streams, { partial: 'tiny', final: 'tiny' });
    if (f.abstain) throw new Error('abstained');
    expect(f.current).toBeCloseTo(0.7, 12); // tiny alone would forecast 0.5
    expect(f.perStream).toBeCloseTo(0.1, 12);
    expect(f.predicted).toBeCloseTo(0.8, 12);
    expect(f.streams).toBe(6);
    const g = forecastLoad(loads, streams, { partial: 'small', final: 'small' });
    if (g.abstain) throw new Error('abstained');
    expect(g.predicted).toBeCloseTo(0.85, 12);
  });

  it('a two-pass stream costs its partials on one model and its finals on the other', () => {
    // tiny decodes the partials of all 4 streams (4 s) and the finals of the 2 one-pass streams (3 s);
    // small decodes the finals of the 2 two-pass streams (12 s).
    const loads = new Map([
      ['tiny', load({ partial: 4000, final: 3000 })],
      ['small', load({ final: 12_000 })],
    ]);
    const onePass = { partial: 'tiny', final: 'tiny', ageMs: OLD };
    const twoPass = { partial: 'tiny', final: 'small', ageMs: OLD };
    const streams = [onePass, onePass, twoPass, twoPass];
    const partial = 4000 / 30_000 / 4;
    const tinyFinal = 3000 / 30_000 / 2;
    const smallFinal = 12_000 / 30_000 / 2;
    const current = 7000 / 30_000 + 12_000 / 30_000;
    const a = forecastLoad(loads, streams, { partial: 'tiny', final: 'small' });
    if (a.abstain) throw new Error('abstained');
    expect(a.current).toBeCloseTo(current, 12);
    expect(a.perStream).toBeCloseTo(partial + smallFinal, 12);
    expect(a.predicted).toBeCloseTo(current + partial + smallFinal, 12);
    const b = forecastLoad(loads, streams, { partial: 'tiny', final: 'tiny' });
    if (b.abstain) throw new Error('abstained');
    expect(b.predicted).toBeCloseTo(current + partial + tinyFinal, 12);
  });

  it('abstains when a model of the next stream has no stream in that role yet, or only young ones', () => {
    const loads = new Map([
      ['tiny', load({ partial: 4000, final: 9000 })],
      ['small', load({ final: 9000 })],
    ]);
    const tinyOnly = [{ partial: 'tiny', final: 'tiny', ageMs: OLD }];
    expect(forecastLoad(loads, tinyOnly, { partial: 'tiny', final: 'small' })).toEqual({ abstain: true, why: 'no_streams' });
    expect(forecastLoad(loads, tinyOnly, { partial: 'small', final: 'small' })).toEqual({ abstain: true, why: 'no_streams' });
    const youngTwoPass = [...tinyOnly, { partial: 'tiny', final: 'small', ageMs: FORECAST_MIN.streamAgeMs - 1 }];
    expect(forecastLoad(loads, youngTwoPass, { partial: 'tiny', final: 'small' })).toEqual({ abstain: true, why: 'young_streams' });
    expect(forecastLoad(loads, youngTwoPass, { partial: 'tiny', final: 'tiny' }).abstain).toBe(false);
  });
});

describe('forecastLoad, remembered costs', () => {
  it('a cost measured on too little is replaced by the one remembered from an earlier window', () => {
    const loads = new Map([['tiny', load({ final: 1000 })]]);
    // A burst: 6 streams of 3 s, 1 s of finals so far. Alone this says nothing (young streams).
    const burst = Array.from({ length: 6 }, () => ({ partial: 'tiny', final: 'tiny', ageMs: 3000 }));
    expect(forecastLoad(loads, burst, { partial: 'tiny', final: 'tiny' })).toEqual({ abstain: true, why: 'young_streams' });
    // Earlier, one stream cost 0.02 of the time in partials and 0.1 in finals: 7 streams → 0.84.
    const remembered = new Map([['tiny', { partial: 0.02, final: 0.1 }]]);
    const f = forecastLoad(loads, burst, { partial: 'tiny', final: 'tiny' }, remembered);
    if (f.abstain) throw new Error('abstained');
    expect(f).toMatchObject({ streams: 6, remembered: true });
    expect(f.perStream).toBeCloseTo(0.12, 12);
    expect(f.predicted).toBeCloseTo(0.84, 12);
    // A trusted measurement wins over the memory.
    const old = Array.from({ length: 4 }, () => ({ partial: 'tiny', final: 'tiny', ageMs: OLD }));
    const g = forecastLoad(new Map([['tiny', load({ final: 12_000 })]]), old, { partial: 'tiny', final: 'tiny' }, remembered);
    expect(g).toMatchObject({ abstain: false, predicted: 0.5, remembered: false });
    // Still never with no live stream at all: a lone stream is not refused.
    expect(forecastLoad(loads, [], { partial: 'tiny', final: 'tiny' }, remembered)).toEqual({ abstain: true, why: 'no_streams' });
  });
});

describe('loadCapacity', () => {
  const over = forecastLoadOne(load({ final: 12_000 }), [OLD]); // 0.4 now, 0.8 with one more
  it('refuses the stream that would take the load past the limit, with the model, the load and the limit', () => {
    expect(loadCapacity("model 'whisper-tiny'", over, { maxLoad: 0.75, retryAfterS: 7 })).toEqual({
      ok: false,
      reason: 'capacity_forecast',
      retryAfterS: 7,
      message:
        "Server at capacity: one more stream of model 'whisper-tiny' would take live decoding to 80 % of the server's inference time (1 stream uses 40 %; limit 75 %). Retry in 7 s or connect to another instance.",
    });
  });
  it('admits at the limit, when off, and when the forecast abstains', () => {
    expect(loadCapacity('m', over, { maxLoad: 0.8 })).toEqual({ ok: true });
    expect(loadCapacity('m', over, { maxLoad: 0 })).toEqual({ ok: true });
    expect(loadCapacity('m', { abstain: true, why: 'no_streams' }, { maxLoad: 0.1 })).toEqual({ ok: true });
  });
});

describe('StreamAdmission with the forecast', () => {
  const model = (lagMs: number, l: SchedulerLoad, id = 'm') => ({ id, scheduler: { finalWaitMs: () => lagMs, load: () => l }, liveLag: { p90Ms: () => 0 } });
  /** A stream of `m` (partials and finals) on a server whose streams all use `m` and have run `agesMs`. */
  const admitOne = (adm: StreamAdmission, m: AdmissionModel, agesMs: number[]) =>
    adm.admit(
      { partial: m, final: m },
      'websocket',
      0,
      agesMs.map((ageMs) => ({ partial: m, final: m, ageMs })),
    );
  const opts = { maxFinalWaitMs: 3000, rampIntervalMs: 5000, maxLoad: 0.75 };

  it('refuses by forecast while the lag is still under its limit; the lag rule refuses first when over it', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const adm = new StreamAdmission(opts, { metrics });
    expect(admitOne(adm, model(0, load({ final: 12_000 })), [OLD])).toMatchObject({ ok: false, reason: 'capacity_forecast' });
    expect(admitOne(adm, model(0, load({ final: 6000 })), [OLD])).toEqual({ ok: true });
    expect(admitOne(adm, model(4000, load({ final: 12_000 })), [OLD])).toMatchObject({ ok: false, reason: 'capacity' });
    // Streams too young: the forecast abstains, the lag rule alone decides.
    expect(admitOne(adm, model(0, load({ final: 12_000 })), [1000])).toEqual({ ok: true });
    const text = (await metrics.render()).body;
    expect(text).toContain('stt_streams_refused_total{transport="websocket",reason="capacity_forecast"} 1');
    expect(text).toContain('stt_streams_refused_total{transport="websocket",reason="capacity"} 1');
  });

  it('maxLoad 0 (or a model without load()) leaves the lag rule alone', () => {
    const adm = new StreamAdmission({ ...opts, maxLoad: 0 });
    expect(admitOne(adm, model(0, load({ final: 29_000 })), [OLD])).toEqual({ ok: true });
    const noLoad = { id: 'x', scheduler: { finalWaitMs: () => 0 }, liveLag: { p90Ms: () => 0 } };
    expect(admitOne(new StreamAdmission(opts), noLoad, [OLD])).toEqual({ ok: true });
  });

  it('a two-pass stream is refused when its two models together would pass the limit; the message names both', () => {
    const tiny = model(0, load({ partial: 4000, final: 3000 }), 'tiny');
    const small = model(0, load({ final: 12_000 }), 'small');
    const streams = [
      { partial: tiny, final: tiny, ageMs: OLD },
      { partial: tiny, final: tiny, ageMs: OLD },
      { partial: tiny, final: small, ageMs: OLD },
      { partial: tiny, final: small, ageMs: OLD },
    ];
    const adm = new StreamAdmission({ ...opts, maxLoad: 0.8 });
    // 0.633 now; +0.233 with a two-pass stream, +0.083 with a one-pass stream of tiny
    expect(adm.admit({ partial: tiny, final: small }, 'websocket', 0, streams)).toMatchObject({
      ok: false,
      reason: 'capacity_forecast',
      message: expect.stringContaining(
        "one more stream of models 'tiny' (partials) and 'small' (finals) would take live decoding to 87 % of the server's inference time (4 streams use 63 %; limit 80 %)",
      ),
    });
    expect(adm.admit({ partial: tiny, final: tiny }, 'websocket', 0, streams)).toEqual({ ok: true });
  });

  it('remembers what a stream cost, so a burst of new streams is weighed before any has run 10 s', () => {
    let current = load({ final: 12_000 });
    const tiny = { id: 'tiny', scheduler: { finalWaitMs: () => 0, load: () => current }, liveLag: { p90Ms: () => 0 } };
    const adm = new StreamAdmission({ ...opts, maxLoad: 0.8 });
    // 4 streams measured: 0.1 each; a 5th is admitted (0.5) and the cost is remembered.
    expect(
      adm.admit(
        { partial: tiny, final: tiny },
        'websocket',
        0,
        Array.from({ length: 4 }, () => ({ partial: tiny, final: tiny, ageMs: OLD })),
      ),
    ).toEqual({ ok: true });
    // They end; a burst arrives. With 7 streams of 2 s, the 8th would need 0.8 (admitted, at the limit), the 9th 0.9.
    current = load({ final: 300 });
    const burst = (n: number) => Array.from({ length: n }, () => ({ partial: tiny, final: tiny, ageMs: 2000 }));
    expect(adm.admit({ partial: tiny, final: tiny }, 'websocket', 0, burst(7))).toEqual({ ok: true });
    expect(adm.admit({ partial: tiny, final: tiny }, 'websocket', 0, burst(8))).toMatchObject({ ok: false, reason: 'capacity_forecast', message: expect.stringContaining('90 %') });
    // A server that never measured a stream of this model abstains on the same burst.
    const fresh = new StreamAdmission({ ...opts, maxLoad: 0.8 });
    expect(fresh.admit({ partial: tiny, final: tiny }, 'websocket', 0, burst(8))).toEqual({ ok: true });
    // What the live sessions tell it when a stream ends (the streams then running, the ending one included) counts too.
    current = load({ final: 12_000 });
    fresh.remember(Array.from({ length: 4 }, () => ({ partial: tiny, final: tiny, ageMs: OLD })));
    current = load({ final: 300 });
    expect(fresh.admit({ partial: tiny, final: tiny }, 'websocket', 0, burst(8))).toMatchObject({ ok: false, reason: 'capacity_forecast' });
  });
});
