/**
 * Live partials that cost only what is new, on the real Silero VAD and the whisper-mini-random model:
 * - no partial decode while only silence arrived since the last one (a pause before the endpoint);
 * - a partial forces the committed words as `prefix`, decodes a small budget after them on the
 *   trimmed encoder, and its text is those words plus what the decode added; finals use FINAL_ENCODER;
 * - trimmed requests of different encoder buckets, and the full-encoder final, never share a batch.
 *
 * The stream is replayed frame by frame on its own clock (audio time), each frame processed and any
 * partial answered before the next: the cadence is exactly that of a real-time client whose partials
 * come back at once, whatever the machine's speed.
 */
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { decodeToPcm16k } from '../../src/audio/ffmpeg.ts';
import { SileroVad } from '../../src/engines/vad/silero-vad.ts';
import type { TranscribeRequest, TranscribeResult } from '../../src/engines/whisper/index.ts';
import { ModelRegistry } from '../../src/models/registry.ts';
import { type DecodeControl, type LoadedSpeechModel, SpeechModels } from '../../src/pipeline/speech-models.ts';
import { type StreamEvent, StreamSession } from '../../src/pipeline/stream-session.ts';
import { concatWithGaps, makeSpeechWav, TEXTS } from '../helpers/audio-fixtures.ts';
import { MODELS_DIR } from '../helpers/paths.ts';

const SR = 16_000;
const FRAME = 512;
const FRAME_MS = (FRAME / SR) * 1000;
const MAX_NEW_TOKENS = 12;

let models: SpeechModels;
let vad: SileroVad;
let model: LoadedSpeechModel;
/** Speech with 0.5 s of silence before it (the stream's first utterance). */
let speech: Float32Array;

beforeAll(async () => {
  models = new SpeechModels({ registry: await ModelRegistry.create(MODELS_DIR), logger: pino({ level: 'silent' }), maxBatch: 8, batchWindowMs: 10, inference: {} });
  vad = await SileroVad.load();
  model = await models.get('whisper-mini-random');
  const wav = await makeSpeechWav(TEXTS.hello);
  speech = await decodeToPcm16k((await concatWithGaps([wav.path], 1, { padStartS: 0.5, padEndS: 0 })).path);
}, 120_000);
afterAll(async () => {
  await models?.close();
  await vad?.close();
});

