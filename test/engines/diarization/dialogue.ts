/**
 * espeak-ng dialogues with known turns: each turn is spoken by its voice, espeak's leading/trailing
 * silence is trimmed (sox), and turns are joined with fixed pauses, so the reference RTTM is exact
 * (turn = trimmed utterance). Cached under a content-addressed name in the shared fixture dir.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readWav, encodeWav } from '../../../src/audio/pcm.ts';
import type { Turn } from '../../../src/engines/diarization/der.ts';

export interface DialogueTurn {
  /** espeak-ng args for the voice, e.g. ['-v', 'en+m3'] or ['-v', 'en-us+m1', '-p', '30']. */
  voice: string[];
  text: string;
  /** Speaker name written to the reference. */
  speaker: string;
}

export interface Dialogue {
  samples: Float32Array;
  path: string;
  reference: Turn[];
  durationS: number;
}

const DIR = process.env.STT_FIXTURE_DIR ?? join(tmpdir(), 'stt-audio-fixtures-v1');

function utterance(voice: string[], text: string): Float32Array {
  mkdirSync(DIR, { recursive: true });
  const key = createHash('sha1')
    .update(JSON.stringify({ voice, text, v: 1 }))
    .digest('hex')
    .slice(0, 16);
  const file = join(DIR, `diar-utt-${key}.wav`);
  if (!existsSync(file)) {
    const raw = `${file}.${process.pid}.raw.wav`;
    const tmp = `${file}.${process.pid}.tmp.wav`;
    try {
      execFileSync('espeak-ng', [...voice, '-s', '165', '-w', raw, text], { timeout: 60_000 });
      execFileSync('sox', [raw, '-D', '-r', '16000', '-c', '1', '-b', '16', tmp, 'silence', '1', '0.02', '0.5%', 'reverse', 'silence', '1', '0.02', '0.5%', 'reverse'], { timeout: 60_000 });
      renameSync(tmp, file);
    } finally {
      rmSync(raw, { force: true });
      rmSync(tmp, { force: true });
    }
  }
  return readWav(readFileSync(file)).samples;
}

/** Build a dialogue: `pauseS[i]` of silence before turn i (default 0.4 s; the first 0.3 s). */
export function makeDialogue(turns: DialogueTurn[], opts: { pauseS?: number[]; tailS?: number; writeTo?: string } = {}): Dialogue {
  const parts: Float32Array[] = [];
  const reference: Turn[] = [];
  let n = 0;
  turns.forEach((t, i) => {
    const pause = opts.pauseS?.[i] ?? (i === 0 ? 0.3 : 0.4);
    const sil = new Float32Array(Math.round(pause * 16000));
    parts.push(sil);
    n += sil.length;
    const u = utterance(t.voice, t.text);
    reference.push({ start: n / 16000, end: (n + u.length) / 16000, speaker: t.speaker });
    parts.push(u);
    n += u.length;
  });
  const tail = new Float32Array(Math.round((opts.tailS ?? 0.3) * 16000));
  parts.push(tail);
  n += tail.length;
  const samples = new Float32Array(n);
  let o = 0;
  for (const p of parts) samples.set(p, o), (o += p.length);
  const path = opts.writeTo ?? join(DIR, `diar-dialogue-${createHash('sha1').update(JSON.stringify({ turns, opts })).digest('hex').slice(0, 16)}.wav`);
  if (!existsSync(path)) writeFileSync(path, encodeWav(samples, 16000));
  return { samples, path, reference, durationS: n / 16000 };
}

export const SENTENCES = [
  'Good morning, did you get a chance to look at the budget report before the meeting?',
  'I did, and I think the numbers for the bridge repairs are far too optimistic.',
  'That is fair, the steel supports corroded much faster than anyone expected.',
  'Then we should ask the engineer to come back with a new estimate next week.',
  'Agreed. What about the library, is it still going to open in the spring?',
  'Yes, with longer hours, a quiet reading room and a small workshop for children.',
  'The volunteers who cleaned the river banks deserve a proper thank you.',
  'We could plant two hundred trees along the northern road before the first frost.',
  'How much is left for the swimming pool after the street lights are paid for?',
  'Just under six thousand dollars, and about three thousand for new benches.',
  'Let us finish there, it is half past twelve and it is raining again.',
  'I will send the minutes to everyone this afternoon.',
];
