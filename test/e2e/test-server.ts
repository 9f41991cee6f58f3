/**
 * A whole server for the WebRTC and browser tests, built like src/app.ts (same components, same
 * wiring) plus the WebRTC ingest, its routes and the web page, which App does not wire yet.
 * Once App wires them, this can become `new App(config).start()`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../../config/config.ts';
import { createBus, type Bus } from '../../src/bus/index.ts';
import { SileroVad } from '../../src/engines/vad/silero-vad.ts';
import { HttpServer } from '../../src/http/http-server.ts';
import { registerSystemRoutes } from '../../src/http/routes/system-routes.ts';
import { UPLOAD_TMP_SUBDIR, registerTranscribeRoutes } from '../../src/http/routes/transcribe-routes.ts';
import { registerWebRtcRoutes } from '../../src/http/routes/webrtc-routes.ts';
import { registerWebUi } from '../../src/http/routes/web-ui.ts';
import { loadNativeUws } from '../../src/http/uws.ts';
import { webrtcConfigFromEnv } from '../../src/ingest/webrtc-config.ts';
import { WeriftWebRtcIngest } from '../../src/ingest/webrtc.ts';
import { WsStreamIngest } from '../../src/ingest/ws-stream.ts';
import { ModelRegistry } from '../../src/models/registry.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { FileTranscriber } from '../../src/pipeline/file-transcriber.ts';
import { JobRegistry } from '../../src/pipeline/job-registry.ts';
import { SpeechModels } from '../../src/pipeline/speech-models.ts';
import { TranscriptionService } from '../../src/pipeline/transcription-service.ts';
import { MODELS_DIR } from '../helpers/paths.ts';

export interface TestServer {
  port: number;
  url: string;
  server: HttpServer;
  webrtc: WeriftWebRtcIngest;
  streams: WsStreamIngest;
  bus: Bus;
  metrics: Metrics;
  close(): Promise<void>;
}

export async function startTestServer(env: Record<string, string> = {}): Promise<TestServer> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-e2e-'));
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    MODELS_DIR,
    DATA_DIR: dataDir,
    DEFAULT_MODEL: 'whisper-mini-random',
    INFERENCE_THREADS: '1',
    ...env,
  });
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const metrics = new Metrics();
  const closers: Array<() => Promise<void> | void> = [];
  const close = async () => {
    for (const c of closers.reverse()) {
      try {
        await c();
      } catch {
        /* best effort */
      }
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const uws = loadNativeUws();
    const registry = await ModelRegistry.create(config.paths.modelsDir);
    const tmpDir = path.join(dataDir, UPLOAD_TMP_SUBDIR);
    fs.mkdirSync(tmpDir, { recursive: true });
    const bus = createBus({ natsUrl: null, logger });
    await bus.start();
    closers.push(() => bus.close());
    const vad = await SileroVad.load();
    closers.push(() => vad.close());
    const models = new SpeechModels({
      registry,
      logger,
      metrics,
      maxBatch: config.inference.maxBatchSize,
      batchWindowMs: config.inference.batchWindowMs,
      inference: { executionProvider: 'cpu', intraOpThreads: config.inference.intraOpThreads || undefined },
    });
    closers.push(() => models.close());
    const jobs = new JobRegistry();
    closers.push(() => jobs.close());
    const transcription = new TranscriptionService({ models, transcriber: new FileTranscriber({ vad }), jobs });
    const server = new HttpServer({
      uws,
      host: config.server.host,
      port: config.server.port,
      logger,
      metrics,
      trustProxy: false,
      maxJsonBodyBytes: config.limits.maxJsonBodyBytes,
      shutdownTimeoutMs: 5000,
    });
    registerSystemRoutes(server, { gpu: { available: false, name: null, memoryMb: null, detail: 'test' }, catalog: registry, metrics });
    registerTranscribeRoutes(server, { service: transcription, jobs, tmpDir, maxUploadBytes: config.limits.maxUploadBytes, defaultModel: config.models.defaultModel });
    const limits = {
      maxStreams: config.limits.maxStreams,
      idleTimeoutS: config.limits.streamIdleTimeoutS,
      maxDurationS: config.limits.streamMaxDurationS,
    };
    const streams = new WsStreamIngest({
      server,
      models,
      vad,
      bus,
      logger,
      metrics,
      defaultModel: config.models.defaultModel,
      maxFrameBytes: config.limits.streamMaxFrameBytes,
      ...limits,
    });
    streams.register();
    const webrtc = new WeriftWebRtcIngest({ models, vad, bus, logger, metrics, webrtc: webrtcConfigFromEnv(env), ...limits });
    await webrtc.start();
    registerWebRtcRoutes(server, { ingest: webrtc, defaultModel: config.models.defaultModel });
    registerWebUi(server);
    server.onShutdown(() => Promise.all([streams.close(), webrtc.close()]).then(() => undefined));
    await server.start();
    closers.push(() => server.close());
    return { port: server.port, url: `http://127.0.0.1:${server.port}`, server, webrtc, streams, bus, metrics, close };
  } catch (err) {
    await close();
    throw err;
  }
}
