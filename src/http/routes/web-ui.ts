/**
 * The web page (plain HTML/CSS/JS under web/, no build step): GET / → web/index.html, and every
 * other file of web/ at its own path (/app.js, /captions.html, …).
 *
 * The file list is read once at registration and each file gets an exact route, so nothing outside
 * web/ can ever be named (no directory traversal, no dotfiles, no symlinks out) and the API routes
 * are never shadowed. Content types are explicit; responses are `no-cache` with an ETag so an
 * upgraded server is picked up at once while unchanged files cost a 304.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { HttpServer } from '../http-server.ts';

export interface WebUiDeps {
  /** Folder with the page's files (default: <repo>/web). */
  webDir?: string;
}

export const DEFAULT_WEB_DIR = path.resolve(import.meta.dirname, '../../../web');

export const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.webmanifest': 'application/manifest+json',
  '.txt': 'text/plain; charset=utf-8',
};

/** Same-origin only, no inline script: the page needs its own origin for fetch/XHR/WebSocket. */
const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self' ws: wss: blob:; worker-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
  'permissions-policy': 'microphone=(self), camera=(), geolocation=()',
};

interface StaticFile {
  urlPath: string;
  filePath: string;
  contentType: string;
}

/** Every servable file under `root`: regular files with a known type, no dotfiles, no symlinks. */
export function listWebFiles(root: string): StaticFile[] {
  const out: StaticFile[] = [];
  const walk = (dir: string, prefix: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue;
      if (!/^[A-Za-z0-9._-]+$/.test(e.name)) continue;
      const full = path.join(dir, e.name);
      if (e.isDirectory()) walk(full, `${prefix}${e.name}/`);
      else if (e.isFile()) {
        const type = CONTENT_TYPES[path.extname(e.name).toLowerCase()];
        if (type) out.push({ urlPath: `/${prefix}${e.name}`, filePath: full, contentType: type });
      }
    }
  };
  walk(root, '');
  return out;
}

/** Registers the page's routes; returns how many files are served (0 when the folder is missing). */
export function registerWebUi(server: HttpServer, deps: WebUiDeps = {}): number {
  const root = path.resolve(deps.webDir ?? DEFAULT_WEB_DIR);
  if (!fs.existsSync(root)) return 0;
  const files = listWebFiles(root);
  for (const f of files) {
    const serve = (ctx: import('../http-context.ts').HttpContext) => {
      // Read per request (small files): edits show up without a restart, and memory stays flat.
      const body = fs.readFileSync(f.filePath);
      const etag = `"${createHash('sha1').update(body).digest('base64url').slice(0, 20)}"`;
      const headers = { ...SECURITY_HEADERS, 'content-type': f.contentType, 'cache-control': 'no-cache', etag };
      if (ctx.headers['if-none-match'] === etag) return { status: 304, headers: { etag, 'cache-control': 'no-cache' } };
      return { status: 200, headers, body };
    };
    server.route('GET', f.urlPath, serve);
    if (f.urlPath === '/index.html') server.route('GET', '/', serve);
  }
  return files.length;
}
