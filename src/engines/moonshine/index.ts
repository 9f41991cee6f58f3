/** Public surface of the Moonshine engine (decoding machinery shared with Whisper: ../seq2seq). */
export * from './config.ts';
export * from './engine.ts';
export * from './model.ts';
export * from './tokenizer.ts';