/** Polls `cond` until true; fails after `ms` (a generous bound, not the thing under test). */
async function waitFor(cond: () => boolean, ms = 60_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Seen {
  req: TranscribeRequest;
  ctl: DecodeControl;
  /** Audio time (ms of the stream) when it was submitted. */
  at: number;
  result: Promise<TranscribeResult>;
}

/**
 * A stream on the real model whose decodes are recorded as they reach the scheduler, replayed frame by
 * frame on audio time.
 */
function replay(opts: {
  partialIntervalMs?: number;
  minSilenceMs?: number;
  finalEncoder?: 'full' | 'trimmed';
  maxNewTokens?: number;
  model?: LoadedSpeechModel;
  /** Called as a decode is submitted (before the scheduler takes it). */
  onSubmit?: (req: TranscribeRequest, ctl: DecodeControl) => void;
}) {
  const model_ = opts.model ?? model;
  let audioMs = 0;
  let inflight = 0;
  const seen: Seen[] = [];
  const recording: LoadedSpeechModel = {
    ...model_,
    transcribe: (req, ctl) => {
      const result = model_.transcribe(req, ctl);
      seen.push({ req, ctl, at: audioMs, result });
      opts.onSubmit?.(req, ctl);
      inflight++;
      result.finally(() => inflight--).catch(() => {});
      return result;
    },
  };
  const session = new StreamSession({
    id: 'replay',
    model: recording,
    vad,
    language: 'en',
    maxNewTokens: opts.maxNewTokens ?? MAX_NEW_TOKENS,
    partialIntervalMs: opts.partialIntervalMs ?? 300,
    minSilenceMs: opts.minSilenceMs,
    finalEncoder: opts.finalEncoder,
    clock: () => audioMs,
  });
  const events: StreamEvent[] = [];
  session.events$.subscribe((e) => events.push(e));
  return {
    session,
    seen,
    events,
    partials: () => seen.filter((s) => s.ctl.priority === 'partial'),
    finals: () => seen.filter((s) => s.ctl.priority === 'final'),
    /** Pushes `pcm` one VAD frame at a time, each processed and its partial (if any) answered before the next. */
    async feed(pcm: Float32Array, until?: () => boolean) {
      for (let i = 0; i < pcm.length && !until?.(); i += FRAME) {
        session.push(pcm.subarray(i, i + FRAME));
        audioMs += FRAME_MS;
        await session.processed();
        await waitFor(() => inflight === 0);
        // The session's own handlers of the answer run after the recorder's.
        await new Promise((r) => setImmediate(r));
      }
    },
  };
}

describe('partials only for new speech', () => {
  it('a pause shorter than the endpoint silence decodes no partial; speech after it does', async () => {
    const r = replay({ partialIntervalMs: 300, minSilenceMs: 3000 });
    await r.feed(speech);
    const speechMs = r.partials().length;
    const speechEndMs = (speech.length / SR) * 1000;
    // 2.5 s of silence: below the 3 s endpoint, so the utterance stays open (no final yet).
    await r.feed(new Float32Array(2.5 * SR));
    expect(r.events.filter((e) => e.type === 'final')).toEqual([]);
    const inPause = r.partials().filter((s) => s.at > speechEndMs);
    // At most one, for the speech frames the last partial of the speech had not seen yet.
    expect(inPause.length).toBeLessThanOrEqual(1);
    expect(speechMs).toBeGreaterThanOrEqual(3);
    // Speech again, same utterance: partials resume.
    const before = r.partials().length;
    await r.feed(speech.subarray(0.5 * SR, 2 * SR));
    expect(r.partials().length).toBeGreaterThan(before);
    await r.session.stop();
    expect(r.events.at(-1)).toEqual({ type: 'end' });
    expect(r.finals()).toHaveLength(1);
    expect(r.session.stats).toMatchObject({ finals: 1, droppedPartials: 0, partialDecodes: r.partials().length });
    // Reported by the task: partial decodes per utterance with this replay.
    console.log(`partial decodes: ${speechMs} in ${(speechEndMs / 1000).toFixed(1)} s of speech, ${inPause.length} in the 2.5 s pause, ${r.partials().length} in all`);
  });
});

describe('partials under load', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("a stream spaces its partials by the scheduler's partial backlog, though its own decodes are fast", async () => {
    const own = new SpeechModels({ registry: await ModelRegistry.create(MODELS_DIR), logger: pino({ level: 'silent' }), maxBatch: 8, batchWindowMs: 10, inference: {} });
    try {
      const m = await own.get('whisper-mini-random');
      // Another stream's partial waited 1.5 s for the model (the wall clock is stopped there, so the
      // scheduler's recent-wait window keeps it: a steady backlog whatever this machine's speed).
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(1_000_000);
      const other = m.transcribe({ audio: speech.subarray(0, SR), options: { language: 'en', maxNewTokens: 1, encoder: 'trimmed' } }, { priority: 'partial', key: 'other' });
      vi.setSystemTime(1_001_500);
      await other;
      expect(m.scheduler.partialWaitMs()).toBe(1500);
      const r = replay({ partialIntervalMs: 300, model: m });
      await r.feed(speech);
      const at = r.partials().map((p) => p.at);
      // 2 x 1.5 s apart (the stream's own decodes take no time on its clock); 300 ms apart without the backlog.
      expect(at.length).toBeGreaterThanOrEqual(1);
      for (let i = 1; i < at.length; i++) expect(at[i] - at[i - 1]).toBeGreaterThanOrEqual(3000);
      expect(at.length).toBeLessThanOrEqual(2);
      await r.session.stop();
      expect(r.session.stats.droppedPartials).toBe(0);
    } finally {
      await own.close();
    }
  });
});

