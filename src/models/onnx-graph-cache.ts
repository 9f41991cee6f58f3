/**
 * A disk cache for graphs rewritten at load (precision q8's 8-bit blocks: seconds of quantizing at every start
 * otherwise). An entry is keyed by the rewrite (its name and version) and by the source: the model file's path,
 * and the size and mtime of it and of the files next to it that share its name (its external data), so a model
 * replaced on disk is rewritten again. Entries are written whole (temporary file + rename); a cache that cannot
 * be written (read-only disk, full disk) only costs the rewrite.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

/** The cache key of `file` for rewrite `tag`. */
export function graphCacheKey(file: string, tag: string): string {
  const abs = resolve(file);
  const dir = dirname(abs);
  const name = basename(abs);
  const h = createHash('sha256').update(`${tag}\n${abs}\n`);
  for (const f of readdirSync(dir)
    .filter((f) => f.startsWith(name))
    .sort()) {
    const st = statSync(join(dir, f));
    h.update(`${f}\t${st.size}\t${st.mtimeMs}\n`);
  }
  return h.digest('hex').slice(0, 32);
}

export interface CachedGraph {
  bytes: Uint8Array;
  /** 'hit': read from the cache; 'miss': rewritten (and stored when the cache could be written); 'off': no cache. */
  from: 'hit' | 'miss' | 'off';
}

/** `rewrite(bytes of file)`, read from `cacheDir` when an earlier load stored it for the same source (null = no cache). */
export function cachedGraph(file: string, tag: string, cacheDir: string | null, rewrite: (bytes: Uint8Array) => Uint8Array): CachedGraph {
  if (!cacheDir) return { bytes: rewrite(readFileSync(file)), from: 'off' };
  const entry = join(cacheDir, `${graphCacheKey(file, tag)}.onnx`);
  try {
    return { bytes: readFileSync(entry), from: 'hit' };
  } catch {
    /* not cached yet */
  }
  const bytes = rewrite(readFileSync(file));
  const tmp = `${entry}.${process.pid}.tmp`;
  try {
    mkdirSync(cacheDir, { recursive: true });
    writeFileSync(tmp, bytes);
    renameSync(tmp, entry);
  } catch {
    try {
      rmSync(tmp, { force: true });
    } catch {
      /* the folder itself is not there */
    }
  }
  return { bytes, from: 'miss' };
}
