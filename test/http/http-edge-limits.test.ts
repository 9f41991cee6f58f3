/**
 * Issue #13, the HTTP edge against a real server process: oversized headers, Content-Length values
 * the native parser cannot take, and bodies of 1–2 GB. Whatever a client sends, the process stays
 * up and keeps answering; what can be answered is answered with a status and `{"error": ...}`.
 *
 * The uWS build's parser limits are described in src/http/uws.ts (NATIVE_MAX_CONTENT_LENGTH).
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccountKey, startServerProcess, type ServerProcess } from '../helpers/server-process.ts';

const GiB = 1024 ** 3;
let srv: ServerProcess;
let dataDir: string;
let key: string;

beforeAll(async () => {
  dataDir = fs.mkdtempSync('/tmp/stt-edge-');
  key = createAccountKey(dataDir, { plan: 'paid', credits: 1_000_000_000 });
  srv = await startServerProcess({ dataDir, env: { MAX_JSON_BODY_KB: '1', MAX_UPLOAD_MB: '2048' } });
}, 180_000);

afterAll(async () => {
  await srv?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function expectServing(): Promise<void> {
  expect(srv.alive(), srv.output()).toBe(true);
  const r = await fetch(`${srv.url}/health`);
  expect(r.status, srv.output()).toBe(200);
}

/** Writes `payload` on a raw socket and returns everything the server sent until it closed (or 60 s). */
function rawExchange(payload: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const sock = net.connect(srv.port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => sock.destroy(), 60_000);
    sock.on('data', (d) => {
      got += d.toString();
      // One complete reply is enough (the server may keep the connection open).
      const [head, body = ''] = got.split('\r\n\r\n');
      const len = /content-length: (\d+)/i.exec(head ?? '')?.[1];
      if (len !== undefined && Buffer.byteLength(body) >= Number(len)) sock.destroy();
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    sock.write(payload);
  });
}

function parseReply(raw: string): { status: number; body: string } {
  const [head, body = ''] = raw.split('\r\n\r\n');
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head ?? '')?.[1] ?? 0), body };
}

/**
 * Streams a chunked multipart upload whose file part is `fileBytes` of non-audio bytes (named .bin
 * so that ffmpeg refuses it at once instead of scanning 1 GB for MP3 frames), with
 * backpressure; stops writing as soon as the server answers. Resolves with the reply and what was sent.
 */
function streamUpload(fileBytes: number): Promise<{ status: number; body: string; sent: number }> {
  const boundary = 'edgeBoundary7d1a';
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const block = Buffer.alloc(4 * 1024 * 1024, 'this is not audio, only text. ');
  return new Promise((resolve, reject) => {
    let sent = 0;
    let answered = false;
    const req = http.request(`${srv.url}/v1/audio/transcriptions`, {
      // A connection of its own: a kept-alive socket of the previous upload may be closed by the
      // server just as this request reuses it, which reads as a reset before any reply.
      agent: false,
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': `multipart/form-data; boundary=${boundary}`, 'transfer-encoding': 'chunked' },
    });
    req.on('response', (res) => {
      answered = true;
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, sent }));
      res.on('error', reject);
    });
    req.on('error', (err) => {
      if (!answered) reject(new Error(`upload failed after ${sent} bytes without a reply: ${err.message}\n${srv.output(3000)}`));
    });
    let left = fileBytes;
    const pump = () => {
      while (!answered) {
        if (sent === 0) {
          sent += head.length;
          if (!req.write(head)) return req.once('drain', pump);
          continue;
        }
        if (left === 0) {
          sent += tail.length;
          req.end(tail);
          return;
        }
        const n = Math.min(left, block.length);
        left -= n;
        sent += n;
        if (!req.write(n === block.length ? block : block.subarray(0, n))) return req.once('drain', pump);
      }
    };
    pump();
  });
}

function uploadsLeft(): string[] {
  const dir = path.join(dataDir, 'tmp', 'uploads');
  return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
}

