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
 */
import type { Logger } from 'pino';
import type { Metrics } from '../observability/metrics.ts';

export interface StreamCapacityOptions {
  /** Refuse new streams when finals wait longer than this (ms); 0 turns the check off. */
  maxFinalWaitMs: number;
  /** What a refused client is told to wait before retrying (s). */
  retryAfterS?: number;
  /** Above half the limit, admit at most one new stream per this many ms (0 = no slow start). */
  rampIntervalMs?: number;
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
export function liveLagMs(model: { scheduler: { finalWaitMs(): number }; liveLag: { p90Ms(): number } }): number {
  return Math.max(model.scheduler.finalWaitMs(), model.liveLag.p90Ms());
}

/** Why a stream was refused: the lag is over the limit, or slow start (over half of it, too soon after the last one). */
export type RefusalReason = 'capacity' | 'slow_start';

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
 * The admission decision of a server, shared by its WebSocket and WebRTC ingest: the lag rule and
 * slow start, with the time each model last admitted a stream.
 */
export class StreamAdmission {
  private readonly lastAdmitted = new WeakMap<object, number>();

  constructor(
    readonly opts: StreamCapacityOptions,
    /** Refusals are counted (stt_streams_refused_total) and logged here. */
    private readonly observe: { metrics?: Metrics; logger?: Logger } = {},
  ) {}

  /** Decides for one new stream of `model`; an admitted stream is remembered for slow start, a refusal counted and logged. */
  admit(model: { id: string; scheduler: { finalWaitMs(): number }; liveLag: { p90Ms(): number } }, transport: 'websocket' | 'webrtc', now = Date.now()): CapacityVerdict {
    const verdict = streamCapacity(model.id, liveLagMs(model), this.opts, { lastAdmittedAt: this.lastAdmitted.get(model) ?? null, now });
    if (verdict.ok) this.lastAdmitted.set(model, now);
    else {
      this.observe.metrics?.streamsRefused.inc({ transport, reason: verdict.reason });
      this.observe.logger?.warn({ model: model.id, transport }, verdict.message);
    }
    return verdict;
  }
}
