/**
 * ASR engine benchmark (issue 10).
 *
 *   npm run bench:asr -- <model-folder> [--quick] [--out docs/benchmarks-asr.json]
 *                        [--tokens 32] [--threads N] [--minutes 10] [--iters N] [--no-baseline] [--no-baseline-long]
 *                        [--max-kv-mb 1024] [--sections 1,2,3,4,5,6,6b]
 *
 * One run measures, on the model folder given (nothing here depends on a particular model):
 *  1. encoder ms per 30 s window at batch 1/2/4/8, fp32 vs int8;
 *  2. decoder ms per KV-cached step at batch 1/4/16 (16 lowered where its KV cache exceeds --max-kv-mb), fp32 vs
 *     int8, merged vs split (where the files exist);
 *  3. the real-time factor of a long file (espeak-ng speech, cached under .tmp/bench/) at a fixed token budget;
 *  4. N windows one request after another vs one batched `transcribe` call;
 *  5. transformers.js (the baseline a Node user would pick) on the same files, same inputs, same budget,
 *     plus a token-equality check on a golden input;
 *  6. knobs: graph optimisation level, intra-op threads, int8, batching; and whether the encoder accepts
 *     fewer than 3000 mel frames ("encoder on shorter audio").
 * Prints markdown tables and writes JSON (default docs/benchmarks-asr.json; --quick: .tmp/bench/asr-quick.json).
 *
 * Memory: one engine (one precision/layout) is loaded at a time and closed before the next, every raw session and
 * the transformers.js pipeline are released when their section ends, and the knob variants are only kept loaded
 * side by side (to interleave them) when their weights are small; the transformers.js baseline never holds both
 * sides (they alternate by rounds, one side loaded per round), and the merged-fetch knob closes the engine before its
 * raw decoder session loads. The peak RSS after each section (getrusage, what
 * `/usr/bin/time -v` reports) and each section's own peak (sampled) are reported.
 * `--iters N` caps every repeat count at N (batch sizes unchanged, so memory is that of the full run).
 * `--sections 6` (or `1,6b` …) runs only those sections (default: all); the model load and the features they share are
 * set up either way, and section 5's long-file row needs section 3. Section 6 also reports the sampled peak of each of
 * its parts (level variants, thread variants, spinning, merged fetches).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { BatchDecoder } from '../src/engines/seq2seq/generate.ts';
import { argmax } from '../src/engines/seq2seq/logits.ts';
import type { EncoderOutput, KVCache } from '../src/engines/seq2seq/kv-decoder.ts';
import { selectEncoderRows } from '../src/engines/seq2seq/kv-rows.ts';
import { WhisperEngine, type TranscribeOptions, type WhisperEngineOptions } from '../src/engines/whisper/index.ts';
import { loadWav, speechAudio } from './lib/audio.ts';
import { type AsrSection, PeakMarks, parseSections } from './lib/sections.ts';
import { fmt, interleave, measure, median, type Round, round3, roundPlan, summarize, table, type Timing } from './lib/stats.ts';

// ---------------------------------------------------------------- arguments

interface Args {
  model: string;
  quick: boolean;
  out: string;
  tokens: number;
  threads: number;
  minutes: number;
  iters: number | null;
  baseline: boolean;
  baselineLong: boolean;
  maxKvMb: number;
  /** null: every section */
  sections: Set<AsrSection> | null;
}

