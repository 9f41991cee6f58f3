import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../config/config.ts';
import { App } from '../../src/app.ts';
import { decodeToPcm16k } from '../../src/audio/ffmpeg.ts';
import type { BatchScheduler } from '../../src/pipeline/batch-scheduler.ts';
import { paidKey } from '../helpers/accounts.ts';
import { TEXTS, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { liveTestEnv } from '../helpers/live-env.ts';
import { StreamClient } from '../helpers/ws-client.ts';

const CONFIG = { language: 'en', model: 'whisper-mini-random', max_new_tokens: 8 };
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-load-admission-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function ready(c: StreamClient, config: Record<string, unknown> = CONFIG): Promise<Record<string, unknown>> {
  c.json(config);
  return c.next((m) => m.status === 'ready' || 'error' in m);
}

/**
 * A server whose clock moves on by `batchMs` per batch any of the tracked schedulers has started (a batch reads its
 * start before it is counted and its end after), plus idle time the test adds: real batches on the real models,
 * exact busy time.
 */
async function serverWithBatchClock(batchMs: number) {
  const T0 = Date.now();
  const schedulers: BatchScheduler<unknown, unknown>[] = [];
  const time = { idleMs: 0 };
  const clock = () => T0 + time.idleMs + batchMs * schedulers.reduce((n, s) => n + s.stats.batches, 0);
  const config = loadConfig(liveTestEnv(dir, { STREAM_IDLE_TIMEOUT_S: '600', STREAM_MAX_FINAL_WAIT_MS: '3000', STREAM_MAX_LOAD: '0.75' }));
  const app = await new App(config, { logger: pino({ level: 'silent' }), gpu: { available: false, name: null, memoryMb: null, detail: 'test' }, clock }).start();
  try {
    const key = await paidKey(app);
    const connect = () => StreamClient.connect(`ws://127.0.0.1:${app.port}/v1/stream`, { authorization: `Bearer ${key}` });
    return { app, connect, schedulers, time };
  } catch (e) {
    await app.close();
    throw e;
  }
}

describe('WS /v1/stream: predictive admission (STREAM_MAX_LOAD)', () => {
  it('refuses the stream whose share would take the model past the limit while the lag is still under its own', async () => {
    const BATCH_MS = 4000;
    const { app, connect, schedulers, time } = await serverWithBatchClock(BATCH_MS);
    try {
      // The first stream: no stream on the model yet, the forecast abstains.
      const first = await connect();
      expect(await ready(first)).toMatchObject({ status: 'ready' });
      const model = await app.speechModels.get('whisper-mini-random');
      const scheduler = model.scheduler as BatchScheduler<unknown, unknown>;
      schedulers.push(scheduler);
      // Three real finals, one after the other (none waits): 3 × 4 s of model time; then 18 s idle.
      const pcm = await decodeToPcm16k((await makeSpeechWav(TEXTS.hello)).path);
      for (let i = 0; i < 3; i++) await model.transcribe({ audio: pcm, options: { language: 'en', maxNewTokens: 8 } }, { priority: 'final', key: `load-${i}` });
      expect(scheduler.stats.batches).toBe(3);
      time.idleMs = 30_000 - 3 * BATCH_MS;
      // 12 s of finals in 30 s with one stream that has been there all along: 40 % now, 80 % with one more.
      expect(model.scheduler.load().finalBusyFraction).toBeCloseTo(0.4, 12);
      expect(model.scheduler.finalWaitMs()).toBe(0);

      const refused = await connect();
      const err = await ready(refused);
      expect(err.error).toBe(
        "Server at capacity: one more stream of model 'whisper-mini-random' would take live decoding to 80 % of the server's inference time (1 stream uses 40 %; limit 75 %). Retry in 5 s or connect to another instance.",
      );
      expect((await refused.closed).code).toBe(1013);
      const metrics = await (await fetch(`http://127.0.0.1:${app.port}/metrics`)).text();
      expect(metrics).toMatch(/stt_streams_refused_total\{transport="websocket",reason="capacity_forecast"\} 1\n/);
      expect(metrics).not.toMatch(/reason="capacity"\}/);
      expect(metrics).toMatch(/stt_scheduler_busy_ratio\{model="whisper-mini-random",priority="final"\} 0\.4\n/);

      // The load was the first stream's: once it has gone, a new stream is admitted again.
      first.ws.close();
      await vi.waitFor(() => expect(app.live.active()).toBe(0), { timeout: 30_000, interval: 50 });
      const next = await connect();
      expect(await ready(next)).toMatchObject({ status: 'ready' });
      next.ws.close();
    } finally {
      await app.close();
    }
  });

  it('weighs a stream of one model against the streams of the others: the models share the inference thread', async () => {
    // As above, with two models: the clock moves on by BATCH_MS per batch of either scheduler.
    const BATCH_MS = 6000;
    const { app, connect, schedulers, time } = await serverWithBatchClock(BATCH_MS);
    try {
      const MOONSHINE = { language: 'en', model: 'moonshine-mini-random', max_new_tokens: 8 };
      // One stream on each model (each the first of its model: the forecast abstains).
      const onWhisper = await connect();
      expect(await ready(onWhisper)).toMatchObject({ status: 'ready', model: 'whisper-mini-random' });
      const onMoonshine = await connect();
      expect(await ready(onMoonshine, MOONSHINE)).toMatchObject({ status: 'ready', model: 'moonshine-mini-random' });
      const whisper = await app.speechModels.get('whisper-mini-random');
      const moonshine = await app.speechModels.get('moonshine-mini-random');
      schedulers.push(whisper.scheduler as BatchScheduler<unknown, unknown>, moonshine.scheduler as BatchScheduler<unknown, unknown>);
      // Real finals: two on Whisper (12 s), one on Moonshine (6 s), then 12 s idle: 60 % of 30 s.
      const pcm = await decodeToPcm16k((await makeSpeechWav(TEXTS.hello)).path);
      const final = (m: typeof whisper, i: number) => m.transcribe({ audio: pcm, options: { language: 'en', maxNewTokens: 8 } }, { priority: 'final', key: `two-models-${i}` });
      await final(whisper, 0);
      await final(whisper, 1);
      await final(moonshine, 2);
      time.idleMs = 30_000 - 3 * BATCH_MS;
      expect(whisper.scheduler.load().finalBusyFraction).toBeCloseTo(0.4, 12);
      expect(moonshine.scheduler.load().finalBusyFraction).toBeCloseTo(0.2, 12);

      // Moonshine alone would be at 40 % with one more stream; with Whisper's 40 % beside it, 80 %.
      const refused = await connect();
      const err = await ready(refused, MOONSHINE);
      expect(err.error).toBe(
        "Server at capacity: one more stream of model 'moonshine-mini-random' would take live decoding to 80 % of the server's inference time (2 streams use 60 %; limit 75 %). Retry in 5 s or connect to another instance.",
      );
      expect((await refused.closed).code).toBe(1013);

      // Once the Whisper stream has gone its model time no longer counts: the Moonshine stream is admitted.
      onWhisper.ws.close();
      await vi.waitFor(() => expect(app.live.active()).toBe(1), { timeout: 30_000, interval: 50 });
      const next = await connect();
      expect(await ready(next, MOONSHINE)).toMatchObject({ status: 'ready' });
      next.ws.close();
      onMoonshine.ws.close();
    } finally {
      await app.close();
    }
  });
});
