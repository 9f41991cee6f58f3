export * from './errors.ts';
export * from './manifest.ts';
export * from './integrity.ts';
export * from './registry.ts';
export * from './downloader.ts';
