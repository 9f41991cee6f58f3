/**
 * Issue 15's single window against whisper.cpp: the same weights (our ONNX folder, and its ggml conversion from
 * bench/whispercpp/onnx-to-ggml.ts), one 30 s window of espeak-ng speech, greedy, English, no timestamps, no
 * temperature fallback, N threads, the same number of tokens on both sides, alternated rounds, whole processes.
 *
 *   npm run bench:whispercpp -- --whisper-cli PATH --model DIR --ggml FILE [--rounds 5] [--threads 2]
 *        [--variants fp32-merged,fp32-split,int8-split] [--out FILE.json]
 *
 * Variants: fp32|int8|q8 - merged|split (q8: `--precision q8`), with `-nospin` onnxruntime's intra-op threads sleep between ops instead of
 * spinning (the counterpart of whisper.cpp's OMP_WAIT_POLICY=PASSIVE side).
 *
 * whisper.cpp decodes a window of random weights to its limit (n_text_ctx/2 − 4 = 220 sampled tokens: one prompt
 * pass, then one decode run per token but the last); a first untimed run reads that count, and ours gets the same
 * budget (`--max-new-tokens`), which is the same number of decoder passes. Per side and round: whisper.cpp's own
 * printed timings, our `stt transcribe --json` timing, and the wall time of the whole process (`node bin/stt.mjs`,
 * what the installed `stt` command runs; `npx` adds its own start). Ratios are of medians, ours / theirs:
 * engine time (whisper.cpp total − load; ours transcribe_ms, everything after the model is loaded), whole
 * process, per-token decode (whisper.cpp decode ms per run; ours the decode phase per token, logits work
 * included) and the encoder.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { speechAudio } from './lib/audio.ts';
import { fmt, median } from './lib/stats.ts';

const ROOT = resolve(import.meta.dirname, '..');

export interface CppTimings {
  /** ms by phase: load, mel, sample, encode, decode, batchd, prompt, total */
  ms: Record<string, number>;
  /** runs by phase where printed (sample, encode, decode, batchd, prompt) */
  runs: Record<string, number>;
}

/** whisper_print_timings lines → ms and runs per phase. */
export function parseWhisperCppTimings(log: string): CppTimings {
  const ms: Record<string, number> = {};
  const runs: Record<string, number> = {};
  for (const m of log.matchAll(/whisper_print_timings:\s+(\w+) time =\s+([\d.]+) ms(?: \/\s+(\d+) runs)?/g)) {
    ms[m[1]] = Number(m[2]);
    if (m[3] !== undefined) runs[m[1]] = Number(m[3]);
  }
  for (const k of ['load', 'encode', 'decode', 'total']) if (!(k in ms)) throw new Error(`no '${k} time' in the whisper-cli output`);
  return { ms, runs };
}

export interface OurTiming {
  load_ms: number;
  features_ms: number;
  encoder_ms: number;
  decode_ms: number;
  transcribe_ms: number;
  tokens: number;
  decoder_run_ms: number;
  decoder_runs: number;
  audio_ms: number;
  startup_ms: number;
}

interface Variant {
  name: string;
  precision: 'fp32' | 'int8' | 'q8';
  layout: 'merged' | 'split';
  /** onnxruntime's intra-op threads sleep instead of spinning (INFERENCE_SPINNING=off). */
  noSpin: boolean;
}

/** fp32|int8|q8 - merged|split [-nospin] */
function variantOf(name: string): Variant {
  const m = /^(fp32|int8|q8)-(merged|split)(-nospin)?$/.exec(name);
  if (!m) throw new Error(`unknown variant ${name}: fp32|int8|q8 - merged|split [-nospin]`);
  return { name, precision: m[1] as Variant['precision'], layout: m[2] as Variant['layout'], noSpin: !!m[3] };
}

interface Sample {
  wallMs: number;
  engineMs: number;
  loadMs: number;
  encoderMs: number;
  perTokenMs: number;
  tokens: number;
  detail: Record<string, number>;
}

