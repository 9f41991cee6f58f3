/**
 * Load-based admission of new live streams. A model that keeps up starts every final within about
 * one batch; when finals wait longer, every stream's captions are already late, and another stream
 * would make them later. New streams are then refused with a clear message (WebSocket close 1013
 * "try again later", WebRTC 503 + Retry-After) while the streams already running keep their finals.
 * File uploads are not refused: they queue behind finals and report progress.
 *
 * The lag is measured on finals that came back, so it shows seconds after the streams that cause
 * it were admitted. Slow start: once the lag passes half the limit, at most one new stream per
 * `rampIntervalMs` is admitted, which gives the measure time to catch up before more streams join.
 *
 * The forecast refuses before the lag shows: from how busy each model worker was over the last 30 s
 * (BatchScheduler.load) and the live streams using each model, it estimates what one stream costs and
 * refuses the stream whose share would take the server's required inference time past `maxLoad`
 * ({@link forecastLoad}; the models' workers share one thread, so their loads add up). The lag rule stays as the safety net for what the forecast cannot see
 * (file jobs, a VAD backlog, a model slower than its recent past).
 */
import type { Logger } from 'pino';
import type { Metrics } from '../observability/metrics.ts';
import type { SchedulerLoad } from './batch-scheduler.ts';

export interface StreamCapacityOptions {
  /** Refuse new streams when finals wait longer than this (ms); 0 turns the check off. */
  maxFinalWaitMs: number;
  /** What a refused client is told to wait before retrying (s). */
  retryAfterS?: number;
  /** Above half the limit, admit at most one new stream per this many ms (0 = no slow start). */
  rampIntervalMs?: number;
  /** Refuse a new stream when it would take the live streams' required inference time past this fraction of the server's (0 = no forecast). */
  maxLoad?: number;
}

/** When the previous stream of this model was admitted (slow start). */
export interface RampState {
  lastAdmittedAt: number | null;
  now: number;
}

/**
 * How far behind live results of a model are (ms): the longer of how long finals wait for a model
 * call (BatchScheduler.finalWaitMs) and how late finals reach their streams (p90 of the last 10 s,
 * which also sees a VAD backlog that the scheduler cannot).
 */
export function liveLagMs(model: Pick<AdmissionModel, 'scheduler' | 'liveLag'>): number {
  return Math.max(model.scheduler.finalWaitMs(), model.liveLag.p90Ms());
}

/**
 * Why a stream was refused: the lag is over the limit, slow start (over half of it, too soon after
 * the last one), or the forecast (one more stream would take the model's load past STREAM_MAX_LOAD).
 */
export type RefusalReason = 'capacity' | 'slow_start' | 'capacity_forecast';

export type CapacityVerdict = { ok: true } | { ok: false; reason: RefusalReason; message: string; retryAfterS: number };

/** Pure decision from the model's current lag (liveLagMs) and, for slow start, when it last admitted a stream. */
export function streamCapacity(modelId: string, finalWaitMs: number, opts: StreamCapacityOptions, ramp?: RampState): CapacityVerdict {
  if (opts.maxFinalWaitMs <= 0) return { ok: true };
  if (finalWaitMs <= opts.maxFinalWaitMs) {
    const interval = opts.rampIntervalMs ?? 0;
    if (!ramp || interval <= 0 || ramp.lastAdmittedAt === null || finalWaitMs <= opts.maxFinalWaitMs / 2) return { ok: true };
    const wait = ramp.lastAdmittedAt + interval - ramp.now;
    if (wait <= 0) return { ok: true };
    const retryAfterS = Math.max(1, Math.ceil(wait / 1000));
    return {
      ok: false,
      reason: 'slow_start',
      retryAfterS,
      message: `Server near capacity: live results of model '${modelId}' are ${(finalWaitMs / 1000).toFixed(1)} s behind (limit ${(opts.maxFinalWaitMs / 1000).toFixed(1)} s), so new streams are admitted one per ${(interval / 1000).toFixed(0)} s. Retry in ${retryAfterS} s or connect to another instance.`,
    };
  }
  const retryAfterS = opts.retryAfterS ?? 5;
  return {
    ok: false,
    reason: 'capacity',
    retryAfterS,
    message: `Server at capacity: live results of model '${modelId}' are ${(finalWaitMs / 1000).toFixed(1)} s behind (limit ${(opts.maxFinalWaitMs / 1000).toFixed(1)} s). Retry in ${retryAfterS} s or connect to another instance.`,
  };
}

