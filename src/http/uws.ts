/**
 * The one place that loads uWebSockets.js.
 *
 * Upstream uWebSockets.js installs from GitHub, which some machines cannot reach; we use the
 * `@trufflesuite/uws-js-unofficial` build of the same native addon from npm. That package's
 * entry point silently falls back to a slow pure-JS server when its binary does not load, so
 * we load the native binary ourselves and refuse to start without it. Swapping to upstream is
 * a change to `loadNativeUws` only.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import type * as UwsTypes from '@trufflesuite/uws-js-unofficial';

export type Uws = typeof UwsTypes;
export type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_listen_socket } from '@trufflesuite/uws-js-unofficial';

const require = createRequire(import.meta.url);

/**
 * Limits of this uWS build's HTTP parser (v20.30), measured in test/http/http-edge-limits.test.ts.
 * It cannot be configured (no UWS_HTTP_MAX_HEADERS_SIZE in this build), and when it refuses a
 * request it closes the connection without writing a status, so HttpServer keeps its own limits
 * below these and answers them properly.
 *
 * - Content-Length: at most 9 digits. With 10 or more it still calls the route handler, then closes
 *   the connection as soon as the handler returns: nothing written there reaches the client.
 *   Bodies of 1 GB or more must therefore use `Transfer-Encoding: chunked`, which it parses.
 * - Request line + headers: about 4 KB when they arrive in more than one read, more (~128 KB on
 *   loopback) when they come in one; at most ~45 header fields.
 */
export const NATIVE_MAX_CONTENT_LENGTH = 999_999_999;

export class NativeUwsUnavailableError extends Error {
  constructor(detail: string) {
    super(
      `uWebSockets.js native binary is not available (${detail}). ` +
        `This server refuses to run on the slow pure-JS fallback. ` +
        `Use Node.js 20 on linux/darwin x64 or arm64 (ABI ${process.versions.modules} needs ` +
        `binaries/uws_${process.platform}_${process.arch}_${process.versions.modules}.node), ` +
        `or install upstream uWebSockets.js where GitHub is reachable.`,
    );
    this.name = 'NativeUwsUnavailableError';
  }
}

/** Path of the native addon for this platform, ABI and architecture. */
export function nativeBinaryPath(platform: string = process.platform, arch: string = process.arch, abi: string = process.versions.modules): string {
  const pkgDir = path.dirname(require.resolve('@trufflesuite/uws-js-unofficial/package.json'));
  return path.join(pkgDir, 'binaries', `uws_${platform}_${arch}_${abi}.node`);
}

/** True when `mod` is the native addon (its App is a C++ function), not the JS fallback. */
export function isNativeUws(mod: unknown): boolean {
  const app = (mod as { App?: unknown } | null)?.App;
  return typeof app === 'function' && /\[native code\]/.test(Function.prototype.toString.call(app));
}

/**
 * Loads the native uWS addon or throws NativeUwsUnavailableError.
 * `binaryPath` is overridable so that the refusal can be tested.
 */
export function loadNativeUws(binaryPath: string = nativeBinaryPath()): Uws {
  if (process.env.UWS_USE_FALLBACK && !/^(0|false)$/i.test(process.env.UWS_USE_FALLBACK)) {
    throw new NativeUwsUnavailableError('UWS_USE_FALLBACK is set');
  }
  let mod: unknown;
  try {
    mod = require(binaryPath);
  } catch (err) {
    throw new NativeUwsUnavailableError(`cannot load ${binaryPath}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!isNativeUws(mod)) throw new NativeUwsUnavailableError(`${binaryPath} did not export a native App`);
  return mod as Uws;
}
