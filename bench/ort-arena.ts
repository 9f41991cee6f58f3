/**
 * How much memory a Whisper encoder session keeps per batch row, with and without ONNX Runtime's CPU
 * memory arena / memory pattern (issue 15, "Memory"): the experiment behind the engine's session options.
 *
 *   npx tsx bench/ort-arena.ts [model folder, default $MODELS_DIR/whisper-mini-random] [--frames 3000]
 *
 * For each setting a fresh child process creates the encoder session and runs batches of
 * 1, 2, 4, 8, then 1, 3, 5, 8 silent 30 s windows ([B, 80, frames]); it prints the RSS after each run
 * (what the process keeps; the arena never gives memory back, and every new shape may add to it).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';

const BATCHES = [1, 2, 4, 8, 1, 3, 5, 8];
const rssMB = () => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) / 1024);

async function child(file: string, arena: boolean, pattern: boolean, frames: number): Promise<void> {
  const s = await ort.InferenceSession.create(file, { enableCpuMemArena: arena, enableMemPattern: pattern, graphOptimizationLevel: 'all' });
  const out = [rssMB()];
  for (const b of BATCHES) {
    await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', new Float32Array(b * 80 * frames), [b, 80, frames]) });
    out.push(rssMB());
  }
  console.log(JSON.stringify(out));
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { frames: { type: 'string', default: '3000' }, child: { type: 'string' } } });
  const dir = path.resolve(positionals[0] ?? path.join(process.env.MODELS_DIR ?? path.join(import.meta.dirname, '..', '..', 'shared', 'models'), 'whisper-mini-random'));
  const file = path.join(dir, 'onnx', 'encoder_model.onnx');
  const frames = Number(values.frames);
  if (values.child) {
    const [arena, pattern] = values.child.split(',').map((v) => v === '1');
    return child(file, arena, pattern, frames);
  }
  console.log(`Encoder ${file}, input [B, 80, ${frames}]: RSS (MB) after session creation, then after each run\n`);
  console.log(`| enableCpuMemArena | enableMemPattern | created | ${BATCHES.map((b) => `B=${b}`).join(' | ')} |`);
  console.log(`|---|---|---|${BATCHES.map(() => '---').join('|')}|`);
  for (const [arena, pattern] of [
    [true, true],
    [true, false],
    [false, true],
    [false, false],
  ]) {
    const out = execFileSync(process.execPath, ['--import', 'tsx', import.meta.filename, dir, '--frames', String(frames), '--child', `${+arena},${+pattern}`], { encoding: 'utf8', timeout: 600_000 });
    const rss = JSON.parse(out.trim().split('\n').at(-1)!) as number[];
    console.log(`| ${arena} | ${pattern} | ${rss.join(' | ')} |`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
