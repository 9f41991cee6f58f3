import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../config/config.ts';

describe('loadConfig', () => {
  it('runs on embedded defaults with no environment', () => {
    const c = loadConfig({});
    expect(c.server.port).toBe(8080);
    expect(c.database.url).toBeNull();
    expect(c.bus.natsUrl).toBeNull();
    expect(c.database.embeddedDir).toMatch(/data[/\\]db$/);
    expect(c.limits.maxUploadBytes).toBe(2048 * 1024 * 1024);
    expect(c.inference.executionProvider).toBe('cpu');
  });

  it('applies overrides and treats empty strings as unset', () => {
    const c = loadConfig({ PORT: '9000', DATABASE_URL: '', NATS_URL: 'nats://127.0.0.1:4222', EXECUTION_PROVIDER: 'cuda', MAX_UPLOAD_MB: '100' });
    expect(c.server.port).toBe(9000);
    expect(c.database.url).toBeNull();
    expect(c.bus.natsUrl).toBe('nats://127.0.0.1:4222');
    expect(c.inference.executionProvider).toBe('cuda');
    expect(c.limits.maxUploadBytes).toBe(100 * 1024 * 1024);
  });

  it('lists every problem with the variable name and what to fix', () => {
    let err: unknown;
    try {
      loadConfig({ PORT: 'eighty', EXECUTION_PROVIDER: 'tpu', DATABASE_URL: 'mysql://x', TRUST_PROXY: 'maybe' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems.join('\n');
    expect(problems).toMatch(/PORT="eighty": expected a number/);
    expect(problems).toMatch(/EXECUTION_PROVIDER="tpu": expected 'cpu' or 'cuda'/);
    expect(problems).toMatch(/DATABASE_URL="mysql:\/\/x": expected a URL starting with postgres:\/\//);
    expect(problems).toMatch(/TRUST_PROXY="maybe": expected true or false/);
    expect((err as ConfigError).problems).toHaveLength(4);
  });

  it('rejects out-of-range numbers', () => {
    expect(() => loadConfig({ PORT: '70000' })).toThrow(/PORT="70000": must be at most 65535/);
    expect(() => loadConfig({ STREAM_IDLE_TIMEOUT_S: '0' })).toThrow(/must be at least 1/);
  });
});
