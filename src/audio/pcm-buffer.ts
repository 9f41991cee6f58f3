/**
 * A growable window over a stream of samples: append at the end, drop from the front, read any
 * absolute range still held. Amortised O(1) appends (capacity grows by `growth`; the front is
 * compacted lazily), so a live stream does not copy its whole utterance for every 32 ms frame.
 * One class for every buffer of samples: live utterances, the file VAD window, long-form pieces,
 * the signal kept for diarization.
 */
export interface PcmBufferOptions {
  /**
   * Capacity factor when the held samples no longer fit: 2 (default) for few copies; less where
   * the buffer is large and its peak size is what counts (a VAD block, hours kept for diarization).
   */
  growth?: number;
}

export class PcmBuffer {
  private readonly growth: number;
  private data: Float32Array;
  /** Index in `data` of the first held sample. */
  private head = 0;
  private length = 0;
  /** Absolute index (since stream start) of the first held sample. */
  private start = 0;

  constructor(initialCapacity = 16_000, opts: PcmBufferOptions = {}) {
    this.data = new Float32Array(Math.max(1, Math.ceil(initialCapacity)));
    this.growth = opts.growth ?? 2;
  }

  /** Absolute index one past the last sample. */
  get end(): number {
    return this.start + this.length;
  }

  get firstHeld(): number {
    return this.start;
  }

  get held(): number {
    return this.length;
  }

  append(samples: Float32Array): void {
    const need = this.head + this.length + samples.length;
    if (need > this.data.length) {
      const used = this.length + samples.length;
      // Compact if that leaves room to grow by the factor; otherwise grow.
      const cap = used * this.growth > this.data.length ? Math.max(Math.ceil(used * this.growth), 1024) : this.data.length;
      if (cap === this.data.length) this.data.copyWithin(0, this.head, this.head + this.length);
      else {
        const next = new Float32Array(cap);
        next.set(this.data.subarray(this.head, this.head + this.length), 0);
        this.data = next;
      }
      this.head = 0;
    }
    this.data.set(samples, this.head + this.length);
    this.length += samples.length;
  }

  /** Forgets every sample before absolute index `absIndex`. */
  dropBefore(absIndex: number): void {
    const n = Math.min(this.length, Math.max(0, absIndex - this.start));
    this.head += n;
    this.length -= n;
    this.start += n;
  }

  /** View (no copy) of samples [from, to) (absolute), clamped to what is held; valid until the next append. */
  view(from: number, to: number): Float32Array {
    const a = Math.max(from, this.start) - this.start;
    const b = Math.min(to, this.end) - this.start;
    return b > a ? this.data.subarray(this.head + a, this.head + b) : new Float32Array(0);
  }

  /** Copy of samples [from, to) (absolute), clamped to what is held. */
  read(from: number, to: number): Float32Array {
    return this.view(from, to).slice();
  }

  clear(): void {
    this.data = new Float32Array(0);
    this.head = 0;
    this.start = this.end;
    this.length = 0;
  }
}
