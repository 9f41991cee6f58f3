// The main page: live captions from the microphone (WebRTC or WebSocket) and file transcription
// with upload and job progress. Plain ES modules, no build step; talks only to this server.
import { CaptionView, clock, errorOf, exporters, newId, plural, wsUrl } from './common.js';

const $ = (sel) => document.querySelector(sel);

// ---------------------------------------------------------------------------------------------
// Settings: models and languages from the server

const settings = {
  model: $('#model'),
  language: $('#language'),
  maxTokens: $('#max-tokens'),
  interim: $('#interim'),
  apiKey: $('#api-key'),
};

// The key lives in this tab only (sessionStorage: kept across reloads, never in the URL bar).
settings.apiKey.value = sessionStorage.getItem('stt-api-key') || '';
// On every keystroke/paste: a reload right after pasting (no blur, no 'change') keeps the key.
settings.apiKey.addEventListener('input', () => {
  sessionStorage.setItem('stt-api-key', settings.apiKey.value.trim());
  settings.apiKey.removeAttribute('aria-invalid');
});

/**
 * A refusal that a key would lift (the anonymous daily limit, or a server that requires keys),
 * met without a key: say where to paste one and mark the field.
 */
function withKeyHint(message) {
  if (settings.apiKey.value.trim() || !/anonymous limit|API key required/i.test(message)) return message;
  settings.apiKey.setAttribute('aria-invalid', 'true');
  return `${message} Paste your API key in the "API key" field next to Start.`;
}

function authHeaders() {
  const key = settings.apiKey.value.trim();
  return key ? { authorization: `Bearer ${key}` } : {};
}

const FIRST_USE = {
  ready: 'installed',
  pull: 'downloaded on first use',
  downloading: 'downloading now',
  manual: 'not installed: npm run models:pull -- ',
  unknown: 'unknown model (check MODELS_DIR)',
};

/** What the configured models are and what their first use does (GET /health `models`): a newcomer's first question. */
function renderModelStatus(health) {
  const box = $('#model-status');
  const list = (health.models || []).filter((m) => m.kind === 'asr');
  box.hidden = list.length === 0;
  box.replaceChildren(
    ...list.map((m) => {
      const pct = m.first_use === 'downloading' && typeof m.progress?.fraction === 'number' ? ` ${Math.round(m.progress.fraction * 100)} %` : '';
      const what = m.first_use === 'manual' ? `${FIRST_USE.manual}${m.id}` : `${FIRST_USE[m.first_use] || m.first_use}${pct}`;
      const line = document.createElement('span');
      line.dataset.firstUse = m.first_use;
      line.textContent = `Default model ${m.id}: ${what}.`;
      return line;
    }),
  );
}

async function loadOptions() {
  try {
    const [models, languages, health] = await Promise.all([
      fetch('/v1/models').then((r) => r.json()),
      fetch('/v1/languages').then((r) => r.json()),
      fetch('/health')
        .then((r) => r.json())
        .catch(() => ({})),
    ]);
    renderModelStatus(health);
    for (const m of models.models || []) {
      if (m.kind && m.kind !== 'asr') continue;
      // With AUTO_PULL a registry model that is not installed is downloaded by its first request.
      const note = m.installed === false ? (health.auto_pull ? ' (downloaded on first use)' : ' (not installed)') : '';
      const o = new Option(`${m.name || m.id}${note}`, m.id);
      o.disabled = m.installed === false && !health.auto_pull;
      settings.model.append(o);
    }
    for (const l of languages.languages || []) settings.language.append(new Option(`${l.name[0].toUpperCase()}${l.name.slice(1)} (${l.code})`, l.code));
  } catch {
    /* the server defaults still work */
  }
}

function liveOptions() {
  const o = { language: settings.language.value || 'auto', interim_results: settings.interim.checked };
  if (settings.model.value) o.model = settings.model.value;
  const n = Number(settings.maxTokens.value);
  if (settings.maxTokens.value && Number.isInteger(n) && n > 0) o.max_new_tokens = n;
  return o;
}

// ---------------------------------------------------------------------------------------------
// Live captions

const live = {
  section: $('#live-h').closest('section'),
  form: $('#live-form'),
  start: $('#live-start'),
  stop: $('#live-stop'),
  status: $('#live-status'),
  info: $('#session-info'),
  sessionId: $('#session-id'),
  viewer: $('#viewer-link'),
  view: new CaptionView($('#live-captions')),
  box: $('#live-captions'),
  /** The running session: { stop(): Promise<void> } */
  current: null,
  partials: 0,
  finals: 0,
};