describe('a dropped partial', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('is asked again though only silence followed: its speech was never shown', async () => {
    const own = new SpeechModels({ registry: await ModelRegistry.create(MODELS_DIR), logger: pino({ level: 'silent' }), maxBatch: 8, batchWindowMs: 10, inference: {} });
    try {
      const m = await own.get('whisper-mini-random');
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(1_000_000);
      let submitted = 0;
      // The first partial ages past partialMaxAgeMs (2 s) in the queue: the scheduler drops it.
      const r = replay({ partialIntervalMs: 300, minSilenceMs: 3000, model: m, onSubmit: () => submitted++ === 0 && vi.setSystemTime(1_002_500) });
      await r.feed(speech, () => r.session.stats.droppedPartials > 0);
      expect(r.partials()).toHaveLength(1);
      expect(r.events.filter((e) => e.type === 'partial')).toEqual([]);
      await r.feed(new Float32Array(1 * SR));
      expect(r.partials()).toHaveLength(2);
      expect(r.events.filter((e) => e.type === 'partial')).toHaveLength(1);
      await r.session.stop();
    } finally {
      await own.close();
    }
  });
});

describe('incremental partials', () => {
  it('force the committed words as prefix, decode a small budget on the trimmed encoder, and show committed + new', async () => {
    const r = replay({ partialIntervalMs: 300 });
    await r.feed(speech);
    await r.feed(new Float32Array(1 * SR));
    await r.session.stop();
    const partials = r.partials();
    const shown = r.events.filter((e) => e.type === 'partial');
    // Replayed in lockstep: every partial decode answered in its utterance gave one partial event, in order.
    expect(shown).toHaveLength(partials.length);
    expect(partials.length).toBeGreaterThanOrEqual(3);
    let stable = '';
    for (const [i, p] of partials.entries()) {
      const o = p.req.options!;
      expect(o.encoder).toBe('trimmed');
      expect(o.tokenLogprobs).toBe(false); // text only: no per-token log-softmax
      expect(o.maxNewTokens).toBe(8); // the default budget, below the stream's 12
      expect(o.timestamps).toBe(false);
      // The prefix is exactly what the stream had committed (shown as `stable`) when it was asked.
      expect(o.prefix ?? '').toBe(stable);
      const e = shown[i] as Extract<StreamEvent, { type: 'partial' }>;
      const result = await p.result;
      const added = result.text.trim();
      // What the decode generated after the prefix stays within the partial budget.
      expect(result.tokensPerWindow.flat().length).toBeLessThanOrEqual(8);
      // Text = the committed words + what this decode added (whitespace aside: punctuation is glued).
      expect(e.text.replace(/\s+/g, '')).toBe(`${stable}${added}`.replace(/\s+/g, ''));
      expect(e.text.startsWith(e.stable)).toBe(true);
      expect(e.stable.startsWith(stable)).toBe(true); // committed words are never retracted
      stable = e.stable;
    }
    // The random-weight model repeats itself, so LocalAgreement commits words and later partials carry a prefix.
    expect(partials.filter((p) => p.req.options?.prefix).length).toBeGreaterThanOrEqual(1);
    // Finals: the whole utterance, the stream's budget, the full encoder by default, no prefix.
    const [final] = r.finals();
    expect(final.req.options).toMatchObject({ encoder: 'full', maxNewTokens: MAX_NEW_TOKENS, timestamps: true });
    expect(final.req.options?.prefix).toBeUndefined();
  });

  it('FINAL_ENCODER=trimmed reaches the final; the partial budget never exceeds the stream budget', async () => {
    const r = replay({ finalEncoder: 'trimmed', maxNewTokens: 4 });
    await r.feed(speech.subarray(0, 2 * SR));
    await r.session.stop();
    expect(r.partials().length).toBeGreaterThanOrEqual(1);
    for (const p of r.partials()) expect(p.req.options?.maxNewTokens).toBe(4);
    expect(r.finals()[0].req.options).toMatchObject({ encoder: 'trimmed', maxNewTokens: 4 });
  });
});

