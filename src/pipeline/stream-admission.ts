/**
 * Load-based admission of new live streams. A model that keeps up starts every final within about
 * one batch; when finals wait longer, every stream's captions are already late, and another stream
 * would make them later. New streams are then refused with a clear message (WebSocket close 1013
 * "try again later", WebRTC 503 + Retry-After) while the streams already running keep their finals.
 * File uploads are not refused: they queue behind finals and report progress.
 */
export interface StreamCapacityOptions {
  /** Refuse new streams when finals wait longer than this (ms); 0 turns the check off. */
  maxFinalWaitMs: number;
  /** What a refused client is told to wait before retrying (s). */
  retryAfterS?: number;
}

/**
 * How far behind live results of a model are (ms): the longer of how long finals wait for a model
 * call (BatchScheduler.finalWaitMs) and how late finals reach their streams (p90 of the last 10 s,
 * which also sees a VAD backlog that the scheduler cannot).
 */
export function liveLagMs(model: { scheduler: { finalWaitMs(): number }; liveLag: { p90Ms(): number } }): number {
  return Math.max(model.scheduler.finalWaitMs(), model.liveLag.p90Ms());
}

export type CapacityVerdict = { ok: true } | { ok: false; message: string; retryAfterS: number };

/** Pure decision from the model's current final wait (BatchScheduler.finalWaitMs()). */
export function streamCapacity(modelId: string, finalWaitMs: number, opts: StreamCapacityOptions): CapacityVerdict {
  if (opts.maxFinalWaitMs <= 0 || finalWaitMs <= opts.maxFinalWaitMs) return { ok: true };
  const retryAfterS = opts.retryAfterS ?? 5;
  return {
    ok: false,
    retryAfterS,
    message: `Server at capacity: live results of model '${modelId}' are ${(finalWaitMs / 1000).toFixed(1)} s behind (limit ${(opts.maxFinalWaitMs / 1000).toFixed(1)} s). Retry in ${retryAfterS} s or connect to another instance.`,
  };
}
