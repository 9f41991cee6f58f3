/** Module resolution hook for register.mjs: '@alexanderolsen/libsamplerate-js' → ESM wrapper. */
const WRAPPER = new URL('./libsamplerate.mjs', import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier === '@alexanderolsen/libsamplerate-js' && context.parentURL !== WRAPPER) return { url: WRAPPER, shortCircuit: true };
  return next(specifier, context);
}
