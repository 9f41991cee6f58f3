/**
 * A growable window over a stream of samples: append at the end, drop from the front, read any
 * absolute range still held. Amortised O(1) appends (capacity doubles; the front is compacted
 * lazily), so a live stream does not copy its whole utterance for every 32 ms frame.
 */
export class PcmBuffer {
  private data: Float32Array;
  /** Index in `data` of the first held sample. */
  private head = 0;
  private length = 0;
  /** Absolute index (since stream start) of the first held sample. */
  private start = 0;

  constructor(initialCapacity = 16_000) {
    this.data = new Float32Array(initialCapacity);
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
      // Compact if at least half the array is dropped front; otherwise grow.
      const cap = used * 2 > this.data.length ? Math.max(used * 2, 1024) : this.data.length;
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

  /** Copy of samples [from, to) (absolute), clamped to what is held. */
  read(from: number, to: number): Float32Array {
    const a = Math.max(from, this.start) - this.start;
    const b = Math.min(to, this.end) - this.start;
    return b > a ? this.data.slice(this.head + a, this.head + b) : new Float32Array(0);
  }

  clear(): void {
    this.data = new Float32Array(0);
    this.head = 0;
    this.start = this.end;
    this.length = 0;
  }
}
