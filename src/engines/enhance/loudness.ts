/**
 * Integrated loudness (ITU-R BS.1770-4 / EBU R128) of 48 kHz mono audio: K-weighting (the standard's
 * 48 kHz biquads), 400 ms blocks every 100 ms, absolute gate -70 LUFS, relative gate -10 LU.
 * Streaming: feed samples in any chunking, read `integrated()` at the end.
 */
export class LoudnessMeter {
  // Biquad states (direct form I): pre-filter (high shelf) and RLB high-pass.
  private x1 = 0;
  private x2 = 0;
  private y1 = 0;
  private y2 = 0;
  private u1 = 0;
  private u2 = 0;
  private w1 = 0;
  private w2 = 0;
  private readonly step: number;
  private acc = 0;
  private accN = 0;
  /** Mean square of each 100 ms sub-block. */
  private readonly sub: number[] = [];

  constructor(readonly sampleRate = 48000) {
    if (sampleRate !== 48000) throw new RangeError('LoudnessMeter implements the 48 kHz K-weighting filters only');
    this.step = sampleRate / 10;
  }

  push(samples: ArrayLike<number>, scale = 1): void {
    const b0 = 1.53512485958697,
      b1 = -2.69169618940638,
      b2 = 1.19839281085285,
      a1 = -1.69065929318241,
      a2 = 0.73248077421585;
    const c1 = -1.99004745483398,
      c2 = 0.99007225036621;
    for (let i = 0; i < samples.length; i++) {
      const x = samples[i] * scale;
      const y = b0 * x + b1 * this.x1 + b2 * this.x2 - a1 * this.y1 - a2 * this.y2;
      this.x2 = this.x1;
      this.x1 = x;
      this.y2 = this.y1;
      this.y1 = y;
      const w = y - 2 * this.u1 + this.u2 - c1 * this.w1 - c2 * this.w2;
      this.u2 = this.u1;
      this.u1 = y;
      this.w2 = this.w1;
      this.w1 = w;
      this.acc += w * w;
      if (++this.accN === this.step) {
        this.sub.push(this.acc / this.step);
        this.acc = 0;
        this.accN = 0;
      }
    }
  }

  /** Integrated loudness in LUFS; -Infinity for silence or audio shorter than one 400 ms block. */
  integrated(): number {
    const blocks: number[] = [];
    for (let i = 0; i + 4 <= this.sub.length; i++) blocks.push((this.sub[i] + this.sub[i + 1] + this.sub[i + 2] + this.sub[i + 3]) / 4);
    const lufs = (z: number) => -0.691 + 10 * Math.log10(z);
    const abs = blocks.filter((z) => z > 0 && lufs(z) > -70);
    if (abs.length === 0) return -Infinity;
    const relGate = lufs(abs.reduce((a, b) => a + b, 0) / abs.length) - 10;
    const rel = abs.filter((z) => lufs(z) > relGate);
    return lufs(rel.reduce((a, b) => a + b, 0) / rel.length);
  }
}
