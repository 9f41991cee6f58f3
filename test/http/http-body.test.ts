/**
 * The request body of HttpContext when its reader comes late: after the client left it rejects at
 * once (never hangs), and a reader that is slow to start (an admission check under load) still
 * gets the whole body although uWS closes connections that receive nothing for 10 s.
 */
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ClientDisconnectedError, type HttpContext } from '../../src/http/http-context.ts';
import type { HttpServer } from '../../src/http/http-server.ts';
import { receiveMultipart } from '../../src/http/multipart-upload.ts';
import { testHttpServer } from '../helpers/http-server.ts';

let server: HttpServer | null = null;

afterEach(async () => {
  await server?.close();
  server = null;
});

/** Runs `read` once the client of a POST /late request has disconnected; resolves with what it did. */
async function readAfterDisconnect(read: (ctx: HttpContext) => Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  let report!: (r: { error: unknown; ms: number }) => void;
  const result = new Promise<{ error: unknown; ms: number }>((r) => (report = r));
  server = testHttpServer({ maxJsonBodyBytes: 64 * 1024 * 1024 });
  server.route(
    'POST',
    '/late',
    async (ctx) => {
      if (!ctx.signal.aborted) await new Promise((r) => ctx.signal.addEventListener('abort', r, { once: true }));
      const t0 = Date.now();
      try {
        await read(ctx);
        report({ error: null, ms: Date.now() - t0 });
      } catch (error) {
        report({ error, ms: Date.now() - t0 });
      }
    },
    { maxBodyBytes: 64 * 1024 * 1024 },
  );
  await server.start();
  const sock = net.connect(server.port, '127.0.0.1', () => {
    sock.write(
      'POST /late HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 1000000\r\n\r\n--B\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' +
        'x'.repeat(1024),
      () => sock.destroy(),
    );
  });
  sock.on('error', () => {});
  return result;
}

describe('HttpContext body read after the client disconnected', () => {
  it('readBody() rejects at once with ClientDisconnectedError', async () => {
    const { error, ms } = await readAfterDisconnect((ctx) => ctx.readBody());
    expect(error).toBeInstanceOf(ClientDisconnectedError);
    expect(ms).toBeLessThan(5000);
  });

  it('receiveMultipart() rejects at once instead of waiting for a body that never ends', async () => {
    const tmpDir = path.join(os.tmpdir(), 'stt-body-test');
    const { error } = await readAfterDisconnect((ctx) => receiveMultipart(ctx, { tmpDir, maxFileBytes: 1e9 }));
    expect(error).toBeInstanceOf(ClientDisconnectedError);
  });
});

describe('HttpContext body with a slow reader', () => {
  it('delivers a 24 MB chunked body to a handler that starts reading after 12 s (past uWS idle timeout of 10 s)', async () => {
    server = testHttpServer();
    server.route(
      'POST',
      '/slow',
      async (ctx) => {
        await new Promise((r) => setTimeout(r, 12_000));
        return { body: { bytes: (await ctx.readBody()).length } };
      },
      { maxBodyBytes: 64 * 1024 * 1024 },
    );
    await server.start();
    const total = 24 * 1024 * 1024;
    const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: server!.port, method: 'POST', path: '/slow', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      const block = Buffer.alloc(1024 * 1024, 7);
      let i = 0;
      const pump = () => {
        while (i < total / block.length) {
          i++;
          if (!req.write(block)) return req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
    expect(reply.status, reply.body).toBe(200);
    expect(JSON.parse(reply.body)).toEqual({ bytes: total });
  }, 60_000);
});
