#!/usr/bin/env node
// `npx stt …`: runs the TypeScript CLI through tsx (no build step).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/stt.ts');
process.exitCode = await main(process.argv.slice(2));
