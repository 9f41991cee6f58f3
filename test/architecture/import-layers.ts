/**
 * The layer rule of issue #14: every module of src/ and config/ belongs to one layer, and a module
 * may import (values or types) only from its own layer or lower ones. Lowest first:
 *
 *   0 config/, src/errors.ts, src/languages.ts, src/observability/, src/system/
 *   1 src/audio/, src/formats/, src/store/, src/bus/, src/models/
 *   2 src/engines/
 *   3 src/auth/
 *   4 src/pipeline/, src/ai/
 *   5 src/ingest/
 *   6 src/http/
 *   7 src/cli/, src/app.ts, src/main.ts (composition root)
 *
 * Pure functions over repository-relative paths ('src/http/router.ts'), so the rule can be tested on
 * made-up graphs; `readImportGraph` reads the real one with TypeScript's own import scanner.
 */
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/** Folder (ending in '/') or file → layer. The longest matching prefix wins. */
export const LAYERS: Readonly<Record<string, number>> = {
  'config/': 0,
  'src/errors.ts': 0,
  'src/languages.ts': 0,
  'src/observability/': 0,
  'src/system/': 0,
  'src/audio/': 1,
  'src/formats/': 1,
  'src/store/': 1,
  'src/bus/': 1,
  'src/models/': 1,
  'src/engines/': 2,
  'src/auth/': 3,
  'src/pipeline/': 4,
  'src/ai/': 4,
  'src/ingest/': 5,
  'src/http/': 6,
  'src/cli/': 7,
  'src/app.ts': 7,
  'src/main.ts': 7,
};

/** The layer of a repository-relative path, or null when no entry of LAYERS covers it. */
export function layerOf(file: string, layers: Readonly<Record<string, number>> = LAYERS): number | null {
  let best: { len: number; layer: number } | null = null;
  for (const [prefix, layer] of Object.entries(layers)) {
    const hit = prefix.endsWith('/') ? file.startsWith(prefix) : file === prefix;
    if (hit && (!best || prefix.length > best.len)) best = { len: prefix.length, layer };
  }
  return best?.layer ?? null;
}

export interface ImportEdge {
  from: string;
  to: string;
}

export interface LayerReport {
  /** Imports from a lower layer to a higher one, as 'from → to'. */
  upward: string[];
  /** Files (importers or imported) that no layer covers: give their folder a layer. */
  unassigned: string[];
}

/** Checks every edge against the layer order. */
export function checkLayers(edges: readonly ImportEdge[], layers: Readonly<Record<string, number>> = LAYERS): LayerReport {
  const upward: string[] = [];
  const unassigned = new Set<string>();
  for (const { from, to } of edges) {
    const a = layerOf(from, layers);
    const b = layerOf(to, layers);
    if (a === null) unassigned.add(from);
    if (b === null) unassigned.add(to);
    if (a !== null && b !== null && b > a) upward.push(`${from} → ${to}`);
  }
  return { upward: [...new Set(upward)].sort(), unassigned: [...unassigned].sort() };
}

/** Every .ts file under `dirs` (repository-relative, '/'-separated). */
export function listTsFiles(root: string, dirs: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const entry of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const child = `${rel}/${entry.name}`;
      if (entry.isDirectory()) walk(child);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(child);
    }
  };
  for (const d of dirs) walk(d);
  return out.sort();
}

/**
 * The relative imports of each file: `import`, `import type`, `export … from` and `import()`,
 * as TypeScript's scanner sees them (so comments and strings are not mistaken for imports).
 * Targets outside `dirs` (package.json, say) are left out: the rule is about src/ and config/.
 */
export function readImportGraph(root: string, dirs: readonly string[]): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const file of listTsFiles(root, dirs)) {
    const text = fs.readFileSync(path.join(root, file), 'utf8');
    const info = ts.preProcessFile(text, true, true);
    for (const imp of info.importedFiles) {
      if (!imp.fileName.startsWith('.')) continue;
      const to = path.posix.normalize(path.posix.join(path.posix.dirname(file), imp.fileName));
      if (!dirs.some((d) => to.startsWith(`${d}/`))) continue;
      edges.push({ from: file, to });
    }
  }
  return edges;
}