function setLiveState(state, text) {
  live.section.dataset.state = state;
  live.status.textContent = text;
  const busy = state === 'connecting' || state === 'live' || state === 'stopping';
  live.start.disabled = busy;
  live.stop.disabled = state !== 'live' && state !== 'connecting';
  for (const r of live.form.querySelectorAll('input[name=transport]')) r.disabled = busy;
}

function onLiveMessage(m) {
  const kind = live.view.handle(m);
  // The session's captions may be followed only with a share token (or the owner's key): link it.
  if (typeof m.share_token === 'string' && live.sessionId.textContent) {
    live.viewer.href = `captions.html?session=${encodeURIComponent(live.sessionId.textContent)}&share_token=${encodeURIComponent(m.share_token)}`;
  }
  if (kind === 'partial') live.box.dataset.partials = String(++live.partials);
  if (kind === 'final') live.box.dataset.finals = String(++live.finals);
  if (kind === 'ready') {
    live.sessionId.textContent = m.session_id;
    live.viewer.href = `captions.html?session=${encodeURIComponent(m.session_id)}`;
    live.info.hidden = false;
    setLiveState('live', 'Listening — speak now.');
  }
  // The model's first use: downloaded (AUTO_PULL), then loaded, before `ready`.
  if (kind === 'loading') {
    const pct = typeof m.progress === 'number' ? ` ${Math.round(m.progress * 100)} %` : '';
    setLiveState('connecting', m.stage === 'downloading' ? `Downloading model ${m.model}…${pct} (first use)` : `Loading model ${m.model}…`);
  }
  if (kind === 'error') setLiveState('error', `Error: ${withKeyHint(m.error)}`);
  if (kind === 'end' && live.section.dataset.state !== 'error') setLiveState('ended', `Stopped. ${plural(live.finals, 'caption')}.`);
  return kind;
}

async function microphone() {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error('this browser cannot capture audio here (microphone access needs HTTPS or localhost)');
  }
  return navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true } });
}

/** Resolves on {"is_final":true} (or after `ms`). */
function endWaiter(ms) {
  let resolve;
  const p = new Promise((r) => (resolve = r));
  const t = setTimeout(() => resolve(false), ms);
  return { promise: p, done: () => (clearTimeout(t), resolve(true)) };
}

async function startWebRtc(opts) {
  const cfg = await fetch('/v1/webrtc')
    .then((r) => (r.ok ? r.json() : { ice_servers: [] }))
    .catch(() => ({ ice_servers: [] }));
  if (cfg.available === false) throw new Error(cfg.reason || 'WebRTC is not available on this server');
  const stream = await microphone();
  const pc = new RTCPeerConnection({ iceServers: cfg.ice_servers || [] });
  const cleanup = () => {
    pc.close();
    stream.getTracks().forEach((t) => t.stop());
  };
  const end = endWaiter(20000);
  let location = null;
  try {
    pc.addTransceiver(stream.getAudioTracks()[0], { direction: 'sendonly', streams: [stream] });
    const dc = pc.createDataChannel('captions');
    dc.onmessage = (e) => {
      const kind = onLiveMessage(JSON.parse(e.data));
      if (kind === 'ready') dc.send(JSON.stringify({ action: 'share' }));
      if (kind === 'end') end.done();
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed' && live.current) {
        setLiveState('error', 'Error: the WebRTC connection failed (UDP blocked? set WEBRTC_ICE_SERVERS with a TURN server).');
        live.current = null;
        cleanup();
      }
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 2000);
    const qs = new URLSearchParams(Object.entries(opts).map(([k, v]) => [k, String(v)]));
    const res = await fetch(`/v1/webrtc?${qs}`, { method: 'POST', headers: { 'content-type': 'application/sdp', ...authHeaders() }, body: pc.localDescription.sdp });
    if (res.status !== 201) throw new Error(await errorOf(res));
    location = res.headers.get('location');
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    return {
      async stop() {
        if (dc.readyState === 'open') dc.send(JSON.stringify({ action: 'stop' }));
        await end.promise;
        if (location) await fetch(location, { method: 'DELETE', headers: authHeaders() }).catch(() => {});
        cleanup();
      },
      abort() {
        if (location) fetch(location, { method: 'DELETE', keepalive: true, headers: authHeaders() }).catch(() => {});
        cleanup();
      },
    };
  } catch (err) {
    cleanup();
    throw err;
  }
}

function gathered(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') {
        clearTimeout(t);
        resolve();
      }
    });
  });
}