function timed(cmd: string, args: string[], env: Record<string, string> = {}): { out: string; wallMs: number } {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, ...env } });
  const wallMs = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} exited ${r.status}: ${(r.stderr ?? '').slice(-3000)}`);
  return { out: `${r.stdout}\n${r.stderr}`, wallMs };
}

/**
 * whisper.cpp as built (OpenMP), and with OMP_WAIT_POLICY=PASSIVE: on a shared, loaded machine its threads spin
 * at every barrier while the other is descheduled, which costs it several times its decode time; passive waiting
 * is its configuration for such a machine.
 */
const CPP_SIDES: { name: string; env: Record<string, string> }[] = [
  { name: 'whisper.cpp', env: {} },
  { name: 'whisper.cpp passive', env: { OMP_WAIT_POLICY: 'PASSIVE' } },
];

function runCpp(o: { cli: string; ggml: string; wav: string; threads: number }, env: Record<string, string> = {}): Sample {
  const { out, wallMs } = timed(o.cli, ['-m', o.ggml, '-f', o.wav, '-l', 'en', '-t', String(o.threads), '-bs', '1', '-bo', '1', '-nf', '-nt', '-sns'], env);
  const t = parseWhisperCppTimings(out);
  if (t.runs.encode !== 1) throw new Error(`whisper.cpp encoded ${t.runs.encode} windows, expected 1`);
  const decodeRuns = t.runs.decode ?? 0;
  return {
    wallMs,
    engineMs: t.ms.total - t.ms.load,
    loadMs: t.ms.load,
    encoderMs: t.ms.encode,
    perTokenMs: t.ms.decode / decodeRuns,
    tokens: decodeRuns + 1, // the last sampled token is not decoded
    detail: { ...Object.fromEntries(Object.entries(t.ms).map(([k, v]) => [`${k}_ms`, v])), ...Object.fromEntries(Object.entries(t.runs).map(([k, v]) => [`${k}_runs`, v])) },
  };
}

function runOurs(o: { model: string; wav: string; threads: number; tokens: number; v: Variant }): Sample {
  const args = [join(ROOT, 'bin/stt.mjs'), 'transcribe', o.wav, '--model', o.model, '--language', 'en', '--no-vad', '--temperature', '0'];
  args.push('--max-new-tokens', String(o.tokens), '--threads', String(o.threads), '--decoder-layout', o.v.layout, '--json', '--precision', o.v.precision);
  const { out, wallMs } = timed(process.execPath, args, { INFERENCE_SPINNING: o.v.noSpin ? 'off' : 'on' });
  const json = JSON.parse(out.slice(out.indexOf('{'), out.lastIndexOf('}') + 1));
  const want = { precision: o.v.precision, layout: o.v.layout };
  if (json.runtime !== 'bundle') console.error(`note: ${o.v.name} ran the TypeScript through tsx (a source changed since the last \`npm run build\`): start-up includes compiling`);
  if (json.variant?.precision !== want.precision || json.variant?.layout !== want.layout) throw new Error(`ran ${JSON.stringify(json.variant)}, asked for ${JSON.stringify(want)}`);
  const t: OurTiming = json.timing;
  if (t.tokens !== o.tokens) throw new Error(`${o.v.name} decoded ${t.tokens} tokens, asked for ${o.tokens}`);
  return { wallMs, engineMs: t.transcribe_ms, loadMs: t.load_ms, encoderMs: t.encoder_ms, perTokenMs: t.decode_ms / t.tokens, tokens: t.tokens, detail: { ...t } };
}