describe('batches share an encoder shape', () => {
  it('trimmed requests of two buckets queued together with a full final run as three batches, one shape each', async () => {
    // A model of its own: its scheduler counts only these requests.
    const own = new SpeechModels({ registry: await ModelRegistry.create(MODELS_DIR), logger: pino({ level: 'silent' }), maxBatch: 8, batchWindowMs: 10, inference: {} });
    try {
      const m = await own.get('whisper-mini-random');
      const short = speech.subarray(0, 1 * SR);
      const long = new Float32Array(20 * SR);
      for (let i = 0; i < long.length; i += speech.length) long.set(speech.subarray(0, Math.min(speech.length, long.length - i)), i);
      const a = m.engine.shapeKey(short.length, 'trimmed');
      const b = m.engine.shapeKey(long.length, 'trimmed');
      expect(new Set([a, b, '']).size).toBe(3);
      const options = { language: 'en', maxNewTokens: 2, temperature: 0, encoder: 'trimmed' as const, timestamps: false };
      await Promise.all([
        m.transcribe({ audio: short, options }, { priority: 'file', key: 's1' }),
        m.transcribe({ audio: long, options }, { priority: 'file', key: 's2' }),
        m.transcribe({ audio: short, options }, { priority: 'file', key: 's3' }),
        m.transcribe({ audio: long, options }, { priority: 'file', key: 's4' }),
        m.transcribe({ audio: short, options: { ...options, encoder: 'full' } }, { priority: 'final', key: 's5' }),
      ]);
      // byGroup counts each batch's rows under its group: a mixed batch would show one group with more rows.
      expect(m.scheduler.stats.batches).toBe(3);
      expect(m.scheduler.stats.byGroup).toEqual({ transcribe: 1, [`transcribe/${a}`]: 2, [`transcribe/${b}`]: 2 });
    } finally {
      await own.close();
    }
  });
});

describe('tentative partials', () => {
  it('the first partial of an utterance is asked after 3 frames of speech, before the segmenter confirms it (250 ms)', async () => {
    // Where the VAD first hears speech: a fresh VAD stream over the same frames gives the session's probabilities.
    const vs = vad.createStream();
    let onset = -1;
    for (let i = 0, k = 0; i + FRAME <= speech.length && onset < 0; i += FRAME, k++) {
      if ((await vad.process(vs, speech.subarray(i, i + FRAME))) >= 0.5) onset = k;
    }
    expect(onset).toBeGreaterThan(0);
    const onsetMs = onset * FRAME_MS;
    const r = replay({ partialIntervalMs: 300 });
    await r.feed(speech);
    await r.feed(new Float32Array(1 * SR));
    await r.session.stop();
    const first = r.partials()[0];
    // submitted at the end of the third speech frame; confirmation needs more than 250 ms (the 9th)
    expect(first.at).toBeCloseTo(onsetMs + 3 * FRAME_MS, 6);
    expect(first.at).toBeLessThan(onsetMs + 250);
    // its audio starts at the padded start that speech_start later carries: the final's audio starts there too
    const final = r.finals()[0];
    expect(final).toBeDefined();
    expect(first.req.audio.length).toBeGreaterThanOrEqual(SR / 4);
    expect(Array.from(first.req.audio.subarray(0, 1000))).toEqual(Array.from(final.req.audio.subarray(0, 1000)));
    // shown, and the utterance still ends with its final
    expect(r.events.findIndex((e) => e.type === 'partial')).toBeLessThan(r.events.findIndex((e) => e.type === 'final'));
  });
});