async function startWebSocket(opts) {
  const stream = await microphone();
  const ctx = new AudioContext();
  const cleanup = () => {
    stream.getTracks().forEach((t) => t.stop());
    ctx.close().catch(() => {});
  };
  try {
    await ctx.audioWorklet.addModule('pcm-worklet.js');
    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, 'pcm16k', { processorOptions: { targetRate: 16000, chunkMs: 100 } });
    // Browsers cannot set headers on a WebSocket: the key goes in the query (the server accepts ?api_key=).
    const key = settings.apiKey.value.trim();
    const ws = new WebSocket(wsUrl(`/v1/stream${key ? `?api_key=${encodeURIComponent(key)}` : ''}`));
    ws.binaryType = 'arraybuffer';
    const end = endWaiter(20000);
    let ready = false;
    const pending = [];
    node.port.onmessage = (e) => {
      if (ws.readyState !== WebSocket.OPEN) return;
      if (ready) ws.send(e.data);
      else if (pending.length < 50) pending.push(e.data); // ≤ 5 s while the model loads
    };
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      const kind = onLiveMessage(m);
      if (kind === 'ready') {
        ready = true;
        ws.send(JSON.stringify({ action: 'share' }));
        for (const chunk of pending.splice(0)) ws.send(chunk);
      }
      if (kind === 'end') end.done();
    };
    ws.onclose = (e) => {
      end.done();
      if (live.current && e.code !== 1000 && live.section.dataset.state !== 'error') {
        setLiveState('error', `Error: the stream closed (${e.code}${e.reason ? `: ${e.reason}` : ''}).`);
      }
    };
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error('cannot open the WebSocket /v1/stream'));
    });
    ws.send(JSON.stringify({ ...opts, sample_rate: 16000 }));
    source.connect(node);
    node.connect(ctx.destination); // the node writes silence; connecting keeps the graph pulling it
    return {
      async stop() {
        source.disconnect();
        node.port.postMessage('flush');
        await new Promise((r) => setTimeout(r, 50));
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ action: 'stop' }));
        await end.promise;
        ws.close();
        cleanup();
      },
      abort() {
        ws.close();
        cleanup();
      },
    };
  } catch (err) {
    cleanup();
    throw err;
  }
}

live.form.addEventListener('submit', async (e) => {
  e.preventDefault();
  if (live.current) return;
  const transport = live.form.elements.transport.value;
  live.view.clear();
  live.partials = live.finals = 0;
  delete live.box.dataset.partials;
  delete live.box.dataset.finals;
  live.info.hidden = true;
  setLiveState('connecting', `Connecting over ${transport === 'webrtc' ? 'WebRTC' : 'WebSocket'}…`);
  try {
    live.current = await (transport === 'webrtc' ? startWebRtc : startWebSocket)(liveOptions());
    if (live.section.dataset.state === 'connecting') setLiveState('connecting', 'Connected; waiting for the server…');
  } catch (err) {
    live.current = null;
    setLiveState('error', `Error: ${withKeyHint(err.message)}`);
  }
});

live.stop.addEventListener('click', async () => {
  const cur = live.current;
  if (!cur) return;
  setLiveState('stopping', 'Finishing the last words…');
  try {
    await cur.stop();
  } finally {
    live.current = null;
    if (live.section.dataset.state === 'stopping') setLiveState('ended', `Stopped. ${plural(live.finals, 'caption')}.`);
  }
});

window.addEventListener('pagehide', () => live.current?.abort());

// ---------------------------------------------------------------------------------------------
// File transcription: XHR upload progress, then job progress by polling GET /v1/jobs/:id

const file = {
  section: $('#file-h').closest('section'),
  form: $('#file-form'),
  input: $('#file'),
  start: $('#file-start'),
  cancel: $('#file-cancel'),
  progress: $('#file-progress'),
  uploadBar: $('#upload-bar'),
  uploadPct: $('#upload-pct'),
  jobBar: $('#job-bar'),
  jobPct: $('#job-pct'),
  status: $('#file-status'),
  transcript: $('#transcript'),
  xhr: null,
  poll: null,
  urls: [],
};

function setUpload(fraction) {
  const pct = Math.round(fraction * 100);
  file.uploadBar.value = pct;
  file.uploadPct.textContent = `${pct} %`;
  file.uploadPct.classList.remove('failed');
}

function setJob(fraction, stage) {
  const pct = Math.round(fraction * 100);
  file.jobBar.value = pct;
  file.jobPct.textContent = stage ? `${pct} % · ${stage}` : `${pct} %`;
  file.jobPct.classList.remove('failed');
}

function stopPolling() {
  clearTimeout(file.poll);
  file.poll = null;
}

function pollJob(id) {
  const tick = async () => {
    try {
      const r = await fetch(`/v1/jobs/${encodeURIComponent(id)}`, { headers: authHeaders() });
      if (r.ok) {
        const j = await r.json();
        if (file.poll !== null) setJob(j.progress?.fraction ?? 0, j.progress?.stage);
      }
    } catch {
      /* next tick */
    }
    if (file.poll !== null) file.poll = setTimeout(tick, 500);
  };
  file.poll = setTimeout(tick, 200);
}

