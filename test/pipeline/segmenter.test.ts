import { describe, expect, it } from 'vitest';
import {
  createSegmenterState,
  resolveSegmenterOptions,
  segmenterFinish,
  segmenterReducer,
  segmentProbabilities,
  tentativeStart,
  type SegmenterEvent,
  type SegmenterOptions,
} from '../../src/pipeline/segmenter.ts';

const W = 512;
const SR = 16000;
/** frames for a duration in ms (32 ms per frame) */
const f = (ms: number) => Math.round((ms * SR) / 1000 / W);

/** Build a probability sequence from [prob, frames] runs. */
function seq(...runs: Array<[number, number]>): number[] {
  const out: number[] = [];
  for (const [p, n] of runs) for (let i = 0; i < n; i++) out.push(p);
  return out;
}

function runAll(probs: number[], opts: SegmenterOptions = {}, total?: number) {
  let s = createSegmenterState(opts);
  const events: SegmenterEvent[] = [];
  probs.forEach((prob, frameIndex) => {
    const step = segmenterReducer(s, { prob, frameIndex });
    s = step.state;
    events.push(...step.events);
  });
  const fin = segmenterFinish(s, total);
  events.push(...fin.events);
  return { events, state: fin.state };
}

const NOPAD = { speechPadMs: 0 };

describe('segmenter options', () => {
  it('documents defaults', () => {
    const o = resolveSegmenterOptions();
    expect(o).toMatchObject({
      threshold: 0.5,
      minSpeechMs: 250,
      minSilenceMs: 500,
      speechPadMs: 200,
      maxUtteranceS: 30,
      frameSamples: 512,
      sampleRate: 16000,
    });
    expect(o.negThreshold).toBeCloseTo(0.35);
    expect(resolveSegmenterOptions({ threshold: 0.1 }).negThreshold).toBe(0.01);
    expect(() => resolveSegmenterOptions({ threshold: 0 })).toThrow(RangeError);
    expect(() => resolveSegmenterOptions({ threshold: 0.5, negThreshold: 0.7 })).toThrow(RangeError);
  });
});

