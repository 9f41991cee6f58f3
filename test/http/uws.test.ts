import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { NativeUwsUnavailableError, isNativeUws, loadNativeUws, nativeBinaryPath } from '../../src/http/uws.ts';

describe('native uWebSockets assertion', () => {
  it('loads the native addon on this platform', () => {
    const uws = loadNativeUws();
    expect(isNativeUws(uws)).toBe(true);
    expect(nativeBinaryPath()).toMatch(new RegExp(`uws_${process.platform}_${process.arch}_${process.versions.modules}\\.node$`));
  });

  it('recognises the pure-JS fallback as not native', async () => {
    const { createRequire } = await import('node:module');
    const require = createRequire(import.meta.url);
    const fallback = require('@trufflesuite/uws-js-unofficial/dist/index.js');
    expect(typeof fallback.App).toBe('function');
    expect(isNativeUws(fallback)).toBe(false);
  });

  it('refuses a missing binary with a message that says why', () => {
    expect(() => loadNativeUws('/nonexistent/uws_linux_x64_999.node')).toThrow(NativeUwsUnavailableError);
    expect(() => loadNativeUws('/nonexistent/uws_linux_x64_999.node')).toThrow(/refuses to run on the slow pure-JS fallback/);
  });

  it('the server refuses to start when the fallback is forced', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: { ...process.env, UWS_USE_FALLBACK: '1', PORT: '0', LOG_LEVEL: 'info', MODELS_DIR: '../shared/models', DATA_DIR: '.tmp/uws-test' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(3);
    expect(r.stdout + r.stderr).toMatch(/native binary is not available \(UWS_USE_FALLBACK is set\)/);
  });
});
