/**
 * Row operations on batched KV caches and encoder outputs (pure; they copy data): beam reordering, dropping
 * finished sequences, regrouping rows of different streams into one batch. Encoder attention masks (T5) travel
 * with their rows.
 */
import * as ort from 'onnxruntime-node';
import type { EncoderOutput, KVCache } from './kv-decoder.ts';

type RowData = Float32Array | BigInt64Array;

/** A new buffer of `t`'s element type (float32 KV, int64 masks). */
function alloc(t: ort.Tensor, n: number): RowData {
  if (t.type === 'float32') return new Float32Array(n);
  if (t.type === 'int64') return new BigInt64Array(n);
  throw new Error(`row operations support float32 and int64 tensors, not ${t.type}`);
}

/** Gather rows (dim 0) of a float32 or int64 tensor. */
export function gatherRows(t: ort.Tensor, rows: number[]): ort.Tensor {
  const per = t.dims.slice(1).reduce((a, b) => a * b, 1);
  const src = t.data as RowData;
  const out = alloc(t, per * rows.length);
  rows.forEach((r, i) => out.set(src.subarray(r * per, (r + 1) * per) as never, i * per));
  return new ort.Tensor(t.type as 'float32', out as Float32Array, [rows.length, ...t.dims.slice(1)]);
}

/** Concatenate float32 or int64 tensors along dim 0 (other dims and the type must match). */
export function concatRows(ts: ort.Tensor[]): ort.Tensor {
  if (ts.length === 1) return ts[0];
  const tail = ts[0].dims.slice(1);
  const total = ts.reduce((a, t) => a + (t.data as RowData).length, 0);
  const out = alloc(ts[0], total);
  let off = 0;
  for (const t of ts) {
    if (t.type !== ts[0].type) throw new Error(`cannot concatenate ${t.type} rows to ${ts[0].type} rows`);
    out.set(t.data as never, off);
    off += (t.data as RowData).length;
  }
  return new ort.Tensor(ts[0].type as 'float32', out as Float32Array, [ts.reduce((a, t) => a + t.dims[0], 0), ...tail]);
}

/** Rows of a [batch, frames] encoder mask (absent stays absent). */
function maskRows(mask: BigInt64Array | undefined, frames: number, rows: number[]): BigInt64Array | undefined {
  if (!mask) return undefined;
  const out = new BigInt64Array(frames * rows.length);
  rows.forEach((r, i) => out.set(mask.subarray(r * frames, (r + 1) * frames), i * frames));
  return out;
}

const mapValues = (r: Record<string, ort.Tensor>, f: (t: ort.Tensor, k: string) => ort.Tensor) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, f(v, k)]));

const isIdentity = (rows: number[], n: number) => rows.length === n && rows.every((r, i) => r === i);

/**
 * Select/reorder rows of a cache (beam search reordering, dropping finished sequences).
 * `sameAudio` = caller guarantees row i of the result uses the same audio as row i before
 * (true for beam reordering within groups), which lets the big encoder KV be reused uncopied.
 */
export function selectCacheRows(c: KVCache, rows: number[], sameAudio = false): KVCache {
  if (isIdentity(rows, c.batch)) return c;
  const keepEnc = sameAudio && rows.length === c.batch;
  const out: KVCache = {
    batch: rows.length,
    pastLength: c.pastLength,
    decoder: mapValues(c.decoder, (t) => gatherRows(t, rows)),
    encoder: keepEnc ? c.encoder : mapValues(c.encoder, (t) => gatherRows(t, rows)),
    encoderHidden: c.encoderHidden && !keepEnc ? gatherRows(c.encoderHidden, rows) : c.encoderHidden,
  };
  if (c.encoderMask) out.encoderMask = keepEnc ? c.encoderMask : gatherRows(c.encoderMask, rows);
  return out;
}

/** Concatenate caches of equal past length (e.g. two streams at the same decoding position). */
export function concatCaches(cs: KVCache[]): KVCache {
  if (cs.length === 1) return cs[0];
  const len = cs[0].pastLength;
  if (cs.some((c) => c.pastLength !== len)) throw new Error('caches must have the same past length to be concatenated');
  const keys = (r: Record<string, ort.Tensor>) => Object.keys(r);
  const out: KVCache = {
    batch: cs.reduce((a, c) => a + c.batch, 0),
    pastLength: len,
    decoder: Object.fromEntries(keys(cs[0].decoder).map((k) => [k, concatRows(cs.map((c) => c.decoder[k]))])),
    encoder: Object.fromEntries(keys(cs[0].encoder).map((k) => [k, concatRows(cs.map((c) => c.encoder[k]))])),
    encoderHidden: cs[0].encoderHidden ? concatRows(cs.map((c) => c.encoderHidden!)) : null,
  };
  if (cs.some((c) => c.encoderMask)) {
    if (!cs.every((c) => c.encoderMask)) throw new Error('caches with and without an encoder mask cannot be concatenated');
    out.encoderMask = concatRows(cs.map((c) => c.encoderMask!));
  }
  return out;
}

/** Rows of an encoder output (e.g. repeat each audio `beam` times, or regroup across streams). */
export function selectEncoderRows(e: EncoderOutput, rows: number[]): EncoderOutput {
  if (isIdentity(rows, e.batch)) return e;
  const per = e.frames * e.dModel;
  const out = new Float32Array(per * rows.length);
  rows.forEach((r, i) => out.set(e.data.subarray(r * per, (r + 1) * per), i * per));
  const mask = maskRows(e.mask, e.frames, rows);
  return mask ? { data: out, batch: rows.length, frames: e.frames, dModel: e.dModel, mask } : { data: out, batch: rows.length, frames: e.frames, dModel: e.dModel };
}

export function concatEncoderOutputs(es: EncoderOutput[]): EncoderOutput {
  if (es.length === 1) return es[0];
  const out = new Float32Array(es.reduce((a, e) => a + e.data.length, 0));
  let off = 0;
  for (const e of es) {
    out.set(e.data, off);
    off += e.data.length;
  }
  const res: EncoderOutput = { data: out, batch: es.reduce((a, e) => a + e.batch, 0), frames: es[0].frames, dModel: es[0].dModel };
  // a part without a mask is all real positions
  if (es.some((e) => e.mask)) {
    const mask = new BigInt64Array(res.batch * res.frames).fill(1n);
    let row = 0;
    for (const e of es) {
      if (e.frames !== res.frames) throw new Error('encoder outputs of different lengths cannot be concatenated');
      if (e.mask) mask.set(e.mask, row * res.frames);
      row += e.batch;
    }
    res.mask = mask;
  }
  return res;
}