function parseArgs(argv: string[]): Args {
  const rest: string[] = [];
  const a: Partial<Args> & { quick: boolean; baseline: boolean; baselineLong: boolean } = { quick: false, baseline: true, baselineLong: true };
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${x} needs a value`);
      return v;
    };
    if (x === '--quick') a.quick = true;
    else if (x === '--out') a.out = val();
    else if (x === '--tokens') a.tokens = Number(val());
    else if (x === '--threads') a.threads = Number(val());
    else if (x === '--minutes') a.minutes = Number(val());
    else if (x === '--iters') a.iters = Number(val());
    else if (x === '--max-kv-mb') a.maxKvMb = Number(val());
    else if (x === '--sections') a.sections = parseSections(val());
    else if (x === '--no-baseline') a.baseline = false;
    else if (x === '--no-baseline-long') a.baselineLong = false;
    else if (x === '--help' || x === '-h') usage(0);
    else if (x.startsWith('--')) throw new Error(`unknown option ${x}`);
    else rest.push(x);
  }
  if (rest.length !== 1) usage(2);
  const quick = a.quick;
  return {
    model: resolve(rest[0]),
    quick,
    out: a.out ?? (quick ? '.tmp/bench/asr-quick.json' : 'docs/benchmarks-asr.json'),
    tokens: a.tokens ?? (quick ? 8 : 32),
    threads: a.threads ?? os.availableParallelism(),
    minutes: a.minutes ?? (quick ? 1 : 10),
    iters: a.iters ?? null,
    baseline: a.baseline,
    baselineLong: a.baselineLong && !quick,
    maxKvMb: a.maxKvMb ?? 1024,
    sections: a.sections ?? null,
  };
}

function usage(code: number): never {
  console.error(
    'usage: tsx bench/asr.ts <model-folder> [--quick] [--out file.json] [--tokens 32] [--threads N] [--minutes 10] [--iters N] [--no-baseline] [--no-baseline-long] [--max-kv-mb 1024] [--sections 1,2,3,4,5,6,6b]',
  );
  process.exit(code);
}

const args = parseArgs(process.argv.slice(2));
/** Whether `--sections` selects section `s` (all are selected by default). */
const want = (s: AsrSection) => args.sections === null || args.sections.has(s);
const Q = args.quick;
/** A repeat count: `full`, or `quick` with --quick; --iters N caps it (N ≥ 1 timed runs). */
const reps = (full: number, quick: number) => (args.iters ? Math.max(Math.min(args.iters, full), full > 0 ? 1 : 0) : Q ? quick : full);
/** iterations: timed runs / warm-up runs */
const IT = { warmup: reps(2, 1), iters: reps(7, 2) };
const BUDGET = args.tokens;
const LOG = (s = '') => console.log(s);
const T_START = performance.now();
const NOTE = (s: string) => console.error(`  … [${((performance.now() - T_START) / 1000).toFixed(1)} s] ${s}`);

// ---------------------------------------------------------------- setup

const threads = args.threads;
const baseOpts: WhisperEngineOptions = { intraOpThreads: threads, interOpThreads: 1 };
const onnxDir = existsSync(join(args.model, 'onnx')) ? join(args.model, 'onnx') : args.model;
const fileExists = (name: string) => existsSync(join(onnxDir, `${name}.onnx`));

function pkgVersion(name: string): string {
  try {
    return JSON.parse(readFileSync(join('node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return 'not installed';
  }
}

const loadAvg = () =>
  os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(', ');
const uptime = () => {
  try {
    return execFileSync('uptime', { encoding: 'utf8' }).trim();
  } catch {
    return `load average: ${loadAvg()}`;
  }
};

/**
 * The loaded engine: one at a time. Asking for other options closes it first (a real-size model's sessions
 * take GBs: keeping every precision/layout alive got the tiny run killed at 21.5 GB). Sections are ordered so
 * that one engine serves a whole loop; an engine must not be used after the next `engine()` call.
 */
let current: { key: string; e: WhisperEngine } | null = null;
const engineKey = (o: WhisperEngineOptions) => {
  const full: WhisperEngineOptions = { quantized: false, decoderLayout: 'auto', graphOptimizationLevel: 'all', ...baseOpts, ...o };
  return { full, key: JSON.stringify(Object.entries(full).sort(([a], [b]) => a.localeCompare(b))) };
};
/** A full GC where node runs with --expose-gc (npm run bench:asr does): big tensors are freed at once. */
const collect = () => (globalThis as { gc?: () => void }).gc?.();

async function engine(o: WhisperEngineOptions): Promise<WhisperEngine> {
  const { full, key } = engineKey(o);
  if (current?.key === key) return current.e;
  await releaseEngines();
  const e = await WhisperEngine.load(args.model, full);
  current = { key, e };
  return e;
}
async function releaseEngines(): Promise<void> {
  const c = current;
  current = null;
  await c?.e.close();
  collect();
}

/** Peak RSS of this process so far (getrusage), MB; recorded after each section. */
const peakRssMb = () => Math.round(process.resourceUsage().maxRSS / 1024);
/**
 * The section's own peak: RSS sampled every 100 ms between two `section` calls (getrusage's peak only grows, so a
 * section below an earlier one's peak would not show there). A spike shorter than the interval can be missed; the
 * whole run's true peak is `peakRssMb` (the same number `/usr/bin/time -v` reports).
 */
let sampledMax = 0;
/** Sampled peaks of a section's parts (section 6): `part(name)` ends one. */
const partPeaks = new PeakMarks();
/** peakRssMb: sampled within the part; peakSoFarMb: getrusage's peak at its end (a rise over the previous part's
 * means this part set a new peak for the run, even a spike the sampling missed, e.g. while a session loads) */
const parts: { section: string; part: string; peakRssMb: number; peakSoFarMb: number }[] = [];
const sampleRss = () => {
  const rss = process.memoryUsage.rss();
  sampledMax = Math.max(sampledMax, rss);
  partPeaks.sample(rss);
};
const part = (sectionName: string, name: string) => {
  const m = partPeaks.mark(name, process.memoryUsage.rss());
  parts.push({ section: sectionName, part: name, peakRssMb: m.peakMb, peakSoFarMb: peakRssMb() });
  NOTE(`${sectionName} / ${name}: RSS peak ${m.peakMb} MB (sampled), ${peakRssMb()} MB so far`);
};
setInterval(sampleRss, 100).unref();
const memory: { section: string; peakRssMb: number; sectionPeakRssMb: number; rssMb: number }[] = [];
const section = (name: string) => {
  sampleRss();
  memory.push({ section: name, peakRssMb: peakRssMb(), sectionPeakRssMb: Math.round(sampledMax / 2 ** 20), rssMb: Math.round(process.memoryUsage().rss / 2 ** 20) });
  const m = memory.at(-1)!;
  NOTE(`${name}: RSS peak ${m.sectionPeakRssMb} MB in the section (sampled), ${m.peakRssMb} MB so far`);
  sampledMax = 0;
  partPeaks.reset();
  // the next section starts from nothing loaded: the peaks of two sections never add up
  return releaseEngines();
};

const main0 = await engine({});
const SR = main0.info.samplingRate;
const WINDOW = SR * 30;
const cpu = os.cpus()[0]?.model ?? 'unknown';
const meta = {
  date: new Date().toISOString(),
  command: `npm run bench:asr -- ${process.argv.slice(2).join(' ')}`,
  model: args.model,
  modelId: main0.info.id,
  layoutDefault: main0.info.layout,
  vocab: main0.info.vocabSize,
  dModel: main0.config.dModel,
  encoderLayers: Number(JSON.parse(readFileSync(join(args.model, 'config.json'), 'utf8')).encoder_layers),
  decoderLayers: main0.config.decoderLayers,
  files: {
    mergedFp32: fileExists('decoder_model_merged'),
    splitFp32: fileExists('decoder_model') && fileExists('decoder_with_past_model'),
    mergedInt8: fileExists('decoder_model_merged_quantized'),
    splitInt8: fileExists('decoder_model_quantized') && fileExists('decoder_with_past_model_quantized'),
    encoderInt8: fileExists('encoder_model_quantized'),
  },
  intraOpThreads: threads,
  interOpThreads: 1,
  cpu,
  cpuCount: os.cpus().length,
  node: process.version,
  onnxruntimeNode: pkgVersion('onnxruntime-node'),
  transformersJs: pkgVersion('@huggingface/transformers'),
  tokenBudget: BUDGET,
  quick: Q,
  /** the sections run (--sections; all by default) */
  sections: args.sections ? [...args.sections] : null,
  iterations: IT,
  uptimeStart: uptime(),
  uptimeEnd: '',
};

LOG(`# ASR engine benchmark${Q ? ' (--quick smoke mode: few iterations, numbers are not meaningful)' : ''}`);
LOG();
LOG(`- model folder: \`${meta.model}\` (id ${meta.modelId}; d_model ${meta.dModel}, ${meta.encoderLayers}+${meta.decoderLayers} layers, vocab ${meta.vocab})`);
LOG(
  `- decoder layout (auto): ${meta.layoutDefault}; files: merged fp32 ${meta.files.mergedFp32 ? 'yes' : 'no'}, split fp32 ${meta.files.splitFp32 ? 'yes' : 'no'}, merged int8 ${meta.files.mergedInt8 ? 'yes' : 'no'}, split int8 ${meta.files.splitInt8 ? 'yes' : 'no'}`,
);
LOG(`- threads: intraOp ${threads}, interOp 1 (os.availableParallelism() = ${os.availableParallelism()})`);
LOG(`- cpu: ${cpu} ×${meta.cpuCount}; node ${meta.node}; onnxruntime-node ${meta.onnxruntimeNode}; @huggingface/transformers ${meta.transformersJs}`);
LOG(`- token budget: ${BUDGET} new tokens per 30 s window (greedy, temperature 0, no timestamps, no fallback); timing: ${IT.warmup} warm-up + ${IT.iters} timed runs, medians`);
LOG(`- load at start: ${meta.uptimeStart}`);
if (args.sections) LOG(`- sections run: ${[...args.sections].join(', ')} (--sections; the other sections' tables are empty)`);
LOG();

// audio: one long espeak-ng speech file; windows are 30 s slices of it
const seconds = Math.round(args.minutes * 60);
NOTE(`making/reading ${seconds} s of espeak-ng speech`);
const longAudio = speechAudio(Math.max(seconds, 8 * 30), SR, join('.tmp', 'bench'));
const fileAudio = longAudio.samples.subarray(0, seconds * SR);
const windows = Array.from({ length: 8 }, (_, i) => longAudio.samples.slice(i * WINDOW, (i + 1) * WINDOW));
const features = windows.map((w) => main0.features(w));
// with --sections, the shared setup's own peak (the model's first load) is reported apart from the sections'
if (args.sections) await section('0. setup (model load, features)');

const decodeOpts: TranscribeOptions = {
  language: 'en',
  task: 'transcribe',
  timestamps: false,
  temperature: 0,
  maxNewTokens: BUDGET,
  conditionOnPrevious: false,
  noSpeechThreshold: null,
  compressionRatioThreshold: null,
  logprobThreshold: null,
};

// ---------------------------------------------------------------- 1. encoder

interface EncRow {
  precision: 'fp32' | 'int8';
  batch: number;
  msPerCall: Timing;
  msPerWindow: number;
}
const encBatches = Q ? [1, 2] : [1, 2, 4, 8];
async function encoderMs(e: WhisperEngine, batch: number, it = IT): Promise<Timing> {
  const f = Array.from({ length: batch }, (_, i) => features[i % features.length]);
  return measure(() => e.encode(f), it);
}

const precisions: { name: 'fp32' | 'int8'; quantized: boolean }[] = [{ name: 'fp32', quantized: false }];
if (meta.files.encoderInt8 && (meta.files.splitInt8 || meta.files.mergedInt8)) precisions.push({ name: 'int8', quantized: true });

const encRows: EncRow[] = [];
if (want('1')) {
  NOTE('encoder');
  for (const p of precisions) {
    const e = await engine({ quantized: p.quantized });
    for (const b of encBatches) {
      const t = await encoderMs(e, b);
      encRows.push({ precision: p.name, batch: b, msPerCall: t, msPerWindow: t.median / b });
    }
  }

  await section('1. encoder');
}

// ---------------------------------------------------------------- 2. decoder

interface DecRow {
  precision: 'fp32' | 'int8';
  layout: 'merged' | 'split';
  batch: number;
  available: boolean;
  /** model.step only (ORT run + tensor plumbing), ms per step, median over steps and reps */
  rawStepMs: number | null;
  /** BatchDecoder.step (processors, argmax, cache bookkeeping included), ms per step */
  engineStepMs: number | null;
  /** engineStepMs / batch */
  msPerToken: number | null;
  prefillMs: number | null;
}
/**
 * A decoder batch holds its encoder KV cache (decoder layers × key and value × batch × 1500 frames × d_model,
 * fp32 even for int8 weights) twice at the peak (the raw run's and BatchDecoder's): small at batch 16 is 1.8 GB
 * per cache. Batch sizes whose one cache exceeds --max-kv-mb (default 1024) are replaced by the largest power of
 * two that fits, so bench:asr stays within 8 GB on small.
 */
const kvMbPerRow = (main0.config.decoderLayers * 2 * main0.config.maxSourcePositions * main0.config.dModel * 4) / 2 ** 20;
const fitBatch = (b: number) => {
  let x = b;
  while (x > 1 && x * kvMbPerRow > args.maxKvMb) x /= 2;
  return Math.max(1, Math.floor(x));
};
const decBatches = [...new Set((Q ? [1, 4] : [1, 4, 16]).map(fitBatch))];
if (!Q && !decBatches.includes(16)) NOTE(`decoder batch 16 → ${decBatches.at(-1)}: its encoder KV cache alone would be ${Math.round(16 * kvMbPerRow)} MB (--max-kv-mb ${args.maxKvMb})`);
const decReps = reps(3, 1);
const decSteps = Math.max(4, BUDGET);

async function encoderRows(e: WhisperEngine, batch: number): Promise<EncoderOutput> {
  const distinct = Math.min(batch, features.length);
  const enc = await e.encode(features.slice(0, distinct));
  return selectEncoderRows(
    enc,
    Array.from({ length: batch }, (_, i) => i % distinct),
  );
}

/** Per-step timings of the KV-cached decoder at one batch size. */
async function decoderMs(e: WhisperEngine, batch: number, reps = decReps, steps = decSteps): Promise<{ raw: number; engine: number; prefill: number }> {
  const enc = await encoderRows(e, batch);
  const prompt = e.buildPrompt({ language: 'en', timestamps: false }).prompt;
  const raw: number[] = [];
  const eng: number[] = [];
  const pre: number[] = [];
  // raw: model.prefill + model.step, argmax outside the timed region. A function of its own so that its KV
  // cache (GBs at batch 16 on small) is garbage before the BatchDecoder run allocates another one.
  const rawRun = async (warm: boolean) => {
    const t0 = performance.now();
    const first = await e.model.prefill(
      enc,
      Array.from({ length: batch }, () => prompt),
    );
    if (!warm) pre.push(performance.now() - t0);
    let cache: KVCache = first.cache;
    const pick = (logits: Float32Array, seqLen: number, vocab: number) =>
      Array.from({ length: batch }, (_, i) => argmax(logits.subarray((i * seqLen + seqLen - 1) * vocab, (i * seqLen + seqLen) * vocab)));
    let toks = pick(first.logits, first.seqLen, first.vocab);
    for (let s = 0; s < steps; s++) {
      const t1 = performance.now();
      const o = await e.model.step(cache, toks);
      if (!warm) raw.push(performance.now() - t1);
      cache = o.cache;
      toks = pick(o.logits, o.seqLen, o.vocab);
    }
  };
  // engine: BatchDecoder (what transcribe runs per token). A function too: its cache must be unreachable when
  // collected, before the next raw run allocates one.
  const engineRun = async (warm: boolean) => {
    const task = e.task({ language: 'en', timestamps: false, maxNewTokens: steps + 1 });
    const d = await BatchDecoder.start(
      e.model,
      enc,
      Array.from({ length: batch }, () => task),
      e.ids,
    );
    for (let s = 0; s < steps && !d.done; s++) {
      const t1 = performance.now();
      await d.step();
      if (!warm) eng.push(performance.now() - t1);
    }
  };
  for (let r = 0; r < reps + 1; r++) {
    const warm = r === 0;
    await rawRun(warm);
    // the raw run's KV cache lives in ArrayBuffers V8 barely counts: collect it before the next one is allocated
    collect();
    await engineRun(warm);
    collect();
  }
  return { raw: median(raw), engine: median(eng), prefill: median(pre) };
}

const decRows: DecRow[] = [];
const layoutsFor = (p: 'fp32' | 'int8') =>
  (['merged', 'split'] as const).map((l) => ({
    layout: l,
    available: p === 'fp32' ? meta.files[l === 'merged' ? 'mergedFp32' : 'splitFp32'] : meta.files[l === 'merged' ? 'mergedInt8' : 'splitInt8'],
  }));
if (want('2')) {
  NOTE('decoder');
  for (const p of precisions) {
    for (const { layout, available } of layoutsFor(p.name)) {
      const e = available ? await engine({ quantized: p.quantized, decoderLayout: layout }) : null;
      for (const b of decBatches) {
        if (!e) {
          decRows.push({ precision: p.name, layout, batch: b, available: false, rawStepMs: null, engineStepMs: null, msPerToken: null, prefillMs: null });
          continue;
        }
        const t = await decoderMs(e, b);
        decRows.push({
          precision: p.name,
          layout,
          batch: b,
          available: true,
          rawStepMs: round3(t.raw),
          engineStepMs: round3(t.engine),
          msPerToken: round3(t.engine / b),
          prefillMs: round3(t.prefill),
        });
      }
    }
  }

  await section('2. decoder');
}

// ---------------------------------------------------------------- 3. real-time factor of a long file

interface RtfRow {
  precision: 'fp32' | 'int8';
  layout: string;
  audioSeconds: number;
  windows: number;
  tokens: number;
  wall: Timing;
  rtf: number;
  xRealtime: number;
}
const rtfRows: RtfRow[] = [];
if (want('3')) {
  NOTE(`file RTF (${seconds} s)`);
  // every available (precision, layout): int8 usually exists only as split, so fp32 split is the fair int8 reference
  for (const { p, layout } of precisions.flatMap((p) =>
    layoutsFor(p.name)
      .filter((l) => l.available)
      .map((l) => ({ p, layout: l.layout })),
  )) {
    const e = await engine({ quantized: p.quantized, decoderLayout: layout });
    let res: Awaited<ReturnType<WhisperEngine['transcribe']>> = [];
    const wall = await measure(async () => (res = await e.transcribe([{ audio: fileAudio, options: decodeOpts }])), { warmup: reps(1, 0), iters: reps(3, 1) });
    const tpw = res[0].tokensPerWindow;
    rtfRows.push({
      precision: p.name,
      layout: e.info.layout,
      audioSeconds: seconds,
      windows: tpw.length,
      tokens: tpw.reduce((a, w) => a + w.length, 0),
      wall,
      rtf: wall.median / 1000 / seconds,
      xRealtime: seconds / (wall.median / 1000),
    });
  }

  await section('3. file RTF');
}

// ---------------------------------------------------------------- 4. per-request vs batched

const N = Q ? 4 : 8;
/** Share of positions with the same token. int8 exports quantize activations per tensor
 * (DynamicQuantizeLinear over the whole batch), so a batched int8 call is not bit-identical
 * to single calls and a random-weight model, whose logits are nearly flat, can flip tokens. */
function agreement(a: number[][], b: number[][]): number {
  let same = 0;
  let total = 0;
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? [];
    const y = b[i] ?? [];
    const n = Math.max(x.length, y.length);
    total += n;
    for (let j = 0; j < n; j++) if (x[j] === y[j]) same++;
  }
  return total === 0 ? 1 : same / total;
}
interface ThroughputRow {
  precision: 'fp32' | 'int8';
  n: number;
  sequential: Timing;
  batched: Timing;
  seqWindowsPerS: number;
  batchWindowsPerS: number;
  speedup: number;
  sameTokens: boolean;
  /** Fraction of token positions where batched == one-after-another (1 = identical). */
  tokenAgreement: number;
}
const tpRows: ThroughputRow[] = [];
const nWindows = windows.slice(0, N);
if (want('4')) {
  NOTE('per-request vs batched');
  for (const p of precisions) {
    const e = await engine({ quantized: p.quantized });
    let seqTok: number[][] = [];
    let batTok: number[][] = [];
    const { sequential, batched } = await interleave(
      {
        sequential: async () => {
          seqTok = [];
          for (const w of nWindows) seqTok.push((await e.transcribe([{ audio: w, options: decodeOpts }]))[0].tokensPerWindow[0]);
        },
        batched: async () => {
          batTok = (await e.transcribe(nWindows.map((w) => ({ audio: w, options: decodeOpts })))).map((r) => r.tokensPerWindow[0]);
        },
      },
      { warmup: 1, iters: reps(5, 1) },
    );
    tpRows.push({
      precision: p.name,
      n: N,
      sequential,
      batched,
      seqWindowsPerS: N / (sequential.median / 1000),
      batchWindowsPerS: N / (batched.median / 1000),
      speedup: sequential.median / batched.median,
      sameTokens: JSON.stringify(seqTok) === JSON.stringify(batTok),
      tokenAgreement: agreement(seqTok, batTok),
    });
  }

  await section('4. per-request vs batched');
}

