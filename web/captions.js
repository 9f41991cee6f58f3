// Captions viewer: follows a live session over WS /v1/stream/<id>/captions (same messages as the
// stream itself), from its start (?replay=true) or from now. Works for WebSocket and WebRTC sessions.
import { CaptionView, plural, wsUrl } from './common.js';

const params = new URLSearchParams(location.search);
const id = params.get('session') || '';
const replay = params.get('replay') !== 'false';
// Following needs a share token from the streaming page (in the link), or the owner's API key.
const shareToken = params.get('share_token') || '';
const apiKey = sessionStorage.getItem('stt-api-key') || '';
const status = document.querySelector('#follow-status');
const box = document.querySelector('#captions');
const view = new CaptionView(box);
document.querySelector('#session').value = id;
document.querySelector('#replay').checked = replay;

let finals = 0;
let partials = 0;
let ended = false;

function follow() {
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(id)) {
    if (id) status.textContent = 'That is not a session id (letters, digits, - and _).';
    return;
  }
  document.title = `Captions ${id.slice(0, 8)} — open-stt-server`;
  status.textContent = `Connecting to session ${id}…`;
  box.dataset.state = 'connecting';
  const q = new URLSearchParams();
  if (replay) q.set('replay', 'true');
  if (shareToken) q.set('share_token', shareToken);
  else if (apiKey) q.set('api_key', apiKey);
  const ws = new WebSocket(wsUrl(`/v1/stream/${encodeURIComponent(id)}/captions${q.size ? `?${q}` : ''}`));
  let opened = false;
  ws.onopen = () => {
    opened = true;
    box.dataset.state = 'following';
    status.textContent = `Following session ${id}.`;
  };
  let refusal = '';
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    const kind = view.handle(m);
    // A refusal (no credentials, unknown session) comes as {"error"} on the accepted socket, then a close.
    if (kind === 'error') refusal = m.error;
    if (kind === 'partial') box.dataset.partials = String(++partials);
    if (kind === 'final') box.dataset.finals = String(++finals);
    if (kind === 'end') {
      ended = true;
      box.dataset.state = 'ended';
      status.textContent = `The session has ended (${plural(finals, 'caption')}).`;
    }
  };
  ws.onclose = (e) => {
    if (ended) return;
    box.dataset.state = 'closed';
    status.textContent = refusal
      ? `Cannot follow this session: ${refusal}`
      : !opened
        ? "Cannot follow this session: open the viewer link from the streaming page (it carries a share token), or set the owner's API key on the main page."
        : e.code === 1001
          ? 'The server is shutting down.'
          : `Disconnected (${e.code}). Reload the page to follow again.`;
  };
}

follow();
