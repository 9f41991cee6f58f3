import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { freshBundle } from '../../bin/fresh-bundle.mjs';
import { MODELS_DIR, REPO_ROOT, WHISPER_FIXTURE } from '../helpers/paths.ts';

const run = promisify(execFile);
const golden = JSON.parse(fs.readFileSync(path.join(WHISPER_FIXTURE, 'golden/golden.json'), 'utf8'));

describe('stt CLI bundle (npm run build → dist/cli, used by bin/stt.mjs while the sources are unchanged)', () => {
  it('freshBundle: the bundle while every listed source has its size and mtime, null once one changed or is gone', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-bundle-'));
    const src = path.join(dir, 'a.ts');
    fs.writeFileSync(src, 'export const a = 1;\n');
    fs.writeFileSync(path.join(dir, 'stt.mjs'), '');
    const st = fs.statSync(src);
    fs.writeFileSync(path.join(dir, 'stt.inputs.json'), JSON.stringify({ inputs: [{ file: 'a.ts', size: st.size, mtimeMs: st.mtimeMs }] }));
    expect(freshBundle(dir)).toBe(path.join(dir, 'stt.mjs'));
    fs.utimesSync(src, st.atime, new Date(st.mtimeMs + 5000)); // touched (an editor saving the same text)
    expect(freshBundle(dir)).toBeNull();
    fs.writeFileSync(src, 'export const a = 22;\n'); // edited
    fs.writeFileSync(path.join(dir, 'stt.inputs.json'), JSON.stringify({ inputs: [{ file: 'a.ts', size: st.size, mtimeMs: fs.statSync(src).mtimeMs }] }));
    expect(freshBundle(dir)).toBeNull(); // same mtime as listed, other size
    fs.rmSync(src);
    expect(freshBundle(dir)).toBeNull();
    expect(freshBundle(path.join(dir, 'never-built'))).toBeNull();
    fs.rmSync(dir, { recursive: true });
  });

  it('the bundle transcribes exactly as the TypeScript does, and --json says which ran', async () => {
    const built = await run(process.execPath, [path.join(REPO_ROOT, 'scripts/build-cli.mjs')], { cwd: REPO_ROOT, timeout: 120_000 });
    expect(built.stdout).toMatch(/built dist\/cli\/stt\.mjs from \d+ source files/);
    expect(freshBundle(path.join(REPO_ROOT, 'dist', 'cli'))).not.toBeNull();
    const wav = path.join(WHISPER_FIXTURE, 'golden', 'jfk.wav');
    const args = [path.join(REPO_ROOT, 'bin/stt.mjs'), 'transcribe', wav, '--model', 'whisper-mini-random', '--language', 'en', '--no-vad', '--max-new-tokens', '24', '--temperature', '0', '--json'];
    const cli = async (env: Record<string, string>) =>
      JSON.parse((await run(process.execPath, args, { cwd: REPO_ROOT, env: { ...process.env, STT_API_KEY: '', MODELS_DIR, ...env }, timeout: 120_000 })).stdout);
    const bundled = await cli({});
    const sources = await cli({ STT_CLI_TSX: '1' });
    expect(bundled.runtime).toBe('bundle');
    expect(sources.runtime).toBe('tsx');
    expect(bundled.tokens).toEqual([golden.inputs.jfk.generate.notimestamps]);
    expect(bundled.tokens).toEqual(sources.tokens);
    expect(bundled.text).toBe(sources.text);
  });
});
