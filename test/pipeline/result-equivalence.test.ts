/**
 * The same audio through the file path (FileTranscriber, VAD on) and through a live StreamSession
 * gives the same segment and word numbers: both map the engine's decode with the one mapping of
 * formats/transcript.ts. One utterance with silence around it, so that the file's VAD chunk and
 * the stream's utterance are the same samples (both use the segmenter's defaults) and the decode
 * is the same. Real Silero VAD, the whisper-mini-random fixture.
 */
import { pino } from 'pino';
import { firstValueFrom, toArray } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeToPcm16k } from '../../src/audio/ffmpeg.ts';
import { SileroVad } from '../../src/engines/vad/silero-vad.ts';
import { mergeSegments, transcriptText, type Segment } from '../../src/formats/transcript.ts';
import { ModelRegistry } from '../../src/models/registry.ts';
import { FileTranscriber, type FileTranscription } from '../../src/pipeline/file-transcriber.ts';
import { SpeechModels, type LoadedSpeechModel } from '../../src/pipeline/speech-models.ts';
import { StreamSession, type FinalEvent, type StreamEvent } from '../../src/pipeline/stream-session.ts';
import { TEXTS, concatWithGaps, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { MODELS_DIR } from '../helpers/paths.ts';

const MAX_NEW_TOKENS = 12;

let models: SpeechModels;
let vad: SileroVad;
let model: LoadedSpeechModel;
let pcm: Float32Array;

beforeAll(async () => {
  models = new SpeechModels({ registry: await ModelRegistry.create(MODELS_DIR), logger: pino({ level: 'silent' }), maxBatch: 8, batchWindowMs: 10, inference: {} });
  vad = await SileroVad.load();
  model = await models.get('whisper-mini-random');
  const speech = await makeSpeechWav(TEXTS.hello);
  const joined = await concatWithGaps([speech.path], 1, { padStartS: 0.7, padEndS: 1.3 });
  pcm = await decodeToPcm16k(joined.path);
}, 120_000);
afterAll(async () => {
  await models?.close();
  await vad?.close();
});

async function viaFile(): Promise<FileTranscription> {
  return new FileTranscriber({ vad }).transcribe(model, pcm, { language: 'en', maxNewTokens: MAX_NEW_TOKENS, temperature: 0 });
}

async function viaStream(): Promise<StreamEvent[]> {
  const session = new StreamSession({ id: 'equivalence', model, vad, language: 'en', interimResults: false, maxNewTokens: MAX_NEW_TOKENS });
  const events = firstValueFrom(session.events$.pipe(toArray()));
  for (let i = 0; i < pcm.length; i += 1600) session.push(pcm.subarray(i, i + 1600)); // 100 ms frames
  await session.stop();
  return events;
}

const times = (segments: Segment[]) => segments.flatMap((s) => [s.start, s.end, ...s.words.flatMap((w) => [w.start, w.end])]);

describe('one mapping for files and streams', () => {
  it('a file and a stream of the same utterance give identical segments, words, text and confidence', async () => {
    const file = await viaFile();
    const events = await viaStream();
    expect(events.map((e) => e.type)).toEqual(['final', 'end']);
    const final = events[0] as FinalEvent;

    expect(file.segments.length).toBeGreaterThan(0);
    expect(file.segments.flatMap((s) => s.words).length).toBeGreaterThan(0);
    // The final itself: the file's words and text; the confidence of the segments it covers.
    expect(final.words).toEqual(file.segments.flatMap((s) => s.words));
    expect(final.text).toBe(file.text);
    expect(final.text).toBe(transcriptText(file.segments));
    expect(final.confidence).toBe(mergeSegments(file.segments, final).confidence);
    if (new Set(file.segments.map((s) => s.confidence)).size === 1) expect(final.confidence).toBe(file.segments[0].confidence);
    // The decode's segments, number for number (what a stored stream transcript can keep).
    expect(final.segments).toEqual(file.segments);

    // One rounding everywhere: whole hundredths of a second.
    for (const t of [...times(file.segments), final.start, final.end, ...times([final])]) expect(Math.round(t * 100) / 100).toBe(t);
    // The final spans its utterance, which holds the speech the segments found.
    expect(final.start).toBeLessThanOrEqual(file.segments[0].start);
    expect(final.end).toBeGreaterThanOrEqual(file.segments[file.segments.length - 1].end);
    expect(final.end).toBeLessThanOrEqual(Math.round((pcm.length / 16000) * 100) / 100);
  }, 120_000);
});
