/**
 * Pure PCM helpers: int16 <-> float32 conversion, WAV encode / decode.
 *
 * No I/O here: everything takes and returns typed arrays / Buffers so it can be used from
 * the HTTP layer, the CLI and tests alike. Samples are float32 in [-1, 1].
 */

/** Convert little-endian signed 16-bit PCM bytes to float32 samples in [-1, 1). */
export function int16LeBytesToFloat32(bytes: Uint8Array): Float32Array {
  const n = Math.floor(bytes.byteLength / 2);
  const out = new Float32Array(n);
  if (isLittleEndianHost && bytes.byteOffset % 2 === 0) {
    // Every live audio frame comes through here: a typed view is several times cheaper than DataView reads.
    const samples = new Int16Array(bytes.buffer, bytes.byteOffset, n);
    for (let i = 0; i < n; i++) out[i] = samples[i] / 32768;
    return out;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, n * 2);
  for (let i = 0; i < n; i++) out[i] = view.getInt16(i * 2, true) / 32768;
  return out;
}

/** Convert an Int16Array (host order) to float32 samples in [-1, 1). */
export function int16ToFloat32(samples: Int16Array): Float32Array {
  const out = new Float32Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = samples[i] / 32768;
  return out;
}

/** Convert float32 samples to Int16Array with clipping and rounding. */
export function float32ToInt16(samples: Float32Array): Int16Array {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = floatToInt16Sample(samples[i]);
  return out;
}

/** Convert float32 samples to little-endian signed 16-bit PCM bytes (clipped). */
export function float32ToInt16LeBytes(samples: Float32Array): Uint8Array {
  const out = new Uint8Array(samples.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < samples.length; i++) view.setInt16(i * 2, floatToInt16Sample(samples[i]), true);
  return out;
}

/** Little-endian float32 bytes (e.g. ffmpeg `-f f32le`) to a Float32Array (always a copy, aligned). */
export function f32leBytesToFloat32(bytes: Uint8Array): Float32Array {
  const n = Math.floor(bytes.byteLength / 4);
  const out = new Float32Array(n);
  if (isLittleEndianHost) {
    new Uint8Array(out.buffer).set(bytes.subarray(0, n * 4));
  } else {
    const view = new DataView(bytes.buffer, bytes.byteOffset, n * 4);
    for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
  }
  return out;
}

function floatToInt16Sample(x: number): number {
  if (Number.isNaN(x)) return 0;
  const s = x < -1 ? -1 : x > 1 ? 1 : x;
  return s < 0 ? Math.round(s * 32768) : Math.round(s * 32767);
}

const isLittleEndianHost = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Encode mono float32 samples as a canonical 44-byte-header PCM16 WAV file.
 * For multi-channel input pass interleaved samples and `channels`.
 */
export function encodeWav(samples: Float32Array, sampleRate: number, channels = 1): Buffer {
  if (!Number.isInteger(sampleRate) || sampleRate <= 0) throw new RangeError(`encodeWav: bad sampleRate ${sampleRate}`);
  if (!Number.isInteger(channels) || channels <= 0) throw new RangeError(`encodeWav: bad channels ${channels}`);
  const dataBytes = samples.length * 2;
  const buf = Buffer.alloc(44 + dataBytes);
  buf.write('RIFF', 0, 'ascii');
  buf.writeUInt32LE(36 + dataBytes, 4);
  buf.write('WAVE', 8, 'ascii');
  buf.write('fmt ', 12, 'ascii');
  buf.writeUInt32LE(16, 16); // fmt chunk size
  buf.writeUInt16LE(1, 20); // PCM
  buf.writeUInt16LE(channels, 22);
  buf.writeUInt32LE(sampleRate, 24);
  buf.writeUInt32LE(sampleRate * channels * 2, 28); // byte rate
  buf.writeUInt16LE(channels * 2, 32); // block align
  buf.writeUInt16LE(16, 34); // bits per sample
  buf.write('data', 36, 'ascii');
  buf.writeUInt32LE(dataBytes, 40);
  for (let i = 0; i < samples.length; i++) buf.writeInt16LE(floatToInt16Sample(samples[i]), 44 + i * 2);
  return buf;
}

export interface WavData {
  sampleRate: number;
  channels: number;
  bitsPerSample: number;
  /** 'pcm' = integer PCM (8/16/24/32 bit), 'float' = IEEE float (32/64 bit). */
  encoding: 'pcm' | 'float';
  /** Mono mixdown (average of channels), float32 in [-1, 1]. */
  samples: Float32Array;
  /** Per-channel data (for mono, `channelData[0] === samples`). */
  channelData: Float32Array[];
  durationS: number;
}

export class WavFormatError extends Error {
  override readonly name = 'WavFormatError';
}

const WAVE_FORMAT_PCM = 0x0001;
const WAVE_FORMAT_IEEE_FLOAT = 0x0003;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

