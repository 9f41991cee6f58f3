/**
 * The page's AudioWorklet resampler (web/pcm-worklet.js) run in Node with the worklet globals
 * stubbed: right output length (time is kept), tones below 8 kHz pass at full level, tones above
 * the 16 kHz output's Nyquist are filtered instead of aliasing, for 48 kHz and 44.1 kHz inputs.
 */
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/paths.ts';

const SOURCE = fs.readFileSync(path.join(REPO_ROOT, 'web', 'pcm-worklet.js'), 'utf8');

interface Proc {
  process(inputs: Float32Array[][]): boolean;
  port: { onmessage: ((e: { data: unknown }) => void) | null; postMessage(m: unknown): void };
}

function load(sampleRate: number): { proc: Proc; out: Int16Array[] } {
  const out: Int16Array[] = [];
  let Ctor: (new (o: unknown) => Proc) | undefined;
  class AudioWorkletProcessor {
    port = { onmessage: null, postMessage: (m: ArrayBuffer) => out.push(new Int16Array(m)) };
  }
  vm.runInNewContext(SOURCE, {
    AudioWorkletProcessor,
    sampleRate,
    registerProcessor: (_name: string, c: new (o: unknown) => Proc) => (Ctor = c),
    Float32Array,
    Int16Array,
    Math,
  });
  const proc = new Ctor!({ processorOptions: { targetRate: 16000, chunkMs: 100 } });
  return { proc, out };
}

/** Feeds `seconds` of a tone in 128-sample render quanta; returns the 16 kHz output as floats. */
function run(sampleRate: number, freq: number, seconds: number): Float32Array {
  const { proc, out } = load(sampleRate);
  const n = Math.round(sampleRate * seconds);
  for (let off = 0; off < n; off += 128) {
    const q = new Float32Array(Math.min(128, n - off));
    for (let i = 0; i < q.length; i++) q[i] = 0.5 * Math.sin((2 * Math.PI * freq * (off + i)) / sampleRate);
    proc.process([[q]]);
  }
  proc.port.onmessage?.({ data: 'flush' });
  const total = out.reduce((s, c) => s + c.length, 0);
  const f = new Float32Array(total);
  let k = 0;
  for (const c of out) for (const x of c) f[k++] = x / 32768;
  return f;
}

function rmsOf(x: Float32Array, from = 800): number {
  let s = 0;
  for (let i = from; i < x.length - 800; i++) s += x[i] * x[i];
  return Math.sqrt(s / (x.length - 1600 - (from - 800)));
}

describe('web/pcm-worklet.js resampler', () => {
  for (const rate of [48000, 44100]) {
    it(`${rate} Hz → 16 kHz: keeps time, passes speech band, removes what would alias`, () => {
      const seconds = 2;
      const pass = run(rate, 1000, seconds);
      // Output length = input duration at 16 kHz, minus the kernel's look-ahead (< 1 ms … a few ms).
      expect(Math.abs(pass.length - 16000 * seconds)).toBeLessThan(40);
      // A 0.5-amplitude sine has RMS 0.354.
      expect(rmsOf(pass)).toBeGreaterThan(0.33);
      expect(rmsOf(pass)).toBeLessThan(0.37);
      // It is still 1 kHz: ~2 zero crossings per ms.
      let zc = 0;
      for (let i = 1; i < pass.length; i++) if (pass[i - 1] < 0 !== pass[i] < 0) zc++;
      expect(zc / (pass.length / 16)).toBeCloseTo(2, 1);
      expect(rmsOf(run(rate, 6000, 1))).toBeGreaterThan(0.3);
      // 12 kHz would fold to 4 kHz at full level without the low-pass.
      expect(rmsOf(run(rate, 12000, 1))).toBeLessThan(0.01);
    });
  }
});
