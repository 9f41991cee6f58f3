/**
 * Row operations on batched KV caches and encoder outputs (pure; they copy data): beam reordering, dropping
 * finished sequences, regrouping rows of different streams into one batch.
 */
import * as ort from 'onnxruntime-node';
import type { EncoderOutput, KVCache } from './kv-decoder.ts';

/** Gather rows (dim 0) of a tensor. */
export function gatherRows(t: ort.Tensor, rows: number[]): ort.Tensor {
  const per = t.dims.slice(1).reduce((a, b) => a * b, 1);
  const src = t.data as Float32Array;
  const out = new Float32Array(per * rows.length);
  rows.forEach((r, i) => out.set(src.subarray(r * per, (r + 1) * per), i * per));
  return new ort.Tensor('float32', out, [rows.length, ...t.dims.slice(1)]);
}

/** Concatenate tensors along dim 0 (other dims must match). */
export function concatRows(ts: ort.Tensor[]): ort.Tensor {
  if (ts.length === 1) return ts[0];
  const tail = ts[0].dims.slice(1);
  const total = ts.reduce((a, t) => a + (t.data as Float32Array).length, 0);
  const out = new Float32Array(total);
  let off = 0;
  for (const t of ts) {
    out.set(t.data as Float32Array, off);
    off += (t.data as Float32Array).length;
  }
  return new ort.Tensor('float32', out, [ts.reduce((a, t) => a + t.dims[0], 0), ...tail]);
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
  return {
    batch: rows.length,
    pastLength: c.pastLength,
    decoder: mapValues(c.decoder, (t) => gatherRows(t, rows)),
    encoder: keepEnc ? c.encoder : mapValues(c.encoder, (t) => gatherRows(t, rows)),
    encoderHidden: c.encoderHidden && !keepEnc ? gatherRows(c.encoderHidden, rows) : c.encoderHidden,
  };
}

/** Concatenate caches of equal past length (e.g. two streams at the same decoding position). */
export function concatCaches(cs: KVCache[]): KVCache {
  if (cs.length === 1) return cs[0];
  const len = cs[0].pastLength;
  if (cs.some((c) => c.pastLength !== len)) throw new Error('caches must have the same past length to be concatenated');
  const keys = (r: Record<string, ort.Tensor>) => Object.keys(r);
  return {
    batch: cs.reduce((a, c) => a + c.batch, 0),
    pastLength: len,
    decoder: Object.fromEntries(keys(cs[0].decoder).map((k) => [k, concatRows(cs.map((c) => c.decoder[k]))])),
    encoder: Object.fromEntries(keys(cs[0].encoder).map((k) => [k, concatRows(cs.map((c) => c.encoder[k]))])),
    encoderHidden: cs[0].encoderHidden ? concatRows(cs.map((c) => c.encoderHidden!)) : null,
  };
}

/** Rows of an encoder output (e.g. repeat each audio `beam` times, or regroup across streams). */
export function selectEncoderRows(e: EncoderOutput, rows: number[]): EncoderOutput {
  if (isIdentity(rows, e.batch)) return e;
  const per = e.frames * e.dModel;
  const out = new Float32Array(per * rows.length);
  rows.forEach((r, i) => out.set(e.data.subarray(r * per, (r + 1) * per), i * per));
  return { data: out, batch: rows.length, frames: e.frames, dModel: e.dModel };
}

export function concatEncoderOutputs(es: EncoderOutput[]): EncoderOutput {
  if (es.length === 1) return es[0];
  const out = new Float32Array(es.reduce((a, e) => a + e.data.length, 0));
  let off = 0;
  for (const e of es) {
    out.set(e.data, off);
    off += e.data.length;
  }
  return { data: out, batch: es.reduce((a, e) => a + e.batch, 0), frames: es[0].frames, dModel: es[0].dModel };
}
