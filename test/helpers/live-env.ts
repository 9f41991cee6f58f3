import { MODELS_DIR } from './paths.ts';

/**
 * The configuration of an in-process server for live-stream tests: an ephemeral port on 127.0.0.1, the mini
 * Whisper fixture, data in `dataDir`, and admission control (lag rule and load forecast) off; `env` overrides.
 */
export function liveTestEnv(dataDir: string, env: Record<string, string> = {}): Record<string, string> {
  return {
    PORT: '0',
    HOST: '127.0.0.1',
    MODELS_DIR,
    AUTO_PULL: 'false',
    DATA_DIR: dataDir,
    DEFAULT_MODEL: 'whisper-mini-random',
    STREAM_IDLE_TIMEOUT_S: '60',
    STREAM_MAX_FINAL_WAIT_MS: '0',
    STREAM_MAX_LOAD: '0',
    ...env,
  };
}
