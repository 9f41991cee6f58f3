/**
 * Sentences per second of the MADLAD/T5 engine at batch 1, 8 and 32 (greedy, fixed token budget: random weights never
 * emit </s>), on the golden sentences of a model folder, through `TranslationEngine.translate` (one padded encoder
 * run and one decoder batch per call).
 *
 *   npm run bench:translate -- ../shared/models/madlad-mini-random [--tokens 16] [--reps 5]
 *
 * The transformers.js side by side the issue asks for does not run on the fixture: its seq2seq loader wants
 * `onnx/decoder_model_merged.onnx`, which madlad-mini-random does not ship (split decoders only).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { TranslationEngine } from '../src/engines/translation/index.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { tokens: { type: 'string', default: '16' }, reps: { type: 'string', default: '5' }, threads: { type: 'string' } } });
const dir = positionals[0] ?? '../shared/models/madlad-mini-random';
const tokens = Number(values.tokens);
const reps = Number(values.reps);
const golden = JSON.parse(readFileSync(join(dir, 'golden', 'golden.json'), 'utf8')) as { single: Array<{ text: string }> };
const sentences = golden.single.map((c) => c.text);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const engine = await TranslationEngine.load(dir, { intraOpThreads: values.threads ? Number(values.threads) : undefined });
console.log(`# bench:translate — ${dir}, ${tokens} tokens per sentence (greedy), median of ${reps}`);
console.log('| batch | ms per call | sentences/s |\n|---|---|---|');
for (const batch of [1, 8, 32]) {
  const texts = Array.from({ length: batch }, (_, i) => sentences[i % sentences.length]);
  await engine.translate(texts, 'es', { maxNewTokens: tokens }); // warm-up for this shape
  const ms: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await engine.translate(texts, 'es', { maxNewTokens: tokens });
    ms.push(performance.now() - t0);
  }
  const m = median(ms);
  console.log(`| ${batch} | ${m.toFixed(1)} | ${((batch * 1000) / m).toFixed(0)} |`);
}
await engine.close();