describe('segmenterReducer', () => {
  it('is pure: never mutates the input state, same input -> same output', () => {
    const s0 = createSegmenterState();
    const snapshot = JSON.stringify(s0);
    const a = segmenterReducer(s0, { prob: 0.9, frameIndex: 0 });
    const b = segmenterReducer(s0, { prob: 0.9, frameIndex: 0 });
    expect(JSON.stringify(s0)).toBe(snapshot);
    expect(a).toEqual(b);
    expect(a.state).not.toBe(s0);
    let s = a.state;
    for (let i = 1; i < 40; i++) {
      const before = JSON.stringify(s);
      const next = segmenterReducer(s, { prob: i < 20 ? 0.9 : 0.0, frameIndex: i });
      expect(JSON.stringify(s)).toBe(before);
      s = next.state;
    }
  });

  it('rejects non-increasing frame indices', () => {
    const s = segmenterReducer(createSegmenterState(), { prob: 0.1, frameIndex: 5 }).state;
    expect(() => segmenterReducer(s, { prob: 0.1, frameIndex: 5 })).toThrow(RangeError);
  });

  it('detects start and end of a single utterance (no padding)', () => {
    // 1 s silence, 2 s speech, 1 s silence
    const probs = seq([0.02, f(1000)], [0.95, f(2000)], [0.02, f(1000)]);
    const { events } = runAll(probs, NOPAD);
    const startFrame = f(1000);
    const endFrame = f(1000) + f(2000);
    expect(events.map((e) => e.type)).toEqual(['speech_start', 'speech_end']);
    expect(events[0]).toMatchObject({ type: 'speech_start', sample: startFrame * W });
    expect(events[1]).toMatchObject({ type: 'speech_end', startSample: startFrame * W, endSample: endFrame * W, reason: 'silence' });
    // speech_start is emitted once min speech (250 ms) is certain, speech_end after min silence (500 ms).
    expect(events[0].frameIndex).toBe(startFrame + Math.floor((250 * SR) / 1000 / W));
    expect(events[1].frameIndex).toBe(endFrame + Math.ceil((500 * SR) / 1000 / W));
  });

  it('pads both sides by speechPadMs, clamped to 0 and to the audio end', () => {
    const pad = (200 * SR) / 1000;
    const probs = seq([0.02, f(1000)], [0.95, f(2000)], [0.02, f(1000)]);
    const { events } = runAll(probs);
    const start = f(1000) * W;
    const end = (f(1000) + f(2000)) * W;
    expect(events[1]).toMatchObject({ startSample: start - pad, endSample: end + pad });
    // Speech from sample 0 to the end of input: no negative start, end clamped to total.
    const { events: e2 } = runAll(seq([0.9, f(1000)]), {}, f(1000) * W);
    expect(e2).toHaveLength(2);
    expect(e2[1]).toMatchObject({ startSample: 0, endSample: f(1000) * W, reason: 'end_of_stream' });
  });

  it('a pause shorter than minSilenceMs does not split; a longer one does', () => {
    const short = seq([0.9, f(1000)], [0.05, f(400)], [0.9, f(1000)], [0.05, f(1000)]);
    expect(runAll(short, NOPAD).events.filter((e) => e.type === 'speech_end')).toHaveLength(1);
    const long = seq([0.9, f(1000)], [0.05, f(700)], [0.9, f(1000)], [0.05, f(1000)]);
    const ends = runAll(long, NOPAD).events.filter((e) => e.type === 'speech_end');
    expect(ends).toHaveLength(2);
    // honours a custom minSilenceMs
    expect(runAll(long, { ...NOPAD, minSilenceMs: 1000 }).events.filter((e) => e.type === 'speech_end')).toHaveLength(1);
  });

  it('hysteresis: dips between negThreshold and threshold keep speech going', () => {
    const probs = seq([0.9, f(500)], [0.4, f(2000)], [0.9, f(500)], [0.0, f(1000)]);
    const ends = runAll(probs, NOPAD).events.filter((e) => e.type === 'speech_end');
    expect(ends).toHaveLength(1);
    expect(ends[0]).toMatchObject({ startSample: 0, endSample: (f(500) + f(2000) + f(500)) * W });
  });

  it('a silence candidate is cancelled only by prob >= threshold', () => {
    // speech, then silence starting at 1000 ms, a 0.45 blip (between neg and threshold) does not reset it
    const probs = seq([0.9, f(1000)], [0.1, f(300)], [0.45, f(100)], [0.1, f(300)]);
    const ends = runAll(probs, NOPAD).events.filter((e) => e.type === 'speech_end');
    expect(ends[0]).toMatchObject({ endSample: f(1000) * W, reason: 'silence' });
  });

  it('drops segments not longer than minSpeechMs and never emits their start', () => {
    const probs = seq([0.02, f(500)], [0.9, f(200)], [0.02, f(1000)], [0.9, f(400)], [0.02, f(1000)]);
    const { events } = runAll(probs, NOPAD);
    expect(events.map((e) => e.type)).toEqual(['speech_start', 'speech_end']);
    expect((events[0] as { sample: number }).sample).toBe((f(500) + f(200) + f(1000)) * W);
    // With minSpeechMs 100 both survive
    expect(runAll(probs, { ...NOPAD, minSpeechMs: 100 }).events.filter((e) => e.type === 'speech_end')).toHaveLength(2);
  });

  it('short speech open at end of stream is dropped; long enough is emitted', () => {
    expect(runAll(seq([0.02, 10], [0.9, f(200)]), NOPAD).events).toEqual([]);
    const { events } = runAll(seq([0.02, 10], [0.9, f(500)]), NOPAD);
    expect(events.map((e) => e.type)).toEqual(['speech_start', 'speech_end']);
    expect(events[1]).toMatchObject({ reason: 'end_of_stream', endSample: (10 + f(500)) * W });
  });

  it('padding never overlaps the previous segment and splits short gaps', () => {
    // gap of 12 frames = 384 ms (< 2*200 ms pad) with minSilence 300 ms
    const probs = seq([0.9, f(1000)], [0.02, 12], [0.9, f(1000)], [0.02, f(1000)]);
    const ends = runAll(probs, { minSilenceMs: 300 }).events.filter((e) => e.type === 'speech_end') as Array<{ startSample: number; endSample: number }>;
    expect(ends).toHaveLength(2);
    expect(ends[0].endSample).toBeLessThanOrEqual(ends[1].startSample);
    const gapStart = f(1000) * W;
    const gapEnd = (f(1000) + 12) * W;
    expect(ends[0].endSample).toBeGreaterThan(gapStart);
    expect(ends[1].startSample).toBeLessThan(gapEnd);
  });

  it('forces a cut at maxUtteranceS, at the lowest-probability recent frame', () => {
    // 50 s of continuous speech with a quiet (but not silent) frame at 27 s
    const probs = seq([0.02, 10], [0.9, f(50_000)], [0.02, f(1000)]);
    const quiet = 10 + f(27_000);
    probs[quiet] = 0.55;
    const { events } = runAll(probs);
    const ends = events.filter((e) => e.type === 'speech_end') as Array<{ startSample: number; endSample: number; reason: string }>;
    expect(ends.length).toBe(2);
    expect(ends[0].reason).toBe('max_length');
    expect(ends[0].endSample).toBe(quiet * W + W / 2);
    expect(ends[1].startSample).toBe(ends[0].endSample); // contiguous: speech continued
    for (const e of ends) expect(e.endSample - e.startSample).toBeLessThanOrEqual(30 * SR);
    // starts and ends alternate properly
    expect(events.map((e) => e.type)).toEqual(['speech_start', 'speech_end', 'speech_start', 'speech_end']);
  });

  it('max-length cut with flat probabilities still keeps every segment <= maxUtteranceS', () => {
    const probs = seq([0.9, f(100_000)]);
    const segs = segmentProbabilities(probs, { maxUtteranceS: 10 });
    expect(segs.length).toBeGreaterThanOrEqual(10);
    for (const s of segs) expect(s.endSample - s.startSample).toBeLessThanOrEqual(10 * SR);
    for (let i = 1; i < segs.length; i++) expect(segs[i].startSample).toBe(segs[i - 1].endSample);
    expect(segs[segs.length - 1].endSample).toBe(probs.length * W);
  });

  it('max-length reached during a silence candidate ends the utterance there', () => {
    const opts = { maxUtteranceS: 5, minSilenceMs: 2000, speechPadMs: 0 };
    const probs = seq([0.9, f(4900)], [0.05, f(3000)], [0.9, f(1000)], [0.05, f(3000)]);
    const segs = segmentProbabilities(probs, opts);
    expect(segs[0]).toMatchObject({ startSample: 0, endSample: f(4900) * W, reason: 'max_length' });
    expect(segs).toHaveLength(2);
  });

  it('segmentProbabilities == folding the reducer by hand', () => {
    const probs = seq([0.02, 30], [0.9, 60], [0.1, 5], [0.9, 20], [0.02, 40], [0.8, 30], [0.02, 20]);
    const byHand = runAll(probs)
      .events.filter((e) => e.type === 'speech_end')
      .map((e) => e.type === 'speech_end' && [e.startSample, e.endSample]);
    expect(segmentProbabilities(probs).map((s) => [s.startSample, s.endSample])).toEqual(byHand);
  });
});