// ---------------------------------------------------------------- 5. transformers.js baseline

interface Baseline {
  ran: boolean;
  reason?: string;
  threads: number;
  goldenInput: string;
  tokens: { ours: number[]; theirs: number[]; golden: number[] | null; oursEqTheirs: boolean; oursEqGolden: boolean | null };
  rows: { case: string; ours: Timing; theirs: Timing; oursWindows: number; theirsWindows: number; ratio: number }[];
  /** the load-one-side rounds as run: RSS peak within each (sampled every 100 ms) and the process's peak so far */
  rounds: (Round<'ours' | 'theirs'> & { roundPeakRssMb: number; peakRssMb: number })[];
}
const baseline: Baseline = {
  ran: false,
  threads,
  goldenInput: '',
  tokens: { ours: [], theirs: [], golden: null, oursEqTheirs: false, oursEqGolden: null },
  rows: [],
  rounds: [],
};

/**
 * Ours and transformers.js are never loaded together: at real size each side's sessions and arenas take GBs (small
 * side by side peaked at 9.2 GB), so the two sides alternate by rounds (roundPlan: ours, theirs, then theirs, ours …).
 * Each round loads one side, warms it up (the first calls after a load size the arenas and pre-pack weights), times
 * its share of the calls, releases it and collects garbage; loading is not timed. Same inputs, same budget, same
 * thread count and default session options on both sides (ORT's CPU arena on: neither side sets
 * enableCpuMemArena). The trade-off against interleaving call by call: drift within a round hits one side only, so
 * with few rounds the ratio is noisier on a busy machine; the A B / B A order cancels a linear drift, and a child
 * process per side (the alternative) would cost the same reloads and split the RSS report. transformers.js's
 * pipeline(array) runs one generate per window (batch 1, its memory does not grow with N); ours gets the N windows
 * in one transcribe call, batched like section 4 (and a one-request-after-another row beside it).
 */
