/**
 * Work-around for the server's start-up crash under plain Node (`npx tsx src/main.ts`):
 * src/audio/resampler.ts does `import { ConverterType, create } from '@alexanderolsen/libsamplerate-js'`,
 * but that package is a UMD/CommonJS bundle whose named exports Node's ESM loader cannot see
 * ("does not provide an export named 'ConverterType'"). vitest's interop hides it, so the tests pass.
 *
 * The load runner adds `--import ./loadtest/interop/register.mjs` to the server child only when
 * it detects the problem (and says so in its output); this maps the package to an ESM wrapper.
 */
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
