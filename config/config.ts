/**
 * The server's whole configuration: defaults, environment overrides, validation.
 * Every component receives the slice it needs from the composition root; nothing reads
 * process.env elsewhere (CLI tools excepted, which call loadConfig too).
 */
import path from 'node:path';
import { z } from 'zod';
import { AuthConfigError, authConfigFromEnv, AUTH_ENV_NAMES, type AuthConfig } from './auth.ts';
import { AiEnvSchema, aiConfigFromEnv, type AiConfig } from './ai.ts';
import { WebRtcConfigError, webrtcConfigFromEnv, WEBRTC_ENV_NAMES, type WebRtcConfig } from './webrtc.ts';

const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'expected true or false' }).transform((v) => v === 'true' || v === '1' || v === 'yes');

const int = (min: number, max: number) => z.coerce.number({ message: 'expected a number' }).int('expected an integer').min(min, `must be at least ${min}`).max(max, `must be at most ${max}`);

const url = (protocols: string[]) =>
  z.string().refine(
    (v) => {
      try {
        return protocols.includes(new URL(v).protocol);
      } catch {
        return false;
      }
    },
    `expected a URL starting with ${protocols.map((p) => p + '//').join(' or ')}`,
  );

/** Environment variable → schema. The README's configuration table mirrors this list. */
const envSchema = z.object({
  HOST: z.string().min(1).default('0.0.0.0'),
  PORT: int(0, 65535).default(8080),
  MODELS_DIR: z.string().min(1).default('./data/models'),
  DATA_DIR: z.string().min(1).default('./data'),
  DATABASE_URL: url(['postgres:', 'postgresql:']).optional(),
  NATS_URL: url(['nats:', 'tls:', 'ws:', 'wss:']).optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DEFAULT_MODEL: z.string().min(1).default('large-v3-turbo'),
  AUTO_PULL: bool.default(true),
  HF_ENDPOINT: url(['http:', 'https:']).optional(),
  HF_TOKEN: z.string().min(1).optional(),
  MAX_UPLOAD_MB: int(1, 1024 * 1024).default(2048),
  MAX_JSON_BODY_KB: int(1, 1024 * 1024).default(10 * 1024),
  MAX_STREAMS: int(1, 100_000).default(256),
  STREAM_MAX_FRAME_KB: int(1, 16 * 1024).default(256),
  STREAM_IDLE_TIMEOUT_S: int(1, 3600).default(30),
  STREAM_MAX_DURATION_MIN: int(1, 24 * 60).default(240),
  STREAM_MAX_FINAL_WAIT_MS: int(0, 600_000).default(3000),
  STREAM_RAMP_INTERVAL_MS: int(0, 600_000).default(5000),
  // Queueing delay grows like 1/(1 − ρ): at 0.8 a final waits ~5× its decode, past 0.9 it runs away.
  // A first guess to be calibrated with `npm run loadtest` (the largest N meeting the live targets).
  STREAM_MAX_LOAD: z.coerce.number({ message: 'expected a number' }).min(0, 'must be at least 0').max(1, 'must be at most 1').default(0.8),
  EXECUTION_PROVIDER: z.enum(['cpu', 'cuda'], { message: "expected 'cpu' or 'cuda'" }).default('cpu'),
  INFERENCE_THREADS: int(0, 1024).default(0),
  INFERENCE_INTER_OP_THREADS: int(0, 1024).default(0),
  INFERENCE_SPINNING: z.enum(['on', 'off'], { message: "expected 'on' or 'off'" }).default('on'),
  GRAPH_CACHE_DIR: z.string().optional(),
  WHISPER_PRECISION: z.enum(['fp32', 'int8', 'q8', 'measure'], { message: "expected 'fp32', 'int8', 'q8' or 'measure'" }).default('fp32'),
  WHISPER_DECODER_LAYOUT: z.enum(['auto', 'merged', 'split', 'measure'], { message: "expected 'auto', 'merged', 'split' or 'measure'" }).default('measure'),
  DIARIZATION_MODEL: z.string().min(1).default('baseline'),
  DIARIZATION_SEGMENTATION_MODEL: z.string().min(1).optional(),
  MAX_BATCH_SIZE: int(1, 256).default(8),
  BATCH_WINDOW_MS: int(0, 10_000).default(10),
  PARTIAL_MAX_NEW_TOKENS: int(1, 448).default(8),
  FINAL_ENCODER: z.enum(['full', 'trimmed'], { message: "expected 'full' or 'trimmed'" }).default('full'),
  MOONSHINE_PARTIAL_PAD_MS: int(0, 5000).default(0),
  SHUTDOWN_TIMEOUT_S: int(0, 3600).default(30),
  TRUST_PROXY: bool.default(false),
  WORK_QUEUE: z.enum(['local', 'nats'], { message: "expected 'local' or 'nats'" }).default('local'),
  WORKER: bool.default(true),
  WORK_ACK_WAIT_S: int(1, 3600).default(60),
  WORK_TIMEOUT_S: int(1, 86_400).default(120),
});

