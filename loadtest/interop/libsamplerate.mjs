/** ESM face of the UMD bundle '@alexanderolsen/libsamplerate-js' (see register.mjs). */
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../package.json', import.meta.url));
const lib = require('@alexanderolsen/libsamplerate-js');

export const { ConverterType, create } = lib;
export default lib;
