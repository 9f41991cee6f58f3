/**
 * File transcription real-time factor through the server's file pipeline (issue 4):
 * ffmpeg decode → Silero VAD → speech chunks → BatchScheduler → Whisper, exactly as POST /v1/transcribe.
 *
 *   npm run bench:file -- <model-folder-or-id> [--minutes 10] [--tokens 32] [--threads N] [--uploads 4]
 *
 * Rows, in one run: one long file with per-request decoding (maxBatch 1) vs batched (maxBatch 8),
 * and `--uploads` files at once sharing one scheduler. Random-weight models never emit end-of-text,
 * so every chunk spends its whole token budget: the budget is printed with the results.
 */
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import * as ort from 'onnxruntime-node';
import { decodeToPcm16k } from '../src/audio/ffmpeg.ts';
import { SileroVad } from '../src/engines/vad/silero-vad.ts';
import { ModelRegistry } from '../src/models/registry.ts';
import { FileTranscriber } from '../src/pipeline/file-transcriber.ts';
import { SpeechModels } from '../src/pipeline/speech-models.ts';
import { speechAudio } from './lib/audio.ts';
import { table } from './lib/stats.ts';

const argv = process.argv.slice(2);
const flag = (name: string, dflt: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const modelArg = argv.find((a, i) => !a.startsWith('--') && !argv[i - 1]?.startsWith('--'));
if (!modelArg) {
  console.error('usage: npm run bench:file -- <model-folder-or-id> [--minutes 10] [--tokens 32] [--threads N] [--uploads 4]');
  process.exit(2);
}
const minutes = flag('minutes', 10);
const tokens = flag('tokens', 32);
const threads = flag('threads', 0);
const uploads = flag('uploads', 4);

const isPath = modelArg.includes('/') || modelArg.startsWith('.');
const registry = await ModelRegistry.create(process.env.MODELS_DIR ?? './data/models');
const logger = pino({ level: 'silent' });
const { path: audioPath } = speechAudio(minutes * 60, 16000, path.resolve('.tmp/bench'));
const vad = await SileroVad.load();
const transcriber = new FileTranscriber({ vad });

async function pool(maxBatch: number) {
  const models = new SpeechModels({ registry, logger, maxBatch, batchWindowMs: 10, inference: { intraOpThreads: threads || undefined } });
  const model = isPath ? await models.getByPath(path.resolve(modelArg!)) : await models.get(modelArg!);
  return { models, model };
}

const opts = { language: 'en', maxNewTokens: tokens, temperature: 0, timestamps: true, wordTimestamps: true };
console.log(`# File pipeline RTF — model ${modelArg}, ${minutes} min espeak-ng speech, budget ${tokens} tokens per chunk (random weights never stop early)`);
console.log(
  `${os.cpus()[0].model} × ${os.cpus().length}, node ${process.version}, onnxruntime-node ${ort.env.versions.common}, load ${os
    .loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}\n`,
);

const rows: (string | number)[][] = [];
const audioS = minutes * 60;
for (const maxBatch of [1, 8]) {
  const { models, model } = await pool(maxBatch);
  const t0 = performance.now();
  const samples = await decodeToPcm16k(audioPath);
  const tDecode = performance.now();
  let tVad = 0;
  const r = await transcriber.transcribe(model, samples, opts, {
    onProgress: (p) => {
      if (p.stage === 'transcribing' && !tVad) tVad = performance.now();
    },
  });
  const t1 = performance.now();
  const s = model.scheduler.stats;
  rows.push([
    `1 file, maxBatch ${maxBatch}`,
    r.tokens.length,
    ((tDecode - t0) / 1000).toFixed(2),
    ((tVad - tDecode) / 1000).toFixed(2),
    ((t1 - tVad) / 1000).toFixed(2),
    ((t1 - t0) / 1000).toFixed(2),
    ((t1 - t0) / 1000 / audioS).toFixed(4),
    (audioS / ((t1 - t0) / 1000)).toFixed(1),
    `${s.batches} / ${s.maxBatchSize}`,
  ]);
  await models.close();
}

{
  // Several uploads at once on one scheduler: what POST /v1/transcribe does under concurrent load.
  const { models, model } = await pool(8);
  const t0 = performance.now();
  const results = await Promise.all(
    Array.from({ length: uploads }, async (_, i) => {
      const samples = await decodeToPcm16k(audioPath);
      return transcriber.transcribe(model, samples, opts, { key: `upload-${i}` });
    }),
  );
  const t1 = performance.now();
  const s = model.scheduler.stats;
  const total = audioS * uploads;
  rows.push([
    `${uploads} files at once, maxBatch 8`,
    results.reduce((n, r) => n + r.tokens.length, 0),
    '',
    '',
    '',
    ((t1 - t0) / 1000).toFixed(2),
    ((t1 - t0) / 1000 / total).toFixed(4),
    (total / ((t1 - t0) / 1000)).toFixed(1),
    `${s.batches} / ${s.maxBatchSize}`,
  ]);
  await models.close();
}
await vad.close();

console.log(table(['run', 'chunks', 'decode s', 'VAD s', 'transcribe s', 'total s', 'RTF', '× real time', 'batches / largest'], rows));
