/**
 * Keeps the audio timeline of an RTP stream straight before decoding (pure, no I/O):
 * duplicates and packets that arrive after a later one are dropped (a live captioner cannot go
 * back), and gaps (loss, DTX, a muted track) become silence of the right length, so utterance times
 * stay true to the client's clock. Long gaps are capped: nobody needs minutes of zeros.
 */

export interface RtpAudioPacket {
  sequenceNumber: number;
  /** RTP timestamp (48 kHz clock for Opus). */
  timestamp: number;
  payload: Uint8Array;
}

export type RtpStep =
  | { kind: 'drop'; reason: 'duplicate' | 'late' | 'empty' }
  | { kind: 'play' /** Silence to insert before this packet, in clock samples. */; gapSamples: number; payload: Uint8Array };

export class RtpAudioTimeline {
  private lastSeq: number | null = null;
  /** Timestamp at which the next packet is expected (last timestamp + its duration). */
  private nextTs: number | null = null;
  readonly stats = { packets: 0, dropped: 0, lost: 0, gapSamples: 0 };

  constructor(private readonly maxGapSamples = 48_000 * 2) {}

  /** Decides what to do with the next packet; call `played(n)` with its decoded length when it is played. */
  push(p: RtpAudioPacket): RtpStep {
    this.stats.packets++;
    if (p.payload.length === 0) return this.drop('empty');
    if (this.lastSeq !== null) {
      const d = seqDelta(p.sequenceNumber, this.lastSeq);
      if (d === 0) return this.drop('duplicate');
      if (d < 0) return this.drop('late');
      if (d > 1) this.stats.lost += d - 1;
    }
    let gap = 0;
    if (this.nextTs !== null) {
      const d = tsDelta(p.timestamp, this.nextTs);
      if (d < 0) {
        // Same sequence advance but an earlier timestamp: a retransmission or a reset clock; play it without a gap.
        gap = 0;
      } else gap = Math.min(d, this.maxGapSamples);
    }
    this.lastSeq = p.sequenceNumber;
    this.nextTs = p.timestamp >>> 0;
    this.stats.gapSamples += gap;
    return { kind: 'play', gapSamples: gap, payload: p.payload };
  }

  /** The packet just pushed decoded to `samples` samples (its duration on the RTP clock). */
  played(samples: number): void {
    if (this.nextTs !== null) this.nextTs = (this.nextTs + samples) >>> 0;
  }

  private drop(reason: 'duplicate' | 'late' | 'empty'): RtpStep {
    this.stats.dropped++;
    return { kind: 'drop', reason };
  }
}

/** a - b for 16-bit sequence numbers, in -32768..32767. */
export function seqDelta(a: number, b: number): number {
  return ((((a - b) & 0xffff) + 0x8000) & 0xffff) - 0x8000;
}

/** a - b for 32-bit RTP timestamps, signed. */
export function tsDelta(a: number, b: number): number {
  return (a - b) | 0;
}
