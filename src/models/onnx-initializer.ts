/**
 * The values of an ONNX initializer, wherever the export keeps them: raw_data, float_data, or an external data
 * file next to the model (`*.onnx_data`: large exports). Shared by the graph rewrites (onnx-matmul-nbits) and the
 * whisper.cpp weight converter (bench/whispercpp/onnx-to-ggml.ts).
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import onnxProto, { type onnx as OnnxTypes } from 'onnx-proto';

const { onnx } = onnxProto;
const { FLOAT } = onnx.TensorProto.DataType;

/** The fp32 values of an initializer, from raw_data, float_data or an external data file. */
export function floatValues(t: OnnxTypes.ITensorProto, externalDataDir?: string): Float32Array {
  if (t.dataType !== FLOAT) throw new Error(`initializer ${t.name} is not float32`);
  const count = (t.dims ?? []).map(Number).reduce((a, b) => a * b, 1);
  if (t.rawData?.length) {
    const raw = t.rawData;
    // copy: raw_data may sit unaligned inside the protobuf buffer
    return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  }
  if (t.floatData?.length) return Float32Array.from(t.floatData);
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    const kv = new Map((t.externalData ?? []).map((e) => [e.key, e.value ?? '']));
    const location = kv.get('location');
    if (!location || externalDataDir === undefined) throw new Error(`initializer ${t.name} lives in external data: the model's folder is needed`);
    const offset = Number(kv.get('offset') ?? 0);
    const length = Number(kv.get('length') ?? count * 4);
    if (length !== count * 4) throw new Error(`initializer ${t.name}: external data length ${length} is not ${count} floats`);
    const out = new Float32Array(count);
    const fd = openSync(join(externalDataDir, location), 'r');
    try {
      const view = new Uint8Array(out.buffer);
      let done = 0;
      while (done < length) {
        const n = readSync(fd, view, done, length - done, offset + done);
        if (n <= 0) throw new Error(`initializer ${t.name}: external data file ${location} is truncated`);
        done += n;
      }
    } finally {
      closeSync(fd);
    }
    return out;
  }
  if (count === 0) return new Float32Array(0);
  throw new Error(`initializer ${t.name} has no data`);
}
