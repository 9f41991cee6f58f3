/** The row operations carry T5's encoder attention mask with their rows (and leave mask-less outputs mask-less). */
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import type { EncoderOutput, KVCache } from '../../../src/engines/seq2seq/kv-decoder.ts';
import { concatCaches, concatEncoderOutputs, selectCacheRows, selectEncoderRows } from '../../../src/engines/seq2seq/kv-rows.ts';

const enc = (batch: number, frames: number, mask?: number[]): EncoderOutput => ({
  data: Float32Array.from({ length: batch * frames * 2 }, (_, i) => i),
  batch,
  frames,
  dModel: 2,
  ...(mask ? { mask: BigInt64Array.from(mask.map(BigInt)) } : {}),
});
const cache = (batch: number, mask: number[]): KVCache => ({
  batch,
  pastLength: 1,
  decoder: {
    k: new ort.Tensor(
      'float32',
      Float32Array.from({ length: batch * 2 }, (_, i) => i),
      [batch, 1, 1, 2],
    ),
  },
  encoder: {},
  encoderHidden: null,
  encoderMask: new ort.Tensor('int64', BigInt64Array.from(mask.map(BigInt)), [batch, mask.length / batch]),
});

describe('encoder masks in row operations', () => {
  it('selectEncoderRows / concatEncoderOutputs move mask rows with their data; a part without one counts as all real', () => {
    const e = enc(3, 2, [1, 1, 1, 0, 0, 0]);
    const sel = selectEncoderRows(e, [2, 0, 1]);
    expect(Array.from(sel.mask!)).toEqual([0n, 0n, 1n, 1n, 1n, 0n]);
    expect(Array.from(sel.data.subarray(0, 4))).toEqual([8, 9, 10, 11]);
    expect(selectEncoderRows(enc(2, 2), [1]).mask).toBeUndefined();
    const cat = concatEncoderOutputs([enc(1, 2), enc(1, 2, [1, 0])]);
    expect(Array.from(cat.mask!)).toEqual([1n, 1n, 1n, 0n]);
    expect(concatEncoderOutputs([enc(1, 2), enc(1, 2)]).mask).toBeUndefined();
  });

  it('selectCacheRows / concatCaches gather and concatenate the int64 mask', () => {
    const c = cache(2, [1, 0, 1, 1]);
    const sel = selectCacheRows(c, [1, 1, 0]);
    expect(sel.encoderMask!.type).toBe('int64');
    expect(sel.encoderMask!.dims).toEqual([3, 2]);
    expect(Array.from(sel.encoderMask!.data as BigInt64Array)).toEqual([1n, 1n, 1n, 1n, 1n, 0n]);
    // beam reordering within the same rows reuses the mask uncopied, like the encoder KV
    expect(selectCacheRows(c, [1, 0], true).encoderMask).toBe(c.encoderMask);
    const cat = concatCaches([cache(1, [1, 0]), cache(2, [1, 1, 0, 0])]);
    expect(cat.encoderMask!.dims).toEqual([3, 2]);
    expect(Array.from(cat.encoderMask!.data as BigInt64Array)).toEqual([1n, 0n, 1n, 1n, 0n, 0n]);
    expect(() => concatCaches([cache(1, [1, 0]), { ...cache(1, [1, 0]), encoderMask: undefined }])).toThrow(/with and without an encoder mask/);
  });
});
