/**
 * A whole server for the WebRTC and browser tests: the real App (so every route, limit and
 * access rule is the one main.ts runs), plus the WebRTC ingest, its routes and the web page, which
 * App does not wire yet. HttpServer matches routes per request, so HTTP routes added after start()
 * are live at once. Once App wires them, this becomes `new App(config).start()` and `app.webrtc`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../../config/config.ts';
import { App } from '../../src/app.ts';
import type { AccessControl } from '../../src/auth/index.ts';
import type { TranscriptStore } from '../../src/store/transcripts.ts';
import { registerWebRtcRoutes } from '../../src/http/routes/webrtc-routes.ts';
import { registerWebUi } from '../../src/http/routes/web-ui.ts';
import { webrtcConfigFromEnv } from '../../src/ingest/webrtc-config.ts';
import { WeriftWebRtcIngest } from '../../src/ingest/webrtc.ts';
import type { WsStreamIngest } from '../../src/ingest/ws-stream.ts';
import type { Metrics } from '../../src/observability/metrics.ts';
import { MODELS_DIR } from '../helpers/paths.ts';

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
  const fullEnv = { PORT: '0', HOST: '127.0.0.1', MODELS_DIR, DATA_DIR: dataDir, DEFAULT_MODEL: 'whisper-mini-random', INFERENCE_THREADS: '1', ANON_DAILY_LIMIT: '1000000', ...env };
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  let app: App | undefined;
  let webrtc: WeriftWebRtcIngest | undefined;
  const close = async () => {
    await webrtc?.close().catch(() => {});
    await app?.close().catch(() => {});
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const config = loadConfig(fullEnv);
    app = await new App(config, { logger, gpu: { available: false, name: null, memoryMb: null, detail: 'test' } }).start();
    webrtc = new WeriftWebRtcIngest({
      // App's access control and transcript store, when this App has them.
      access: (app as { access?: AccessControl }).access ?? null,
      transcripts: (app as { stores?: { transcripts?: TranscriptStore } }).stores?.transcripts,
      models: app.speechModels,
      vad: app.vad,
      bus: app.bus,
      logger: logger.child({ component: 'webrtc' }),
      metrics: app.metrics,
      webrtc: webrtcConfigFromEnv(fullEnv),
      maxStreams: config.limits.maxStreams,
      idleTimeoutS: config.limits.streamIdleTimeoutS,
      maxDurationS: config.limits.streamMaxDurationS,
    });
    await webrtc.start();
    registerWebRtcRoutes(app.server, { ingest: webrtc, defaultModel: config.models.defaultModel });
    registerWebUi(app.server);
    return { app, port: app.port, url: `http://127.0.0.1:${app.port}`, webrtc, streams: app.streams, metrics: app.metrics, close };
  } catch (err) {
    await close();
    throw err;
  }
}
