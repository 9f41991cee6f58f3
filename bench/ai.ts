/**
 * AI endpoints' engines: LLM tokens/s (1 request; 8 concurrent as batched sequences of one context vs one
 * at a time), sentence embeddings/s at batch 1/8/32, enhance-audio real-time factor.
 *
 *   npm run bench:ai -- [--llm path.gguf] [--embed model-folder] [--tokens 128] [--threads 1] [--write]
 *
 * Defaults are the random-weight fixtures in MODELS_DIR (../shared/models): their speed is that of tiny
 * models (d 64 / 2 layers LLM, 2-layer MiniLM), not of the real ones; the model that ran is printed.
 * --write puts the tables into docs/benchmarks.md between <!-- ai:start --> and <!-- ai:end -->.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readWav } from '../src/audio/pcm.ts';
import { SentenceEmbedder } from '../src/engines/embedding/sentence-embedder.ts';
import { AudioEnhancer } from '../src/engines/enhance/audio-enhancer.ts';
import { LocalLlm } from '../src/engines/llm/local-llm.ts';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
};
const MODELS = path.resolve(process.env.MODELS_DIR ?? '../shared/models');
const llmPath = path.resolve(arg('llm', path.join(MODELS, 'qwen2-mini-random', 'qwen2-mini-random-f32.gguf')));
const embedDir = path.resolve(arg('embed', path.join(MODELS, 'minilm-mini-random')));
const tokens = Number(arg('tokens', '128'));
const threads = Number(arg('threads', '1'));
const write = process.argv.includes('--write');
const lines: string[] = [];
const out = (s = '') => {
  console.log(s);
  lines.push(s);
};

const cpu = `${os.cpus()[0].model} × ${os.cpus().length}`;
out('## AI endpoints (issue 9)');
out();
out('```sh');
out('npm run bench:ai -- --write            # this section (fixtures); --llm FILE.gguf --embed FOLDER for real models');
out('```');
out();
out(
  `Machine: ${cpu}, node ${process.version}, load ${os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')} at start. Random-weight fixtures: speeds of tiny models, useful for comparing modes, not for sizing.`,
);
out();

// ---- LLM
const prompt = [{ role: 'user' as const, content: 'Summarize: the team agreed to ship the release on Friday and fix the login bug first.' }];
async function llmRun(sequences: number, concurrent: number): Promise<{ tps: number; s: number }> {
  const llm = await LocalLlm.load({ modelPath: llmPath, modelId: path.basename(llmPath), contextSize: tokens + 128, sequences, threads, maxQueue: 64 });
  try {
    await llm.chat(prompt, { maxTokens: 8 }); // warm-up
    const t0 = performance.now();
    const rs = await Promise.all(Array.from({ length: concurrent }, () => llm.chat(prompt, { maxTokens: tokens })));
    const s = (performance.now() - t0) / 1000;
    return { tps: rs.reduce((n, r) => n + r.completionTokens, 0) / s, s };
  } finally {
    await llm.close();
  }
}
out(`### LLM (node-llama-cpp 3, CPU, ${threads} threads): \`${path.relative(process.cwd(), llmPath)}\`, ${tokens} new tokens per request, greedy`);
out();
out('| mode | requests | wall s | tokens/s (all requests) |');
out('|---|---:|---:|---:|');
const one = await llmRun(1, 1);
out(`| 1 request | 1 | ${one.s.toFixed(2)} | ${one.tps.toFixed(0)} |`);
const serial = await llmRun(1, 8);
out(`| 8 concurrent, 1 sequence (one at a time) | 8 | ${serial.s.toFixed(2)} | ${serial.tps.toFixed(0)} |`);
const batched = await llmRun(8, 8);
out(`| 8 concurrent, 8 sequences (batched) | 8 | ${batched.s.toFixed(2)} | ${batched.tps.toFixed(0)} |`);
out();
out(`Batched sequences: ${(batched.tps / serial.tps).toFixed(2)}× the throughput of one at a time.`);
out();

// ---- Embeddings
const embedder = await SentenceEmbedder.load(embedDir, { intraOpThreads: threads });
const base = [
  'The quarterly budget meeting is moved to Friday afternoon.',
  'Please review the design document before Tuesday.',
  'We agreed to ship the release once the login bug is fixed.',
  'Lunch will be served at noon in the main hall.',
];
out(`### Sentence embeddings (onnxruntime-node, ${threads} threads): \`${path.relative(process.cwd(), embedDir)}\` fp32, ~12-word sentences`);
out();
out('| batch | ms per batch | embeddings/s |');
out('|---:|---:|---:|');
for (const batch of [1, 8, 32]) {
  const texts = Array.from({ length: batch }, (_, i) => base[i % base.length]);
  for (let i = 0; i < 3; i++) await embedder.embed(texts);
  const iters = Math.max(5, Math.round(256 / batch));
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) await embedder.embed(texts);
  const ms = (performance.now() - t0) / iters;
  out(`| ${batch} | ${ms.toFixed(2)} | ${Math.round((batch * 1000) / ms)} |`);
}
await embedder.close();
out();

// ---- Enhance
const dir = path.resolve('.tmp/bench');
fs.mkdirSync(dir, { recursive: true });
const wav = path.join(dir, 'enhance-speech.wav');
if (!fs.existsSync(wav)) {
  const raw = path.join(dir, 'enhance-raw.wav');
  execFileSync('espeak-ng', [
    '-v',
    'en',
    '-w',
    raw,
    'Speech enhancement removes the noise of the room and brings every recording to the same loudness, so that transcripts and listeners both get clean audio. '.repeat(3),
  ]);
  execFileSync('ffmpeg', [
    '-v',
    'error',
    '-y',
    '-i',
    raw,
    '-f',
    'lavfi',
    '-i',
    'anoisesrc=color=white:amplitude=0.05:seed=1',
    '-filter_complex',
    '[0:a]aresample=48000[s];[1:a]aresample=48000[n];[s][n]amix=inputs=2:duration=first:normalize=0',
    '-ac',
    '1',
    '-ar',
    '48000',
    wav,
  ]);
}
const noisy = readWav(fs.readFileSync(wav)).samples;
const enhancer = await AudioEnhancer.load();
enhancer.enhancePcm(noisy.subarray(0, 48000));
let t0 = performance.now();
enhancer.enhancePcm(noisy);
const pcmS = (performance.now() - t0) / 1000;
t0 = performance.now();
await enhancer.enhanceFile(wav);
const fileS = (performance.now() - t0) / 1000;
const audioS = noisy.length / 48000;
out(`### enhance-audio (RNNoise wasm + R128 normalisation, 48 kHz mono), ${audioS.toFixed(1)} s of espeak speech in white noise`);
out();
out('| stage | seconds | real-time factor |');
out('|---|---:|---:|');
out(`| denoise + loudness (PCM in memory) | ${pcmS.toFixed(3)} | ${(pcmS / audioS).toFixed(4)} |`);
out(`| whole file (probe + ffmpeg decode + above + WAV) | ${fileS.toFixed(3)} | ${(fileS / audioS).toFixed(4)} |`);

if (write) {
  const file = path.resolve('docs/benchmarks.md');
  const doc = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmarks\n';
  const section = `<!-- ai:start -->\n${lines.join('\n')}\n<!-- ai:end -->`;
  const re = /<!-- ai:start -->[\s\S]*?<!-- ai:end -->/;
  fs.writeFileSync(file, re.test(doc) ? doc.replace(re, section) : `${doc.trimEnd()}\n\n${section}\n`);
  console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
}
