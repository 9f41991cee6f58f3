/**
 * Preload for profiled servers (`node --cpu-prof --import tsx --import ./bench/lib/ort-profile-tags.ts
 * src/main.ts`), used by bench/live-overhead.ts only: makes ONNX Runtime calls visible in a CPU profile.
 *
 * onnxruntime-node's `session.run` does its native work in a `setImmediate` callback, so in the
 * profile the run has no caller: a VAD call and a Whisper decoder call look the same. Here each
 * session's run is wrapped so that callback runs inside a function NAMED after the session
 * (`ORT_vad` for Silero — inputs input/state/sr —, `ORT_model_encoder` / `ORT_model_decoder` / `ORT_model_other`);
 * bench/lib/cpuprofile.ts sorts samples by those frames. The work done is unchanged.
 *
 * BENCH_ORT_SESSION_OPTIONS (JSON) is merged (nested objects key by key) into every InferenceSession.create's
 * options: a measured experiment with arena or thread settings (e.g. {"enableCpuMemArena":false},
 * {"extra":{"session":{"intra_op":{"allow_spinning":"0"}}}}) without editing engines.
 */
import * as ort from 'onnxruntime-node';

type Handler = { run: (...args: unknown[]) => Promise<unknown> };
type Session = ort.InferenceSession & { handler?: Handler };

const TAGGED = Symbol('ort-profile-tag');

// Plain function declarations (not computed names: the profiler names a frame by its source function,
// so one closure renamed per label would show as one anonymous frame). Prefix ORT_TAG of cpuprofile.ts.
function ORT_vad(cb: () => void): void {
  cb();
}
function ORT_model_encoder(cb: () => void): void {
  cb();
}
function ORT_model_decoder(cb: () => void): void {
  cb();
}
function ORT_model_other(cb: () => void): void {
  cb();
}

/** Which tag frame a session's runs get, by its input names. */
export function runnerFor(inputNames: readonly string[]): (cb: () => void) => void {
  if (inputNames.includes('state') && inputNames.includes('sr')) return ORT_vad;
  if (inputNames.includes('input_features')) return ORT_model_encoder;
  if (inputNames.includes('input_ids')) return ORT_model_decoder;
  return ORT_model_other;
}

function tag(session: Session): void {
  const handler = session.handler;
  if (!handler || (handler as unknown as Record<symbol, boolean>)[TAGGED]) return;
  (handler as unknown as Record<symbol, boolean>)[TAGGED] = true;
  const run = handler.run.bind(handler);
  const runner = runnerFor(session.inputNames);
  handler.run = (...args: unknown[]) => {
    // The backend schedules its native call with the global setImmediate, synchronously in run().
    const original = globalThis.setImmediate;
    globalThis.setImmediate = ((cb: () => void, ...rest: unknown[]) => original(() => runner(cb), ...(rest as []))) as typeof setImmediate;
    try {
      return run(...args);
    } finally {
      globalThis.setImmediate = original;
    }
  };
}

const proto = (ort.InferenceSession as unknown as { prototype: { run: (...args: unknown[]) => Promise<unknown> } }).prototype;
const originalRun = proto.run;
proto.run = function (this: Session, ...args: unknown[]) {
  tag(this);
  return originalRun.apply(this, args);
};

const extra = process.env.BENCH_ORT_SESSION_OPTIONS;
if (extra) {
  const options = JSON.parse(extra) as ort.InferenceSession.SessionOptions;
  const create = ort.InferenceSession.create.bind(ort.InferenceSession) as (...a: unknown[]) => Promise<ort.InferenceSession>;
  (ort.InferenceSession as unknown as { create: unknown }).create = (...args: unknown[]) => {
    // create(path | buffer, options?) or create(buffer, offset, length, options?)
    const i = typeof args[1] === 'number' ? 3 : 1;
    const a = [...args];
    a[i] = deepMerge((a[i] as Record<string, unknown>) ?? {}, options as Record<string, unknown>);
    return create(...a);
  };
}

/** Nested objects merged key by key, so `extra.session` keys set by the engine (disable_prepacking, …) survive. */
export function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    const plain = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x) && !ArrayBuffer.isView(x);
    out[k] = plain(prev) && plain(v) ? deepMerge(prev, v) : v;
  }
  return out;
}
