/** Reading exported documents back in tests (what a user's viewer would show). */
import { createRequire } from 'node:module';
import path from 'node:path';

/** The text pdf.js reads back, pages joined. */
export async function pdfText(buf: Buffer): Promise<string> {
  const { getDocument } = await import('pdfjs-dist/legacy/build/pdf.mjs');
  const standardFontDataUrl = path.join(path.dirname(createRequire(import.meta.url).resolve('pdfjs-dist/package.json')), 'standard_fonts') + path.sep;
  const pdf = await getDocument({ data: new Uint8Array(buf), standardFontDataUrl, useSystemFonts: false, isEvalSupported: false }).promise;
  let out = '';
  for (let i = 1; i <= pdf.numPages; i++) {
    const content = await (await pdf.getPage(i)).getTextContent();
    out += content.items.map((it) => ('str' in it ? it.str : '')).join(' ') + '\n';
  }
  await pdf.destroy();
  return out;
}
