/**
 * Polls `get` until it returns a value other than undefined (or false), and resolves with it. No time bound of
 * its own: the test's timeout is the bound, so a loaded machine only makes it slower, never wrong.
 */
export async function until<T>(get: () => Promise<T | undefined | false> | T | undefined | false, everyMs = 50): Promise<T> {
  for (;;) {
    const v = await get();
    if (v !== undefined && v !== false) return v;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
