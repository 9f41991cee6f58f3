// Shared by the pages: caption rendering, transcript export formats, small helpers.

/** Seconds → "m:ss" (or "h:mm:ss"). */
export function clock(s) {
  const t = Math.max(0, Math.floor(s));
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = String(t % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/** "1 speaker", "2 speakers", "0 speakers". */
export function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * Renders the /v1/stream messages into a captions box: finals as a list (with speaker labels and
 * times), the current partial below them in grey italics (its stable prefix a little darker).
 */
export class CaptionView {
  constructor(root) {
    this.root = root;
    this.finals = root.querySelector('.finals');
    this.partial = root.querySelector('.partial');
    this.placeholder = root.querySelector('.placeholder');
    this.count = 0;
  }

  clear() {
    this.finals.replaceChildren();
    this.setPartial('', '');
    this.count = 0;
    if (this.placeholder) this.placeholder.hidden = false;
  }

  /** Handles one server message; returns its kind ('partial', 'final', 'end', 'error', 'ready', 'other'). */
  handle(m) {
    if (typeof m.partial === 'string') {
      this.setPartial(m.partial, typeof m.stable === 'string' ? m.stable : '');
      return 'partial';
    }
    if (typeof m.text === 'string') {
      this.addFinal(m);
      return 'final';
    }
    if (m.is_final === true) {
      this.setPartial('', '');
      return 'end';
    }
    if (typeof m.error === 'string') return 'error';
    if (m.status === 'ready') return 'ready';
    if (m.status === 'loading_model') return 'loading';
    return 'other';
  }

  addFinal(m) {
    const li = el('li', 'final');
    if (typeof m.start === 'number') {
      const time = el('span', 'time', clock(m.start));
      time.setAttribute('aria-hidden', 'true');
      li.append(time);
    }
    if (m.speaker) li.append(el('span', 'speaker', `${m.speaker}:`), ' ');
    li.append(el('span', 'text', m.text));
    this.finals.append(li);
    this.count++;
    if (this.placeholder) this.placeholder.hidden = true;
    this.setPartial('', '');
    this.scroll();
  }

  setPartial(text, stable) {
    if (!this.partial) return;
    this.partial.replaceChildren();
    if (!text) {
      this.partial.hidden = true;
      return;
    }
    const tail = stable && text.startsWith(stable) ? text.slice(stable.length) : text;
    const head = stable && text.startsWith(stable) ? stable : '';
    if (head) this.partial.append(el('span', 'stable', head));
    this.partial.append(el('span', 'tail', tail));
    this.partial.hidden = false;
    if (this.placeholder) this.placeholder.hidden = true;
    this.scroll();
  }

  scroll() {
    this.root.scrollTop = this.root.scrollHeight;
  }
}

// ---------------------------------------------------------------------------------------------
// Transcript export (client-side, from the JSON the server returned)

function ts(s, sep) {
  const ms = Math.max(0, Math.round(s * 1000));
  const h = String(Math.floor(ms / 3600000)).padStart(2, '0');
  const m = String(Math.floor((ms % 3600000) / 60000)).padStart(2, '0');
  const sec = String(Math.floor((ms % 60000) / 1000)).padStart(2, '0');
  return `${h}:${m}:${sec}${sep}${String(ms % 1000).padStart(3, '0')}`;
}

const cues = (t) => (t.segments || []).filter((s) => s.text && s.text.trim());

export const exporters = {
  txt: (t) => ({
    type: 'text/plain',
    body: cues(t).length
      ? cues(t)
          .map((s) => `${s.speaker ? `${s.speaker}: ` : ''}${s.text.trim()}`)
          .join('\n') + '\n'
      : `${(t.text || '').trim()}\n`,
  }),
  srt: (t) => ({
    type: 'application/x-subrip',
    body: cues(t)
      .map((s, i) => `${i + 1}\n${ts(s.start, ',')} --> ${ts(Math.max(s.end, s.start + 0.01), ',')}\n${s.speaker ? `[${s.speaker}] ` : ''}${s.text.trim()}\n`)
      .join('\n'),
  }),
  vtt: (t) => ({
    type: 'text/vtt',
    body:
      'WEBVTT\n\n' +
      cues(t)
        .map(
          (s) =>
            `${ts(s.start, '.')} --> ${ts(Math.max(s.end, s.start + 0.01), '.')}\n${s.speaker ? `<v ${s.speaker.replace(/[<>&]/g, '')}>` : ''}${s.text.trim().replace(/&/g, '&amp;').replace(/</g, '&lt;')}\n`,
        )
        .join('\n'),
  }),
  json: (t) => ({ type: 'application/json', body: JSON.stringify(t, null, 2) + '\n' }),
};

/** Error message from a JSON error body, or the status line. */
export async function errorOf(res) {
  try {
    const j = await res.json();
    if (j && typeof j.error === 'string') return j.error;
  } catch {
    /* not JSON */
  }
  return `HTTP ${res.status}`;
}

/** A job id the server accepts (8-64 of [A-Za-z0-9_-]); randomUUID needs a secure context. */
export function newId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function wsUrl(path) {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}${path}`;
}
