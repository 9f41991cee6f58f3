/**
 * k6 version of the live-stream load test (loadtest/stream-load.ts): N virtual users, each one
 * WebSocket stream to /v1/stream sending the same espeak-ng conversation in 100 ms PCM16 frames at
 * real-time pace, then {"action":"stop"}; per utterance it records
 *   stt_first_partial_latency   send time of the frame holding the speech start → first partial
 *   stt_final_latency           send time of the frame holding the speech end → its final
 *                               (includes the 500 ms of silence the VAD needs to end an utterance)
 *   stt_final_latency_minus_vad the same minus 500 ms
 * and counts errors (server {"error"}, closes without {"is_final":true}, utterances without a final).
 *
 * k6 is not installed on our CI machines, so this script is not run there; see loadtest/README.md.
 * Make the audio first (writes the .pcm and its .json spans under .tmp/loadtest/):
 *   npm run loadtest -- --model whisper-mini-random --seconds 20 --audio-only
 * then, with a server running:
 *   k6 run -e URL=ws://127.0.0.1:8080/v1/stream -e VUS=8 -e DURATION=60s \
 *          -e AUDIO=../.tmp/loadtest/conversation-20s-g1.6-l0.4-t1.2 -e MODEL=whisper-mini-random -e TOKENS=16 \
 *          -e API_KEYS=key1,key2 \
 *          loadtest/k6-stream.js
 * (AUDIO is the path without extension, relative to this script; open() resolves it from here.)
 *
 * API: k6/experimental/websockets (browser-style WebSocket, global event loop, k6 ≥ 0.40). On
 * k6 ≥ 1.0 the same API is also importable as 'k6/websockets'; the experimental path is deprecated
 * there, so switch the import if your k6 warns about it. Timers are k6's global setTimeout.
 */
import { WebSocket } from 'k6/experimental/websockets';
import { Counter, Trend } from 'k6/metrics';

const URL = __ENV.URL || 'ws://127.0.0.1:8080/v1/stream';
const MODEL = __ENV.MODEL || 'whisper-mini-random';
const TOKENS = Number(__ENV.TOKENS || 16);
const VUS = Number(__ENV.VUS || 8);
const DURATION = __ENV.DURATION || '60s';
const AUDIO = __ENV.AUDIO || '../.tmp/loadtest/conversation-20s-g1.6-l0.4-t1.2';
/** API keys (comma-separated), sent as `Authorization: Bearer`; VU v uses key ⌊(v−1)/4⌋ (a paid key allows 5 streams at once). */
const API_KEYS = (__ENV.API_KEYS || '').split(',').filter((k) => k);
/** Milliseconds between the starts of consecutive VUs (so utterances do not all begin together). */
const STAGGER_MS = Number(__ENV.STAGGER_MS || Math.round(Math.min(300, 3000 / VUS)));

const SR = 16000;
const FRAME_MS = 100;
const FRAME_BYTES = ((SR * FRAME_MS) / 1000) * 2;
const VAD_SILENCE_MS = 500;

// Init context: open() is only allowed here. 'b' → ArrayBuffer.
const PCM = open(`${AUDIO}.pcm`, 'b');
const META = JSON.parse(open(`${AUDIO}.json`));
const SPANS = META.spans; // [[startS, endS], ...] of each utterance's speech
const N_FRAMES = Math.ceil(PCM.byteLength / FRAME_BYTES);
const AUDIO_MS = (PCM.byteLength / 2 / SR) * 1000;

const firstPartialLatency = new Trend('stt_first_partial_latency', true);
const finalLatency = new Trend('stt_final_latency', true);
const finalLatencyMinusVad = new Trend('stt_final_latency_minus_vad', true);
const errors = new Counter('stt_errors');
const missingFinals = new Counter('stt_missing_finals');
const utterances = new Counter('stt_utterances');
const partials = new Counter('stt_partials');

