/**
 * Language detection is a decode like any other: streams and files with `language: 'auto'` send it
 * through the model's BatchScheduler (op `detect`, batched apart from transcriptions), so it is
 * counted there, queued with its caller's priority, and dropped from the queue when its stream closes.
 * Real whisper-mini-random, real Silero VAD, real ffmpeg.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { decodeToPcm16k } from '../../src/audio/ffmpeg.ts';
import { SileroVad } from '../../src/engines/vad/silero-vad.ts';
import { ModelRegistry } from '../../src/models/registry.ts';
import { FileTranscriber } from '../../src/pipeline/file-transcriber.ts';
import { SpeechModels } from '../../src/pipeline/speech-models.ts';
import { LocalSpeechWork } from '../../src/pipeline/speech-work.ts';
import { StreamSession, type StreamEvent } from '../../src/pipeline/stream-session.ts';
import { TEXTS, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { MODELS_DIR } from '../helpers/paths.ts';

const MODEL = 'whisper-mini-random';
const logger = pino({ level: 'silent' });
const all: SpeechModels[] = [];
let registry: ModelRegistry;
let vad: SileroVad;
let speechPath: string;
let speech: Float32Array;

async function models(opts: { batchWindowMs?: number; maxBatch?: number } = {}) {
  const m = new SpeechModels({ registry, logger, inference: {}, ...opts });
  all.push(m);
  return m;
}

/** Polls `cond` until true; fails after `ms` (a generous bound, not the thing under test). */
async function waitFor(cond: () => boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => {
  registry = await ModelRegistry.create(MODELS_DIR);
  vad = await SileroVad.load();
  speechPath = (await makeSpeechWav(TEXTS.hello)).path;
  speech = await decodeToPcm16k(speechPath);
}, 120_000);

afterAll(async () => {
  for (const m of all) await m.close();
  await vad?.close();
});

describe('language detection goes through the scheduler', () => {
  it('a live stream with language auto: the detection is a scheduled decode (op detect), batched apart', async () => {
    const model = await (await models()).get(MODEL);
    const session = new StreamSession({ id: 's1', model, vad, language: 'auto', interimResults: false, maxNewTokens: 8 });
    const events: StreamEvent[] = [];
    session.events$.subscribe((e) => events.push(e));
    session.push(speech);
    await session.stop();
    expect(events.at(-1)).toEqual({ type: 'end' });
    expect(events.filter((e) => e.type === 'error')).toEqual([]);
    const { byGroup, requests, batches } = model.scheduler.stats;
    // Detected once (the first utterance), then kept; every transcription went through too.
    expect(byGroup.detect).toBe(1);
    expect(byGroup.transcribe).toBeGreaterThanOrEqual(1);
    expect(byGroup.detect + byGroup.transcribe).toBe(requests);
    expect(batches).toBeGreaterThanOrEqual(2);
  });

  it('a file with language auto (LocalSpeechWork): detection is counted by the scheduler, with the language it found', async () => {
    const model = await (await models()).get(MODEL);
    const transcriber = new FileTranscriber({ vad, work: new LocalSpeechWork() });
    const r = await transcriber.transcribe(model, speech, { language: 'auto', maxNewTokens: 4, temperature: 0 });
    expect(model.scheduler.stats.byGroup.detect).toBe(1);
    // The language is the one the engine detects for the same audio.
    const [direct] = await model.engine.detectLanguage([speech.subarray(0, 30 * 16_000)]);
    expect(r.language).toBe(direct.language);
  });

  it('a stream closed while its detection waits in the queue: the detection is dropped, nothing is decoded', async () => {
    // A batching window far longer than the test: whatever is submitted stays queued until cancelled.
    const m = await models({ batchWindowMs: 600_000, maxBatch: 64 });
    const model = await m.get(MODEL);
    const session = new StreamSession({ id: 's2', model, vad, language: 'auto', interimResults: false, maxNewTokens: 8 });
    const events: StreamEvent[] = [];
    session.events$.subscribe((e) => events.push(e));
    session.push(speech);
    const stopped = session.stop();
    await waitFor(() => (model.scheduler.depthByGroup.detect ?? 0) === 1);
    expect(model.scheduler.depth.final).toBe(1);
    session.close();
    await stopped;
    expect(model.scheduler.depthByGroup).toEqual({});
    expect(model.scheduler.stats.requests).toBe(0);
    expect(events.filter((e) => e.type === 'final')).toEqual([]);
  });
});
