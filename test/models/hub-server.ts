/**
 * A tiny stand-in for the Hugging Face hub's `resolve` endpoint, on 127.0.0.1 and a random port, serving the files
 * of one folder for every repository. Knobs to misbehave: corrupt a file, cut the connection mid-file once,
 * ignore Range, send HF-style checksum headers (and an LFS-style redirect), return 404.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export interface SeenRequest {
  method: string;
  path: string;
  range: string | undefined;
  authorization: string | undefined;
  /** The redirected (CDN) leg of an LFS download. */
  cdn: boolean;
}

export interface HubServerOptions {
  /** Folder whose files are served (under any `/<owner>/<repo>/resolve/<rev>/`). */
  root: string;
}

export class HubServer {
  readonly seen: SeenRequest[] = [];
  /** Paths whose served bytes are altered (one byte flipped in the middle). */
  corrupt = new Set<string>();
  /** path -> bytes: the next GET of that path sends this many bytes, then the connection is destroyed. */
  cutOnce = new Map<string, number>();
  /**
   * path -> bytes: the next GET of that path sends this many bytes, then stalls with the connection open (a
   * download caught half-way, deterministically) until `releaseHeld()` sends the rest.
   */
  holdOnce = new Map<string, number>();
  private held: Array<() => void> = [];
  /** Answer 200 with the whole file to Range requests. */
  ignoreRange = false;
  /**
   * 'none': no checksum headers. 'hf': like huggingface.co: `.onnx`/`.gguf` files (LFS) answer with a 302 to
   * /cdn/… carrying `X-Linked-Etag: "<sha256>"`, `X-Linked-Size` and `ETag`; other files come directly with
   * `ETag: "<git blob sha1>"`. `X-Repo-Commit` on every resolve answer.
   */
  checksums: 'none' | 'hf' = 'none';
  /** Paths answered with 404. */
  missing = new Set<string>();
  private server: http.Server;
  private cache = new Map<string, Buffer>();
  port = 0;

  constructor(private opts: HubServerOptions) {
    this.server = http.createServer((req, res) => this.handle(req, res));
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async close(): Promise<void> {
    this.held = [];
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Downloads stalled by `holdOnce` right now. */
  get heldCount(): number {
    return this.held.length;
  }

  /** Sends the rest of every stalled download (to a client still there). */
  releaseHeld(): void {
    for (const finish of this.held.splice(0)) finish();
  }

  /** GET requests for a file (hub leg only when the file is redirected to the CDN leg). */
  gets(path: string): SeenRequest[] {
    return this.seen.filter((r) => r.method === 'GET' && r.path === path && !r.cdn);
  }

  private file(rel: string): Buffer | null {
    if (this.missing.has(rel)) return null;
    let buf = this.cache.get(rel);
    if (!buf) {
      try {
        buf = readFileSync(join(this.opts.root, rel));
      } catch {
        return null;
      }
      this.cache.set(rel, buf);
    }
    if (this.corrupt.has(rel)) {
      const copy = Buffer.from(buf);
      copy[copy.length >> 1] ^= 0xff;
      return copy;
    }
    return buf;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const m = /^\/(?:cdn\/)?[^/]+\/[^/]+\/resolve\/[^/]+\/(.+)$/.exec(url.pathname);
    const isCdn = url.pathname.startsWith('/cdn/');
    const rel = m ? decodeURIComponent(m[1]) : null;
    this.seen.push({
      method: req.method ?? '',
      path: rel ?? url.pathname,
      range: req.headers.range,
      authorization: req.headers.authorization,
      cdn: url.pathname.startsWith('/cdn/'),
    });
    const buf = rel ? this.file(rel) : null;
    if (!rel || !buf) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Entry not found');
      return;
    }
    // Checksums of the true file (not of a corrupted copy): that is what the hub would advertise.
    const truth = readFileSync(join(this.opts.root, rel));
    const lfs = /\.(onnx|gguf|onnx_data)$/.test(rel);
    const headers: Record<string, string> = { 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' };
    if (this.checksums === 'hf' && !isCdn) {
      headers['x-repo-commit'] = '0123456789abcdef0123456789abcdef01234567';
      if (lfs) {
        const sha = createHash('sha256').update(truth).digest('hex');
        res.writeHead(302, {
          location: `/cdn${url.pathname}`,
          'x-linked-etag': `"${sha}"`,
          'x-linked-size': String(truth.length),
          etag: `"${sha}"`,
          'x-repo-commit': headers['x-repo-commit'],
        });
        res.end();
        return;
      }
      const sha1 = createHash('sha1').update(`blob ${truth.length}\0`).update(truth).digest('hex');
      headers.etag = `"${sha1}"`;
    }

    let start = 0;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    let status = 200;
    if (range && !this.ignoreRange) {
      start = Number(range[1]);
      if (start >= buf.length) {
        res.writeHead(416, { 'content-range': `bytes */${buf.length}` }).end();
        return;
      }
      status = 206;
      headers['content-range'] = `bytes ${start}-${buf.length - 1}/${buf.length}`;
    }
    const body = buf.subarray(start);
    headers['content-length'] = String(body.length);
    res.writeHead(status, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const hold = this.holdOnce.get(rel);
    if (hold !== undefined && hold < body.length) {
      this.holdOnce.delete(rel);
      res.write(body.subarray(0, hold), () => this.held.push(() => res.end(body.subarray(hold))));
      return;
    }
    const cut = this.cutOnce.get(rel);
    if (cut !== undefined && cut < body.length) {
      this.cutOnce.delete(rel);
      res.write(body.subarray(0, cut), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.end(body);
  }
}

/**
 * A stand-in hub serving a fixture folder under a manifest entry's paths (as the real hub serves that entry's
 * repository), with HF-style checksums: e.g. `moonshine-tiny` from `moonshine-mini-random`. `close` also removes
 * its temp folder.
 */
export async function startFixtureHub(
  entryFiles: readonly { path: string }[],
  fixtureDir: string,
  /** The fixture file served at a manifest path (default the same path); null: not on this hub (a 404). */
  source: (path: string) => string | null = (p) => p,
): Promise<HubServer & { root: string }> {
  const root = mkdtempSync(join(tmpdir(), 'stt-hub-'));
  for (const f of entryFiles) {
    const from = source(f.path);
    if (from === null) continue;
    mkdirSync(dirname(join(root, f.path)), { recursive: true });
    copyFileSync(join(fixtureDir, from), join(root, f.path));
  }
  const hub = await new HubServer({ root }).start();
  hub.checksums = 'hf';
  const close = hub.close.bind(hub);
  return Object.assign(hub, {
    root,
    close: async () => {
      await close();
      rmSync(root, { recursive: true, force: true });
    },
  });
}
