/**
 * Issue #13: a client that disconnects while its upload is being admitted (key/account check,
 * before multipart parsing) used to kill the process with an unhandled 'error' event from the
 * request body stream. A real server process gets many such uploads, with and without a key; it
 * must stay up, finish every one of them (in-flight count, concurrency grant) and still transcribe.
 */
import fs from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeSpeechWav, TEXTS } from '../helpers/audio-fixtures.ts';
import { createAccountKey, startServerProcess, type ServerProcess } from '../helpers/server-process.ts';

const ABORTS_PER_KIND = 25;
let srv: ServerProcess;
let key: string;

beforeAll(async () => {
  const dataDir = fs.mkdtempSync('/tmp/stt-abort-');
  key = createAccountKey(dataDir, { plan: 'paid', credits: 1_000_000 });
  srv = await startServerProcess({ dataDir, env: { ANON_DAILY_LIMIT: '1000000' } });
}, 180_000);

afterAll(async () => {
  await srv?.close();
  if (srv) fs.rmSync(srv.dataDir, { recursive: true, force: true });
});

/** Sends the headers of a 10 MB multipart upload and 1 KB of it, then destroys the socket at once. */
function abortedUpload(port: number, authorization?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => {
      const head =
        'POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
        'Content-Type: multipart/form-data; boundary=XYZ\r\nContent-Length: 10485760\r\n' +
        (authorization ? `Authorization: ${authorization}\r\n` : '') +
        '\r\n';
      const part = '--XYZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n';
      sock.write(head + part + 'x'.repeat(1024), () => {
        sock.destroy();
        resolve();
      });
    });
    sock.on('error', reject);
  });
}

/** Finished requests on `route` by status, from /metrics (a request is counted when its handler has ended). */
async function finishedByStatus(url: string, route: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const counts: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith('stt_http_requests_total{') || !line.includes(`route="${route}"`)) continue;
    const status = /status="(\d+)"/.exec(line)?.[1] ?? '?';
    counts[status] = (counts[status] ?? 0) + Number(line.split(' ').pop());
  }
  return counts;
}

describe('uploads aborted during admission (real server process)', () => {
  it('keeps the process alive, finishes every aborted request and still transcribes with the same key', async () => {
    const route = '/v1/audio/transcriptions';
    await Promise.all(Array.from({ length: ABORTS_PER_KIND }, (_, i) => [abortedUpload(srv.port, `Bearer ${key}`), abortedUpload(srv.port, i % 2 ? undefined : 'Bearer sk-not-a-key')]).flat());
    // Every aborted request is finished and recorded (499 for the ones whose client left first; the
    // handler ran to its end, so in-flight counting and the concurrency grant were released) — or the process died.
    const deadline = Date.now() + 60_000;
    let counts: Record<string, number> = {};
    const total = () => Object.values(counts).reduce((a, b) => a + b, 0);
    while (Date.now() < deadline && srv.alive()) {
      counts = await finishedByStatus(srv.url, route).catch(() => counts);
      if (total() >= ABORTS_PER_KIND * 2) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(srv.alive(), srv.output()).toBe(true);
    expect(total(), `${JSON.stringify(counts)}\n${srv.output()}`).toBe(ABORTS_PER_KIND * 2);
    expect(counts['499'], JSON.stringify(counts)).toBeGreaterThan(0);
    expect((await fetch(`${srv.url}/health`)).status).toBe(200);

    // The paid tier allows 5 concurrent requests: leaked grants from the aborts would answer 429 here.
    const wav = await makeSpeechWav(TEXTS.hello);
    const form = new FormData();
    form.append('file', new Blob([fs.readFileSync(wav.path)], { type: 'audio/wav' }), 'speech.wav');
    const r = await fetch(`${srv.url}${route}`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form });
    expect(r.status, await r.clone().text()).toBe(200);
    expect(typeof ((await r.json()) as { text: unknown }).text).toBe('string');
    expect(srv.alive()).toBe(true);
  }, 240_000);
});
