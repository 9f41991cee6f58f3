/** Public surface of the Whisper engine (the decoding machinery it shares with other engines: ../seq2seq). */
export * from './engine.ts';
export * from './features.ts';
export * from './tokenizer.ts';
export * from './config.ts';
export * from './logits-processors.ts';
export * from './language-detection.ts';
export * from './word-timestamps.ts';
export * from './model.ts';
export * from './segments.ts';
export * from './variant-choice.ts';
