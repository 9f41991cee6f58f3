/** Shared machinery of the encoder-decoder engines: KV-cached ONNX decoder, row operations, decoding algorithms. */
export * from './generate.ts';
export * from './kv-decoder.ts';
export * from './kv-rows.ts';
export * from './logits.ts';
