/**
 * Load-test audio: one synthetic "conversation" per length, made with espeak-ng + sox and cached
 * under .tmp/loadtest/: several utterances with exactly known speech start/end times, separated by
 * at least 1.5 s of digital silence, ending in silence long enough for the VAD to close the last
 * utterance. Every stream of a run sends the same audio (starts are staggered by the runner).
 *
 * Writes, next to the WAV, the raw PCM16 LE mono 16 kHz file and a JSON sidecar with the spans:
 * the k6 script reads those two (`open(path, 'b')`).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeWav, float32ToInt16LeBytes, int16LeBytesToFloat32, readWav } from '../src/audio/pcm.ts';

export const SR = 16_000;

/** Single-clause sentences (no internal pause the VAD could split on), short to long. */
const SENTENCES = [
  'Please open the window',
  'The weather is getting colder every day',
  'Turn left after the old railway bridge',
  'We will meet again next Thursday morning',
  'The library closes at nine in the evening',
  'Send the report to the whole team before lunch',
  'My brother bought a bright red bicycle',
  'The train to the airport leaves from platform four',
  'Three green apples fell from the tall tree',
  'Remember to water the plants on the balcony',
];

export interface LoadAudio {
  /** Mono float samples at 16 kHz. */
  samples: Float32Array;
  /** PCM16 LE bytes of `samples` (what goes on the wire). */
  pcm16: Buffer;
  durationS: number;
  /** [start, end] of each utterance's speech, seconds (exact: espeak's own silence is trimmed). */
  spans: Array<[number, number]>;
  texts: string[];
  wavPath: string;
  pcmPath: string;
  spansPath: string;
}

export interface LoadAudioOptions {
  seconds: number;
  /** Silence between utterances, seconds (≥ 1.5). */
  gapS?: number;
  /** Silence before the first utterance. */
  leadS?: number;
  /** Silence after the last utterance (≥ 0.5 s so the VAD closes it before the stop). */
  tailS?: number;
  cacheDir?: string;
}

function tool(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000, killSignal: 'SIGKILL' });
}

export function ensureAudioTools(): void {
  for (const t of ['espeak-ng', 'sox']) {
    try {
      execFileSync(t, ['--version'], { stdio: 'ignore', timeout: 10_000 });
    } catch {
      throw new Error(`${t} is required to make the load-test audio (apt-get install espeak-ng sox)`);
    }
  }
}

/** One sentence as trimmed 16 kHz mono speech (cached). */
function sentence(text: string, i: number, dir: string): Float32Array {
  const path = join(dir, `utt-${i}-16k.wav`);
  if (!existsSync(path)) {
    ensureAudioTools();
    const raw = join(dir, `utt-${i}-raw-${process.pid}.wav`);
    const tmp = join(dir, `utt-${i}-${process.pid}.part.wav`);
    try {
      tool('espeak-ng', ['-v', 'en-us', '-s', '160', '-w', raw, text]);
      // Trim espeak's leading/trailing silence (reverse trick) so the spans are exact.
      tool('sox', [raw, '-r', String(SR), '-c', '1', '-b', '16', tmp, 'silence', '1', '0.02', '0.5%', 'reverse', 'silence', '1', '0.02', '0.5%', 'reverse']);
      renameSync(tmp, path);
    } finally {
      rmSync(raw, { force: true });
      rmSync(tmp, { force: true });
    }
  }
  const w = readWav(readFileSync(path));
  if (w.sampleRate !== SR) throw new Error(`${path}: ${w.sampleRate} Hz, expected ${SR}`);
  return w.samples;
}

/**
 * Speech of about `seconds` (never longer): lead silence, then sentences (cycled) separated by
 * `gapS` of silence while they fit, then `tailS` of silence. At least one utterance.
 */
export function loadAudio(o: LoadAudioOptions): LoadAudio {
  const gapS = o.gapS ?? 1.6;
  const leadS = o.leadS ?? 0.4;
  const tailS = o.tailS ?? 1.2;
  if (gapS < 1.5) throw new Error('gapS must be at least 1.5 s');
  const dir = o.cacheDir ?? join(process.cwd(), '.tmp', 'loadtest');
  mkdirSync(dir, { recursive: true });
  const key = `conversation-${o.seconds}s-g${gapS}-l${leadS}-t${tailS}`;
  const wavPath = join(dir, `${key}.wav`);
  const pcmPath = join(dir, `${key}.pcm`);
  const spansPath = join(dir, `${key}.json`);

  if (existsSync(pcmPath) && existsSync(spansPath)) {
    const meta = JSON.parse(readFileSync(spansPath, 'utf8')) as { spans: Array<[number, number]>; texts: string[] };
    const pcm16 = readFileSync(pcmPath);
    return { samples: int16LeBytesToFloat32(pcm16), pcm16, durationS: pcm16.length / 2 / SR, spans: meta.spans, texts: meta.texts, wavPath, pcmPath, spansPath };
  }

  const parts: Float32Array[] = [];
  const spans: Array<[number, number]> = [];
  const texts: string[] = [];
  let n = Math.round(leadS * SR);
  parts.push(new Float32Array(n));
  const clips = SENTENCES.map((t, i) => sentence(t, i, dir));
  const budget = Math.round(o.seconds * SR);
  // Prefer the next sentence in order; if it does not fit, try a shorter one.
  for (let k = 0; k < 200; k++) {
    const sep = spans.length ? Math.round(gapS * SR) : 0;
    const room = budget - n - sep - Math.round(tailS * SR);
    const order = clips.map((_, j) => (k + j) % clips.length);
    const pick = order.find((j) => clips[j].length <= room);
    if (pick === undefined) break;
    if (sep) parts.push(new Float32Array(sep));
    n += sep;
    spans.push([n / SR, (n + clips[pick].length) / SR]);
    texts.push(SENTENCES[pick]);
    parts.push(clips[pick]);
    n += clips[pick].length;
  }
  if (!spans.length) throw new Error(`--seconds ${o.seconds} is too short for one utterance (lead ${leadS} s + speech + tail ${tailS} s)`);
  parts.push(new Float32Array(Math.round(tailS * SR)));
  n += Math.round(tailS * SR);
  const samples = new Float32Array(n);
  let off = 0;
  for (const p of parts) {
    samples.set(p, off);
    off += p.length;
  }
  const pcm16 = Buffer.from(float32ToInt16LeBytes(samples));
  const round = (x: number) => Math.round(x * 1e4) / 1e4;
  const roundedSpans = spans.map(([a, b]) => [round(a), round(b)] as [number, number]);
  atomicWrite(pcmPath, pcm16);
  atomicWrite(wavPath, encodeWav(samples, SR));
  atomicWrite(spansPath, JSON.stringify({ sampleRate: SR, format: 'pcm_s16le mono', durationS: n / SR, gapS, spans: roundedSpans, texts }, null, 2) + '\n');
  return { samples, pcm16, durationS: n / SR, spans: roundedSpans, texts, wavPath, pcmPath, spansPath };
}

function atomicWrite(path: string, data: string | Buffer): void {
  const tmp = `${path}.${process.pid}.part`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}
