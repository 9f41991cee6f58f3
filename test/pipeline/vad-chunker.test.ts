import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeToPcm16k } from '../../src/audio/ffmpeg.ts';
import { SileroVad } from '../../src/engines/vad/silero-vad.ts';
import { chunkSpeech, splitFileIntoSpeechChunks, streamSpeechChunks, type SpeechChunk, type SpeechProbabilitySource } from '../../src/pipeline/vad-chunker.ts';
import { concatWithGaps, convertTo, makeSilenceWav, makeSpeechWav, TEXTS } from '../helpers/audio-fixtures.ts';

const SR = 16000;
const W = 512;

function probsFor(durationS: number, speech: Array<[number, number]>): { samples: Float32Array; probs: Float32Array } {
  const samples = new Float32Array(Math.round(durationS * SR));
  const probs = new Float32Array(Math.ceil(samples.length / W)).fill(0.02);
  for (const [a, b] of speech) for (let i = Math.floor((a * SR) / W); i < Math.floor((b * SR) / W); i++) probs[i] = 0.95;
  return { samples, probs };
}

describe('chunkSpeech (pure)', () => {
  it('skips silence and returns seconds + sample offsets + a view of the audio', () => {
    const { samples, probs } = probsFor(20, [
      [3, 6],
      [12, 15],
    ]);
    for (let i = 0; i < samples.length; i++) samples[i] = i;
    const chunks = chunkSpeech(samples, probs);
    expect(chunks).toHaveLength(2);
    const [a, b] = chunks;
    expect(a.index).toBe(0);
    expect(b.index).toBe(1);
    expect(a.start).toBeCloseTo(3 - 0.2, 1);
    expect(a.end).toBeCloseTo(6 + 0.2, 1);
    expect(b.start).toBeCloseTo(12 - 0.2, 1);
    expect(a.startSample).toBe(Math.round(a.start * SR));
    expect(a.audio.length).toBe(a.endSample - a.startSample);
    expect(a.audio[0]).toBe(a.startSample);
    expect(a.audio.buffer).toBe(samples.buffer); // no copy
  });

  it('merges neighbouring segments separated by short gaps, up to maxChunkS', () => {
    // 9 utterances of 3 s with 0.8 s pauses: merged into chunks of <= 30 s
    const spans: Array<[number, number]> = [];
    for (let k = 0; k < 9; k++) spans.push([1 + k * 3.8, 1 + k * 3.8 + 3]);
    const { samples, probs } = probsFor(37, spans);
    const chunks = chunkSpeech(samples, probs);
    expect(chunks.length).toBe(2);
    expect(chunks[0].segments.length).toBeGreaterThan(1);
    for (const c of chunks) expect(c.end - c.start).toBeLessThanOrEqual(30);
    expect(chunks.reduce((n, c) => n + c.segments.length, 0)).toBe(9);
    // no merging when maxMergeGapS is 0
    expect(chunkSpeech(samples, probs, { maxMergeGapS: 0 }).length).toBe(9);
    // smaller max chunk
    const small = chunkSpeech(samples, probs, { maxChunkS: 10 });
    for (const c of small) expect(c.end - c.start).toBeLessThanOrEqual(10);
  });

  it('does not merge across long silences', () => {
    const { samples, probs } = probsFor(20, [
      [1, 4],
      [7, 9],
    ]);
    expect(chunkSpeech(samples, probs).length).toBe(2);
    expect(chunkSpeech(samples, probs, { maxMergeGapS: 5 }).length).toBe(1);
  });

  it('cuts continuous speech into chunks <= maxChunkS', () => {
    const { samples, probs } = probsFor(95, [[0.5, 94]]);
    const chunks = chunkSpeech(samples, probs);
    expect(chunks.length).toBe(4);
    for (const c of chunks) expect(c.endSample - c.startSample).toBeLessThanOrEqual(30 * SR);
    expect(chunks[0].startSample).toBe(Math.floor((0.5 * SR) / W) * W - 0.2 * SR);
  });

  it('all silence -> no chunks; minChunkS drops tiny chunks', () => {
    const { samples, probs } = probsFor(10, []);
    expect(chunkSpeech(samples, probs)).toEqual([]);
    const t = probsFor(10, [[2, 2.5]]);
    expect(chunkSpeech(t.samples, t.probs).length).toBe(1);
    expect(chunkSpeech(t.samples, t.probs, { minChunkS: 1 }).length).toBe(0);
  });
});

