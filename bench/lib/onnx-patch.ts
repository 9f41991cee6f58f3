/**
 * Byte-level patch of an ONNX model's input shape, for the "encoder on shorter audio" experiment:
 * turns the fixed time axis of `input_features` ([…, nMels, nFrames]) into a symbolic dim so ORT's
 * input check no longer rejects other lengths, which exposes what the graph itself does with them.
 * The patch keeps the protobuf byte length (dim_value varint → dim_param string of equal size), so
 * no enclosing length prefixes change. Returns null if the pattern is not found.
 */
import { varint } from '../../src/models/onnx-attentions.ts';

/** Dimension message: field 1 (dim_value, varint). */
function dimValue(n: number): number[] {
  const body = [0x08, ...varint(n)];
  return [0x0a, body.length, ...body];
}

export function symbolicTimeAxis(model: Uint8Array, nMels: number, nFrames: number): { bytes: Uint8Array; patched: number } | null {
  const buf = Buffer.from(model);
  const frames = [0x08, ...varint(nFrames)];
  if (frames.length < 3) return null;
  const pat = Buffer.from([...dimValue(nMels), 0x0a, frames.length, ...frames]);
  // replacement: dim_param (field 2, length-delimited) of the same byte size
  const nameLen = frames.length - 2;
  const repl = [0x12, nameLen, ...Array.from({ length: nameLen }, () => 0x54 /* 'T' */)];
  let patched = 0;
  for (let i = buf.indexOf(pat); i >= 0; i = buf.indexOf(pat, i + 1)) {
    const at = i + pat.length - frames.length;
    for (let j = 0; j < repl.length; j++) buf[at + j] = repl[j];
    patched++;
  }
  return patched ? { bytes: new Uint8Array(buf), patched } : null;
}
