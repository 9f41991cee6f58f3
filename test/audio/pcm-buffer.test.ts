import { describe, expect, it } from 'vitest';
import { PcmBuffer } from '../../src/audio/pcm-buffer.ts';

/** Random appends, drops and reads against a plain array of every sample ever appended. */
function exercise(buf: PcmBuffer, seed: number): void {
  let x = seed;
  const rand = (n: number) => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x % n;
  };
  const all: number[] = [];
  let dropped = 0;
  for (let step = 0; step < 400; step++) {
    const chunk = new Float32Array(rand(3000));
    for (let i = 0; i < chunk.length; i++) chunk[i] = all.length + i;
    buf.append(chunk);
    all.push(...chunk);
    if (rand(3) === 0) {
      dropped = Math.min(all.length, dropped + rand(4000));
      buf.dropBefore(dropped);
    }
    expect(buf.end).toBe(all.length);
    expect(buf.firstHeld).toBe(dropped);
    expect(buf.held).toBe(all.length - dropped);
    const from = dropped - 10 + rand(all.length - dropped + 20);
    const to = from + rand(5000);
    const want = all.slice(Math.max(from, dropped), Math.min(to, all.length));
    expect(Array.from(buf.view(from, to))).toEqual(want);
    expect(Array.from(buf.read(from, to))).toEqual(want);
  }
}

describe('PcmBuffer', () => {
  it('holds exactly the samples not dropped, through growth and compaction (×2, ×1.5, ×1.25)', () => {
    exercise(new PcmBuffer(), 1);
    exercise(new PcmBuffer(100, { growth: 1.5 }), 2);
    exercise(new PcmBuffer(1 << 16, { growth: 1.25 }), 3);
  });

  it('read is a copy, view is not', () => {
    const buf = new PcmBuffer(8);
    buf.append(Float32Array.from([1, 2, 3, 4]));
    const copy = buf.read(0, 4);
    const view = buf.view(0, 4);
    copy[0] = 9;
    expect(buf.read(0, 1)[0]).toBe(1);
    view[0] = 7;
    expect(buf.read(0, 1)[0]).toBe(7);
  });

  it('grows by the factor it is given, not more', () => {
    const buf = new PcmBuffer(1000, { growth: 1.25 });
    buf.append(new Float32Array(2000));
    // 2000 held: capacity 2500 (×1.25), so 500 more fit without another allocation.
    const before = buf.view(0, 1);
    buf.append(new Float32Array(500));
    expect(buf.view(0, 1).buffer).toBe(before.buffer);
    buf.append(new Float32Array(1));
    expect(buf.view(0, 1).buffer).not.toBe(before.buffer);
  });
});
