/**
 * Benchmark audio: a long synthetic speech file made with espeak-ng (a fixed English text, looped
 * and trimmed with sox), cached under .tmp/bench/. Independent of the model folder.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readWav } from '../../src/audio/pcm.ts';

const TEXT = `The committee met on a rainy Tuesday morning to review the budget for the coming year.
Several members asked why the cost of maintaining the old bridge had doubled since the last report,
and the engineer explained that the steel supports had corroded faster than anyone expected.
After a short break, the discussion turned to the new library, which will open in the spring with
longer hours, a quiet reading room, and a small workshop where children can build simple robots.
The mayor thanked the volunteers who had cleaned the river banks over the summer and promised that
the city would plant two hundred trees along the northern road before the first frost.
Finally, the treasurer read the numbers aloud: eleven thousand four hundred and twenty dollars for
street lights, six thousand for the swimming pool, and just under three thousand for new benches.
The meeting ended at half past twelve, and most people walked home under their umbrellas.`;

export function ensureTools(): void {
  for (const t of ['espeak-ng', 'sox']) {
    try {
      execFileSync(t, ['--version'], { stdio: 'ignore' });
    } catch {
      throw new Error(`${t} is required to make the benchmark audio`);
    }
  }
}

/** Mono float32 speech of exactly `seconds` at `sampleRate` (cached WAV under `cacheDir`). */
export function speechAudio(seconds: number, sampleRate: number, cacheDir: string): { samples: Float32Array; path: string } {
  mkdirSync(cacheDir, { recursive: true });
  const path = join(cacheDir, `espeak-speech-${seconds}s-${sampleRate}hz.wav`);
  if (!existsSync(path)) {
    ensureTools();
    const base = join(cacheDir, `espeak-base-${sampleRate}hz.wav`);
    if (!existsSync(base)) {
      const txt = join(cacheDir, 'espeak-text.txt');
      writeFileSync(txt, TEXT.replace(/\s+/g, ' '));
      const raw = join(cacheDir, 'espeak-raw.wav');
      execFileSync('espeak-ng', ['-v', 'en-us', '-s', '165', '-f', txt, '-w', raw], { stdio: 'ignore' });
      execFileSync('sox', [raw, '-r', String(sampleRate), '-c', '1', '-b', '16', base], { stdio: 'ignore' });
    }
    const baseLen = readWav(readFileSync(base)).durationS;
    const repeats = Math.max(0, Math.ceil(seconds / baseLen) - 1);
    const tmp = `${path}.part.wav`;
    execFileSync('sox', [base, tmp, 'repeat', String(repeats), 'trim', '0', String(seconds)], { stdio: 'ignore' });
    renameSync(tmp, path);
  }
  const w = readWav(readFileSync(path));
  if (w.sampleRate !== sampleRate) throw new Error(`${path}: ${w.sampleRate} Hz, expected ${sampleRate}`);
  return { samples: w.samples, path };
}

export function loadWav(path: string, sampleRate: number): Float32Array {
  const w = readWav(readFileSync(path));
  if (w.sampleRate !== sampleRate) throw new Error(`${path}: ${w.sampleRate} Hz, expected ${sampleRate}`);
  return w.samples;
}