const BASELINE_ROUNDS = 2;
if (args.baseline && want('5')) {
  NOTE('transformers.js baseline');
  try {
    const tjs = await import('@huggingface/transformers');
    tjs.env.allowRemoteModels = false;
    tjs.env.allowLocalModels = true;
    tjs.env.localModelPath = dirname(args.model) + '/';
    type Pipe = {
      (audio: Float32Array | Float32Array[], o: object): Promise<unknown>;
      processor: (a: Float32Array) => Promise<{ input_features: unknown }>;
      model: { generate: (o: object) => Promise<{ tolist: () => (number | bigint)[][] }> };
      dispose: () => Promise<unknown>;
    };
    // the pipeline's generic type is too deep for tsc here; we only call it
    const loadPipe = async () =>
      (await (tjs.pipeline as unknown as (task: string, model: string, o: object) => Promise<unknown>)('automatic-speech-recognition', basename(args.model), {
        dtype: 'fp32',
        device: 'cpu',
        session_options: { intraOpNumThreads: threads, interOpNumThreads: 1 },
      })) as Pipe;
    const genOpts = { language: 'en', task: 'transcribe', return_timestamps: false };

    // token check on a golden input (no timestamps, 24 tokens like golden.json), else on the speech file
    const goldenPath = join(args.model, 'golden', 'golden.json');
    let gAudio: Float32Array;
    let gTokens: number[] | null = null;
    let gBudget = 24;
    if (existsSync(goldenPath) && existsSync(join(args.model, 'golden', 'jfk.wav'))) {
      const g = JSON.parse(readFileSync(goldenPath, 'utf8'));
      gAudio = loadWav(join(args.model, 'golden', 'jfk.wav'), SR);
      gTokens = g.inputs?.jfk?.generate?.notimestamps ?? null;
      gBudget = gTokens?.length ?? g.max_new_tokens ?? 24;
      baseline.goldenInput = 'golden/jfk.wav';
    } else {
      gAudio = longAudio.samples.slice(0, 11 * SR);
      baseline.goldenInput = 'first 11 s of the espeak-ng file (model folder has no golden/jfk.wav)';
    }
    let ours: number[] | null = null;
    let theirsSeq: number[] | null = null;
    let promptLen = 0;
    let eot = -1;

    const theirOpts = { max_new_tokens: BUDGET, ...genOpts };
    const it = { warmup: 1, iters: reps(5, 1) };
    const s = { one: { ours: [] as number[], theirs: [] as number[] }, set: { ours: [] as number[], oursSeq: [] as number[], theirs: [] as number[] } };
    const timed = async (into: number[], fn: () => Promise<unknown>, warm: boolean) => {
      const t0 = performance.now();
      await fn();
      if (!warm) into.push(performance.now() - t0);
    };
    // the long-file row compares with section 3's run of ours (fp32, default layout): only when section 3 ran
    const fileOurs = rtfRows.find((x) => x.precision === 'fp32' && x.layout === main0.info.layout);
    const plan = roundPlan(['ours', 'theirs'] as const, it.iters, BASELINE_ROUNDS);
    const lastTheirs = plan.findLast((r) => r.side === 'theirs');
    let longTheirs: Timing | null = null;
    for (const r of plan) {
      NOTE(`baseline round ${r.round + 1}: ${r.side === 'ours' ? 'ours' : 'transformers.js'} (${it.warmup} warm-up + ${r.iters} timed)`);
      sampleRss();
      const sectionMax = sampledMax;
      sampledMax = 0;
      if (r.side === 'ours') {
        const e = await engine({}); // fp32, auto layout (merged when present, like transformers.js)
        if (!ours) {
          ours = (await e.transcribe([{ audio: gAudio, options: { ...decodeOpts, maxNewTokens: gBudget } }]))[0].tokensPerWindow[0];
          promptLen = e.buildPrompt({ language: 'en', timestamps: false }).prompt.length;
          eot = e.tokenizer.eot;
        }
        for (let i = 0; i < it.warmup + r.iters; i++) {
          const warm = i < it.warmup;
          await timed(s.one.ours, () => e.transcribe([{ audio: windows[0], options: decodeOpts }]), warm);
          await timed(s.set.ours, () => e.transcribe(nWindows.map((w) => ({ audio: w, options: decodeOpts }))), warm);
          await timed(
            s.set.oursSeq,
            async () => {
              for (const w of nWindows) await e.transcribe([{ audio: w, options: decodeOpts }]);
            },
            warm,
          );
        }
        await releaseEngines();
      } else {
        const pipe = await loadPipe();
        try {
          if (!theirsSeq) {
            const feats = await pipe.processor(gAudio);
            theirsSeq = (await pipe.model.generate({ inputs: feats.input_features, max_new_tokens: gBudget, ...genOpts })).tolist()[0].map(Number);
          }
          for (let i = 0; i < it.warmup + r.iters; i++) {
            const warm = i < it.warmup;
            await timed(s.one.theirs, () => pipe(windows[0], theirOpts), warm);
            await timed(s.set.theirs, () => pipe(nWindows, theirOpts), warm);
          }
          // (c) the long file, chunk_length_s 30 (transformers.js default stride chunk/6 → overlapping chunks)
          if (args.baselineLong && fileOurs && r === lastTheirs) longTheirs = await measure(() => pipe(fileAudio, { ...theirOpts, chunk_length_s: 30 }), { warmup: 0, iters: reps(3, 1) });
        } finally {
          await pipe.dispose(); // its sessions: as large as ours
          collect();
        }
      }
      sampleRss();
      baseline.rounds.push({ ...r, roundPeakRssMb: Math.round(sampledMax / 2 ** 20), peakRssMb: peakRssMb() });
      sampledMax = Math.max(sampledMax, sectionMax);
    }
    const theirs = (theirsSeq ?? []).slice(promptLen).filter((t) => t !== eot);
    baseline.tokens = {
      ours: ours ?? [],
      theirs,
      golden: gTokens,
      oursEqTheirs: JSON.stringify(ours) === JSON.stringify(theirs),
      oursEqGolden: gTokens ? JSON.stringify(ours) === JSON.stringify(gTokens) : null,
    };
    const [oneOurs, oneTheirs, setOurs, seqOurs, setTheirs] = [s.one.ours, s.one.theirs, s.set.ours, s.set.oursSeq, s.set.theirs].map(summarize);
    // (a) one 30 s window
    baseline.rows.push({ case: 'one 30 s window', ours: oneOurs, theirs: oneTheirs, oursWindows: 1, theirsWindows: 1, ratio: oneTheirs.median / oneOurs.median });
    // (b) the N-window set: ours batched (one transcribe call), theirs as an array (the pipeline loops)
    baseline.rows.push({ case: `${N} windows (ours batched, theirs pipeline(array))`, ours: setOurs, theirs: setTheirs, oursWindows: N, theirsWindows: N, ratio: setTheirs.median / setOurs.median });
    baseline.rows.push({ case: `${N} windows (ours one request after another)`, ours: seqOurs, theirs: setTheirs, oursWindows: N, theirsWindows: N, ratio: setTheirs.median / seqOurs.median });
    if (longTheirs && fileOurs) {
      const stride = 30 / 6;
      const theirsWindows = Math.max(1, Math.ceil((seconds - 30) / (30 - 2 * stride)) + 1);
      const fr = fileOurs;
      baseline.rows.push({
        case: `${seconds} s file (theirs chunk_length_s 30)`,
        ours: fr.wall,
        theirs: longTheirs,
        oursWindows: fr.windows,
        theirsWindows,
        ratio: longTheirs.median / fr.wall.median,
      });
    }
    baseline.ran = true;
  } catch (err) {
    baseline.reason = (err as Error).stack ?? String(err);
    console.error(`transformers.js baseline failed: ${baseline.reason}`);
  } finally {
    await releaseEngines();
    collect();
  }
} else baseline.reason = args.baseline ? 'not in --sections' : '--no-baseline';
if (want('5')) await section('5. transformers.js baseline');