async function main() {
  const { values: v } = parseArgs({
    options: {
      'whisper-cli': { type: 'string' },
      model: { type: 'string' },
      ggml: { type: 'string' },
      rounds: { type: 'string', default: '5' },
      threads: { type: 'string', default: '2' },
      variants: { type: 'string', default: 'fp32-merged,fp32-split,int8-split' },
      seconds: { type: 'string', default: '30' },
      out: { type: 'string' },
    },
  });
  if (!v['whisper-cli'] || !v.model || !v.ggml) {
    console.error('usage: npm run bench:whispercpp -- --whisper-cli PATH --model DIR --ggml FILE [--rounds 5] [--threads 2] [--variants …] [--out F.json]');
    process.exit(2);
  }
  const threads = Number(v.threads);
  const rounds = Number(v.rounds);
  const variants = v.variants.split(',').map(variantOf);
  const { path: wav } = speechAudio(Number(v.seconds), 16000, join(ROOT, '.tmp/bench'));
  const cpp = { cli: v['whisper-cli'], ggml: v.ggml, wav, threads };
  const model = resolve(v.model);

  // untimed: page cache warm on both sides, and whisper.cpp's token count for this window
  const probe = runCpp(cpp, CPP_SIDES[1].env);
  const tokens = probe.tokens;
  for (const x of variants) runOurs({ model, wav, threads, tokens, v: x });
  console.error(`whisper.cpp decodes ${tokens} tokens in this window; ours gets the same budget`);

  const sides = [...CPP_SIDES.map((x) => x.name), ...variants.map((x) => x.name)];
  const samples: Record<string, Sample[]> = Object.fromEntries(sides.map((s) => [s, []]));
  for (let r = 0; r < rounds; r++) {
    // rotate the order each round so no side always runs first (or right after the same neighbour)
    const order = sides.map((_, i) => sides[(i + r) % sides.length]);
    for (const side of order) {
      const x = variants.find((y) => y.name === side);
      const s = x ? runOurs({ model, wav, threads, tokens, v: x }) : runCpp(cpp, CPP_SIDES.find((y) => y.name === side)!.env);
      if (s.tokens !== tokens) throw new Error(`${side}: ${s.tokens} tokens this round, ${tokens} in the probe`);
      samples[side].push(s);
      console.error(`round ${r + 1}/${rounds} ${side}: wall ${fmt(s.wallMs)} ms, engine ${fmt(s.engineMs)} ms, per token ${fmt(s.perTokenMs)} ms`);
    }
  }

  const med = (side: string, f: (s: Sample) => number) => median(samples[side].map(f));
  const medDetail = (side: string, k: string) => median(samples[side].map((s) => s.detail[k]));
  console.log(`\n### One ${v.seconds} s window, ${tokens} tokens, ${threads} threads, ${rounds} alternated rounds (medians, ms)\n`);
  console.log('whisper.cpp (its own printed timings):\n');
  console.log('| side | load | mel | encode | decode (runs, per run) | batchd (runs) | prompt | sample | total | total − load | whole process |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const { name: c } of CPP_SIDES) {
    console.log(
      `| ${c} | ${fmt(medDetail(c, 'load_ms'))} | ${fmt(medDetail(c, 'mel_ms'))} | ${fmt(medDetail(c, 'encode_ms'))} | ${fmt(medDetail(c, 'decode_ms'))} (${medDetail(c, 'decode_runs')}, ${fmt(med(c, (s) => s.perTokenMs))}) | ${fmt(medDetail(c, 'batchd_ms'))} (${medDetail(c, 'batchd_runs')}) | ${fmt(medDetail(c, 'prompt_ms'))} | ${fmt(medDetail(c, 'sample_ms'))} | ${fmt(medDetail(c, 'total_ms'))} | ${fmt(med(c, (s) => s.engineMs))} | ${fmt(med(c, (s) => s.wallMs))} |`,
    );
  }
  console.log('\nours (`stt transcribe --json` timing):\n');
  console.log('| variant | load | audio | features | encoder | decode | decoder runs (ms) | transcribe (engine) | decode per token | run per token | startup | whole process |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const x of variants) {
    const d = (k: string) => medDetail(x.name, k);
    console.log(
      `| ${x.name} | ${fmt(d('load_ms'))} | ${fmt(d('audio_ms'))} | ${fmt(d('features_ms'))} | ${fmt(d('encoder_ms'))} | ${fmt(d('decode_ms'))} | ${d('decoder_runs')} (${fmt(d('decoder_run_ms'))}) | ${fmt(d('transcribe_ms'))} | ${fmt(med(x.name, (s) => s.perTokenMs))} | ${fmt(median(samples[x.name].map((s) => s.detail.decoder_run_ms / s.detail.decoder_runs)))} | ${fmt(d('startup_ms'))} | ${fmt(med(x.name, (s) => s.wallMs))} |`,
    );
  }
  console.log('\nratios, ours / whisper.cpp (medians):\n');
  console.log('| ours | against | engine (total − load) | whole process | per token | encoder |');
  console.log('|---|---|---|---|---|---|');
  const ratios: Record<string, Record<string, number>> = {};
  for (const x of variants) {
    for (const { name: c } of CPP_SIDES) {
      const q = (f: (s: Sample) => number) => med(x.name, f) / med(c, f);
      const r = { engine: q((s) => s.engineMs), process: q((s) => s.wallMs), perToken: q((s) => s.perTokenMs), encoder: q((s) => s.encoderMs) };
      ratios[`${x.name} / ${c}`] = r;
      console.log(`| ${x.name} | ${c} | ${r.engine.toFixed(2)}× | ${r.process.toFixed(2)}× | ${r.perToken.toFixed(2)}× | ${r.encoder.toFixed(2)}× |`);
    }
  }
  if (v.out) writeFileSync(v.out, JSON.stringify({ tokens, threads, rounds, seconds: Number(v.seconds), samples, ratios }, null, 2));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
