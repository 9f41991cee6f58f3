/** Test helpers: fixture paths, a minimal PCM16 WAV reader and golden loading. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const MODEL_DIR = join(process.env.MODELS_DIR ?? '/work/shared/models', 'whisper-mini-random');
export const GOLDEN_DIR = join(MODEL_DIR, 'golden');

/** Reads a mono PCM16 (or float32) RIFF/WAVE file into float32 samples in [-1, 1) (int16 / 32768, as soundfile). */
export function readWav(path: string): { samples: Float32Array; sampleRate: number } {
  const buf = readFileSync(path);
  if (buf.toString('ascii', 0, 4) !== 'RIFF' || buf.toString('ascii', 8, 12) !== 'WAVE') throw new Error('not a WAV file');
  let off = 12;
  let fmt: { format: number; channels: number; rate: number; bits: number } | undefined;
  while (off + 8 <= buf.length) {
    const id = buf.toString('ascii', off, off + 4);
    const size = buf.readUInt32LE(off + 4);
    const body = off + 8;
    if (id === 'fmt ') {
      fmt = { format: buf.readUInt16LE(body), channels: buf.readUInt16LE(body + 2), rate: buf.readUInt32LE(body + 4), bits: buf.readUInt16LE(body + 14) };
    } else if (id === 'data') {
      if (!fmt) throw new Error('data before fmt');
      const end = Math.min(body + size, buf.length);
      const bytes = fmt.bits / 8;
      const n = Math.floor((end - body) / (bytes * fmt.channels));
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let c = 0; c < fmt.channels; c++) {
          const p = body + (i * fmt.channels + c) * bytes;
          if (fmt.format === 1 && fmt.bits === 16) s += buf.readInt16LE(p) / 32768;
          else if (fmt.format === 3 && fmt.bits === 32) s += buf.readFloatLE(p);
          else throw new Error(`unsupported WAV format ${fmt.format}/${fmt.bits}`);
        }
        out[i] = s / fmt.channels;
      }
      return { samples: out, sampleRate: fmt.rate };
    }
    off = body + size + (size & 1);
  }
  throw new Error('no data chunk');
}

export function readF32(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

export interface GoldenInput {
  wav: string;
  seconds: number;
  features?: { file: string; shape: number[] };
  encoder?: { shape: number[]; mean: number; std: number; first8: number[] };
  language_detection?: { top5: [string, number][] };
  first_step_logits_top10_notimestamps?: [number, number][];
  generate?: { notimestamps: number[]; timestamps: number[] };
}
export interface Golden {
  prompt_notimestamps: number[];
  prompt_timestamps: number[];
  max_new_tokens: number;
  inputs: Record<string, GoldenInput>;
}

export const golden: Golden = JSON.parse(readFileSync(join(GOLDEN_DIR, 'golden.json'), 'utf8'));
export const GOLDEN_NAMES = ['tone', 'speech', 'jfk'] as const;

export function loadAudio(name: string): Float32Array {
  const { samples, sampleRate } = readWav(join(GOLDEN_DIR, `${name}.wav`));
  if (sampleRate !== 16000) throw new Error(`${name}: expected 16 kHz, got ${sampleRate}`);
  return samples;
}