// ---------------------------------------------------------------- 6. knobs

interface KnobRow {
  knob: string;
  value: string;
  encoderB1: number;
  decoderStepB1: number | null;
  decoderStepB16: number | null;
}
const K6 = '6. knobs';
const knobRows: KnobRow[] = [];
const knobRounds = reps(4, 1);
const bigB = fitBatch(Q ? 4 : 16);
const knobSteps = Q ? 4 : 16;
/** Bytes of the fp32 encoder and default decoder graphs with their external data: what one engine maps. */
const engineWeightBytes = (() => {
  const dec = meta.files.mergedFp32 ? ['decoder_model_merged'] : ['decoder_model', 'decoder_with_past_model'];
  return ['encoder_model', ...dec]
    .flatMap((n) => [`${n}.onnx`, `${n}.onnx_data`, `${n}.onnx.data`])
    .map((f) => join(onnxDir, f))
    .filter((f) => existsSync(f))
    .reduce((a, f) => a + statSync(f).size, 0);
})();
/** Knob variants are kept loaded side by side (and measured round-robin) only while their weights add up to this: each
 * engine also keeps its ORT arenas at their batch-16 peak, so 4 tiny engines together reached 8.9 GB. */
const INTERLEAVE_BYTES = 256 * 2 ** 20;
const knobModes: string[] = [];
/**
 * Small models: engines for every variant are loaded first, then measured round-robin (see interleave), so load
 * changes on a shared machine hit all variants alike. Large ones: one variant after the other (memory).
 */
