/**
 * The clients of deploy/check.sh: real uploads, live streams and WebRTC sessions through the load
 * balancer, each result checked. One subcommand per check; exits 1 with the reason on the first failure.
 *
 *   npx tsx deploy/check-clients.ts audio OUT.wav SECONDS
 *   npx tsx deploy/check-clients.ts files     --lb URL --key KEY --wav FILE --count N
 *   npx tsx deploy/check-clients.ts job       --lb URL --key KEY --wav FILE
 *   npx tsx deploy/check-clients.ts streams   --lb URL --key KEY --count N
 *   npx tsx deploy/check-clients.ts webrtc    --lb URL --key KEY
 *   npx tsx deploy/check-clients.ts kill      --lb URL --key KEY --wav FILE --count N --apis URL,URL
 *                                             --victim URL --victim-pid PID --survivor URL
 *
 * Every wait is bounded generously (≥ 60 s): CI is a loaded 2-core machine.
 */
import { randomUUID } from 'node:crypto';
import { copyFileSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { loadAudio, SR } from '../loadtest/audio.ts';
import { WebRtcTestClient } from '../test/e2e/webrtc-client.ts';

const MODEL = process.env.DEFAULT_MODEL ?? 'whisper-mini-random';
/** HAProxy names the backend server that answered (deploy/haproxy.cfg); the checks read it. */
const SERVED_BY = 'x-stt-server';

class CheckFailed extends Error {}
const fail = (msg: string): never => {
  throw new CheckFailed(msg);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Upload {
  status: number;
  text: string;
  segments: number;
  servedBy: string | null;
  body: string;
}

async function upload(lb: string, key: string, wav: Buffer, headers: Record<string, string> = {}): Promise<Upload> {
  const form = new FormData();
  form.set('file', new Blob([wav], { type: 'audio/wav' }), 'speech.wav');
  form.set('model', MODEL);
  form.set('language', 'en');
  form.set('diarize', 'false');
  // Random-weight models never stop on their own: a fixed temperature (no fallbacks) and few tokens.
  form.set('temperature', '0');
  form.set('max_new_tokens', '16');
  const res = await fetch(`${lb}/v1/transcribe`, { method: 'POST', body: form, headers: { authorization: `Bearer ${key}`, ...headers }, signal: AbortSignal.timeout(300_000) });
  const body = await res.text();
  let text = '';
  let segments = 0;
  try {
    const j = JSON.parse(body) as { text?: string; segments?: unknown[] };
    text = j.text ?? '';
    segments = j.segments?.length ?? 0;
  } catch {}
  return { status: res.status, text, segments, servedBy: res.headers.get(SERVED_BY), body };
}

/** A transcript: 200, JSON with a non-empty text and at least one segment (random weights: any tokens). */
function checkTranscript(u: Upload, what: string): void {
  if (u.status !== 200) fail(`${what}: HTTP ${u.status} ${u.body.slice(0, 300)}`);
  if (!u.text.trim() || u.segments < 1) fail(`${what}: 200 without a transcript: ${u.body.slice(0, 300)}`);
}

async function metric(base: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(30_000) })).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith(' ') || rest.startsWith('{'))) continue;
    if (labels && !rest.includes(labels)) continue;
    sum += Number(line.split(' ').pop());
  }
  return sum;
}

async function until(what: string, cond: () => Promise<boolean>, boundMs: number): Promise<void> {
  const end = Date.now() + boundMs;
  while (!(await cond())) {
    if (Date.now() > end) fail(`${what}: not within ${boundMs / 1000} s`);
    await sleep(200);
  }
}

// ---------------------------------------------------------------------------------------------

/** N uploads, two at a time: every one a 200 transcript, and both API servers answered some. */
async function files(o: { lb: string; key: string; wav: Buffer; count: number }): Promise<string> {
  const served = new Map<string, number>();
  let next = 0;
  const lane = async () => {
    while (next < o.count) {
      const i = next++;
      const u = await upload(o.lb, o.key, o.wav);
      checkTranscript(u, `file ${i + 1}`);
      served.set(u.servedBy ?? '?', (served.get(u.servedBy ?? '?') ?? 0) + 1);
    }
  };
  await Promise.all([lane(), lane()]);
  if (served.size < 2) fail(`all ${o.count} uploads were answered by ${[...served.keys()].join(',')}: the load balancer should spread them`);
  return `${o.count}/${o.count} files → 200 with a transcript (${[...served].map(([s, n]) => `${s}: ${n}`).join(', ')})`;
}

