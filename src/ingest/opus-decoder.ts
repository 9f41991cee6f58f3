/**
 * Opus decoding for WebRTC audio with @discordjs/opus (libopus compiled into a native addon by its
 * install script). The addon is loaded lazily: when it is missing or was not built, the server still
 * starts, the WebRTC endpoint answers 503 and the log says how to fix it.
 */
import { DomainError } from '../errors.ts';
import { createRequire } from 'node:module';

export const OPUS_SAMPLE_RATE = 48_000;

interface NativeOpus {
  OpusEncoder: new (
    rate: number,
    channels: number,
  ) => {
    encode(pcm: Buffer): Buffer;
    decode(packet: Buffer): Buffer;
    setBitrate?(bps: number): void;
  };
}

export const OPUS_MISSING_HELP =
  'the native Opus decoder (@discordjs/opus) is not available. Build it with `npm rebuild @discordjs/opus` ' +
  '(needs python3, make and a C++ compiler; `npm ci` builds it because package.json approves its install script in "allowScripts")';

let cached: { ok: true; mod: NativeOpus } | { ok: false; reason: string } | null = null;

function load(): { ok: true; mod: NativeOpus } | { ok: false; reason: string } {
  if (cached) return cached;
  try {
    const require = createRequire(import.meta.url);
    const mod = require('@discordjs/opus') as NativeOpus;
    // Constructing one proves the binary loads (a package without its build fails here, not at require).
    new mod.OpusEncoder(OPUS_SAMPLE_RATE, 1);
    cached = { ok: true, mod };
  } catch (err) {
    cached = { ok: false, reason: `${OPUS_MISSING_HELP} (${(err as Error).message.split('\n')[0]})` };
  }
  return cached;
}

/** Whether the native decoder loads; `reason` says what to do when it does not. */
export function opusAvailability(): { ok: true } | { ok: false; reason: string } {
  const r = load();
  return r.ok ? { ok: true } : r;
}

export class OpusUnavailableError extends DomainError {
  constructor(reason: string) {
    super('unavailable', `WebRTC is unavailable on this server: ${reason}`);
  }
}

/** Decodes Opus packets to mono float PCM at 48 kHz (stereo streams are downmixed by libopus). */
export class OpusDecoder {
  private readonly codec: InstanceType<NativeOpus['OpusEncoder']>;

  constructor() {
    const r = load();
    if (!r.ok) throw new OpusUnavailableError(r.reason);
    this.codec = new r.mod.OpusEncoder(OPUS_SAMPLE_RATE, 1);
  }

  /** One RTP payload → samples in [-1, 1). Throws on a corrupt packet. */
  decode(packet: Uint8Array): Float32Array {
    const pcm = this.codec.decode(Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength));
    const n = pcm.length >> 1;
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = pcm.readInt16LE(i * 2) / 32768;
    return out;
  }
}

/** Encodes mono 48 kHz PCM in 20 ms frames (tests and tools: a WebRTC client without a browser). */
export class OpusEncoder {
  static readonly FRAME = 960;
  private readonly codec: InstanceType<NativeOpus['OpusEncoder']>;

  constructor(bitrate = 32_000) {
    const r = load();
    if (!r.ok) throw new OpusUnavailableError(r.reason);
    this.codec = new r.mod.OpusEncoder(OPUS_SAMPLE_RATE, 1);
    this.codec.setBitrate?.(bitrate);
  }

  /** Exactly 960 samples (20 ms) in, one Opus packet out. */
  encode(frame: Float32Array): Buffer {
    if (frame.length !== OpusEncoder.FRAME) throw new Error(`Opus frames are ${OpusEncoder.FRAME} samples at 48 kHz (got ${frame.length})`);
    const pcm = Buffer.alloc(frame.length * 2);
    for (let i = 0; i < frame.length; i++) pcm.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(frame[i] * 32768))), i * 2);
    return this.codec.encode(pcm);
  }
}
