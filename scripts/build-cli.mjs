#!/usr/bin/env node
/**
 * Bundles the `stt` CLI into dist/cli/stt.mjs (esbuild; npm packages stay external), so that
 * `stt` starts on plain node instead of compiling TypeScript through tsx at every run (~0.6 s of a
 * CLI start). Runs on `npm ci` / `npm install` (the `prepare` script) and as `npm run build`.
 *
 * Next to the bundle, stt.inputs.json lists every source file that went into it with its size and
 * mtime: bin/stt.mjs uses the bundle only while none of them changed, and runs the TypeScript
 * through tsx otherwise, so an edited checkout never runs stale code.
 */
import { mkdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Builds the bundle into `outDir` (default dist/cli; the depth matters: the sources find models/ and
 * migrations/ two folders above their own file, and so does the bundle).
 */
export async function buildCli(outDir = path.join(ROOT, 'dist', 'cli')) {
  const outfile = path.join(outDir, 'stt.mjs');
  const result = await build({
    entryPoints: [path.join(ROOT, 'src', 'cli', 'stt.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: 'linked',
    metafile: true,
    outfile,
    write: false,
    logLevel: 'warning',
  });
  // Each file is replaced by a rename, never rewritten in place: a CLI starting meanwhile reads the old or the new one whole.
  const replace = (file, contents) => {
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, contents);
    renameSync(tmp, file);
  };
  mkdirSync(outDir, { recursive: true });
  for (const f of result.outputFiles) replace(f.path, f.contents);
  const inputs = Object.keys(result.metafile.inputs).map((rel) => {
    const file = path.resolve(ROOT, rel);
    const st = statSync(file);
    return { file: path.relative(outDir, file), size: st.size, mtimeMs: st.mtimeMs };
  });
  replace(path.join(outDir, 'stt.inputs.json'), `${JSON.stringify({ inputs }, null, 1)}\n`);
  return { outfile, inputs: inputs.length };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { outfile, inputs } = await buildCli(process.argv[2] ? path.resolve(process.argv[2]) : undefined);
  console.log(`built ${path.relative(process.cwd(), outfile)} from ${inputs} source files`);
}
