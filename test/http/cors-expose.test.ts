/**
 * Cross-origin scripts can read every header we send: the routes are read for the headers they set,
 * and each must be in the one list (src/http/cors.ts) that every reply exposes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EXPOSED_HEADERS } from '../../src/http/cors.ts';
import type { HttpServer } from '../../src/http/http-server.ts';
import { testHttpServer } from '../helpers/http-server.ts';

const HTTP_DIR = path.resolve(import.meta.dirname, '../../src/http');
/** Directives for the browser or a proxy, not data for scripts. */
const NOT_FOR_SCRIPTS = new Set(['x-content-type-options', 'x-accel-buffering']);

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

/** Response headers a file sets: `'x-…': v` keys, `headers['x-…'] = v`, writeHeader('x-…'), and Retry-After / Location / Content-Disposition. */
function headersSetIn(source: string): string[] {
  const names = new Set<string>();
  const patterns = [
    /['"]((?:x-[a-z0-9-]+)|retry-after|content-disposition|location)['"]\s*:/gi,
    /\[\s*['"]((?:x-[a-z0-9-]+)|retry-after|content-disposition|location)['"]\s*\]\s*=(?!=)/gi,
    /writeHeader\(\s*['"]((?:x-[a-z0-9-]+)|retry-after|content-disposition|location)['"]/gi,
    /[{,]\s*(location)\s*:/g,
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) names.add(m[1]!.toLowerCase());
  return [...names];
}

describe('Access-Control-Expose-Headers', () => {
  it('the scanner finds headers set in each way (so the check below can fail)', () => {
    const src = `return { headers: { 'X-Foo-Bar': '1', location: '/x' } }; h['retry-after'] = '2'; if (h['x-forwarded-for'] === 'a') res.writeHeader('x-baz', v);`;
    expect(headersSetIn(src).sort()).toEqual(['location', 'retry-after', 'x-baz', 'x-foo-bar']);
  });

  it('lists every custom header that src/http sets', () => {
    const set = new Map<string, string[]>();
    for (const file of sourceFiles(HTTP_DIR)) {
      for (const h of headersSetIn(fs.readFileSync(file, 'utf8'))) set.set(h, [...(set.get(h) ?? []), path.relative(HTTP_DIR, file)]);
    }
    // The headers of issue #16 are among them (the scan sees the routes).
    for (const h of ['x-transcript-id', 'x-duration', 'x-generation-time', 'x-word-timestamps', 'x-diarization', 'x-tts-engine', 'x-job-id', 'x-session-id', 'retry-after', 'location']) {
      expect(set.has(h), `${h} is set somewhere in src/http`).toBe(true);
    }
    const missing = [...set].filter(([h]) => !NOT_FOR_SCRIPTS.has(h) && !(EXPOSED_HEADERS as readonly string[]).includes(h)).map(([h, files]) => `${h} (${files.join(', ')})`);
    expect(missing, 'add these to EXPOSED_HEADERS in src/http/cors.ts').toEqual([]);
  });

  describe('on the wire', () => {
    let server: HttpServer | null = null;
    afterEach(async () => {
      await server?.close();
      server = null;
    });

    it('every reply (success, error, unknown route) exposes the whole list', async () => {
      server = testHttpServer();
      server.route('GET', '/ok', () => ({ headers: { 'x-transcript-id': 't1' }, body: { ok: true } }));
      server.route('GET', '/fail', () => {
        throw new Error('boom');
      });
      await server.start();
      const base = `http://127.0.0.1:${server.port}`;
      for (const p of ['/ok', '/fail', '/nowhere']) {
        const r = await fetch(`${base}${p}`, { headers: { origin: 'https://example.org' } });
        expect(r.headers.get('access-control-allow-origin')).toBe('*');
        const exposed = (r.headers.get('access-control-expose-headers') ?? '').split(/,\s*/);
        expect(exposed).toEqual(expect.arrayContaining([...EXPOSED_HEADERS]));
        expect(exposed).toEqual(expect.arrayContaining(['x-transcript-id', 'x-duration', 'x-generation-time', 'x-word-timestamps', 'x-diarization', 'x-tts-engine']));
      }
    });
  });
});
