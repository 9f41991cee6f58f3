/**
 * The partial cadence under load: the interval policy of a live stream, its token budget, the scheduler's
 * partial-backlog signal it reads (pure parts), and the group key that keeps encoder shapes apart in batches
 * (from a real engine's shape key).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encoderBucketFrames, WhisperEngine } from '../../src/engines/whisper/index.ts';
import { BatchScheduler } from '../../src/pipeline/batch-scheduler.ts';
import { type SpeechRequest, speechGroup } from '../../src/pipeline/speech-models.ts';
import { MODELS_DIR } from '../helpers/paths.ts';
import { MAX_PARTIAL_INTERVAL_MS, partialIntervalMs, partialTokenBudget } from '../../src/pipeline/stream-session.ts';

describe('partialIntervalMs', () => {
  it('is the minimum while the stream is answered fast and nothing waits', () => {
    expect(partialIntervalMs({ minMs: 500, lastDecodeMs: 100, queueWaitMs: 0 })).toBe(500);
  });

  it('follows 1.5x the last decode of the stream', () => {
    expect(partialIntervalMs({ minMs: 500, lastDecodeMs: 1000, queueWaitMs: 0 })).toBe(1500);
  });

  it('widens to 2x the scheduler partial backlog, even for a stream with no slow decode of its own yet', () => {
    expect(partialIntervalMs({ minMs: 500, lastDecodeMs: 0, queueWaitMs: 900 })).toBe(1800);
    expect(partialIntervalMs({ minMs: 500, lastDecodeMs: 1000, queueWaitMs: 900 })).toBe(1800);
  });

  it('is bounded: at most the cap, never below the stream minimum', () => {
    expect(partialIntervalMs({ minMs: 500, lastDecodeMs: 20_000, queueWaitMs: 20_000 })).toBe(MAX_PARTIAL_INTERVAL_MS);
    expect(partialIntervalMs({ minMs: 500, lastDecodeMs: 0, queueWaitMs: 20_000, maxMs: 3000 })).toBe(3000);
    expect(partialIntervalMs({ minMs: 8000, lastDecodeMs: 0, queueWaitMs: 20_000 })).toBe(8000);
  });
});

describe('partialTokenBudget', () => {
  it('defaults to 8 and never exceeds the stream budget per decode', () => {
    expect(partialTokenBudget(undefined, undefined)).toBe(8);
    expect(partialTokenBudget(undefined, 16)).toBe(8);
    expect(partialTokenBudget(12, 16)).toBe(12);
    expect(partialTokenBudget(12, 4)).toBe(4);
  });
});

describe('BatchScheduler.partialWaitMs', () => {
  it('zero when idle; the age of the oldest queued partial while behind; the recent waits after; zero after its window', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const s = new BatchScheduler<string, string>({
      name: 'test',
      maxBatch: 4,
      windowMs: 0,
      partialMaxAgeMs: 600_000,
      partialWaitWindowMs: 5000,
      run: async (reqs) => {
        if (reqs[0] === 'busy') await gate;
        return reqs;
      },
    });
    expect(s.partialWaitMs()).toBe(0);
    const busy = s.submit('busy', { priority: 'final', key: 'x' });
    await new Promise((r) => setTimeout(r, 0)); // the final's batch starts and holds the model
    const partials = ['p1', 'p2'].map((p) => s.submit(p, { priority: 'partial', key: p }));
    // Read after the submits: the clock may tick during them, and the partials' enqueue times are never later than this.
    const t0 = Date.now();
    // Queued behind the running batch: their age is the backlog (now is passed in: no waiting).
    expect(s.partialWaitMs(t0 + 1500)).toBeGreaterThanOrEqual(1500);
    expect(s.partialWaitMs(t0 + 1500)).toBeLessThan(1500 + 1000);
    // Finals are unaffected by queued partials.
    expect(s.finalWaitMs(t0 + 1500)).toBeLessThan(1500);
    release();
    await busy;
    await Promise.all(partials);
    const started = Date.now();
    const waited = started - t0;
    // Nothing queued any more: the waits partials had recently (p90) remain the signal for the window…
    expect(s.partialWaitMs(started)).toBeLessThanOrEqual(waited + 5);
    expect(s.depth.partial).toBe(0);
    // …and fall to zero once it has passed.
    expect(s.partialWaitMs(started + 6000)).toBe(0);
  });
});

describe('speechGroup', () => {
  const audio = (s: number) => new Float32Array(Math.round(s * 16_000));
  let eng: WhisperEngine;
  beforeAll(async () => {
    eng = await WhisperEngine.load(join(MODELS_DIR, 'whisper-mini-random'), { decoderLayout: 'split' });
  });
  afterAll(async () => eng?.close());
  /** Grouped by the engine's own shape key, as SpeechModels does. */
  const group = (req: SpeechRequest) => speechGroup(req, (samples, mode) => eng.shapeKey(samples, mode));

  it('detections, full-encoder transcriptions and each trimmed bucket are separate model calls', () => {
    expect(group({ op: 'detect', audio: audio(1) })).toBe('detect');
    expect(group({ audio: audio(1) })).toBe('transcribe');
    expect(group({ audio: audio(1), options: { encoder: 'full' } })).toBe('transcribe');
    const short = group({ audio: audio(1), options: { encoder: 'trimmed' } });
    expect(short).toBe(`transcribe/trimmed@${encoderBucketFrames(100)}`);
    expect(group({ audio: audio(1.1), options: { encoder: 'trimmed', prefix: 'hello' } })).toBe(short);
    expect(group({ audio: audio(20), options: { encoder: 'trimmed' } })).not.toBe(short);
  });

  it('trimmed audio whose bucket is the whole window, longer than 30 s, or on a model that cannot trim shares the full-encoder call', () => {
    expect(group({ audio: audio(30), options: { encoder: 'trimmed' } })).toBe('transcribe');
    expect(group({ audio: audio(95), options: { encoder: 'trimmed' } })).toBe('transcribe');
    expect(speechGroup({ audio: audio(1), options: { encoder: 'trimmed' } }, () => '')).toBe('transcribe');
  });
});
