import { MODELS_DIR } from './paths.ts';

/** An in-process test server: an ephemeral port on 127.0.0.1, the mini Whisper fixture, data in `dataDir`; `env` overrides. */
export function testServerEnv(dataDir: string, env: Record<string, string> = {}): Record<string, string> {
  return {
    PORT: '0',
    HOST: '127.0.0.1',
    MODELS_DIR,
    AUTO_PULL: 'false',
    DATA_DIR: dataDir,
    DEFAULT_MODEL: 'whisper-mini-random',
    ...env,
  };
}

/** The same for live-stream tests: admission control (lag rule and load forecast) off, 60 s idle timeout; `env` overrides. */
export function liveTestEnv(dataDir: string, env: Record<string, string> = {}): Record<string, string> {
  return testServerEnv(dataDir, { STREAM_IDLE_TIMEOUT_S: '60', STREAM_MAX_FINAL_WAIT_MS: '0', STREAM_MAX_LOAD: '0', ...env });
}