async function knobs(variants: { knob: string; value: string; o: WhisperEngineOptions }[]): Promise<void> {
  const together = variants.length * engineWeightBytes <= INTERLEAVE_BYTES;
  knobModes.push(`${variants[0].knob}: ${together ? 'variants loaded together, measured round-robin' : 'one variant loaded at a time (weights too large to keep all)'}`);
  const acc = variants.map(() => ({ enc: [] as number[], d1: [] as number[], dB: [] as number[] }));
  const warmRounds = Q ? 0 : 1;
  const round = async (e: WhisperEngine, i: number, warm: boolean) => {
    const f = [features[0]];
    const t0 = performance.now();
    await e.encode(f);
    const encMs = performance.now() - t0;
    const d1 = await decoderMs(e, 1, 1, knobSteps);
    const dB = await decoderMs(e, bigB, 1, knobSteps);
    if (warm) return; // warm-up round (engines already ran at load in --quick)
    acc[i].enc.push(encMs);
    acc[i].d1.push(d1.engine);
    acc[i].dB.push(dB.engine);
  };
  if (together) {
    await releaseEngines();
    const es: WhisperEngine[] = [];
    try {
      for (const v of variants) es.push(await WhisperEngine.load(args.model, engineKey(v.o).full));
      for (let r = 0; r < knobRounds + warmRounds; r++) for (let i = 0; i < variants.length; i++) await round(es[i], i, r < warmRounds);
    } finally {
      for (const e of es) await e.close();
    }
    part(K6, `${variants[0].knob} (variants together)`);
  } else {
    for (let i = 0; i < variants.length; i++) {
      const e = await engine(variants[i].o);
      for (let r = 0; r < knobRounds + warmRounds; r++) await round(e, i, r < warmRounds);
      await releaseEngines();
      part(K6, `${variants[i].knob} ${variants[i].value}`);
    }
  }
  variants.forEach((v, i) =>
    knobRows.push({ knob: v.knob, value: v.value, encoderB1: round3(median(acc[i].enc)), decoderStepB1: round3(median(acc[i].d1)), decoderStepB16: round3(median(acc[i].dB)) }),
  );
}
if (want('6')) {
  NOTE('knobs');
  partPeaks.reset();
  await knobs((['disabled', 'basic', 'extended', 'all'] as const).map((level) => ({ knob: 'graphOptimizationLevel', value: level, o: { graphOptimizationLevel: level } })));
  await releaseEngines(); // keep memory flat for the rest
  await knobs([...new Set([1, 2, os.availableParallelism()])].map((t) => ({ knob: 'intraOpThreads', value: String(t), o: { intraOpThreads: t } })));
  await releaseEngines();

  // intra-op thread spinning: not exposed by WhisperModelOptions, so measured on a raw encoder session
  {
    const encFile = join(onnxDir, 'encoder_model.onnx');
    const mk = (spin: boolean) =>
      ort.InferenceSession.create(encFile, {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
        extra: { session: { intra_op: { allow_spinning: spin ? '1' : '0' } } },
      });
    const sOn = await mk(true);
    const sOff = await mk(false);
    const { nMels: nm, nFrames: nf } = main0.config.features;
    const feed = { input_features: new ort.Tensor('float32', features[0], [1, nm, nf]) };
    const t = await interleave({ on: () => sOn.run(feed), off: () => sOff.run(feed) }, { warmup: 1, iters: reps(2 * knobRounds, 1) });
    knobRows.push({ knob: 'allow_spinning (raw encoder session)', value: `1 (ORT default), ${threads} threads`, encoderB1: round3(t.on.median), decoderStepB1: null, decoderStepB16: null });
    knobRows.push({ knob: 'allow_spinning (raw encoder session)', value: `0, ${threads} threads`, encoderB1: round3(t.off.median), decoderStepB1: null, decoderStepB16: null });
    await sOn.release();
    await sOff.release();
    part(K6, 'allow_spinning (two raw encoder sessions)');
  }

  // merged decoder, cached branch: the If passes the whole encoder KV through as present.*.encoder.* outputs on
  // every step. The engine fetches all outputs; measure what restricting the fetches would give (raw session).
  // Memory: the engine only computes the prefill (encoder rows, KV caches) and is closed before the raw session
  // loads, so one copy of the merged decoder is loaded at a time (the two together peaked at 8.2 GB on small); a full
  // GC before every timed call keeps one side's copied-out encoder KV from being collected in the other's time.
  if (meta.files.mergedFp32) {
    const B = bigB;
    const e = await engine({ decoderLayout: 'merged' });
    const enc = await encoderRows(e, B);
    const prompt = e.buildPrompt({ language: 'en', timestamps: false }).prompt;
    const pre = await e.model.prefill(
      enc,
      Array.from({ length: B }, () => prompt),
    );
    const token = BigInt(e.tokenizer.eot - 1);
    await releaseEngines();
    const sess = await ort.InferenceSession.create(join(onnxDir, 'decoder_model_merged.onnx'), { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
    const slim = sess.outputNames.filter((n) => !/^present\.\d+\.encoder\./.test(n));
    const stepsFrom = async (fetches: string[] | null) => {
      let dec = pre.cache.decoder;
      for (let i = 0; i < knobSteps; i++) {
        const feeds: Record<string, ort.Tensor> = {
          input_ids: new ort.Tensor('int64', new BigInt64Array(B).fill(token), [B, 1]),
          ...dec,
          ...pre.cache.encoder,
          encoder_hidden_states: pre.cache.encoderHidden!,
          use_cache_branch: new ort.Tensor('bool', new Uint8Array([1]), [1]),
        };
        const out = fetches ? await sess.run(feeds, fetches) : await sess.run(feeds);
        dec = Object.fromEntries(
          Object.entries(out)
            .filter(([n]) => /^present\.\d+\.decoder\./.test(n))
            .map(([n, t]) => [n.replace('present', 'past_key_values'), t as ort.Tensor]),
        );
      }
    };
    const t = await interleave({ all: () => stepsFrom(null), slim: () => stepsFrom(slim) }, { warmup: 1, iters: reps(knobRounds, 1), before: collect });
    knobRows.push({
      knob: 'merged decoder fetches (raw session)',
      value: 'all outputs (the encoder KV pass-through too)',
      encoderB1: NaN,
      decoderStepB1: null,
      decoderStepB16: round3(t.all.median / knobSteps),
    });
    knobRows.push({
      knob: 'merged decoder fetches (raw session)',
      value: 'logits + decoder presents only (what the engine fetches)',
      encoderB1: NaN,
      decoderStepB1: null,
      decoderStepB16: round3(t.slim.median / knobSteps),
    });
    await sess.release();
    collect();
    part(K6, 'merged decoder fetches (engine closed after the prefill, then one raw session)');
  }

  await section(K6);
}

// ---------------------------------------------------------------- 6b. encoder on shorter audio

interface ShortRow {
  frames: number;
  ok: boolean;
  outputShape?: number[];
  ms?: number;
  error?: string;
}
const cleanErr = (err: unknown) =>
  String((err as Error).message)
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 200);
const shapeOf = (m: unknown) => (m && typeof m === 'object' && 'shape' in m ? (m as { shape: (number | string)[] }).shape : 'unknown');
const nMels = main0.config.nMels;
const fullFrames = main0.config.features.nFrames;
/** The first `frames` columns of a real window's log-mel. */
const firstFrames = (frames: number) => {
  const f = new Float32Array(nMels * frames);
  for (let m = 0; m < nMels; m++) f.set(features[0].subarray(m * fullFrames, m * fullFrames + frames), m * frames);
  return f;
};
async function shortEncoderRows(e: WhisperEngine, frameList: number[]): Promise<ShortRow[]> {
  const rows: ShortRow[] = [];
  for (const frames of frameList) {
    try {
      const f = firstFrames(frames);
      let shape: number[] = [];
      const t = await measure(
        async () => {
          const o = await e.encode([f], frames);
          shape = [o.batch, o.frames, o.dModel];
        },
        { warmup: 1, iters: reps(5, 2) },
      );
      rows.push({ frames, ok: true, outputShape: shape, ms: round3(t.median) });
    } catch (err) {
      rows.push({ frames, ok: false, error: cleanErr(err) });
    }
  }
  return rows;
}
// The graph as exported (fixed 3000 frames) and as the engine loads it (encoder-graph.ts: symbolic time axis,
// position table sliced to the conv output), one engine at a time.
let shortRows: ShortRow[] = [];
let patchedRows: ShortRow[] = [];
let patchNote = 'not in --sections';
if (want('6b')) {
  NOTE('encoder on fewer frames');
  await releaseEngines();
  const asExported = await WhisperEngine.load(args.model, { intraOpThreads: threads, interOpThreads: 1, trimmableEncoder: false });
  shortRows = await shortEncoderRows(asExported, [fullFrames, fullFrames / 2]);
  await asExported.close();
  const rewritten = await engine({});
  patchedRows = await shortEncoderRows(rewritten, [250, 500, 1000, 1500, fullFrames]);
  patchNote = rewritten.model.trimmable ? 'rewritten at load (encoder-graph.ts)' : 'the graph could not be rewritten';
  await releaseEngines();
}
const shortAudio = {
  inputShape: [1, nMels, 'encoder_frames'],
  outputShape: [1, 'encoder_frames/2', main0.config.dModel],
  maxSourcePositions: main0.config.maxSourcePositions,
  rows: shortRows,
  patched: { note: patchNote, rows: patchedRows },
};

if (want('6b')) await section('6b. encoder on shorter audio');

// ---------------------------------------------------------------- report

meta.uptimeEnd = uptime();
const encTable = table(
  ['precision', 'batch', 'ms / call (median)', 'min', 'ms / 30 s window', 'windows / s'],
  encRows.map((r) => [r.precision, r.batch, fmt(r.msPerCall.median), fmt(r.msPerCall.min), fmt(r.msPerWindow), fmt(1000 / r.msPerWindow)]),
);
const decTable = table(
  ['precision', 'layout', 'batch', 'prefill ms', 'raw step ms', 'engine step ms', 'ms / token', 'tokens / s'],
  decRows.map((r) =>
    r.available
      ? [r.precision, r.layout, r.batch, fmt(r.prefillMs), fmt(r.rawStepMs), fmt(r.engineStepMs), fmt(r.msPerToken), fmt(1000 / r.msPerToken!)]
      : [r.precision, r.layout, r.batch, 'n/a (no files)', '', '', '', ''],
  ),
);
const rtfTable = table(
  ['precision', 'layout', 'audio', 'windows', 'tokens', 'wall s (median)', 'RTF', '× real time'],
  rtfRows.map((r) => [r.precision, r.layout, `${r.audioSeconds} s`, r.windows, r.tokens, fmt(r.wall.median / 1000), fmt(r.rtf, 4), fmt(r.xRealtime)]),
);
const tpTable = table(
  ['precision', 'N', 'one after another ms', 'batched ms', 'windows/s sequential', 'windows/s batched', 'speed-up', 'same tokens'],
  tpRows.map((r) => [
    r.precision,
    r.n,
    fmt(r.sequential.median),
    fmt(r.batched.median),
    fmt(r.seqWindowsPerS),
    fmt(r.batchWindowsPerS),
    `${fmt(r.speedup, 2)}×`,
    r.sameTokens ? 'yes' : `${fmt(r.tokenAgreement * 100, 1)}% of positions`,
  ]),
);
const blTable = baseline.ran
  ? table(
      ['case', 'ours ms', 'transformers.js ms', 'windows ours / theirs', 'our speed ÷ theirs'],
      baseline.rows.map((r) => [r.case, fmt(r.ours.median), fmt(r.theirs.median), `${r.oursWindows} / ${r.theirsWindows}`, `${fmt(r.ratio, 2)}×`]),
    )
  : `transformers.js baseline not run: ${baseline.reason}`;
const knobTable = table(
  ['knob', 'value', 'encoder b1 ms', 'decoder step b1 ms', `decoder step b${bigB} ms`],
  knobRows.map((r) => [r.knob, r.value, fmt(r.encoderB1), fmt(r.decoderStepB1), fmt(r.decoderStepB16)]),
);
const shortTable = table(
  ['encoder file', 'mel frames fed', 'result', 'output shape', 'ms'],
  [...shortRows.map((r) => ({ ...r, file: 'as exported' })), ...patchedRows.map((r) => ({ ...r, file: 'rewritten at load' }))].map((r) => [
    r.file,
    r.frames,
    r.ok ? 'runs' : `error: ${r.error!.replace(/\|/g, '/')}`,
    r.outputShape ? `[${r.outputShape.join(', ')}]` : '',
    r.ms !== undefined ? fmt(r.ms) : '',
  ]),
);
// derived "big wins"
const enc = (p: string, b: number) => encRows.find((r) => r.precision === p && r.batch === b);
const dec = (p: string, l: string, b: number) => decRows.find((r) => r.precision === p && r.layout === l && r.batch === b && r.available);
const defLayout = main0.info.layout;
const wins: string[] = [];
const bMax = encBatches[encBatches.length - 1];
const dMax = decBatches[decBatches.length - 1];
if (enc('fp32', 1) && enc('fp32', bMax))
  wins.push(
    `encoder batching: ${fmt(enc('fp32', 1)!.msPerWindow)} → ${fmt(enc('fp32', bMax)!.msPerWindow)} ms/window (b1 → b${bMax}, fp32), ×${fmt(enc('fp32', 1)!.msPerWindow / enc('fp32', bMax)!.msPerWindow, 2)}`,
  );
if (dec('fp32', defLayout, 1) && dec('fp32', defLayout, dMax))
  wins.push(
    `decoder batching: ${fmt(dec('fp32', defLayout, 1)!.msPerToken)} → ${fmt(dec('fp32', defLayout, dMax)!.msPerToken)} ms/token (b1 → b${dMax}, fp32 ${defLayout}), ×${fmt(dec('fp32', defLayout, 1)!.msPerToken! / dec('fp32', defLayout, dMax)!.msPerToken!, 2)}`,
  );
if (enc('int8', 1) && enc('fp32', 1))
  wins.push(`int8 encoder: ${fmt(enc('fp32', 1)!.msPerWindow)} → ${fmt(enc('int8', 1)!.msPerWindow)} ms/window at b1 (×${fmt(enc('fp32', 1)!.msPerWindow / enc('int8', 1)!.msPerWindow, 2)})`);
if (dec('int8', 'split', 1) && dec('fp32', 'split', 1))
  wins.push(
    `int8 decoder (split): ${fmt(dec('fp32', 'split', 1)!.engineStepMs)} → ${fmt(dec('int8', 'split', 1)!.engineStepMs)} ms/step at b1 (×${fmt(dec('fp32', 'split', 1)!.engineStepMs! / dec('int8', 'split', 1)!.engineStepMs!, 2)})`,
  );
if (dec('fp32', 'merged', 1) && dec('fp32', 'split', 1))
  wins.push(`merged vs split (fp32, b1): ${fmt(dec('fp32', 'merged', 1)!.engineStepMs)} vs ${fmt(dec('fp32', 'split', 1)!.engineStepMs)} ms/step`);
const rt = (p: string, l: string) => rtfRows.find((r) => r.precision === p && r.layout === l);
for (const l of ['split', 'merged']) {
  const r32 = rt('fp32', l);
  const r8 = rt('int8', l);
  if (r32 && r8) wins.push(`int8 end to end (${seconds} s file, ${l} decoder both): RTF ${fmt(r32.rtf, 4)} → ${fmt(r8.rtf, 4)} (×${fmt(r32.rtf / r8.rtf, 2)})`);
}
if (rt('fp32', 'merged') && rt('fp32', 'split'))
  wins.push(
    `decoder layout end to end (${seconds} s file, fp32): merged RTF ${fmt(rt('fp32', 'merged')!.rtf, 4)} vs split ${fmt(rt('fp32', 'split')!.rtf, 4)} (×${fmt(rt('fp32', 'merged')!.rtf / rt('fp32', 'split')!.rtf, 2)} for split)`,
  );
for (const r of tpRows) wins.push(`request batching (${r.precision}, N=${r.n}): ×${fmt(r.speedup, 2)} windows/s`);
const lvl = (v: string) => knobRows.find((r) => r.knob === 'graphOptimizationLevel' && r.value === v);
if (lvl('disabled') && lvl('all'))
  wins.push(
    `graphOptimizationLevel disabled → all: encoder b1 ${fmt(lvl('disabled')!.encoderB1)} → ${fmt(lvl('all')!.encoderB1)} ms, decoder step b1 ${fmt(lvl('disabled')!.decoderStepB1)} → ${fmt(lvl('all')!.decoderStepB1)} ms`,
  );
const spin = knobRows.filter((r) => r.knob.startsWith('allow_spinning'));
if (spin.length === 2) wins.push(`intra-op spinning on → off (encoder b1, raw session, ${threads} threads): ${fmt(spin[0].encoderB1)} → ${fmt(spin[1].encoderB1)} ms`);
const mf = knobRows.filter((r) => r.knob.startsWith('merged decoder fetches'));
if (mf.length === 2)
  wins.push(
    `merged decoder, cached step b${bigB} (raw session): fetching all outputs ${fmt(mf[0].decoderStepB16)} ms vs logits + decoder presents only ${fmt(mf[1].decoderStepB16)} ms (the encoder KV pass-through is copied out every step)`,
  );
const th = (v: string) => knobRows.find((r) => r.knob === 'intraOpThreads' && r.value === v);
if (th('1') && th('2'))
  wins.push(
    `intraOpThreads 1 → 2: encoder b1 ${fmt(th('1')!.encoderB1)} → ${fmt(th('2')!.encoderB1)} ms, decoder step b1 ${fmt(th('1')!.decoderStepB1)} → ${fmt(th('2')!.decoderStepB1)} ms, b${bigB} ${fmt(th('1')!.decoderStepB16)} → ${fmt(th('2')!.decoderStepB16)} ms`,
  );

const atFull = patchedRows.find((r) => r.ok && r.frames === fullFrames);
const shortest = patchedRows.find((r) => r.ok && r.frames !== fullFrames);
const refused = shortRows.find((r) => !r.ok);
const shortVerdict =
  (refused ? `As exported the encoder refuses anything but ${fullFrames} frames (${refused.frames} → "${refused.error}"). ` : '') +
  (atFull && shortest
    ? `Rewritten at load (symbolic time axis, position table sliced to the conv output; golden short_encoder.json reproduced), it runs ${shortest.frames} frames in ${fmt(shortest.ms!)} ms against ${fmt(atFull.ms!)} ms for ${fullFrames} (${fmt(atFull.ms! / shortest.ms!)}×): live partials use it (encoder: 'trimmed'), finals per FINAL_ENCODER.`
    : `(${patchNote})`);

const tokLine = baseline.ran
  ? `token match (${baseline.goldenInput}, no timestamps, ${baseline.tokens.ours.length} tokens): ours == transformers.js: ${baseline.tokens.oursEqTheirs ? 'yes' : 'NO'}` +
    (baseline.tokens.oursEqGolden === null ? '' : `; ours == golden: ${baseline.tokens.oursEqGolden ? 'yes' : 'NO'}`)
  : 'token match: not checked (baseline not run)';

LOG('## 1. Encoder (ms per 30 s window)');
LOG();
LOG(encTable);
LOG();
LOG(
  `## 2. Decoder (KV-cached step; ${decSteps} steps from a ${main0.buildPrompt({ language: 'en', timestamps: false }).prompt.length}-token prompt; raw = model.step, engine = BatchDecoder.step incl. processors + argmax)`,
);
LOG();
LOG(decTable);
LOG();
if (!Q && !decBatches.includes(16)) {
  LOG(`Batch 16 lowered to ${decBatches.at(-1)}: one batch-16 encoder KV cache would be ${Math.round(16 * kvMbPerRow)} MB (limit --max-kv-mb ${args.maxKvMb}).`);
  LOG();
}
LOG(`## 3. File real-time factor (${seconds} s espeak-ng speech, ${BUDGET} tokens per window, no timestamps, no conditioning, no fallback)`);
LOG();
LOG(rtfTable);
LOG();
LOG(`## 4. Per-request vs batched (${N} different 30 s windows, ${BUDGET} tokens each)`);
LOG();
LOG(tpTable);
LOG();
LOG(
  'fp32 batched must give the same tokens as one request at a time. The int8 exports quantize activations per tensor (DynamicQuantizeLinear over the whole batch), so int8 results depend slightly on batch companions; with random weights (near-flat logits) that can flip tokens.',
);
LOG();
LOG(`## 5. transformers.js ${meta.transformersJs} baseline (same files, fp32, cpu, intraOpNumThreads ${threads}, max_new_tokens ${BUDGET}, en/transcribe)`);
LOG();
LOG(blTable);
LOG();
LOG(tokLine);
LOG();
if (baseline.rounds.length)
  LOG(
    `One side loaded at a time, alternating by rounds (warm-up, timed calls, release; loading not timed): ${baseline.rounds
      .map((r) => `${r.side === 'ours' ? 'ours' : 'transformers.js'} ×${r.iters} (RSS peak ${r.roundPeakRssMb} MB)`)
      .join(', ')}.`,
  );
LOG();
LOG('## 6. Knobs (fp32, auto layout)');
LOG();
LOG(knobTable);
LOG();
for (const m of knobModes) LOG(`- ${m}`);
LOG();
LOG('### Big wins');
LOG();
for (const w of wins) LOG(`- ${w}`);
LOG();
LOG(`### Encoder on shorter audio (input_features ${JSON.stringify(shortAudio.inputShape)} → last_hidden_state ${JSON.stringify(shortAudio.outputShape)})`);
LOG();
LOG(shortTable);
LOG();
LOG(shortVerdict);
LOG();
LOG(`load at end: ${meta.uptimeEnd}`);
LOG();
LOG(`## Memory (one engine at a time; fp32 encoder + default decoder weights ${fmt(engineWeightBytes / 2 ** 20)} MB)`);
LOG();
LOG(
  table(
    ['after section', 'peak RSS so far (MB)', 'section peak, sampled every 100 ms (MB)', 'RSS now (MB)'],
    memory.map((m) => [m.section, m.peakRssMb, m.sectionPeakRssMb, m.rssMb]),
  ),
);
if (parts.length) {
  LOG();
  LOG(
    table(
      ['section', 'part', 'part peak, sampled every 100 ms (MB)', 'peak RSS so far at its end (MB)'],
      parts.map((p) => [p.section, p.part, p.peakRssMb, p.peakSoFarMb]),
    ),
  );
}

const json = {
  meta,
  memory,
  memoryParts: parts,
  encoder: encRows,
  decoder: decRows,
  rtf: rtfRows,
  throughput: tpRows,
  baseline,
  knobs: knobRows,
  wins,
  shortAudio: { ...shortAudio, verdict: shortVerdict },
  tokenMatch: tokLine,
};
mkdirSync(dirname(resolve(args.out)), { recursive: true });
writeFileSync(args.out, JSON.stringify(json, null, 1) + '\n');
NOTE(`wrote ${args.out}`);
await releaseEngines();
