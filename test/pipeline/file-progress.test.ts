/**
 * Job progress through decoding (issue 16): the chunks of a ~76 s file are decoded in one batch, so the fraction
 * must rise from the decoder's steps, not only when chunks finish. Real Silero VAD, real ffmpeg-decoded espeak-ng
 * speech, the whisper-mini-random and moonshine-mini-random fixtures (random weights: every window spends its
 * token budget, which the cap keeps short).
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeToPcm16k } from '../../src/audio/ffmpeg.ts';
import type { DecodeProgress, TranscribeRequest, TranscribeResult } from '../../src/engines/speech-engine.ts';
import { SileroVad } from '../../src/engines/vad/silero-vad.ts';
import { ModelRegistry } from '../../src/models/registry.ts';
import { FileTranscriber, type FileProgress, type FileTranscribeOptions } from '../../src/pipeline/file-transcriber.ts';
import { SpeechModels, type LoadedSpeechModel } from '../../src/pipeline/speech-models.ts';
import { LocalSpeechWork, type SpeechWorkControl } from '../../src/pipeline/speech-work.ts';
import { TEXTS, concatWithGaps, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { MODELS_DIR } from '../helpers/paths.ts';

let models: SpeechModels;
let vad: SileroVad;
let pcm: Float32Array;

beforeAll(async () => {
  // maxBatch 8: all chunks of the file share one batch, so none finishes before the others.
  models = new SpeechModels({ registry: await ModelRegistry.create(MODELS_DIR), logger: pino({ level: 'silent' }), maxBatch: 8, batchWindowMs: 10, inference: { intraOpThreads: 1 } });
  vad = await SileroVad.load();
  const speech = await makeSpeechWav(TEXTS.long);
  const joined = await concatWithGaps([speech.path, speech.path], 1.5, { padStartS: 0.5, padEndS: 0.5 });
  pcm = await decodeToPcm16k(joined.path);
}, 300_000);
afterAll(async () => {
  await models?.close();
  await vad?.close();
});

/** LocalSpeechWork that notes how many progress updates were made when the first chunk came back. */
class ObservedWork extends LocalSpeechWork {
  pieces = 0;
  firstResultAt: number | null = null;
  constructor(private readonly updates: FileProgress[]) {
    super();
  }
  override async transcribe(model: Parameters<LocalSpeechWork['transcribe']>[0], req: TranscribeRequest, ctl: SpeechWorkControl): Promise<TranscribeResult> {
    this.pieces++;
    const r = await super.transcribe(model, req, ctl);
    this.firstResultAt ??= this.updates.length;
    return r;
  }
}

async function run(model: LoadedSpeechModel, opts: Partial<FileTranscribeOptions>) {
  const updates: FileProgress[] = [];
  const work = new ObservedWork(updates);
  const result = await new FileTranscriber({ vad, work }).transcribe(model, pcm, { language: 'en', temperature: 0, ...opts }, { key: 'progress', onProgress: (p) => updates.push({ ...p }) });
  return { updates, work, result };
}

function expectRisingThroughDecoding(updates: FileProgress[], firstResultAt: number) {
  const fractions = updates.map((u) => u.fraction);
  expect(fractions).toEqual([...fractions].sort((a, b) => a - b));
  expect(updates.at(-1)).toMatchObject({ stage: 'done', fraction: 1 });
  const inside = updates.filter((u) => u.stage === 'transcribing' && u.fraction > 0 && u.fraction < 1);
  expect(new Set(inside.map((u) => u.fraction)).size).toBeGreaterThanOrEqual(5);
  // Before any piece came back, the fraction had already moved with the decoder's steps.
  const early = updates.slice(0, firstResultAt).filter((u) => u.stage === 'transcribing' && u.fraction > 0);
  expect(new Set(early.map((u) => u.fraction)).size).toBeGreaterThanOrEqual(5);
  for (const u of inside) expect(u.processedSeconds).toBeLessThanOrEqual(u.totalSeconds);
}

