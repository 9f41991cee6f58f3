/**
 * Whisper and Moonshine side by side, through the engine contract the pipeline uses (SpeechEngine.transcribe and
 * its counters), on the same audio in one run: encoder time against audio length (Whisper full 30 s window,
 * Whisper trimmed to its bucket, Moonshine on the exact audio) and the cost of one cached decoder step at batch 1
 * and 8. One engine is loaded at a time.
 *
 *   npm run bench:families -- .tmp/models/whisper-tiny-random .tmp/models/moonshine-tiny-random [--reps 5] [--json out.json]
 */
import { writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import type { SpeechEngine, TranscribeOptions } from '../src/engines/speech-engine.ts';
import { loadSpeechEngine } from '../src/engines/speech-engines.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { reps: { type: 'string', default: '5' }, json: { type: 'string' }, threads: { type: 'string' } } });
const reps = Number(values.reps);
const SECONDS = [1, 2, 5, 10, 20, 30];
const SR = 16_000;

/** Speech-like noise (the cost does not depend on the values). */
function audio(seconds: number): Float32Array {
  const a = new Float32Array(Math.round(seconds * SR));
  let x = 1;
  for (let i = 0; i < a.length; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    a[i] = 0.1 * Math.sin(i / 9) + 0.05 * (x / 2 ** 31 - 0.5);
  }
  return a;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Median encoder ms of one transcription of `a` (1 token, so the decoder barely runs). */
async function encoderMs(e: SpeechEngine, a: Float32Array, encoder: TranscribeOptions['encoder']): Promise<number> {
  const opts: TranscribeOptions = { language: 'en', maxNewTokens: 1, temperature: 0, timestamps: false, encoder };
  await e.transcribe([{ audio: a, options: opts }]); // warm-up for this shape
  const ms: number[] = [];
  for (let r = 0; r < reps; r++) {
    const before = e.counters().encoderMs;
    await e.transcribe([{ audio: a, options: opts }]);
    ms.push(e.counters().encoderMs - before);
  }
  return median(ms);
}

/** Mean ms of one cached decoder step at `batch` rows (the difference between 17 and 1 new tokens). */
async function stepMs(e: SpeechEngine, batch: number): Promise<number> {
  const a = audio(5);
  const run = async (tokens: number) => {
    const before = e.counters();
    await e.transcribe(Array.from({ length: batch }, () => ({ audio: a, options: { language: 'en', maxNewTokens: tokens, temperature: 0, timestamps: false, encoder: 'trimmed' as const } })));
    const after = e.counters();
    return { ms: after.decoderRunMs - before.decoderRunMs, runs: after.decoderRuns - before.decoderRuns };
  };
  await run(17); // warm-up
  const per: number[] = [];
  for (let r = 0; r < reps; r++) {
    const long = await run(17);
    const short = await run(1);
    per.push((long.ms - short.ms) / (long.runs - short.runs));
  }
  return median(per);
}

const rows: Record<string, unknown>[] = [];
for (const dir of positionals) {
  const e = await loadSpeechEngine(dir, { intraOpThreads: values.threads ? Number(values.threads) : undefined, decoderLayout: 'auto' });
  const name = basename(dir);
  const modes: TranscribeOptions['encoder'][] = e.info.family === 'whisper' ? ['full', 'trimmed'] : ['full'];
  for (const mode of modes) {
    const label = e.info.family === 'whisper' ? `${name} (${mode === 'full' ? '30 s window' : 'trimmed bucket'})` : `${name} (exact audio)`;
    const enc: Record<string, number> = {};
    for (const s of SECONDS) enc[`${s}s`] = +(await encoderMs(e, audio(s), mode)).toFixed(1);
    rows.push({ model: label, layout: e.info.layout, encoderMs: enc });
    console.log(`${label.padEnd(48)} encoder ms ${SECONDS.map((s) => `${s}s ${enc[`${s}s`]}`).join(' · ')}`);
  }
  const steps = { b1: +(await stepMs(e, 1)).toFixed(2), b8: +(await stepMs(e, 8)).toFixed(2) };
  rows.push({ model: name, layout: e.info.layout, stepMs: steps });
  console.log(`${name.padEnd(48)} cached decoder step ms: batch 1 ${steps.b1} · batch 8 ${steps.b8} (${e.info.layout})`);
  await e.close();
}
if (values.json) writeFileSync(values.json, `${JSON.stringify({ command: `npm run bench:families -- ${process.argv.slice(2).join(' ')}`, reps, rows }, null, 2)}\n`);