describe('splitFileIntoSpeechChunks (real VAD on espeak audio)', () => {
  let vad: SileroVad;
  beforeAll(async () => {
    vad = await SileroVad.load();
  });
  afterAll(async () => {
    await vad?.close();
  });

  it('accepts any probability source (fake)', async () => {
    const { samples, probs } = probsFor(10, [[2, 5]]);
    const fake: SpeechProbabilitySource = { speechProbabilities: async () => probs };
    expect(await splitFileIntoSpeechChunks(samples, fake)).toHaveLength(1);
  });

  it('silence-only file -> zero chunks', async () => {
    const pcm = await decodeToPcm16k(await makeSilenceWav(8));
    expect(await splitFileIntoSpeechChunks(pcm, vad)).toEqual([]);
    const noisy = await decodeToPcm16k(await makeSilenceWav(8, { noiseAmplitude: 0.02 }));
    expect(await splitFileIntoSpeechChunks(noisy, vad)).toEqual([]);
  });

  it('two utterances separated by 2 s -> two chunks at the sox-known positions (±0.3 s)', async () => {
    const a = await makeSpeechWav(TEXTS.hello);
    const b = await makeSpeechWav(TEXTS.second);
    const joined = await concatWithGaps([a.path, b.path], 2, { padStartS: 1, padEndS: 1 });
    // Go through a lossy container too: what users upload.
    for (const path of [joined.path, await convertTo(joined.path, 'm4a-moov-at-end')]) {
      const pcm = await decodeToPcm16k(path);
      const chunks = await splitFileIntoSpeechChunks(pcm, vad);
      expect(chunks).toHaveLength(2);
      const pad = 0.2; // default speechPadMs
      chunks.forEach((c, k) => {
        const [s, e] = joined.spans[k];
        expect(Math.abs(c.start + pad - s)).toBeLessThan(0.3);
        expect(Math.abs(c.end - pad - e)).toBeLessThan(0.3);
      });
      // Unpadded detection is close too.
      const raw = await splitFileIntoSpeechChunks(pcm, vad, { speechPadMs: 0 });
      raw.forEach((c, k) => {
        expect(Math.abs(c.start - joined.spans[k][0])).toBeLessThan(0.3);
        expect(Math.abs(c.end - joined.spans[k][1])).toBeLessThan(0.3);
      });
    }
  });

  it('a ~70 s speech file -> chunks all <= 30 s covering the speech', async () => {
    const long = await makeSpeechWav(`${TEXTS.long} ${TEXTS.long}`, { padStartS: 0.5, padEndS: 0.5 });
    expect(long.durationS).toBeGreaterThan(65);
    const pcm = await decodeToPcm16k(long.path);
    const t0 = performance.now();
    const chunks = await splitFileIntoSpeechChunks(pcm, vad);
    const ms = performance.now() - t0;
    console.log(`[vad-chunker] ${long.durationS.toFixed(1)} s audio -> ${chunks.length} chunks in ${ms.toFixed(0)} ms: ${chunks.map((c) => `${c.start.toFixed(2)}-${c.end.toFixed(2)}`).join(', ')}`);
    expect(chunks.length).toBeGreaterThanOrEqual(3);
    for (const c of chunks) expect(c.end - c.start).toBeLessThanOrEqual(30);
    for (let i = 1; i < chunks.length; i++) expect(chunks[i].start).toBeGreaterThanOrEqual(chunks[i - 1].end);
    const covered = chunks.reduce((s, c) => s + (c.end - c.start), 0);
    expect(covered).toBeGreaterThan(0.9 * (long.speechEndS - long.speechStartS));
    expect(chunks[0].start).toBeLessThan(long.speechStartS + 0.3);
    expect(chunks[chunks.length - 1].end).toBeGreaterThan(long.speechEndS - 0.3);
  });
});