/** An upload with X-Job-Id, polled through the load balancer: every poll must reach the server that runs the job. */
async function job(o: { lb: string; key: string; wav: Buffer }): Promise<string> {
  const id = randomUUID();
  const running = upload(o.lb, o.key, o.wav, { 'x-job-id': id });
  let polls = 0;
  let done = false;
  void running.finally(() => (done = true));
  const servers = new Set<string>();
  while (!done || polls < 2) {
    const res = await fetch(`${o.lb}/v1/jobs/${id}`, { headers: { authorization: `Bearer ${o.key}` }, signal: AbortSignal.timeout(30_000) });
    const body = await res.text();
    // Before the upload's request reached its server the job does not exist anywhere yet.
    if (res.status === 404 && polls === 0 && !done) {
      await sleep(200);
      continue;
    }
    if (res.status !== 200) fail(`GET /v1/jobs/${id} poll ${polls + 1}: HTTP ${res.status} ${body.slice(0, 200)} (served by ${res.headers.get(SERVED_BY)}; stickiness on X-Job-Id broken?)`);
    servers.add(res.headers.get(SERVED_BY) ?? '?');
    polls++;
    await sleep(300);
  }
  const u = await running;
  checkTranscript(u, 'job upload');
  servers.add(u.servedBy ?? '?');
  if (servers.size !== 1) fail(`job ${id}: upload and polls went to ${[...servers].join(', ')}`);
  return `job: ${polls} polls of GET /v1/jobs/:id all 200 from ${[...servers][0]}, the server running it`;
}

/** N live streams through the load balancer: ready, partials, finals with text, then is_final. */
async function streams(o: { lb: string; key: string; count: number }): Promise<string> {
  const audio = loadAudio({ seconds: 8 });
  const frame = (SR / 10) * 2; // 100 ms of PCM16
  const one = (i: number) =>
    new Promise<{ partials: number; finals: number }>((resolve, reject) => {
      const ws = new WebSocket(`${o.lb.replace(/^http/, 'ws')}/v1/stream`, { headers: { authorization: `Bearer ${o.key}` } });
      let partials = 0;
      let finals = 0;
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new CheckFailed(`stream ${i + 1}: no is_final within 120 s (${partials} partials, ${finals} finals)`));
      }, 120_000);
      ws.on('open', () => {
        ws.send(JSON.stringify({ model: MODEL, language: 'en', max_new_tokens: 16 }));
      });
      ws.on('message', async (data, binary) => {
        if (binary) return;
        const m = JSON.parse(String(data)) as Record<string, unknown>;
        if (m.error) return reject(new CheckFailed(`stream ${i + 1}: ${JSON.stringify(m)}`));
        if (m.status === 'ready') {
          // Real-time pace, as a microphone sends.
          for (let off = 0; off < audio.pcm16.length; off += frame) {
            if (ws.readyState !== WebSocket.OPEN) return;
            ws.send(audio.pcm16.subarray(off, off + frame));
            await sleep(100);
          }
          ws.send(JSON.stringify({ action: 'stop' }));
        } else if (typeof m.partial === 'string') partials++;
        else if (typeof m.text === 'string' && m.text.trim()) finals++;
        else if (m.is_final === true) {
          clearTimeout(timer);
          ws.close();
          resolve({ partials, finals });
        }
      });
      ws.on('unexpected-response', (_req, res) => reject(new CheckFailed(`stream ${i + 1}: upgrade refused with HTTP ${res.statusCode}`)));
      ws.on('error', (err) => reject(new CheckFailed(`stream ${i + 1}: ${err.message}`)));
    });
  const results = await Promise.all(Array.from({ length: o.count }, (_, i) => one(i)));
  results.forEach((r, i) => {
    if (r.partials < 1 || r.finals < 1) fail(`stream ${i + 1}: ${r.partials} partials, ${r.finals} finals (expected at least one of each for ${audio.spans.length} utterances)`);
  });
  return `${o.count} streams over WebSocket: ${results.map((r) => `${r.partials} partials/${r.finals} finals`).join(', ')} (${audio.spans.length} utterances each), all ended with is_final`;
}