describe('tentativeStart (live partials before speech_start)', () => {
  const feed = (probs: number[]) => {
    let s = createSegmenterState();
    const events: SegmenterEvent[] = [];
    probs.forEach((prob, frameIndex) => {
      const step = segmenterReducer(s, { prob, frameIndex });
      s = step.state;
      events.push(...step.events);
    });
    return { s, events };
  };
  const silence = (n: number) => Array.from({ length: n }, () => 0.01);
  const speech = (n: number) => Array.from({ length: n }, () => 0.9);

  it('is the padded start speech_start will carry, once speech lasted minMs and before it is confirmed', () => {
    // 10 frames of silence (320 ms), then speech: the raw start is frame 10 = sample 5120, padded by 200 ms.
    expect(tentativeStart(feed([...silence(10), ...speech(2)]).s, 96)).toBeNull(); // 64 ms heard
    const three = feed([...silence(10), ...speech(3)]);
    expect(three.events).toEqual([]);
    expect(tentativeStart(three.s, 96)).toBe(5120 - 3200);
    // confirmed (> 250 ms): no tentative start any more, and speech_start carries the same sample
    const confirmed = feed([...silence(10), ...speech(10)]);
    expect(confirmed.events[0]).toMatchObject({ type: 'speech_start', sample: 5120 - 3200 });
    expect(tentativeStart(confirmed.s, 96)).toBeNull();
  });

  it('a blip too short for an utterance leaves no tentative start once it is dropped', () => {
    const blip = feed([...silence(10), ...speech(4), ...silence(30)]);
    expect(blip.events).toEqual([]);
    expect(tentativeStart(blip.s, 96)).toBeNull();
  });
});
