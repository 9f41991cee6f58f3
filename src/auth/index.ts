export * from './access-control.ts';
export * from './config.ts';
export * from './keys.ts';