/**
 * Below these the forecast abstains: too little history to say what one stream costs. Streams admitted meanwhile go
 * unweighed, so the bar is as low as measurements allow: in the two-pass loadtest (streams 1 s apart) what one
 * stream costs, read at 2–9 s, was 1.2–2.2× what it settled at after 10 s (a young stream's partials come at full rate),
 * never less.
 */
export const FORECAST_MIN = {
  /** The oldest attached stream has run this long: its first utterance has had its final. */
  streamAgeMs: 4_000,
  /** Finals and partials took this much model time in the window: more than a handful of decodes. */
  busyMs: 500,
  /**
   * The model served this many finals in the window before its final cost counts: every stream that speaks has
   * finals, so none yet (the first utterances are long) says nothing of what they will cost. Partials need none:
   * streams may not ask for any.
   */
  finals: 1,
} as const;

/**
 * What the server's live streams need of its inference time now, and with one stream more (fractions of it).
 * `remembered`: some cost came from an earlier measurement (StreamAdmission's memory), not from this window.
 */
export type LoadForecast =
  | { abstain: true; why: 'no_streams' | 'young_streams' | 'little_data' }
  | { abstain: false; perStream: number; current: number; predicted: number; streams: number; remembered: boolean };

/**
 * How one stream uses the models: the model of its partials, that of its finals (the same unless two-pass), how
 * long ago it started (ms) and, for a stream that has ended, how long ago it ended: its load is still in the
 * window, so it counts for the part of the window it was there, but not among the streams that go on.
 */
export interface StreamUse<M> {
  partial: M;
  final: M;
  ageMs: number;
  endedMsAgo?: number;
}

/** How long ago a stream ended (ms); 0 while it runs. */
const endedMsAgo = (s: StreamUse<unknown>) => Math.max(s.endedMsAgo ?? 0, 0);

export type StreamRole = 'partial' | 'final';
const ROLES: readonly StreamRole[] = ['partial', 'final'];

/** What one stream costs a model in one role, as measured over the window, and whether there was enough to go by. */
export interface RoleCost {
  /** Live streams using the model in this role. */
  n: number;
  /** Fraction of the inference time one stream takes (role time / window / exposure). */
  cost: number;
  /**
   * The oldest of those streams has run FORECAST_MIN.streamAgeMs, the model FORECAST_MIN.busyMs of live time and,
   * for finals, FORECAST_MIN.finals of them.
   */
  trusted: boolean;
  maxAgeMs: number;
}

/**
 * What one stream costs each model in each role, from the models' busy time over their windows (`loads`) and the
 * streams using them:
 * - the partial time of model m over the streams whose partials m decodes, the final time of m over the streams
 *   whose finals it decodes (one model in both roles, unless two-pass);
 * - finals are mandatory: all their model time counts;
 * - partials count at the rate they were served. They are elastic in principle (under load a stream
 *   widens its partial interval before the scheduler drops any), but the loadtest shows that the
 *   widening comes too late to make room for another stream: at 14 tiny streams on a contended
 *   machine, finals plus one partial per stream per 5 s came to 0.42 of the worker's time while it
 *   was busy 0.96 of it and finals were 16–26 s late;
 * - file chunks are not a stream's: they queue behind finals and wait when live work needs the model;
 * - a stream younger than the window has put only part of its load in it, and one that ended within it left part of
 *   its load there: each stream counts for the part of the window it was there ("exposure").
 */
