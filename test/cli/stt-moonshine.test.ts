/**
 * `stt transcribe` on a Moonshine folder, with the same flags as for Whisper: the golden greedy tokens of
 * `moonshine-mini-random/golden/golden.json` (Hugging Face generate, 24 new tokens, start token excluded), and
 * clear usage errors (exit 2) for what an English transcription model cannot do.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { MODELS_DIR, REPO_ROOT } from '../helpers/paths.ts';

const run = promisify(execFile);
const DIR = path.join(MODELS_DIR, 'moonshine-mini-random');
const golden: { inputs: Record<string, { wav: string; greedy: number[] }> } = JSON.parse(fs.readFileSync(path.join(DIR, 'golden/golden.json'), 'utf8'));

async function stt(args: string[]) {
  return run(process.execPath, [path.join(REPO_ROOT, 'bin/stt.mjs'), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, STT_API_KEY: '', MODELS_DIR },
    timeout: 60_000,
  });
}

const GREEDY = ['--no-vad', '--max-new-tokens', '24', '--temperature', '0', '--json'];

describe('stt transcribe --model <Moonshine folder>', () => {
  for (const name of Object.keys(golden.inputs)) {
    it(`${name}: prints the 24 golden greedy tokens`, async () => {
      const wav = path.join(DIR, 'golden', golden.inputs[name].wav);
      const out = JSON.parse((await stt(['transcribe', wav, '--model', DIR, ...GREEDY])).stdout);
      expect(out.tokens).toEqual([golden.inputs[name].greedy]);
      expect(out.language).toBe('en');
      expect(out.model).toBe('moonshine-mini-random');
      expect(out.timing.tokens).toBe(24);
      expect(out.timing.encoder_ms).toBeGreaterThan(0);
    });
  }

  it('by id as well as by path; --language en accepted; word timestamps are proportional and inside the segment', async () => {
    const wav = path.join(DIR, 'golden', 'jfk.wav');
    const out = JSON.parse((await stt(['transcribe', wav, '--model', 'moonshine-mini-random', '--language', 'en', '--word-timestamps', ...GREEDY])).stdout);
    expect(out.tokens).toEqual([golden.inputs.jfk.greedy]);
    expect(out.word_timestamps).toBe('proportional');
    const words = out.segments.flatMap((s: { start: number; end: number; words: Array<{ start: number; end: number }> }) => {
      for (const w of s.words) {
        expect(w.start).toBeGreaterThanOrEqual(s.start);
        expect(w.end).toBeLessThanOrEqual(s.end);
        expect(w.end).toBeGreaterThanOrEqual(w.start);
      }
      return s.words;
    });
    expect(words.length).toBeGreaterThan(0);
  });

  it('long audio without VAD: 30 s windows, one segment each, inside the file', async () => {
    const wav = path.join(MODELS_DIR, 'whisper-mini-random', 'golden', 'long.wav'); // 31.5 s
    const out = JSON.parse((await stt(['transcribe', wav, '--model', DIR, '--word-timestamps', ...GREEDY])).stdout);
    expect(out.tokens.map((t: number[]) => t.length)).toEqual([24, 24]);
    const segs = out.segments as Array<{ start: number; end: number }>;
    expect(segs.map((s) => [s.start, s.end]).slice(0, 1)).toEqual([[0, 30]]);
    expect(segs).toHaveLength(2);
    expect(segs[1].start).toBe(30);
    // segment times are rounded to 10 ms, the duration to 1 ms
    expect(Math.abs(segs[1].end - out.duration)).toBeLessThanOrEqual(0.005);
    expect(out.duration).toBeCloseTo(31.5, 1);
  });

  it('refuses another language and translation with exit 2 and a message that says why', async () => {
    const wav = path.join(DIR, 'golden', 'jfk.wav');
    await expect(stt(['transcribe', wav, '--model', DIR, '--language', 'de', ...GREEDY])).rejects.toMatchObject({
      code: 2,
      stdout: '',
      stderr: expect.stringMatching(/--language 'de' is not a language of this model; use 'auto' or one of: en\n/),
    });
    await expect(stt(['transcribe', wav, '--model', DIR, '--task', 'translate', ...GREEDY])).rejects.toMatchObject({
      code: 2,
      stdout: '',
      stderr: expect.stringMatching(/--task translate needs a multilingual Whisper model; moonshine-mini-random only transcribes/),
    });
  });
});
