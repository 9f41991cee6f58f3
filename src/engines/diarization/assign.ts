/**
 * Speaker attribution of a transcript (pure): every segment and word gets the speaker whose turns
 * overlap it most (nearest turn when none overlaps); a segment whose words change speaker is split
 * at the change, using the word timestamps. Speakers are listed in order of first appearance in
 * the resulting transcript.
 */
import type { Segment, Word } from '../../formats/transcript.ts';
import type { SpeakerTurn } from './diarizer.ts';

function overlap(a0: number, a1: number, b0: number, b1: number): number {
  return Math.max(0, Math.min(a1, b1) - Math.max(a0, b0));
}

/** Speaker with the largest total overlap with [start, end]; the nearest turn if none overlaps. */
export function speakerAt(turns: SpeakerTurn[], start: number, end: number): string | null {
  if (!turns.length) return null;
  const by = new Map<string, number>();
  for (const t of turns) {
    const o = overlap(start, end, t.start, t.end);
    if (o > 0) by.set(t.speaker, (by.get(t.speaker) ?? 0) + o);
  }
  let best: string | null = null;
  let bo = 0;
  for (const [s, o] of by) if (o > bo) (bo = o), (best = s);
  if (best) return best;
  const mid = (start + end) / 2;
  let bd = Infinity;
  for (const t of turns) {
    const d = mid < t.start ? t.start - mid : mid > t.end ? mid - t.end : 0;
    if (d < bd) (bd = d), (best = t.speaker);
  }
  return best;
}

function joinWords(words: Word[]): string {
  return words.map((w) => w.word).join(' ');
}

export function assignSpeakers(segments: Segment[], turns: SpeakerTurn[]): { segments: Segment[]; speakers: string[] } {
  const out: Segment[] = [];
  for (const seg of segments) {
    if (!seg.words.length) {
      out.push({ ...seg, words: [], speaker: speakerAt(turns, seg.start, seg.end) });
      continue;
    }
    const words = seg.words.map((w) => ({ ...w, speaker: speakerAt(turns, w.start, w.end) ?? undefined }));
    const groups: Word[][] = [];
    for (const w of words) {
      const g = groups[groups.length - 1];
      if (g && g[0].speaker === w.speaker) g.push(w);
      else groups.push([w]);
    }
    if (groups.length === 1) {
      out.push({ ...seg, words, speaker: words[0].speaker ?? null });
      continue;
    }
    groups.forEach((g, i) => {
      out.push({
        ...seg,
        start: i === 0 ? seg.start : g[0].start,
        end: i === groups.length - 1 ? seg.end : g[g.length - 1].end,
        text: joinWords(g),
        speaker: g[0].speaker ?? null,
        words: g,
      });
    });
  }
  const speakers: string[] = [];
  for (const s of out) if (s.speaker && !speakers.includes(s.speaker)) speakers.push(s.speaker);
  return { segments: out, speakers };
}
