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

/** Below these the forecast abstains: too little history to say what one stream costs. */
export const FORECAST_MIN = {
  /** The oldest attached stream has run this long: its first utterances have had their finals. */
  streamAgeMs: 10_000,
  /** Finals and partials took this much model time in the window: more than a handful of decodes. */
  busyMs: 500,
} as const;

/** What the server's live streams need of its inference time now, and with one stream more (fractions of it). */
export type LoadForecast = { abstain: true; why: 'no_streams' | 'young_streams' | 'little_data' } | { abstain: false; perStream: number; current: number; predicted: number; streams: number };

/** How one live stream uses the models: the model of its partials, that of its finals (the same unless two-pass), and how long it has run (ms). */
export interface StreamUse<M> {
  partial: M;
  final: M;
  ageMs: number;
}

type Role = 'partial' | 'final';
const ROLES: readonly Role[] = ['partial', 'final'];

/**
 * The required load of the server's live streams and what one more (`next`) would add, from each model worker's
 * recent busy time (`loads`) and the streams using each model (`streams`).
 *
 * - One resource: onnxruntime-node runs every session synchronously on the JavaScript thread, so the models'
 *   workers take turns and their busy fractions add up. A stream of one model is weighed against the streams of
 *   all of them; a two-pass stream costs its partials on one model and its finals on the other.
 * - What one stream costs is measured per model and role: the partial time of model m over the streams whose
 *   partials m decodes, the final time of m over the streams whose finals it decodes.
 * - Finals are mandatory: all their model time counts.
 * - Partials count at the rate they were served. They are elastic in principle (under load a stream
 *   widens its partial interval before the scheduler drops any), but the loadtest shows that the
 *   widening comes too late to make room for another stream: at 14 tiny streams on a contended
 *   machine, finals plus one partial per stream per 5 s came to 0.42 of the worker's time while it
 *   was busy 0.96 of it and finals were 16–26 s late. What the worker is busy with now is what the
 *   next stream's share is taken from.
 * - File chunks are not a stream's: they queue behind finals and wait when live work needs the model.
 * - A stream younger than the window has put only part of its load in it: each stream counts for
 *   min(age, window) / window of a stream ("exposure"), so the cost of one stream in a role is that role's
 *   time / exposure, and the prediction is every stream at its full cost plus the next one. With one model and
 *   every stream older than the window this is required load × (n + 1) / n.
 * - Streams that ended within the window left their load but are not counted: the cost is then
 *   overestimated, which errs on the side of refusing.
 * - Abstains (the lag rule decides alone) when a role of the next stream has no stream on its model yet, or only
 *   streams younger than FORECAST_MIN.streamAgeMs, or too little time of it was measured.
 */
export function forecastLoad<M>(loads: ReadonlyMap<M, SchedulerLoad>, streams: readonly StreamUse<M>[], next: { partial: M; final: M }): LoadForecast {
  if (streams.length === 0) return { abstain: true, why: 'no_streams' };
  const acc = new Map<M, Record<Role, { n: number; exposure: number; maxAgeMs: number }>>();
  for (const s of streams) {
    for (const role of ROLES) {
      const m = s[role];
      let a = acc.get(m);
      if (!a) acc.set(m, (a = { partial: { n: 0, exposure: 0, maxAgeMs: 0 }, final: { n: 0, exposure: 0, maxAgeMs: 0 } }));
      const w = loads.get(m)?.windowMs ?? 0;
      a[role].n++;
      a[role].exposure += w > 0 ? Math.min(Math.max(s.ageMs, 0), w) / w : 0;
      a[role].maxAgeMs = Math.max(a[role].maxAgeMs, s.ageMs);
    }
  }
  const cost = (m: M, role: Role) => {
    const l = loads.get(m);
    const e = acc.get(m)?.[role].exposure ?? 0;
    return l && l.windowMs > 0 && e > 0 ? l.busyMs[role] / l.windowMs / e : 0;
  };
  for (const role of ROLES) {
    const a = acc.get(next[role])?.[role];
    if (!a || a.n === 0) return { abstain: true, why: 'no_streams' };
    if (a.maxAgeMs < FORECAST_MIN.streamAgeMs) return { abstain: true, why: 'young_streams' };
    if (!((loads.get(next[role])?.windowMs ?? 0) > 0)) return { abstain: true, why: 'little_data' };
  }
  // the model time measured for what the next stream will do (the two roles are always distinct)
  const nextMs = ROLES.reduce((sum, role) => sum + (loads.get(next[role])?.busyMs[role] ?? 0), 0);
  if (nextMs < FORECAST_MIN.busyMs) return { abstain: true, why: 'little_data' };
  let predicted = 0;
  let current = 0;
  for (const [m, a] of acc) for (const role of ROLES) predicted += cost(m, role) * a[role].n;
  for (const l of loads.values()) if (l.windowMs > 0) current += (l.busyMs.final + l.busyMs.partial) / l.windowMs;
  const perStream = cost(next.partial, 'partial') + cost(next.final, 'final');
  return { abstain: false, perStream, current, predicted: predicted + perStream, streams: streams.length };
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
    const loads = new Map<AdmissionModel, SchedulerLoad>();
    for (const m of new Set([next.partial, next.final, ...streams.flatMap((s) => [s.partial, s.final])])) {
      const l = m.scheduler.load?.();
      if (l) loads.set(m, l);
    }
    return loads.has(next.partial) && loads.has(next.final) ? forecastLoad(loads, streams, next) : null;
  }
}
