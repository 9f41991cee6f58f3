// Whether the CLI bundle that scripts/build-cli.mjs wrote is still the sources as they are now.
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';

/**
 * The bundle in `dir` (dir/stt.mjs) when every source file listed in dir/stt.inputs.json still has
 * the size and mtime it had at the build, else null (not built, or a source edited or gone since).
 * @param {string} dir
 * @returns {string | null}
 */
export function freshBundle(dir) {
  try {
    const { inputs } = JSON.parse(readFileSync(path.join(dir, 'stt.inputs.json'), 'utf8'));
    for (const i of inputs) {
      const st = statSync(path.resolve(dir, i.file));
      if (st.size !== i.size || st.mtimeMs !== i.mtimeMs) return null;
    }
    return path.join(dir, 'stt.mjs');
  } catch {
    return null;
  }
}
