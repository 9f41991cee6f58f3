/** Public surface of the translation engine (T5 / MADLAD-400; decoding machinery shared with the speech engines: ../seq2seq). */
export * from './config.ts';
export * from './engine.ts';
export * from './model.ts';
export * from './tokenizer.ts';