function renderTranscript(t, name) {
  for (const u of file.urls) URL.revokeObjectURL(u);
  file.urls = [];
  const base = (name || 'transcript').replace(/\.[^.]+$/, '') || 'transcript';
  const segs = t.segments || [];
  file.transcript.querySelector('.meta').textContent =
    `${plural(segs.length, 'segment')} · ${clock(t.duration || 0)} · language ${t.language || '?'}${t.speakers?.length ? ` · ${plural(t.speakers.length, 'speaker')}` : ''}`;
  for (const a of file.transcript.querySelectorAll('.exports a')) {
    const fmt = a.dataset.format;
    const { type, body } = exporters[fmt](t);
    const url = URL.createObjectURL(new Blob([body], { type }));
    file.urls.push(url);
    a.href = url;
    a.download = `${base}.${fmt}`;
  }
  const list = file.transcript.querySelector('.segments');
  list.replaceChildren();
  for (const s of segs) {
    const li = document.createElement('li');
    const time = document.createElement('span');
    time.className = 'time';
    time.textContent = `${clock(s.start)}–${clock(s.end)}`;
    li.append(time, ' ');
    if (s.speaker) {
      const sp = document.createElement('span');
      sp.className = 'speaker';
      sp.textContent = `${s.speaker}:`;
      li.append(sp, ' ');
    }
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = s.text.trim();
    li.append(text);
    list.append(li);
  }
  if (!segs.length) {
    const li = document.createElement('li');
    li.className = 'empty';
    li.textContent = t.text?.trim() || 'No speech found.';
    list.append(li);
  }
  file.transcript.hidden = false;
}

function fileBusy(busy) {
  file.start.disabled = busy;
  file.input.disabled = busy;
  file.cancel.hidden = !busy;
}

file.form.addEventListener('submit', (e) => {
  e.preventDefault();
  const f = file.input.files?.[0];
  if (!f || file.xhr) return;
  const jobId = newId();
  const body = new FormData();
  body.append('file', f, f.name);
  const opts = liveOptions();
  if (opts.model) body.append('model', opts.model);
  body.append('language', opts.language);
  if (opts.max_new_tokens) body.append('max_new_tokens', String(opts.max_new_tokens));
  body.append('response_format', 'json');

  const xhr = new XMLHttpRequest();
  file.xhr = xhr;
  xhr.open('POST', '/v1/transcribe');
  xhr.setRequestHeader('X-Job-Id', jobId);
  for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
  file.transcript.hidden = true;
  file.progress.hidden = false;
  setUpload(0);
  setJob(0, 'waiting for the upload');
  let uploaded = false;
  file.section.dataset.state = 'busy';
  file.status.textContent = `Uploading ${f.name}…`;
  fileBusy(true);

  xhr.upload.onprogress = (ev) => {
    if (ev.lengthComputable) setUpload(ev.loaded / ev.total);
  };
  xhr.upload.onload = () => {
    uploaded = true;
    setUpload(1);
    file.status.textContent = 'Transcribing…';
    pollJob(jobId);
  };
  const finish = (state, text) => {
    stopPolling();
    file.xhr = null;
    fileBusy(false);
    file.section.dataset.state = state;
    file.status.textContent = text;
  };
  // A failed or cancelled request: both bars say so (never a stale "waiting for the upload").
  const fail = (state, word, text) => {
    for (const out of uploaded ? [file.jobPct] : [file.uploadPct, file.jobPct]) {
      out.textContent = word;
      out.classList.add('failed');
    }
    finish(state, text);
  };
  xhr.onload = () => {
    let j = null;
    try {
      j = JSON.parse(xhr.responseText);
    } catch {
      /* not JSON */
    }
    if (xhr.status === 200 && j) {
      setUpload(1);
      setJob(1, 'done');
      renderTranscript(j, f.name);
      finish('done', `Done: ${f.name}.`);
    } else fail('error', 'failed', `Error: ${withKeyHint(j?.error || `HTTP ${xhr.status}`)}`);
  };
  xhr.onerror = () => fail('error', 'failed', 'Error: the upload failed (network).');
  xhr.onabort = () => fail('cancelled', 'cancelled', 'Cancelled.');
  xhr.send(body);
});

file.cancel.addEventListener('click', () => {
  const xhr = file.xhr;
  if (!xhr) return;
  xhr.abort(); // the server cancels the job when the request goes away
});

loadOptions();
setLiveState('idle', 'Idle. Press Start and allow the microphone.');
