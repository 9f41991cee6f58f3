/**
 * Wiring lives in the composition root (src/app.ts): routes receive ready components and build
 * none themselves (issue #14: ai-routes built AiService and LlmTranslator). A route may construct
 * errors and values of the platform (Map, Date …), not classes of src/.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { listTsFiles } from './import-layers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Classes of the project (imported from a relative path) that `text` constructs with `new`, errors excepted. */
function constructedComponents(text: string): string[] {
  const sf = ts.createSourceFile('file.ts', text, ts.ScriptTarget.Latest, true);
  const local = new Set<string>();
  for (const st of sf.statements) {
    if (!ts.isImportDeclaration(st) || !ts.isStringLiteral(st.moduleSpecifier) || !st.moduleSpecifier.text.startsWith('.')) continue;
    const clause = st.importClause;
    if (!clause || clause.isTypeOnly) continue;
    if (clause.name) local.add(clause.name.text);
    if (clause.namedBindings && ts.isNamedImports(clause.namedBindings)) {
      for (const el of clause.namedBindings.elements) if (!el.isTypeOnly) local.add(el.name.text);
    }
  }
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isNewExpression(node) && ts.isIdentifier(node.expression)) {
      const name = node.expression.text;
      if (local.has(name) && !name.endsWith('Error')) found.push(name);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return [...new Set(found)].sort();
}

describe('composition root', () => {
  it('the check finds a component built in a route, not errors, platform or package classes', () => {
    const src = [
      "import { AiService } from '../../ai/ai-service.ts';",
      "import { LlmTranslator as T, type Translator } from '../../ai/translate.ts';",
      "import { ApiError } from '../api-error.ts';",
      "import type { Shape } from '../../formats/transcript.ts';",
      "import { z } from 'zod';",
      "import PDFDocument from 'pdfkit';",
      'export function register() {',
      '  const ai = new AiService({});',
      '  const t = new T(backend, 5);',
      "  if (!ai) throw new ApiError(400, 'no');",
      '  return [new Map(), new PDFDocument(), new Date()];',
      '}',
    ].join('\n');
    expect(constructedComponents(src)).toEqual(['AiService', 'T']);
  });

  it('routes under src/http/routes/ construct no components (they get them from src/app.ts)', () => {
    const offenders = listTsFiles(ROOT, ['src/http/routes'])
      .map((f) => ({ f, built: constructedComponents(fs.readFileSync(path.join(ROOT, f), 'utf8')) }))
      .filter((x) => x.built.length)
      .map((x) => `${x.f}: new ${x.built.join(', new ')}`);
    expect(offenders).toEqual([]);
  });
});