/** Feed `pcm` in pieces of `size` samples (any size: the chunker must not care). */
async function* piecesOf(pcm: Float32Array, size: number): AsyncGenerator<Float32Array> {
  for (let i = 0; i < pcm.length; i += size) yield pcm.slice(i, i + size);
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const strip = (cs: SpeechChunk[]) => cs.map((c) => ({ ...c, audio: Array.from(c.audio) }));

describe('streamSpeechChunks (real VAD, streamed PCM)', () => {
  let vad: SileroVad;
  let pcm: Float32Array;
  beforeAll(async () => {
    vad = await SileroVad.load();
    // ~70 s of speech with pauses, then 50 s of silence, then speech again: > 1 lane, several chunks.
    const a = await makeSpeechWav(`${TEXTS.long} ${TEXTS.long}`);
    const b = await makeSpeechWav(TEXTS.hello);
    pcm = await decodeToPcm16k((await concatWithGaps([a.path, b.path], 50, { padStartS: 1, padEndS: 1 })).path);
  });
  afterAll(async () => {
    await vad?.close();
  });

  it('equals splitFileIntoSpeechChunks exactly when the stream fits in one VAD block, whatever the piece size', async () => {
    const whole = await splitFileIntoSpeechChunks(pcm, vad);
    expect(whole.length).toBeGreaterThanOrEqual(4);
    for (const size of [32768, 1000, 512 * 7 + 3]) {
      const streamed = await collect(streamSpeechChunks(piecesOf(pcm, size), vad));
      expect(strip(streamed)).toEqual(strip(whole));
    }
  });

  it('with small blocks (many blocks, chunks crossing them) finds the same speech within a frame or two', async () => {
    const whole = await splitFileIntoSpeechChunks(pcm, vad);
    const streamed = await collect(streamSpeechChunks(piecesOf(pcm, 4096), vad, { blockFrames: 600 }));
    expect(streamed.map((c) => c.index)).toEqual(streamed.map((_, i) => i));
    expect(streamed.length).toBe(whole.length);
    streamed.forEach((c, i) => {
      expect(Math.abs(c.start - whole[i].start)).toBeLessThan(0.2);
      expect(Math.abs(c.end - whole[i].end)).toBeLessThan(0.2);
      expect(c.audio).toEqual(pcm.slice(c.startSample, c.endSample));
    });
  });

  it('pulls the source only as far as the consumer needs (back-pressure) and holds a bounded window', async () => {
    // 20 min of silence then speech: the generator must not read ahead of the consumer.
    let pulled = 0;
    const blockFrames = 400;
    async function* source(): AsyncGenerator<Float32Array> {
      for (let i = 0; i < (20 * 60 * SR) / 8000; i++) {
        pulled += 8000;
        yield new Float32Array(8000);
      }
      pulled += pcm.length;
      yield pcm;
    }
    const it = streamSpeechChunks(source(), vad, { blockFrames });
    const first = await it.next();
    expect(first.done).toBe(false);
    // The first chunk is in the speech after 20 min; by then the source has not been read past
    // the block that finished it (one block + one source piece of look-ahead at most).
    expect(first.value!.start).toBeGreaterThan(20 * 60);
    expect(pulled).toBeLessThanOrEqual(20 * 60 * SR + first.value!.endSample + (blockFrames + 1) * W + pcm.length);
    await it.return(undefined);
  });
});