describe('HTTP edge limits (real server process)', () => {
  it('answers headers over the limit with 431 and a JSON error', async () => {
    // 20 KB in one write: one loopback segment, so the native parser reads it whole (see uws.ts).
    const reply = parseReply(await rawExchange(`GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`));
    expect(reply.status, srv.output()).toBe(431);
    expect(JSON.parse(reply.body).error).toMatch(/Request headers are 20 KB, over the limit of 16 KB/);
    await expectServing();
  }, 120_000);

  it('survives headers beyond what the native parser reads at all', async () => {
    // uWS closes such a connection before any handler runs (src/http/uws.ts): no status can be written.
    const raw = await rawExchange(`GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(1024 * 1024)}\r\n\r\n`);
    expect([0, 431]).toContain(parseReply(raw).status);
    await expectServing();
  }, 120_000);

  it('survives a Content-Length of 10 digits within the upload limit (1,000,000,000) and logs why the connection was closed', async () => {
    const raw = await rawExchange(
      'POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=XYZ\r\n' +
        `Authorization: Bearer ${key}\r\nContent-Length: 1000000000\r\n\r\n--XYZ\r\n${'x'.repeat(1024)}`,
    );
    // The native parser drops the connection right after the handler; a build that can deliver the reply sends 413.
    expect([0, 413]).toContain(parseReply(raw).status);
    await expectServing();
    const warned = () => /"contentLength":"1000000000".*Content-Length of 10\+ digits.*Transfer-Encoding: chunked/.test(srv.output(1 << 20));
    for (let i = 0; i < 300 && !warned(); i++) await new Promise((r) => setTimeout(r, 100));
    expect(warned(), srv.output()).toBe(true);
  }, 120_000);

  it('survives a declared Content-Length of 2 GB + 1 byte', async () => {
    const raw = await rawExchange(
      'POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=XYZ\r\n' +
        `Authorization: Bearer ${key}\r\nContent-Length: ${2 * GiB + 1}\r\n\r\n--XYZ\r\n`,
    );
    expect([0, 413]).toContain(parseReply(raw).status);
    await expectServing();
  }, 120_000);

  it('answers 413 to a chunked body over the limit that arrives while the handler is still checking the key', async () => {
    // PATCH /api/v1/account/ authenticates before it reads its JSON body (limit 1 KB here).
    const r = await fetch(`${srv.url}/api/v1/account/`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: new Blob([JSON.stringify({ name: 'x'.repeat(256 * 1024) })]).stream(),
      duplex: 'half',
    } as RequestInit);
    expect(r.status, srv.output()).toBe(413);
    expect((await r.json()).error).toMatch(/larger than the limit of 1 KB/);
    await expectServing();
  }, 120_000);

  it('receives a whole chunked upload of 1.1e9 bytes and answers the undecodable file with a 4xx', async () => {
    const reply = await streamUpload(1_100_000_000);
    expect(reply.sent).toBeGreaterThan(1_100_000_000);
    expect(reply.status, reply.body).toBeGreaterThanOrEqual(400);
    expect(reply.status, reply.body).toBeLessThan(500);
    expect(reply.status, reply.body).not.toBe(413);
    expect(JSON.parse(reply.body).error.message).toMatch(/could not be read as audio/); // the OpenAI route: {"error": {"message", …}}
    await expectServing();
    expect(uploadsLeft()).toEqual([]);
  }, 600_000);

  it('answers 413 to a chunked upload of 2 GB + 1 byte', async () => {
    const reply = await streamUpload(2 * GiB + 1);
    expect(reply.status, reply.body).toBe(413);
    expect(JSON.parse(reply.body).error.message).toMatch(/larger than the limit of 2 GB/);
    expect(reply.sent).toBeGreaterThan(2 * GiB);
    await expectServing();
    expect(uploadsLeft()).toEqual([]);
  }, 600_000);
});
