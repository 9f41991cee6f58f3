import { DomainError } from '../../src/errors.ts';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiError } from '../../src/http/api-error.ts';
import type { HttpServer } from '../../src/http/http-server.ts';
import { testHttpServer } from '../helpers/http-server.ts';
import { Router } from '../../src/http/router.ts';

let server: HttpServer | null = null;

async function startServer(setup: (s: HttpServer) => void, maxJsonBodyBytes = 1024): Promise<string> {
  server = testHttpServer({ maxJsonBodyBytes });
  setup(server);
  await server.start();
  return `http://127.0.0.1:${server.port}`;
}

afterEach(async () => {
  await server?.close();
  server = null;
});

describe('Router', () => {
  it('matches params, optional trailing slash, and tells 404 from 405', () => {
    const r = new Router<string>().add('GET', '/api/v1/transcripts/:id/', 'get').add('DELETE', '/api/v1/transcripts/:id/', 'del');
    expect(r.match('GET', '/api/v1/transcripts/abc')).toMatchObject({ kind: 'found', handler: 'get', params: { id: 'abc' } });
    expect(r.match('GET', '/api/v1/transcripts/a%20b/')).toMatchObject({ params: { id: 'a b' } });
    expect(r.match('POST', '/api/v1/transcripts/abc/')).toEqual({ kind: 'method-not-allowed', allowed: ['GET', 'DELETE'], pattern: '/api/v1/transcripts/:id/' });
    expect(r.match('GET', '/api/v1/transcripts/abc/extra')).toEqual({ kind: 'not-found' });
  });
});

describe('HttpServer', () => {
  it('sends JSON, a request id on every response, and echoes a sane incoming id', async () => {
    const base = await startServer((s) => s.route('GET', '/ping', () => ({ body: { pong: true } })));
    const r = await fetch(`${base}/ping`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/application\/json/);
    expect(r.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(await r.json()).toEqual({ pong: true });
    const echoed = await fetch(`${base}/ping`, { headers: { 'x-request-id': 'abc-123' } });
    expect(echoed.headers.get('x-request-id')).toBe('abc-123');
    const bogus = await fetch(`${base}/ping`, { headers: { 'x-request-id': 'bad id with spaces' } });
    expect(bogus.headers.get('x-request-id')).not.toBe('bad id with spaces');
  });

  it('maps unknown routes to 404 and wrong methods to 405 with Allow, in the error body', async () => {
    const base = await startServer((s) => s.route('GET', '/ping', () => ({ body: {} })));
    const nf = await fetch(`${base}/nope`);
    expect(nf.status).toBe(404);
    expect((await nf.json()).error).toMatch(/Not found: GET \/nope/);
    expect(nf.headers.get('x-request-id')).toBeTruthy();
    const na = await fetch(`${base}/ping`, { method: 'POST', body: '{}' });
    expect(na.status).toBe(405);
    expect(na.headers.get('allow')).toBe('GET');
    expect((await na.json()).error).toMatch(/POST is not allowed on \/ping\. Allowed: GET/);
  });

  it('reads JSON bodies, rejects bad JSON with 400 and oversized bodies with 413', async () => {
    const base = await startServer((s) => s.route('POST', '/echo', async (ctx) => ({ body: { got: await ctx.readJson() } })));
    const ok = await fetch(`${base}/echo`, { method: 'POST', body: JSON.stringify({ a: 1 }), headers: { 'content-type': 'application/json' } });
    expect(await ok.json()).toEqual({ got: { a: 1 } });
    const bad = await fetch(`${base}/echo`, { method: 'POST', body: '{nope' });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error).toMatch(/not valid JSON/);
    const empty = await fetch(`${base}/echo`, { method: 'POST' });
    expect(empty.status).toBe(400);
    const big = await fetch(`${base}/echo`, { method: 'POST', body: 'x'.repeat(5000) });
    expect(big.status).toBe(413);
    expect((await big.json()).error).toMatch(/larger than the limit of 1 KB/);
  });

  it('413s a chunked body without Content-Length once it passes the limit', async () => {
    const base = await startServer((s) => s.route('POST', '/echo', async (ctx) => ({ body: { n: (await ctx.readBody()).length } })));
    const body = new ReadableStream({
      start(c) {
        for (let i = 0; i < 8; i++) c.enqueue(new TextEncoder().encode('y'.repeat(400)));
        c.close();
      },
    });
    const r = await fetch(`${base}/echo`, { method: 'POST', body, duplex: 'half' } as RequestInit);
    expect(r.status).toBe(413);
  });

  it('maps thrown errors: ApiError keeps its status, a DomainError gets the status of its kind, others become 500 without details', async () => {
    const base = await startServer((s) => {
      s.route('GET', '/api-error', () => {
        throw new ApiError(429, 'Slow down', { 'retry-after': '7' });
      });
      s.route('GET', '/domain', () => {
        throw new DomainError('unavailable', 'Model x is not installed', { retryAfterS: 30 });
      });
      s.route('GET', '/boom', () => {
        throw new Error('secret internals');
      });
    });
    const a = await fetch(`${base}/api-error`);
    expect(a.status).toBe(429);
    expect(a.headers.get('retry-after')).toBe('7');
    expect(await a.json()).toEqual({ error: 'Slow down' });
    const d = await fetch(`${base}/domain`);
    expect(d.status).toBe(503);
    expect(d.headers.get('retry-after')).toBe('30');
    expect(await d.json()).toEqual({ error: 'Model x is not installed' });
    const b = await fetch(`${base}/boom`);
    expect(b.status).toBe(500);
    const body = await b.json();
    expect(body.error).toMatch(/Internal server error/);
    expect(body.error).not.toMatch(/secret/);
  });

  it('answers CORS preflight', async () => {
    const base = await startServer((s) => s.route('POST', '/x', () => ({ body: {} })));
    const r = await fetch(`${base}/x`, { method: 'OPTIONS', headers: { 'access-control-request-headers': 'authorization' } });
    expect(r.status).toBe(204);
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    expect(r.headers.get('access-control-allow-headers')).toBe('authorization');
  });

  it('aborts the handler signal when the client disconnects', async () => {
    let aborted: Promise<boolean> | null = null;
    const base = await startServer((s) =>
      s.route('GET', '/slow', (ctx) => {
        aborted = new Promise((resolve) => {
          ctx.signal.addEventListener('abort', () => resolve(true));
          setTimeout(() => resolve(false), 3000);
        });
        return aborted.then(() => ({ body: {} }));
      }),
    );
    const ac = new AbortController();
    const req = fetch(`${base}/slow`, { signal: ac.signal }).catch(() => null);
    await new Promise((r) => setTimeout(r, 100));
    ac.abort();
    await req;
    expect(await aborted).toBe(true);
  });

  it('shuts down gracefully: finishes in-flight requests, then refuses new connections', async () => {
    const base = await startServer((s) =>
      s.route('GET', '/slow', async () => {
        await new Promise((r) => setTimeout(r, 400));
        return { body: { finished: true } };
      }),
    );
    const inFlight = fetch(`${base}/slow`).then(async (r) => ({ status: r.status, body: await r.json() }));
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await server!.close();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(200);
    expect(await inFlight).toEqual({ status: 200, body: { finished: true } });
    await expect(fetch(`${base}/slow`, { headers: { connection: 'close' } })).rejects.toThrow();
  });
});
