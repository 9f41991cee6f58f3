/**
 * Cross-stream batching of SileroVad.process(): concurrent calls of different streams are evaluated
 * together in one ORT call, with exactly the per-stream results of sequential calls.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeToPcm16k } from '../../../src/audio/ffmpeg.ts';
import { SileroVad, VAD_FRAME_SAMPLES, type VadStream } from '../../../src/engines/vad/silero-vad.ts';
import { makeSilenceWav, makeSpeechWav, TEXTS } from '../../helpers/audio-fixtures.ts';

const F = VAD_FRAME_SAMPLES;
const tick = () => new Promise<void>((r) => setImmediate(r));

let batched: SileroVad;
let single: SileroVad;
let signals: Float32Array[];

beforeAll(async () => {
  batched = await SileroVad.load();
  single = await SileroVad.load({ crossStreamBatching: false });
  const speech = await decodeToPcm16k((await makeSpeechWav(TEXTS.hello, { padStartS: 1.5, padEndS: 1.5 })).path);
  const second = await decodeToPcm16k((await makeSpeechWav(TEXTS.second, { padStartS: 0.7, padEndS: 0.3 })).path);
  const silence = await decodeToPcm16k(await makeSilenceWav(5));
  signals = [speech, second, silence];
});

afterAll(async () => {
  await batched?.close();
  await single?.close();
});

/** Stream k's audio: one of the three fixtures, shifted by k × 1.3 frames, so all 32 differ. */
function audioOf(k: number, frames: number): Float32Array {
  const src = signals[k % 3];
  const out = new Float32Array(frames * F);
  const shift = Math.round(k * 1.3 * F);
  for (let i = 0; i < out.length; i++) out[i] = src[(i + shift) % src.length];
  return out;
}

async function feedAlone(vad: SileroVad, audio: Float32Array): Promise<number[]> {
  const st = vad.createStream();
  const out: number[] = [];
  for (let i = 0; i * F < audio.length; i++) out.push(await vad.process(st, audio.subarray(i * F, (i + 1) * F)));
  return out;
}

