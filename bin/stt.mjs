#!/usr/bin/env node
// `npx stt …`: runs the bundle that `npm run build` (and `npm ci`) writes to dist/cli while every
// source file in it is unchanged (~0.4 s less start-up), and the TypeScript through tsx otherwise
// (an edited checkout never runs stale code). STT_CLI_TSX=1 always takes the sources.
import path from 'node:path';
import { freshBundle } from './fresh-bundle.mjs';

const bundle = process.env.STT_CLI_TSX === '1' ? null : freshBundle(path.join(import.meta.dirname, '..', 'dist', 'cli'));
let main;
if (bundle) {
  process.setSourceMapsEnabled(true); // stack traces name the .ts sources
  ({ main } = await import(bundle));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli/stt.ts'));
}
process.exitCode = await main(process.argv.slice(2), { runtime: bundle ? 'bundle' : 'tsx' });
