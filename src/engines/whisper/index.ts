/** Public surface of the Whisper engine. */
export * from './engine.ts';
export * from './features.ts';
export * from './tokenizer.ts';
export * from './config.ts';
export * from './logits-processors.ts';
export * from './generate.ts';
export * from './word-timestamps.ts';
export * from './model.ts';
export * from './segments.ts';
export * from './variant-choice.ts';
