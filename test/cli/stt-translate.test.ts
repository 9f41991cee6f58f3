/**
 * `stt translate "text" --to xx --model DIR --max-new-tokens N --json` on `madlad-mini-random`: the golden greedy and
 * beam-4 tokens (Hugging Face generate, 16 new tokens) for every single case, by path and by id; `--list-targets`;
 * and usage errors (exit 2) for an unknown target or missing arguments.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { MODELS_DIR, REPO_ROOT } from '../helpers/paths.ts';

const run = promisify(execFile);
const DIR = path.join(MODELS_DIR, 'madlad-mini-random');
const golden: { single: Array<{ target: string; text: string; greedy: number[]; beam4: number[] }> } = JSON.parse(fs.readFileSync(path.join(DIR, 'golden/golden.json'), 'utf8'));

async function stt(args: string[]) {
  return run(process.execPath, [path.join(REPO_ROOT, 'bin/stt.mjs'), ...args], { cwd: REPO_ROOT, env: { ...process.env, MODELS_DIR }, timeout: 60_000 });
}

describe('stt translate', () => {
  for (const c of golden.single) {
    it(`${c.target}: prints the golden greedy tokens (16 new tokens, random weights never emit </s>)`, async () => {
      const out = JSON.parse((await stt(['translate', c.text, '--to', c.target, '--model', DIR, '--max-new-tokens', '16', '--json'])).stdout);
      expect(out.tokens).toEqual(c.greedy);
      expect(out).toMatchObject({ target: c.target, model: 'madlad-mini-random', finished: false });
      expect(out.timing.tokens).toBe(16);
    });
  }

  it('by id, with --beam-size 4: the golden beam-4 tokens', async () => {
    const c = golden.single[0];
    const out = JSON.parse((await stt(['translate', c.text, '--to', c.target, '--model', 'madlad-mini-random', '--max-new-tokens', '16', '--beam-size', '4', '--json'])).stdout);
    expect(out.tokens).toEqual(c.beam4);
  });

  it('--list-targets prints the <2xx> codes of the vocabulary', async () => {
    const out = JSON.parse((await stt(['translate', '--list-targets', '--model', DIR, '--json'])).stdout);
    expect(out.targets).toHaveLength(50);
    for (const c of golden.single) expect(out.targets).toContain(c.target);
  });

  it('an unknown target or missing arguments exit 2 with a message saying what to do', async () => {
    const bad = await stt(['translate', 'Hello', '--to', 'xx', '--model', DIR]).catch((e) => e);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown target language "xx".*--list-targets/);
    const missing = await stt(['translate', 'Hello', '--model', DIR]).catch((e) => e);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/usage: stt translate/);
  });
});