describe('file progress through decoding (real models)', () => {
  it('Whisper, VAD chunks in one batch: the fraction rises step by step, never back, and ends at 1/done', async () => {
    const model = await models.get('whisper-mini-random');
    const before = model.scheduler.stats.batches;
    const { updates, work, result } = await run(model, { maxNewTokens: 48 });
    expect(pcm.length / 16000).toBeGreaterThan(60);
    expect(work.pieces).toBeGreaterThanOrEqual(2);
    // One language detection is skipped (language given): the chunks shared one transcription batch.
    expect(model.scheduler.stats.batches - before).toBe(1);
    expect(result.tokens.length).toBe(work.pieces);
    expectRisingThroughDecoding(updates, work.firstResultAt!);
  }, 300_000);

  it('Whisper, VAD off (long-form windows one after another): the same', async () => {
    const model = await models.get('whisper-mini-random');
    const { updates, work, result } = await run(model, { maxNewTokens: 24, vad: false });
    expect(work.pieces).toBe(1);
    expect(result.tokens.length).toBeGreaterThanOrEqual(3); // three 30 s windows or more
    expectRisingThroughDecoding(updates, work.firstResultAt!);
  }, 300_000);

  it('Moonshine (tokens against its budget): the same', async () => {
    const model = await models.get('moonshine-mini-random');
    const { updates, work } = await run(model, { maxNewTokens: 48 });
    expect(work.pieces).toBeGreaterThanOrEqual(2);
    expectRisingThroughDecoding(updates, work.firstResultAt!);
  }, 300_000);
});

describe('per-request decode progress in a scheduler batch', () => {
  it('each request of a batch gets its own calls; results are identical with and without the hook', async () => {
    const model = await models.get('whisper-mini-random');
    const a = pcm.subarray(0, 20 * 16000);
    const b = pcm.subarray(0, 45 * 16000); // two windows
    const options = { language: 'en', temperature: 0, maxNewTokens: 16 };
    const plain = await Promise.all([a, b].map((audio, i) => model.transcribe({ audio, options }, { priority: 'file', key: `plain-${i}` })));
    const seen: DecodeProgress[][] = [[], []];
    const batchesBefore = model.scheduler.stats.batches;
    const hooked = await Promise.all([a, b].map((audio, i) => model.transcribe({ audio, options, onProgress: (p) => seen[i].push({ ...p }) }, { priority: 'file', key: `hooked-${i}` })));
    expect(model.scheduler.stats.batches - batchesBefore).toBe(1);
    expect(hooked).toEqual(plain);
    // a: one window of 20 s; b: 45 s, two windows or more (the next one starts where the last timestamp said).
    expect(new Set(seen[0].map((p) => p.window))).toEqual(new Set([0]));
    expect([...new Set(seen[1].map((p) => p.window))].slice(0, 2)).toEqual([0, 1]);
    for (const [i, calls] of seen.entries()) {
      const duration = [a, b][i].length / 16000;
      expect(calls.length).toBeGreaterThanOrEqual(16);
      for (const p of calls) {
        expect(p.tokens).toBeGreaterThanOrEqual(1);
        expect(p.tokens).toBeLessThanOrEqual(p.maxTokens);
        expect(p.seconds).toBeGreaterThan(0);
        expect(p.seconds).toBeLessThanOrEqual(duration + 1e-9);
      }
    }
    // b's decoding reaches past a's whole length: its calls are its own.
    expect(Math.max(...seen[1].map((p) => p.seconds))).toBeGreaterThan(30);
  }, 300_000);

  it('beam search (Whisper) and Moonshine: identical results with the hook, which is called', async () => {
    const audio = pcm.subarray(0, 20 * 16000);
    const cases: Array<[string, Record<string, unknown>]> = [
      ['whisper-mini-random', { language: 'en', temperature: 0, maxNewTokens: 12, beamSize: 2 }],
      ['moonshine-mini-random', { language: 'en', temperature: 0, maxNewTokens: 12 }],
      ['moonshine-mini-random', { language: 'en', temperature: [0, 0.4], maxNewTokens: 12 }],
    ];
    for (const [id, options] of cases) {
      const model = await models.get(id);
      const plain = await model.transcribe({ audio, options }, { priority: 'file', key: 'plain' });
      const calls: DecodeProgress[] = [];
      const hooked = await model.transcribe({ audio, options, onProgress: (p) => calls.push({ ...p }) }, { priority: 'file', key: 'hooked' });
      expect(hooked).toEqual(plain);
      expect(calls.length).toBeGreaterThanOrEqual(11);
      expect(Math.max(...calls.map((p) => p.seconds))).toBeLessThanOrEqual(20 + 1e-9);
      expect(Math.max(...calls.map((p) => p.tokens))).toBeLessThanOrEqual(12);
    }
  }, 300_000);
});
