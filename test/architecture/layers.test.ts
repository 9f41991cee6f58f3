/**
 * The import rule of issue #14: dependencies point one way (transports → pipeline → engines;
 * store, bus, config below). Reads every .ts file under src/ and config/ and fails listing each
 * import from a lower layer to a higher one, and each file in a folder that has no layer yet.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { LAYERS, checkLayers, layerOf, listTsFiles, readImportGraph } from './import-layers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Upward imports tolerated for now: none. Add one only with a comment that says why and when it goes. */
const KNOWN_VIOLATIONS: readonly string[] = [];

describe('layer rule (the function itself)', () => {
  it('reports an upward import and not a downward or same-layer one', () => {
    const report = checkLayers([
      { from: 'src/engines/llm/local-llm.ts', to: 'src/pipeline/batch-scheduler.ts' },
      { from: 'config/config.ts', to: 'src/auth/tiers.ts' },
      { from: 'src/pipeline/speech-models.ts', to: 'src/engines/whisper/engine.ts' },
      { from: 'src/http/routes/ai-routes.ts', to: 'config/ai.ts' },
      { from: 'src/pipeline/embedding-service.ts', to: 'src/ai/llm-services.ts' },
      { from: 'src/app.ts', to: 'src/http/http-server.ts' },
    ]);
    expect(report.upward).toEqual(['config/config.ts → src/auth/tiers.ts', 'src/engines/llm/local-llm.ts → src/pipeline/batch-scheduler.ts']);
    expect(report.unassigned).toEqual([]);
  });

  it('reports files in a folder without a layer, importer or imported', () => {
    const report = checkLayers([
      { from: 'src/widgets/spinner.ts', to: 'src/errors.ts' },
      { from: 'src/http/router.ts', to: 'src/util.ts' },
    ]);
    expect(report.unassigned).toEqual(['src/util.ts', 'src/widgets/spinner.ts']);
    expect(report.upward).toEqual([]);
  });

  it('assigns the layers of the issue (longest prefix wins; files outside src/ and config/ have none)', () => {
    expect(layerOf('config/webrtc.ts')).toBe(0);
    expect(layerOf('src/errors.ts')).toBe(0);
    expect(layerOf('src/formats/documents.ts')).toBe(1);
    expect(layerOf('src/engines/whisper/engine.ts')).toBe(2);
    expect(layerOf('src/auth/tiers.ts')).toBe(3);
    expect(layerOf('src/ai/llm-services.ts')).toBe(4);
    expect(layerOf('src/ingest/ws-stream.ts')).toBe(5);
    expect(layerOf('src/http/multipart-upload.ts')).toBe(6);
    expect(layerOf('src/main.ts')).toBe(7);
    expect(layerOf('src/errors-extra.ts')).toBeNull();
    expect(layerOf('test/app.test.ts')).toBeNull();
    expect(layerOf('src/x.ts', { 'src/': 1, 'src/x.ts': 5 })).toBe(5);
  });

  it('reads every form of relative import from the source text, and nothing in comments or strings', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'layers-'));
    try {
      fs.mkdirSync(path.join(root, 'src/engines'), { recursive: true });
      fs.mkdirSync(path.join(root, 'config'));
      fs.writeFileSync(
        path.join(root, 'src/engines/e.ts'),
        [
          "import { a } from '../pipeline/value.ts';",
          "import type { B } from '../pipeline/type-only.ts';",
          "export * from '../http/re-export.ts';",
          "export { c } from '../ai/named-re-export.ts';",
          "import '../ingest/side-effect.ts';",
          "const m = await import('../cli/dynamic.ts');",
          "let t: import('../auth/type-query.ts').T;",
          "import { z } from 'zod';",
          "import pkg from '../../package.json';",
          "// import { no } from '../http/comment.ts';",
          'const s = "import { no } from \'../http/string.ts\'";',
        ].join('\n'),
      );
      fs.writeFileSync(path.join(root, 'config/c.ts'), "import { e } from '../src/engines/e.ts';\n");
      const edges = readImportGraph(root, ['src', 'config']);
      expect(edges.map((e) => `${e.from} → ${e.to}`).sort()).toEqual([
        'config/c.ts → src/engines/e.ts',
        'src/engines/e.ts → src/ai/named-re-export.ts',
        'src/engines/e.ts → src/auth/type-query.ts',
        'src/engines/e.ts → src/cli/dynamic.ts',
        'src/engines/e.ts → src/http/re-export.ts',
        'src/engines/e.ts → src/ingest/side-effect.ts',
        'src/engines/e.ts → src/pipeline/type-only.ts',
        'src/engines/e.ts → src/pipeline/value.ts',
      ]);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('the import graph of src/ and config/', () => {
  const edges = readImportGraph(ROOT, ['src', 'config']);
  const files = listTsFiles(ROOT, ['src', 'config']);

  it('every file belongs to a layer (give a new folder its place in LAYERS)', () => {
    expect(files.filter((f) => layerOf(f) === null)).toEqual([]);
    expect(checkLayers(edges).unassigned).toEqual([]);
  });

  it('no module imports from a higher layer (besides the known, listed ones)', () => {
    const { upward } = checkLayers(edges);
    expect(
      upward.filter((v) => !KNOWN_VIOLATIONS.includes(v)),
      'upward imports: move the code down or invert the dependency',
    ).toEqual([]);
  });

  it('every known violation still exists (remove the fixed ones from KNOWN_VIOLATIONS)', () => {
    const { upward } = checkLayers(edges);
    expect(KNOWN_VIOLATIONS.filter((v) => !upward.includes(v))).toEqual([]);
  });

  it('LAYERS names only folders and files that exist', () => {
    const missing = Object.keys(LAYERS).filter((p) => (p.endsWith('/') ? !files.some((f) => f.startsWith(p)) : !files.includes(p)));
    expect(missing).toEqual([]);
  });
});