export function streamCosts<M>(loads: ReadonlyMap<M, SchedulerLoad>, streams: readonly StreamUse<M>[]): Map<M, Partial<Record<StreamRole, RoleCost>>> {
  const acc = new Map<M, Partial<Record<StreamRole, { n: number; exposure: number; maxAgeMs: number }>>>();
  for (const s of streams) {
    for (const role of ROLES) {
      const m = s[role];
      const w = loads.get(m)?.windowMs ?? 0;
      const byRole = acc.get(m) ?? {};
      const a = (byRole[role] ??= { n: 0, exposure: 0, maxAgeMs: 0 });
      acc.set(m, byRole);
      const ended = endedMsAgo(s);
      if (ended === 0) a.n++;
      a.exposure += w > 0 ? Math.max(Math.min(Math.max(s.ageMs, 0), w) - Math.min(ended, w), 0) / w : 0;
      a.maxAgeMs = Math.max(a.maxAgeMs, s.ageMs - ended);
    }
  }
  const out = new Map<M, Partial<Record<StreamRole, RoleCost>>>();
  for (const [m, byRole] of acc) {
    const l = loads.get(m);
    const w = l?.windowMs ?? 0;
    const live = l ? l.busyMs.partial + l.busyMs.final : 0;
    const costs: Partial<Record<StreamRole, RoleCost>> = {};
    for (const role of ROLES) {
      const a = byRole[role];
      if (!a) continue;
      const cost = l && w > 0 && a.exposure > 0 ? l.busyMs[role] / w / a.exposure : 0;
      const finalsServed = role !== 'final' || (l?.requests.final ?? 0) >= FORECAST_MIN.finals;
      costs[role] = {
        n: a.n,
        cost,
        maxAgeMs: a.maxAgeMs,
        trusted: w > 0 && a.maxAgeMs >= FORECAST_MIN.streamAgeMs && live >= FORECAST_MIN.busyMs && finalsServed,
      };
    }
    out.set(m, costs);
  }
  return out;
}

/**
 * The required load of the server's live streams and what one more (`next`) would add.
 *
 * One resource: onnxruntime-node runs every session synchronously on the JavaScript thread, so the models'
 * workers take turns and their busy fractions add up. A stream of one model is weighed against the streams of
 * all of them; a two-pass stream costs its partials on one model and its finals on the other. The prediction is
 * every stream at its full cost ({@link streamCosts}) plus the next one; with one model and every stream older than
 * the window this is required load × (n + 1) / n.
 *
 * A cost measured on too little (streams younger than FORECAST_MIN.streamAgeMs, under FORECAST_MIN.busyMs of live
 * model time) is replaced by the cost `remembered` from an earlier window when there is one: a burst of new streams
 * on a server that has served streams before is weighed at once. Without either, the forecast abstains (the lag rule
 * decides alone), and it always abstains with no live stream at all: a lone stream is never refused.
 */
export function forecastLoad<M>(
  loads: ReadonlyMap<M, SchedulerLoad>,
  streams: readonly StreamUse<M>[],
  next: { partial: M; final: M },
  remembered: { get(m: M): Partial<Record<StreamRole, number>> | undefined } = new Map(),
): LoadForecast {
  const live = streams.filter((s) => endedMsAgo(s) === 0).length;
  if (live === 0) return { abstain: true, why: 'no_streams' };
  const measured = streamCosts(loads, streams);
  let usedMemory = false;
  const costOf = (m: M, role: StreamRole): number | null => {
    const x = measured.get(m)?.[role];
    if (x?.trusted) return x.cost;
    const r = remembered.get(m)?.[role];
    if (r === undefined) return null;
    usedMemory = true;
    return r;
  };
  let perStream = 0;
  for (const role of ROLES) {
    const c = costOf(next[role], role);
    if (c !== null) {
      perStream += c;
      continue;
    }
    const x = measured.get(next[role])?.[role];
    return { abstain: true, why: !x?.n ? 'no_streams' : x.maxAgeMs < FORECAST_MIN.streamAgeMs ? 'young_streams' : 'little_data' };
  }
  let predicted = perStream;
  for (const [m, byRole] of measured) for (const role of ROLES) if (byRole[role]) predicted += (costOf(m, role) ?? byRole[role].cost) * byRole[role].n;
  let current = 0;
  for (const l of loads.values()) if (l.windowMs > 0) current += (l.busyMs.final + l.busyMs.partial) / l.windowMs;
  return { abstain: false, perStream, current, predicted, streams: live, remembered: usedMemory };
}

/** Pure decision from a forecast: refuse when one more stream would take the load past `maxLoad` (0 = off). */
export function loadCapacity(what: string, forecast: LoadForecast, opts: { maxLoad?: number; retryAfterS?: number }): CapacityVerdict {
  const max = opts.maxLoad ?? 0;
  if (max <= 0 || forecast.abstain || forecast.predicted <= max) return { ok: true };
  const retryAfterS = opts.retryAfterS ?? 5;
  const pct = (x: number) => `${Math.round(x * 100)} %`;
  return {
    ok: false,
    reason: 'capacity_forecast',
    retryAfterS,
    message: `Server at capacity: one more stream of ${what} would take live decoding to ${pct(forecast.predicted)} of the server's inference time (${forecast.streams === 1 ? '1 stream uses' : `${forecast.streams} streams use`} ${pct(forecast.current)}; limit ${pct(max)}). Retry in ${retryAfterS} s or connect to another instance.`,
  };
}

