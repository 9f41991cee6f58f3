/**
 * Sentences per second of the MADLAD/T5 engine at batch 1, 8 and 32 (greedy, fixed token budget: random weights never
 * emit </s>), on the golden sentences of a model folder, side by side with transformers.js's `translation` pipeline
 * on the same files in the same run.
 *
 *   npm run bench:translate -- ../shared/models/madlad-mini-random [--tokens 16] [--reps 5] [--threads N]
 *
 * transformers.js loads `onnx/decoder_model_merged.onnx`; an export that ships split decoders only (the fixture) is
 * copied once to a temp folder and merged there (src/models/onnx-merge-decoders.ts). Both sides then read that
 * folder: ours through `TranslationEngine.translate` (one padded encoder run and one decoder batch per call), theirs
 * through `pipeline(texts, { max_new_tokens })` (one padded `generate` per call). Ours on the split decoders of the
 * original folder is measured too. Same sentences (`"<2es> " + text`), same budget, greedy, same intra-op thread
 * count (set explicitly on both, inter-op 1); the engines take turns within each round, the order alternating
 * between rounds; warm-up per batch shape; medians. The outputs are checked to agree (text of every sentence).
 */
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { TranslationEngine } from '../src/engines/translation/index.ts';
import { mergeDecodersInFolder } from '../src/models/onnx-merge-decoders.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { tokens: { type: 'string', default: '16' }, reps: { type: 'string', default: '5' }, threads: { type: 'string' } } });
const dir = resolve(positionals[0] ?? '../shared/models/madlad-mini-random');
const tokens = Number(values.tokens);
const reps = Number(values.reps);
const threads = values.threads ? Number(values.threads) : availableParallelism();
const TARGET = 'es';
const golden = JSON.parse(readFileSync(join(dir, 'golden', 'golden.json'), 'utf8')) as { single: Array<{ text: string }> };
const sentences = golden.single.map((c) => c.text);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// the merged copy (kept as it is when the export already has a merged decoder)
const tmp = mkdtempSync(join(tmpdir(), 'bench-translate-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true })); // also when loading fails
const mergedDir = join(tmp, basename(dir));
cpSync(dir, mergedDir, { recursive: true });
mergeDecodersInFolder(mergedDir);

/** transformers.js's pipeline as called here (its generic types are too deep for tsc). */
type Pipe = ((texts: string[], o: object) => Promise<Array<{ translation_text: string }>>) & { dispose: () => Promise<unknown> };
const tjs = await import('@huggingface/transformers');
tjs.env.allowRemoteModels = false;
tjs.env.allowLocalModels = true;
tjs.env.localModelPath = `${tmp}/`;
const session = { intraOpThreads: threads, interOpThreads: 1 };
const theirsPipe = await (tjs.pipeline as unknown as (task: string, model: string, o: object) => Promise<Pipe>)('translation', basename(dir), {
  dtype: 'fp32',
  device: 'cpu',
  local_files_only: true,
  session_options: { intraOpNumThreads: threads, interOpNumThreads: 1 },
});
const oursMerged = await TranslationEngine.load(mergedDir, { ...session, decoderLayout: 'merged' });
const oursSplit = await TranslationEngine.load(dir, { ...session, decoderLayout: 'split' });

type Run = (texts: string[]) => Promise<string[]>;
const sides: Array<{ name: string; run: Run }> = [
  { name: 'ours (merged)', run: async (texts) => (await oursMerged.translate(texts, TARGET, { maxNewTokens: tokens })).map((r) => r.text) },
  {
    name: 'transformers.js',
    run: async (texts) =>
      (
        await theirsPipe(
          texts.map((t) => `<2${TARGET}> ${t}`),
          { max_new_tokens: tokens },
        )
      ).map((r) => r.translation_text),
  },
  { name: 'ours (split)', run: async (texts) => (await oursSplit.translate(texts, TARGET, { maxNewTokens: tokens })).map((r) => r.text) },
];

console.log(`# bench:translate — ${dir}, ${tokens} tokens per sentence (greedy), median of ${reps}, intra-op threads ${threads} (both), inter-op 1`);
console.log(`# transformers.js ${JSON.parse(readFileSync('node_modules/@huggingface/transformers/package.json', 'utf8')).version} on ${mergedDir} (merged decoder, fp32)`);
console.log(
  '| batch | ours merged ms | of which onnxruntime | ours merged sent/s | transformers.js ms | transformers.js sent/s | ours / transformers.js | ours split ms | ours split sent/s | outputs agree |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|');
try {
  for (const batch of [1, 8, 32]) {
    const texts = Array.from({ length: batch }, (_, i) => sentences[i % sentences.length]);
    // warm-up for this shape, and the agreement check
    const outs = await Promise.all(sides.map((s) => s.run(texts)));
    const agree = outs.every((o) => JSON.stringify(o) === JSON.stringify(outs[0]));
    const ms: number[][] = sides.map(() => []);
    // onnxruntime's share of our merged side (encoder + decoder session runs): the rest is JavaScript
    const ortMs = () => oursMerged.model.timing.encoderMs + oursMerged.model.decoder.timing.decoderMs;
    const ort: number[] = [];
    for (let r = 0; r < reps; r++) {
      const order = r % 2 ? [...sides.keys()].reverse() : [...sides.keys()];
      for (const i of order) {
        const [t0, o0] = [performance.now(), ortMs()];
        await sides[i].run(texts);
        ms[i].push(performance.now() - t0);
        if (i === 0) ort.push(ortMs() - o0);
      }
    }
    const [m, t, s] = ms.map(median);
    const sps = (x: number) => ((batch * 1000) / x).toFixed(0);
    console.log(
      `| ${batch} | ${m.toFixed(1)} | ${median(ort).toFixed(1)} | ${sps(m)} | ${t.toFixed(1)} | ${sps(t)} | ${(t / m).toFixed(2)}× | ${s.toFixed(1)} | ${sps(s)} | ${agree ? 'yes' : 'NO'} |`,
    );
  }
} finally {
  await oursMerged.close();
  await oursSplit.close();
  await theirsPipe.dispose();
}
