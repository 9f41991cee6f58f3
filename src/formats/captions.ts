/**
 * Transcript → txt / SRT / WebVTT. Pure functions. Captions follow common broadcast guidance:
 * at most 2 lines of 42 characters and 7 seconds per cue, split at word boundaries using word
 * timestamps (or proportionally to characters when a segment has none); speaker labels when diarized.
 */
import type { Segment, Transcript, Word } from './transcript.ts';

export interface CaptionOptions {
  maxLineChars: number;
  maxLines: number;
  maxCueSeconds: number;
}

export const DEFAULT_CAPTION_OPTIONS: CaptionOptions = { maxLineChars: 42, maxLines: 2, maxCueSeconds: 7 };

export interface Cue {
  start: number;
  end: number;
  lines: string[];
  speaker?: string | null;
}

/** Words of a segment with times; proportional to character count when the engine gave none. */
function timedWords(seg: Segment): Word[] {
  const ws = seg.words.filter((w) => w.word.trim());
  if (ws.length) return ws.map((w) => ({ word: w.word.trim(), start: w.start, end: w.end }));
  const tokens = seg.text.trim().split(/\s+/).filter(Boolean);
  const total = tokens.reduce((n, t) => n + t.length, 0) || 1;
  let t = seg.start;
  return tokens.map((word) => {
    const d = ((seg.end - seg.start) * word.length) / total;
    const w = { word, start: t, end: t + d };
    t += d;
    return w;
  });
}

/** Greedy line wrap at word boundaries; a single over-long word gets a line of its own. */
export function wrapLines(words: string[], maxLineChars: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (!line) line = w;
    else if (line.length + 1 + w.length <= maxLineChars) line += ' ' + w;
    else {
      lines.push(line);
      line = w;
    }
  }
  if (line) lines.push(line);
  return lines;
}

/** Splits segments into cues that respect the line, length and duration limits. */
export function toCues(segments: Segment[], opts: CaptionOptions = DEFAULT_CAPTION_OPTIONS): Cue[] {
  const cues: Cue[] = [];
  const maxChars = opts.maxLineChars * opts.maxLines;
  for (const seg of segments) {
    const words = timedWords(seg);
    let cur: Word[] = [];
    const flush = () => {
      if (!cur.length) return;
      cues.push({
        start: cur[0].start,
        end: Math.max(cur[cur.length - 1].end, cur[0].start + 0.01),
        lines: wrapLines(
          cur.map((w) => w.word),
          opts.maxLineChars,
        ),
        speaker: seg.speaker,
      });
      cur = [];
    };
    for (const w of words) {
      const candidate = [...cur, w];
      const fits =
        wrapLines(
          candidate.map((x) => x.word),
          opts.maxLineChars,
        ).length <= opts.maxLines &&
        candidate.map((x) => x.word).join(' ').length <= maxChars &&
        w.end - (cur[0]?.start ?? w.start) <= opts.maxCueSeconds;
      if (!fits && cur.length) flush();
      cur.push(w);
    }
    flush();
  }
  // Cues never overlap: a player shows them one at a time.
  for (let i = 1; i < cues.length; i++) {
    if (cues[i].start < cues[i - 1].end) cues[i - 1].end = Math.max(cues[i - 1].start + 0.01, cues[i].start);
  }
  return cues;
}

function clock(seconds: number, sep: ',' | '.'): string {
  const ms = Math.max(0, Math.round(seconds * 1000));
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = Math.floor((ms % 60_000) / 1000);
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${pad(h)}:${pad(m)}:${pad(s)}${sep}${pad(ms % 1000, 3)}`;
}

export function toSrt(t: Transcript, opts?: CaptionOptions): string {
  return toCues(t.segments, opts)
    .map((c, i) => {
      const lines = c.speaker ? [`${c.speaker}: ${c.lines[0]}`, ...c.lines.slice(1)] : c.lines;
      return `${i + 1}\n${clock(c.start, ',')} --> ${clock(c.end, ',')}\n${lines.join('\n')}\n`;
    })
    .join('\n');
}

/** WebVTT cue text escapes &, < and >; speakers use voice spans (<v Speaker 1>). */
function vttEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function toVtt(t: Transcript, opts?: CaptionOptions): string {
  const cues = toCues(t.segments, opts).map((c) => {
    const text = c.lines.map(vttEscape).join('\n');
    const speaker = c.speaker ? vttEscape(c.speaker).replace(/\n/g, ' ') : null;
    return `${clock(c.start, '.')} --> ${clock(c.end, '.')}\n${speaker ? `<v ${speaker}>${text}` : text}\n`;
  });
  return ['WEBVTT\n', ...cues].join('\n');
}

/** Plain text: one line per segment, prefixed by the speaker when diarized. */
export function toTxt(t: Transcript): string {
  if (!t.segments.some((s) => s.speaker)) return t.text.trim() + '\n';
  return t.segments.map((s) => (s.speaker ? `${s.speaker}: ${s.text.trim()}` : s.text.trim())).join('\n') + '\n';
}