/** What admission reads of a model: its lag and (for the forecast) its worker's recent load. */
export interface AdmissionModel {
  id: string;
  scheduler: { finalWaitMs(): number; load?(): SchedulerLoad };
  liveLag: { p90Ms(): number };
}

/**
 * The admission decision of a server, shared by its WebSocket and WebRTC ingest: the lag rule, the
 * load forecast and slow start, with the time each model last admitted a stream.
 */
export class StreamAdmission {
  private readonly lastAdmitted = new WeakMap<object, number>();
  /** The last trusted cost of one stream per model and role (forecastLoad's memory for young streams). */
  private readonly costs = new WeakMap<AdmissionModel, Partial<Record<StreamRole, number>>>();

  constructor(
    readonly opts: StreamCapacityOptions,
    /** Refusals are counted (stt_streams_refused_total) and logged here. */
    private readonly observe: { metrics?: Metrics; logger?: Logger } = {},
  ) {}

  /**
   * Decides for one new stream that decodes its partials on `next.partial` and its finals on `next.final` (the same
   * model unless two-pass), given the live streams already running on the server: the lag of its finals model over
   * its limit refuses first, then the forecast over all models, then slow start. An admitted stream is remembered
   * for slow start, a refusal counted and logged.
   */
  admit(next: { partial: AdmissionModel; final: AdmissionModel }, transport: 'websocket' | 'webrtc', now = Date.now(), streams: readonly StreamUse<AdmissionModel>[] = []): CapacityVerdict {
    const model = next.final;
    const lag = streamCapacity(model.id, liveLagMs(model), this.opts, { lastAdmittedAt: this.lastAdmitted.get(model) ?? null, now });
    const load = (this.opts.maxLoad ?? 0) > 0 ? this.forecast(next, streams) : null;
    const what = next.partial === next.final ? `model '${model.id}'` : `models '${next.partial.id}' (partials) and '${model.id}' (finals)`;
    this.observe.logger?.debug({ model: model.id, partialModel: next.partial.id, transport, streams: streams.length, forecast: load }, 'stream admission');
    const forecast = load ? loadCapacity(what, load, this.opts) : { ok: true as const };
    const verdict = !lag.ok && lag.reason === 'capacity' ? lag : !forecast.ok ? forecast : lag;
    if (verdict.ok) this.lastAdmitted.set(model, now);
    else {
      this.observe.metrics?.streamsRefused.inc({ transport, reason: verdict.reason });
      this.observe.logger?.warn({ model: model.id, transport }, verdict.message);
    }
    return verdict;
  }

  /** The load forecast, or null when a model of the next stream does not measure its load. */
  private forecast(next: { partial: AdmissionModel; final: AdmissionModel }, streams: readonly StreamUse<AdmissionModel>[]): LoadForecast | null {
    const loads = this.loads(streams, [next.partial, next.final]);
    if (!loads.has(next.partial) || !loads.has(next.final)) return null;
    this.learn(loads, streams);
    return forecastLoad(loads, streams, next, this.costs);
  }

  /**
   * Keeps what one stream costs each model now (the trusted costs of streamCosts), for forecasts of streams too
   * young to be measured: called at every admission and when a stream ends (then it has run long enough to count).
   */
  remember(streams: readonly StreamUse<AdmissionModel>[]): void {
    if ((this.opts.maxLoad ?? 0) <= 0) return;
    this.learn(this.loads(streams), streams);
  }

  private loads(streams: readonly StreamUse<AdmissionModel>[], also: readonly AdmissionModel[] = []): Map<AdmissionModel, SchedulerLoad> {
    const loads = new Map<AdmissionModel, SchedulerLoad>();
    for (const m of new Set([...also, ...streams.flatMap((s) => [s.partial, s.final])])) {
      const l = m.scheduler.load?.();
      if (l) loads.set(m, l);
    }
    return loads;
  }

  private learn(loads: ReadonlyMap<AdmissionModel, SchedulerLoad>, streams: readonly StreamUse<AdmissionModel>[]): void {
    for (const [m, byRole] of streamCosts(loads, streams)) {
      for (const role of ROLES) {
        const c = byRole[role];
        if (c?.trusted) this.costs.set(m, { ...this.costs.get(m), [role]: c.cost });
      }
    }
  }
}
