/**
 * Where one cached decoder step's time goes (issue 15: "each decoded token costs 8.5–9.3 ms"): the
 * decoder_with_past session of a Whisper folder, run for `--steps` cached steps after a prefill, with
 * onnxruntime's own profiler on. Prints, per step (medians / sums over the timed steps):
 *  - the session.run wall time, and within it the kernels by op type, the vocabulary projection apart
 *    (the MatMul whose weight is [d_model, vocab]), and what is left (onnxruntime's own work around the
 *    kernels: copying feeds and fetches — the growing self-attention KV, the logits — and scheduling);
 *  - our JavaScript work on the logits (the Whisper processors, argmax) as the engine does it.
 *
 *   npm run bench:decoder-step -- MODEL_DIR [--steps 64] [--threads 2] [--quantized] [--no-spin]
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { whisperLogitsProcessors } from '../src/engines/whisper/logits-processors.ts';
import { applyProcessors, argmax } from '../src/engines/seq2seq/logits.ts';
import { fmt, median } from './lib/stats.ts';

interface ProfileEvent {
  cat: string;
  name: string;
  dur: number;
  args?: { op_name?: string };
}

async function main() {
  const { values: v, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      steps: { type: 'string', default: '64' },
      threads: { type: 'string', default: '2' },
      quantized: { type: 'boolean', default: false },
      'no-spin': { type: 'boolean', default: false },
    },
  });
  const dir = positionals[0];
  if (!dir) {
    console.error('usage: npm run bench:decoder-step -- MODEL_DIR [--steps 64] [--threads 2] [--quantized]');
    process.exit(2);
  }
  const steps = Number(v.steps);
  const q = v.quantized ? '_quantized' : '';
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const d: number = cfg.d_model;
  const vocab: number = cfg.vocab_size;
  const profDir = mkdtempSync(join(tmpdir(), 'decoder-step-'));
  const base: ort.InferenceSession.SessionOptions = { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: Number(v.threads) };
  // --no-spin: intra-op threads sleep instead of spinning between ops (what a shared, loaded machine may want)
  if (v['no-spin']) base.extra = { session: { intra_op: { allow_spinning: '0' } } };
  const first = await ort.InferenceSession.create(join(dir, 'onnx', `decoder_model${q}.onnx`), base);
  const past = await ort.InferenceSession.create(join(dir, 'onnx', `decoder_with_past_model${q}.onnx`), {
    ...base,
    enableProfiling: true,
    profileFilePrefix: join(profDir, 'step'),
  });

  // The step's cost does not depend on the encoder's values: a fixed pseudo-random [1, 1500, d].
  const hidden = new Float32Array(cfg.max_source_positions * d);
  let seed = 1;
  for (let i = 0; i < hidden.length; i++) hidden[i] = ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  const prompt = [50258, 50259, 50359, 50363];
  const ids = (xs: number[]) => new ort.Tensor('int64', BigInt64Array.from(xs.map(BigInt)), [1, xs.length]);
  const out0 = await first.run({ input_ids: ids(prompt), encoder_hidden_states: new ort.Tensor('float32', hidden, [1, cfg.max_source_positions, d]) });
  const kv: Record<string, ort.Tensor> = {};
  for (const [k, t] of Object.entries(out0)) if (k.startsWith('present.')) kv[k.replace('present.', 'past_key_values.')] = t as ort.Tensor;

  const procs = whisperLogitsProcessors({
    suppressTokens: cfg.suppress_tokens ?? [],
    beginSuppressTokens: cfg.begin_suppress_tokens ?? [],
    timestamps: false,
    timestampRules: { eot: 50257, noTimestamps: 50363, timestampBegin: 50364, maxInitialTimestampIndex: 50 },
  });
  const tokens = [...prompt];
  let logits: Float32Array = (out0.logits.data as Float32Array).slice(-vocab);
  const runMs: number[] = [];
  const jsMs: number[] = [];
  for (let s = 0; s < steps; s++) {
    const tj = performance.now();
    const row = applyProcessors(procs, logits.slice(), { tokens, beginIndex: prompt.length });
    const next = argmax(row);
    jsMs.push(performance.now() - tj);
    tokens.push(next);
    const t0 = performance.now();
    const out = await past.run({ input_ids: ids([next]), ...kv });
    runMs.push(performance.now() - t0);
    for (const [k, t] of Object.entries(out)) if (k.startsWith('present.')) kv[k.replace('present.', 'past_key_values.')] = t as ort.Tensor;
    logits = out.logits.data as Float32Array;
  }
  past.endProfiling(); // writes profDir/step_<date>.json (onnxruntime-node returns nothing)
  const profFile = readdirSync(profDir).find((f) => f.endsWith('.json'));
  if (!profFile) throw new Error(`no profile written in ${profDir}`);
  const events: ProfileEvent[] = JSON.parse(readFileSync(join(profDir, profFile), 'utf8'));
  rmSync(profDir, { recursive: true, force: true });

  // the vocabulary projection: the MatMul node whose initializer is [d, vocab]
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
  const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
  const projNames = new Set<string>();
  for (const e of kernels) if (e.args?.op_name?.includes('MatMul') && /MatMul_\d+$|lm_head|proj_out/.test(e.name.replace('_kernel_time', ''))) projNames.add(e.name);
  // among candidate names keep the single most expensive one (the [d, vocab] GEMM dwarfs the rest)
  const byName = new Map<string, number>();
  for (const e of kernels) byName.set(e.name, (byName.get(e.name) ?? 0) + e.dur);
  const proj = [...projNames].sort((a, b) => byName.get(b)! - byName.get(a)!)[0];
  const byOp = new Map<string, number>();
  for (const e of kernels) {
    const op = e.name === proj ? `vocabulary projection (${e.args?.op_name})` : (e.args?.op_name ?? '?');
    byOp.set(op, (byOp.get(op) ?? 0) + e.dur);
  }
  const n = runs.length;
  const runUs = runs.reduce((a, e) => a + e.dur, 0) / n;
  const kernelUs = kernels.reduce((a, e) => a + e.dur, 0) / n;
  console.log(`\n${dir}${q ? ' (int8)' : ''}: ${steps} cached steps, ${v.threads} threads${v['no-spin'] ? ' (no spinning)' : ''}, past length ${prompt.length}…${prompt.length + steps - 1}\n`);
  console.log(`session.run wall (median): ${fmt(median(runMs))} ms; onnxruntime model_run (mean): ${fmt(runUs / 1000)} ms; JS logits work (median): ${fmt(median(jsMs))} ms\n`);
  console.log('| part of one step | ms (mean) | share of model_run |');
  console.log('|---|---|---|');
  for (const [op, us] of [...byOp].sort((a, b) => b[1] - a[1]).slice(0, 10)) console.log(`| ${op} | ${fmt(us / n / 1000)} | ${((100 * us) / n / runUs).toFixed(0)} % |`);
  console.log(`| all kernels | ${fmt(kernelUs / 1000)} | ${((100 * kernelUs) / runUs).toFixed(0)} % |`);
  console.log(`| outside kernels (feeds/fetches copies, scheduling) | ${fmt((runUs - kernelUs) / 1000)} | ${((100 * (runUs - kernelUs)) / runUs).toFixed(0)} % |`);
  await first.release();
  await past.release();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
