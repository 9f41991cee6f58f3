import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const MODELS = process.env.STT_SHARED_MODELS ?? '/work/shared/models';
export const WESPEAKER_DIR = join(MODELS, 'wespeaker-resnet34-random');
export const SEGMENTATION_DIR = join(MODELS, 'pyannote-segmentation-3.0-random');

/** Little-endian float32 file (Buffer-pool safe). */
export function readF32(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    d += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return d / Math.sqrt(na * nb);
}
