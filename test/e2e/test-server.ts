/**
 * A whole server for the WebRTC and browser tests: the real App, so every route, limit and access
 * rule is the one main.ts runs (WebRTC ingest and web page included).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../../config/config.ts';
import { App } from '../../src/app.ts';
import type { WeriftWebRtcIngest } from '../../src/ingest/webrtc.ts';
import type { WsStreamIngest } from '../../src/http/ws-stream.ts';
import type { Metrics } from '../../src/observability/metrics.ts';
import { testServerEnv } from '../helpers/live-env.ts';

export interface TestServer {
  app: App;
  port: number;
  url: string;
  webrtc: WeriftWebRtcIngest;
  streams: WsStreamIngest;
  metrics: Metrics;
  close(): Promise<void>;
}

export async function startTestServer(env: Record<string, string> = {}): Promise<TestServer> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-e2e-'));
  const fullEnv = testServerEnv(dataDir, { INFERENCE_THREADS: '1', ANON_DAILY_LIMIT: '1000000', STREAM_MAX_FINAL_WAIT_MS: '0', STREAM_MAX_LOAD: '0', ...env });
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  let app: App | undefined;
  const close = async () => {
    await app?.close().catch(() => {});
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const config = loadConfig(fullEnv);
    app = await new App(config, { logger, gpu: { available: false, name: null, memoryMb: null, detail: 'test' } }).start();
    return { app, port: app.port, url: `http://127.0.0.1:${app.port}`, webrtc: app.webrtc, streams: app.streams, metrics: app.metrics, close };
  } catch (err) {
    await close();
    throw err;
  }
}