describe('SileroVad cross-stream batching', () => {
  it('is on by default and can be turned off', () => {
    expect(batched.crossStreamBatching).toBe(true);
    expect(single.crossStreamBatching).toBe(false);
  });

  it('32 streams fed concurrently give the probabilities of each stream fed alone, in far fewer ORT calls', async () => {
    const N = 32;
    const frames = 60;
    const audio = Array.from({ length: N }, (_, k) => audioOf(k, frames));
    const alone: number[][] = [];
    for (const a of audio) alone.push(await feedAlone(single, a));

    batched.resetStats();
    const streams = audio.map(() => batched.createStream());
    const together = await Promise.all(
      streams.map(async (st, k) => {
        // Stagger the starts and add pauses, so batches change composition and size over time.
        for (let j = 0; j < k % 5; j++) await tick();
        const out: number[] = [];
        for (let i = 0; i < frames; i++) {
          if (k % 7 === 3 && i % 10 === 5) await new Promise((r) => setTimeout(r, 2));
          out.push(await batched.process(st, audio[k].subarray(i * F, (i + 1) * F)));
        }
        return out;
      }),
    );
    let maxDiff = 0;
    for (let k = 0; k < N; k++) for (let i = 0; i < frames; i++) maxDiff = Math.max(maxDiff, Math.abs(together[k][i] - alone[k][i]));
    expect(maxDiff).toBeLessThan(1e-5);
    expect(streams.every((s) => s.frames === frames && !s.busy)).toBe(true);
    // The streams really differ (speech vs silence).
    expect(Math.max(...together[0])).toBeGreaterThan(0.5);
    expect(Math.max(...together[2])).toBeLessThan(0.1);

    const st = batched.stats;
    console.log(`[silero-vad batching] ${st.frames} frames in ${st.ortCalls} ORT calls (largest batch ${st.largestBatch})`);
    expect(st.frames).toBe(N * frames);
    expect(st.ortCalls).toBeLessThan((N * frames) / 8);
    expect(st.largestBatch).toBeGreaterThan(16);
    expect(st.largestBatch).toBeLessThanOrEqual(N);
    expect(st.queued).toBe(0);
  });

  it('without batching every frame is its own ORT call', async () => {
    single.resetStats();
    const streams = [single.createStream(), single.createStream()];
    await Promise.all(
      streams.map(async (s, k) => {
        for (let i = 0; i < 5; i++) await single.process(s, signals[k].subarray(i * F, (i + 1) * F));
      }),
    );
    expect(single.stats).toMatchObject({ ortCalls: 10, frames: 10, largestBatch: 1 });
  });

  it('caps the batch at maxBatch', async () => {
    const vad = await SileroVad.load({ maxBatch: 16 });
    try {
      const streams = Array.from({ length: 40 }, () => vad.createStream());
      const probs = await Promise.all(streams.map((s, k) => vad.process(s, audioOf(k, 1))));
      expect(probs.every((p) => p >= 0 && p <= 1)).toBe(true);
      expect(vad.stats).toMatchObject({ ortCalls: 3, frames: 40, largestBatch: 16 });
    } finally {
      await vad.close();
    }
  });

  it('never puts one stream twice in a batch: a second call before the first settles rejects, the first is unaffected', async () => {
    const s = batched.createStream();
    const other = batched.createStream();
    const frame = signals[0].subarray(0, F);
    const p1 = batched.process(s, frame);
    const pOther = batched.process(other, frame);
    await expect(batched.process(s, frame)).rejects.toThrow(/already being processed/);
    const [a, b] = await Promise.all([p1, pOther]);
    expect(a).toBeCloseTo(b, 6);
    expect(s.frames).toBe(1);
  });

  it('a bad frame rejects only its own caller', async () => {
    const audio = [0, 1, 2].map((k) => audioOf(k, 1));
    const want = await Promise.all(audio.map((a) => feedAlone(single, a)));
    const streams = audio.map(() => batched.createStream());
    const bad = batched.createStream();
    const calls = [batched.process(streams[0], audio[0]), batched.process(bad, new Float32Array(300)), batched.process(streams[1], audio[1]), batched.process(streams[2], audio[2])];
    const res = await Promise.allSettled(calls);
    expect(res[1]).toMatchObject({ status: 'rejected' });
    expect(String((res[1] as PromiseRejectedResult).reason)).toMatch(/512/);
    [0, 2, 3].forEach((i, k) => {
      expect(res[i].status).toBe('fulfilled');
      expect(Math.abs((res[i] as PromiseFulfilledResult<number>).value - want[k][0])).toBeLessThan(1e-5);
    });
    expect(bad.frames).toBe(0);
    expect(bad.busy).toBe(false);
  });

  it('an ORT error inside a gathered batch rejects only the caller whose frame fails', async () => {
    const vad = await SileroVad.load();
    try {
      // Make the session fail on any call whose input holds a poisoned sample.
      const session = (vad as unknown as { session: { run: (feeds: Record<string, { data: Float32Array }>) => Promise<unknown> } }).session;
      const run = session.run.bind(session);
      session.run = async (feeds) => {
        if (feeds.input.data.includes(1234)) throw new Error('ORT failed (injected)');
        return run(feeds);
      };
      const audio = [0, 1, 2, 3].map((k) => audioOf(k, 2));
      const want = await Promise.all(audio.map((a) => feedAlone(single, a)));
      const streams = audio.map(() => vad.createStream());
      const poisoned = audio[2].slice(0, F);
      poisoned[100] = 1234;
      const res = await Promise.allSettled(streams.map((s, k) => vad.process(s, k === 2 ? poisoned : audio[k].subarray(0, F))));
      expect(res.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
      expect(String((res[2] as PromiseRejectedResult).reason)).toMatch(/injected/);
      // The failed stream did not advance and is free again; the others carry on exactly.
      expect(streams.map((s) => s.frames)).toEqual([1, 1, 0, 1]);
      const next = await Promise.all(streams.map((s, k) => vad.process(s, audio[k].subarray(k === 2 ? 0 : F, k === 2 ? F : 2 * F))));
      for (const k of [0, 1, 3]) {
        expect(Math.abs((res[k] as PromiseFulfilledResult<number>).value - want[k][0])).toBeLessThan(1e-5);
        expect(Math.abs(next[k] - want[k][1])).toBeLessThan(1e-5);
      }
      expect(Math.abs(next[2] - want[2][0])).toBeLessThan(1e-5);
      // 1 failed batch of 4, 4 single retries, then 1 batch of 4.
      expect(vad.stats).toMatchObject({ ortCalls: 6, frames: 12, largestBatch: 4 });
    } finally {
      await vad.close();
    }
  });

  it('close() rejects the calls still gathering, lets the running batch finish, and refuses later calls', async () => {
    const vad = await SileroVad.load();
    const streams = Array.from({ length: 4 }, () => vad.createStream());
    const frame = (k: number) => audioOf(k, 1);
    // a, b: gathered and started by the flush at the next setImmediate.
    const running = [vad.process(streams[0], frame(0)), vad.process(streams[1], frame(1))];
    await tick();
    expect(vad.stats.ortCalls).toBe(1);
    // c, d: queued behind the running call.
    const waiting = [vad.process(streams[2], frame(2)), vad.process(streams[3], frame(3))];
    expect(vad.stats.queued).toBe(2);
    const closing = vad.close();
    for (const p of waiting) await expect(p).rejects.toThrow(/SileroVad closed before this frame was evaluated/);
    for (const p of running) expect(typeof (await p)).toBe('number');
    await closing;
    expect(streams.map((s) => s.busy)).toEqual([false, false, false, false]);
    expect(streams.map((s) => s.frames)).toEqual([1, 1, 0, 0]);
    await expect(vad.process(vad.createStream(), frame(0))).rejects.toThrow(/closed/);
  });
});