/**
 * Parse a RIFF/WAVE file with integer PCM (8/16/24/32 bit) or IEEE float (32/64 bit) samples,
 * including WAVE_FORMAT_EXTENSIBLE headers and odd-sized chunks. Other codecs (ADPCM, µ-law…)
 * are rejected with a WavFormatError: decode those with ffmpeg instead.
 */
export function readWav(input: Uint8Array): WavData {
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
  const tag = (off: number) => String.fromCharCode(input[off], input[off + 1], input[off + 2], input[off + 3]);
  if (input.byteLength < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') {
    throw new WavFormatError('Not a WAV file (missing RIFF/WAVE header)');
  }
  let fmt: { format: number; channels: number; sampleRate: number; bits: number; blockAlign: number } | null = null;
  let dataOff = -1;
  let dataLen = 0;
  let off = 12;
  while (off + 8 <= input.byteLength) {
    const id = tag(off);
    const size = view.getUint32(off + 4, true);
    const body = off + 8;
    if (id === 'fmt ') {
      if (size < 16 || body + 16 > input.byteLength) throw new WavFormatError('WAV fmt chunk is truncated');
      let format = view.getUint16(body, true);
      const channels = view.getUint16(body + 2, true);
      const sampleRate = view.getUint32(body + 4, true);
      const blockAlign = view.getUint16(body + 12, true);
      const bits = view.getUint16(body + 14, true);
      if (format === WAVE_FORMAT_EXTENSIBLE && size >= 40 && body + 26 <= input.byteLength) {
        format = view.getUint16(body + 24, true); // first 2 bytes of the SubFormat GUID
      }
      fmt = { format, channels, sampleRate, bits, blockAlign };
    } else if (id === 'data') {
      dataOff = body;
      // Streamed WAVs may carry 0 or 0xFFFFFFFF as size: take the rest of the file.
      const rest = input.byteLength - body;
      dataLen = size === 0 || size === 0xffffffff || size > rest ? rest : size;
      if (fmt) break;
    }
    off = body + size + (size & 1);
  }
  if (!fmt) throw new WavFormatError('WAV file has no fmt chunk');
  if (dataOff < 0) throw new WavFormatError('WAV file has no data chunk');
  const { format, channels, sampleRate, bits } = fmt;
  if (channels < 1) throw new WavFormatError('WAV file declares 0 channels');
  if (sampleRate < 1) throw new WavFormatError('WAV file declares sample rate 0');
  let encoding: 'pcm' | 'float';
  let read: (pos: number) => number;
  if (format === WAVE_FORMAT_PCM) {
    encoding = 'pcm';
    if (bits === 8) read = (p) => (view.getUint8(p) - 128) / 128;
    else if (bits === 16) read = (p) => view.getInt16(p, true) / 32768;
    else if (bits === 24) read = (p) => (view.getUint8(p) | (view.getUint8(p + 1) << 8) | (view.getInt8(p + 2) << 16)) / 8388608;
    else if (bits === 32) read = (p) => view.getInt32(p, true) / 2147483648;
    else throw new WavFormatError(`Unsupported PCM bit depth ${bits}`);
  } else if (format === WAVE_FORMAT_IEEE_FLOAT) {
    encoding = 'float';
    if (bits === 32) read = (p) => view.getFloat32(p, true);
    else if (bits === 64) read = (p) => view.getFloat64(p, true);
    else throw new WavFormatError(`Unsupported float bit depth ${bits}`);
  } else {
    throw new WavFormatError(`Unsupported WAV codec 0x${format.toString(16)} (only PCM and IEEE float are supported; use ffmpeg for others)`);
  }
  const bytesPerSample = bits / 8;
  const frameBytes = bytesPerSample * channels;
  const frames = Math.floor(dataLen / frameBytes);
  const channelData: Float32Array[] = [];
  for (let c = 0; c < channels; c++) channelData.push(new Float32Array(frames));
  for (let i = 0; i < frames; i++) {
    const base = dataOff + i * frameBytes;
    for (let c = 0; c < channels; c++) channelData[c][i] = read(base + c * bytesPerSample);
  }
  let samples: Float32Array;
  if (channels === 1) samples = channelData[0];
  else {
    samples = new Float32Array(frames);
    for (let c = 0; c < channels; c++) {
      const ch = channelData[c];
      for (let i = 0; i < frames; i++) samples[i] += ch[i];
    }
    for (let i = 0; i < frames; i++) samples[i] /= channels;
  }
  return { sampleRate, channels, bitsPerSample: bits, encoding, samples, channelData, durationS: frames / sampleRate };
}

/** Root-mean-square level of a sample range (handy for tests and silence checks). */
export function rms(samples: Float32Array, start = 0, end = samples.length): number {
  const s = Math.max(0, start);
  const e = Math.min(samples.length, end);
  if (e <= s) return 0;
  let acc = 0;
  for (let i = s; i < e; i++) acc += samples[i] * samples[i];
  return Math.sqrt(acc / (e - s));
}