export const options = {
  scenarios: {
    streams: {
      executor: 'constant-vus',
      vus: VUS,
      duration: DURATION,
      // Let a stream that is still sending or draining finish its conversation.
      gracefulStop: `${Math.ceil(AUDIO_MS / 1000) + 90}s`,
    },
  },
  thresholds: {
    stt_final_latency: ['p(95)<1000'],
    stt_errors: ['count==0'],
    stt_missing_finals: ['count==0'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(95)', 'p(99)', 'max', 'count'],
};

const frameOf = (sample) => Math.floor(sample / ((SR * FRAME_MS) / 1000));
const START_FRAME = SPANS.map(([s]) => frameOf(Math.round(s * SR)));
const END_FRAME = SPANS.map(([, e]) => frameOf(Math.max(0, Math.round(e * SR) - 1)));

export default function () {
  // One iteration = one stream of the whole conversation. Stagger only the first one of each VU.
  const delay = __ITER === 0 ? (__VU - 1) * STAGGER_MS : 0;
  setTimeout(stream, delay);
}

function stream() {
  const sentAt = new Array(N_FRAMES).fill(null);
  const firstPartialAt = SPANS.map(() => null);
  const finalAt = SPANS.map(() => null);
  let isFinal = false;
  let frame = 0;
  let t0 = 0;
  let sendTimer = null;
  let ended = false;

  const key = API_KEYS.length ? API_KEYS[Math.floor((__VU - 1) / 4) % API_KEYS.length] : null;
  const ws = key ? new WebSocket(URL, null, { headers: { Authorization: `Bearer ${key}` } }) : new WebSocket(URL);
  ws.binaryType = 'arraybuffer';

  // Hard bound: the audio, plus two minutes to drain.
  const guard = setTimeout(() => {
    errors.add(1, { reason: 'timeout' });
    console.error(`VU ${__VU}: no close ${Math.round(AUDIO_MS / 1000) + 120} s after start; closing`);
    ws.close();
  }, AUDIO_MS + 120000);

  const sendNext = () => {
    if (ws.readyState !== 1) return;
    if (frame >= N_FRAMES) {
      ws.send(JSON.stringify({ action: 'stop' }));
      return;
    }
    ws.send(PCM.slice(frame * FRAME_BYTES, Math.min(PCM.byteLength, (frame + 1) * FRAME_BYTES)));
    sentAt[frame] = Date.now();
    frame++;
    // Drift-free real-time pace: frame k is due at t0 + k·100 ms.
    sendTimer = setTimeout(sendNext, Math.max(0, t0 + frame * FRAME_MS - Date.now()));
  };

  // The latest utterance whose speech-start frame has been sent (partials carry no time).
  const currentUtterance = (now) => {
    let k = -1;
    for (let j = 0; j < SPANS.length; j++) if (sentAt[START_FRAME[j]] !== null && sentAt[START_FRAME[j]] <= now) k = j;
    return k;
  };

  ws.addEventListener('open', () => {
    ws.send(JSON.stringify({ language: 'en', model: MODEL, max_new_tokens: TOKENS, partial_interval_ms: 500 }));
  });

  ws.addEventListener('message', (e) => {
    const now = Date.now();
    if (typeof e.data !== 'string') return;
    let m;
    try {
      m = JSON.parse(e.data);
    } catch (_) {
      errors.add(1, { reason: 'bad_json' });
      return;
    }
    if (m.status === 'ready') {
      t0 = Date.now();
      sendNext();
    } else if (typeof m.partial === 'string') {
      partials.add(1);
      const k = currentUtterance(now);
      if (k >= 0 && firstPartialAt[k] === null && finalAt[k] === null) firstPartialAt[k] = now;
    } else if (typeof m.text === 'string') {
      // Match the final to the utterance it overlaps most (the server reports stream time).
      let best = -1;
      let bestOv = 0;
      for (let k = 0; k < SPANS.length; k++) {
        const ov = Math.min(SPANS[k][1], m.end) - Math.max(SPANS[k][0], m.start);
        if (ov > bestOv) {
          bestOv = ov;
          best = k;
        }
      }
      if (best >= 0) finalAt[best] = now;
    } else if (m.is_final === true) {
      isFinal = true;
    } else if (m.error !== undefined) {
      errors.add(1, { reason: 'server_error' });
      console.error(`VU ${__VU}: server error: ${m.error}`);
    }
  });

  ws.addEventListener('error', (e) => {
    errors.add(1, { reason: 'socket_error' });
    console.error(`VU ${__VU}: socket error: ${e.error}`);
  });

  ws.addEventListener('close', (e) => {
    if (ended) return;
    ended = true;
    clearTimeout(guard);
    if (sendTimer !== null) clearTimeout(sendTimer);
    if (!isFinal) {
      errors.add(1, { reason: 'no_is_final' });
      console.error(`VU ${__VU}: closed without {"is_final":true}`);
    }
    if (e && typeof e.code === 'number' && e.code !== 1000) {
      errors.add(1, { reason: 'close_code' });
      console.error(`VU ${__VU}: close code ${e.code}`);
    }
    for (let k = 0; k < SPANS.length; k++) {
      const start = sentAt[START_FRAME[k]];
      const end = sentAt[END_FRAME[k]];
      if (start === null || end === null) continue; // not streamed (stopped early)
      utterances.add(1);
      if (firstPartialAt[k] !== null) firstPartialLatency.add(firstPartialAt[k] - start);
      if (finalAt[k] === null) {
        missingFinals.add(1);
        continue;
      }
      finalLatency.add(finalAt[k] - end);
      finalLatencyMinusVad.add(finalAt[k] - end - VAD_SILENCE_MS);
    }
  });
}