export interface Config {
  /** Tiers, quotas and signup (config/auth.ts: ANON_DAILY_LIMIT, FREE_MONTHLY_MINUTES, SIGNUP_ENABLED, CONCURRENCY_RETRY_AFTER_S). */
  auth: AuthConfig;
  /** LLM, embeddings, enhance-audio (config/ai.ts: LLM_*, EMBED_*, AI_MAX_TEXT_CHARS, ENHANCE_TARGET_LUFS). */
  ai: AiConfig;
  /** WebRTC ingest (config/webrtc.ts: WEBRTC_ICE_SERVERS, WEBRTC_PORT_MIN/MAX, WEBRTC_ANNOUNCED_IP). */
  webrtc: WebRtcConfig;
  server: {
    host: string;
    port: number;
    /** Whether X-Forwarded-For may be trusted for the client address (behind a reverse proxy). */
    trustProxy: boolean;
    shutdownTimeoutMs: number;
  };
  logLevel: string;
  paths: { modelsDir: string; dataDir: string };
  database: { url: string | null; embeddedDir: string };
  bus: { natsUrl: string | null };
  /** Where file-transcription chunks are decoded (README "Scaling out"). */
  work: {
    /** 'local': this server's schedulers; 'nats': the JetStream work queue STT_WORK (needs bus.natsUrl). */
    queue: 'local' | 'nats';
    /** Consume chunks from the work queue (nats mode); false = API-only server for files. */
    worker: boolean;
    /** A chunk taken by a worker that neither acks nor reports progress for this long goes to another worker. */
    ackWaitMs: number;
    /** A dispatched chunk fails with 503 when no worker takes it or reports on it for this long. */
    timeoutMs: number;
  };
  models: {
    defaultModel: string;
    /** Download a registry model that a request names and that is not installed (once, resumable, checksummed). */
    autoPull: boolean;
    /** Hub the models come from (HF_ENDPOINT; null = https://huggingface.co) and its token (HF_TOKEN). */
    hubEndpoint: string | null;
    hubToken: string | null;
    /** 'baseline' (no weights: MFCC + pitch statistics) or the id/folder of a speaker-embedding model. */
    diarizationModel: string;
    /** Optional pyannote segmentation model id/folder (needs diarizationModel). */
    diarizationSegmentationModel: string | null;
  };
  limits: {
    maxUploadBytes: number;
    maxJsonBodyBytes: number;
    maxStreams: number;
    streamMaxFrameBytes: number;
    streamIdleTimeoutS: number;
    streamMaxDurationS: number;
    /** New live streams are refused while finals wait longer than this for the model (0 = never refuse). */
    streamMaxFinalWaitMs: number;
    /** Above half that lag, admit at most one new stream per this many ms (0 = no slow start). */
    streamRampIntervalMs: number;
    /** New live streams are refused when one more would take the model worker's required load past this fraction of its time (0 = no forecast). */
    streamMaxLoad: number;
  };
  inference: {
    executionProvider: 'cpu' | 'cuda';
    /** 0 = onnxruntime's default (all cores). */
    intraOpThreads: number;
    interOpThreads: number;
    /** false: onnxruntime's intra-op threads sleep between work instead of spinning (INFERENCE_SPINNING=off). */
    allowSpinning: boolean;
    /** Where graphs rewritten at load (precision q8) are kept for the next load; null = off (GRAPH_CACHE_DIR=''). */
    graphCacheDir: string | null;
    /** Whisper ONNX variant: fp32 or int8 files, or 'measure' (time both at load, keep the faster; int8 changes results slightly). */
    whisperPrecision: 'fp32' | 'int8' | 'q8' | 'measure';
    /** Decoder layout: 'measure' times merged and split at load and keeps the faster (same results); 'auto' = merged when present. */
    whisperDecoderLayout: 'auto' | 'merged' | 'split' | 'measure';
    /** Largest batch of 30 s windows per model call, and how long a batch waits to fill. */
    maxBatchSize: number;
    batchWindowMs: number;
  };
  live: {
    /** Tokens a live partial may decode after the words already committed (capped by the stream's budget per decode). */
    partialMaxNewTokens: number;
    /** Encoder of live finals: 'full' (padded 30 s window, as trained) or 'trimmed' (the audio's length, rounded up to a bucket). */
    finalEncoder: 'full' | 'trimmed';
    /**
     * Moonshine live partials: audio padded with trailing silence to a multiple of this (ms) so that partials of
     * different streams share a batch; 0 (default) = exact length, as finals always are.
     */
    moonshinePartialPadMs: number;
  };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Builds the config from an environment (process.env by default); throws ConfigError listing every problem. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // Empty strings mean "unset" (e.g. `DATABASE_URL= npm start`).
  const cleaned = Object.fromEntries(Object.keys(envSchema.shape).map((k) => [k, env[k] === '' ? undefined : env[k]]));
  const parsed = envSchema.safeParse(cleaned);
  const problems = parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.')}=${JSON.stringify(cleaned[String(i.path[0])])}: ${i.message}`);
  let auth: AuthConfig | null = null;
  try {
    auth = authConfigFromEnv(env);
  } catch (err) {
    if (!(err instanceof AuthConfigError)) throw err;
    problems.push(...err.problems);
  }
  let webrtc: WebRtcConfig | null = null;
  try {
    webrtc = webrtcConfigFromEnv(env);
  } catch (err) {
    if (!(err instanceof WebRtcConfigError)) throw err;
    problems.push(...err.problems);
  }
  let ai: AiConfig | null = null;
  const aiParsed = AiEnvSchema.safeParse(env);
  if (aiParsed.success) ai = aiConfigFromEnv(env);
  else problems.push(...aiParsed.error.issues.map((i) => `${i.path.join('.')}=${JSON.stringify(env[String(i.path[0])])}: ${i.message}`));
  if (parsed.success) {
    const w = parsed.data;
    if (w.WORK_QUEUE === 'nats' && !w.NATS_URL) {
      problems.push('WORK_QUEUE="nats" needs NATS_URL: set it to the NATS server (with JetStream) that carries the work, or use WORK_QUEUE=local');
    }
    if (!w.WORKER && w.WORK_QUEUE !== 'nats') {
      problems.push('WORKER="false" makes an API-only server, which needs WORK_QUEUE=nats (and NATS_URL) so that workers elsewhere transcribe its files');
    }
  }
  if (!parsed.success || !auth || !webrtc || !ai || problems.length) throw new ConfigError(problems);
  const e = parsed.data;
  const dataDir = path.resolve(e.DATA_DIR);
  return {
    auth,
    ai,
    webrtc,
    server: {
      host: e.HOST,
      port: e.PORT,
      trustProxy: e.TRUST_PROXY,
      shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_S * 1000,
    },
    logLevel: e.LOG_LEVEL,
    paths: { modelsDir: path.resolve(e.MODELS_DIR), dataDir },
    database: { url: e.DATABASE_URL ?? null, embeddedDir: path.join(dataDir, 'db') },
    bus: { natsUrl: e.NATS_URL ?? null },
    work: { queue: e.WORK_QUEUE, worker: e.WORKER, ackWaitMs: e.WORK_ACK_WAIT_S * 1000, timeoutMs: e.WORK_TIMEOUT_S * 1000 },
    models: {
      defaultModel: e.DEFAULT_MODEL,
      autoPull: e.AUTO_PULL,
      hubEndpoint: e.HF_ENDPOINT ?? null,
      hubToken: e.HF_TOKEN ?? null,
      diarizationModel: e.DIARIZATION_MODEL,
      diarizationSegmentationModel: e.DIARIZATION_SEGMENTATION_MODEL ?? null,
    },
    limits: {
      maxUploadBytes: e.MAX_UPLOAD_MB * 1024 * 1024,
      maxJsonBodyBytes: e.MAX_JSON_BODY_KB * 1024,
      maxStreams: e.MAX_STREAMS,
      streamMaxFrameBytes: e.STREAM_MAX_FRAME_KB * 1024,
      streamIdleTimeoutS: e.STREAM_IDLE_TIMEOUT_S,
      streamMaxDurationS: e.STREAM_MAX_DURATION_MIN * 60,
      streamMaxFinalWaitMs: e.STREAM_MAX_FINAL_WAIT_MS,
      streamRampIntervalMs: e.STREAM_RAMP_INTERVAL_MS,
      streamMaxLoad: e.STREAM_MAX_LOAD,
    },
    inference: {
      executionProvider: e.EXECUTION_PROVIDER,
      intraOpThreads: e.INFERENCE_THREADS,
      interOpThreads: e.INFERENCE_INTER_OP_THREADS,
      allowSpinning: e.INFERENCE_SPINNING === 'on',
      graphCacheDir: e.GRAPH_CACHE_DIR === '' ? null : path.resolve(e.GRAPH_CACHE_DIR ?? path.join(dataDir, 'cache', 'graphs')),
      whisperPrecision: e.WHISPER_PRECISION,
      whisperDecoderLayout: e.WHISPER_DECODER_LAYOUT,
      maxBatchSize: e.MAX_BATCH_SIZE,
      batchWindowMs: e.BATCH_WINDOW_MS,
    },
    live: { partialMaxNewTokens: e.PARTIAL_MAX_NEW_TOKENS, finalEncoder: e.FINAL_ENCODER, moonshinePartialPadMs: e.MOONSHINE_PARTIAL_PAD_MS },
  };
}

/** Names of every environment variable the server reads (for docs and tests). */
export const CONFIG_ENV_NAMES = [...Object.keys(envSchema.shape), ...AUTH_ENV_NAMES, ...Object.keys(AiEnvSchema.shape), ...WEBRTC_ENV_NAMES];