/** A WebRTC session through the load balancer: DELETE /v1/webrtc/<id> must reach the server holding it. */
async function webrtc(o: { lb: string; key: string }): Promise<string> {
  const c = new WebRtcTestClient();
  try {
    const res = await c.connect(o.lb, { model: MODEL, language: 'en', max_new_tokens: 16, api_key: o.key });
    if (res.status !== 201) fail(`POST /v1/webrtc: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
    await c.next((m) => m.status === 'ready', 60_000);
    const owner = res.headers.get(SERVED_BY);
    // Two DELETEs in a row: round-robin alone would send one of them to the other server (404).
    const del = await fetch(`${o.lb}${c.location}`, { method: 'DELETE', headers: { authorization: `Bearer ${o.key}` }, signal: AbortSignal.timeout(60_000) });
    const by = del.headers.get(SERVED_BY);
    if (del.status >= 300) fail(`DELETE ${c.location}: HTTP ${del.status} from ${by} (session on ${owner}; stickiness on the session id broken?)`);
    if (by !== owner) fail(`DELETE ${c.location} went to ${by}, the session is on ${owner}`);
    await c.next((m) => m.is_final === true, 60_000);
    return `webrtc: session on ${owner}; DELETE ${del.status} from the same server, is_final on the data channel`;
  } finally {
    await c.pc.close();
  }
}

/**
 * N uploads at once; kill -9 one worker while it holds chunks; every upload must still be a 200
 * transcript, and the surviving worker must have decoded redelivered chunks.
 */
async function kill(o: { lb: string; key: string; wav: Buffer; count: number; apis: string[]; victim: string; victimPid: number; survivor: string }): Promise<string> {
  const before = await metric(o.survivor, 'stt_work_chunks_total', 'event="redelivered"');
  const uploads = Array.from({ length: o.count }, () => upload(o.lb, o.key, o.wav));
  // The victim has decoded a chunk, and more chunks are out than both workers together can hold
  // (2 × MAX_BATCH_SIZE each): both take as many as they may, so the victim holds some when it dies.
  const workerSlots = 2 * Number(process.env.WORKER_MAX_BATCH_SIZE ?? 8);
  let waiting = 0;
  await until(
    'victim busy with chunks',
    async () => {
      waiting = (await Promise.all(o.apis.map((a) => metric(a, 'stt_work_chunks_waiting')))).reduce((s, n) => s + n, 0);
      return (await metric(o.victim, 'stt_work_chunks_total', 'event="served"')) >= 1 && waiting > 2 * workerSlots;
    },
    180_000,
  );
  process.kill(o.victimPid, 'SIGKILL');
  const t0 = Date.now();
  const results = await Promise.all(uploads);
  results.forEach((u, i) => checkTranscript(u, `upload ${i + 1} during the worker kill`));
  const redelivered = (await metric(o.survivor, 'stt_work_chunks_total', 'event="redelivered"')) - before;
  if (redelivered < 1) fail('no chunk was redelivered to the surviving worker: the kill did not hit work in flight');
  return `worker kill: ${waiting} chunks out at kill -9; ${o.count}/${o.count} uploads → 200 with a transcript, ${redelivered} chunks redelivered to the survivor, last answer ${((Date.now() - t0) / 1000).toFixed(1)} s after the kill`;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  if (cmd === 'audio') {
    const [out, seconds] = rest;
    copyFileSync(loadAudio({ seconds: Number(seconds) }).wavPath, out);
    return;
  }
  const { values: v } = parseArgs({
    args: rest,
    options: {
      lb: { type: 'string' },
      key: { type: 'string' },
      wav: { type: 'string' },
      count: { type: 'string', default: '2' },
      apis: { type: 'string', default: '' },
      victim: { type: 'string' },
      'victim-pid': { type: 'string' },
      survivor: { type: 'string' },
    },
  });
  const lb = v.lb ?? fail('--lb is required');
  const key = v.key ?? fail('--key is required');
  const wav = () => readFileSync(v.wav ?? fail('--wav is required'));
  const count = Number(v.count);
  let line: string;
  if (cmd === 'files') line = await files({ lb, key, wav: wav(), count });
  else if (cmd === 'job') line = await job({ lb, key, wav: wav() });
  else if (cmd === 'streams') line = await streams({ lb, key, count });
  else if (cmd === 'webrtc') line = await webrtc({ lb, key });
  else if (cmd === 'kill')
    line = await kill({
      lb,
      key,
      wav: wav(),
      count,
      apis: v.apis.split(',').filter(Boolean),
      victim: v.victim ?? fail('--victim is required'),
      victimPid: Number(v['victim-pid'] ?? fail('--victim-pid is required')),
      survivor: v.survivor ?? fail('--survivor is required'),
    });
  else fail(`unknown check '${cmd}'`);
  console.log(`PASS ${line!}`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`FAIL ${err instanceof CheckFailed ? err.message : (err as Error).stack}`);
    process.exit(1);
  },
);
