/**
 * Greedy tokens of whisper.cpp and of our engine on the same weights and the same WAV files: how many leading
 * tokens agree, and where they part.
 *
 *   npm run whispercpp:compare -- --whisper-cli PATH --model DIR --ggml FILE [--no-flash-attn] [WAV…]
 *
 * whisper-cli prints a window's tokens only when the window succeeds, and a window of random weights decoded
 * to whisper.cpp's 220-token limit without timestamps never does; its debug log lists every sampled token,
 * so PATH must be a whisper-cli built with `-DCMAKE_CXX_FLAGS=-DWHISPER_DEBUG` (logging only; docs/benchmarks.md
 * "#15 against whisper.cpp" has the build). Both sides: English, transcribe, no timestamps, greedy, no
 * temperature fallback, non-speech tokens suppressed (whisper.cpp `-sns`; ours: the config's suppress_tokens,
 * the same list), first 30 s window. Default files: the model folder's golden/*.wav. `--no-flash-attn` runs
 * whisper.cpp's attention without its flash-attention kernel (`-nfa`; flash attention is its default).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = resolve(import.meta.dirname, '../..');

export interface TokenComparison {
  file: string;
  theirs: number[];
  ours: number[];
  /** Leading tokens that agree. */
  agree: number;
}

/** The first window's sampled tokens from a WHISPER_DEBUG whisper-cli log (`id = i, decoder = 0, token = t`). */
export function debugTokens(log: string): number[] {
  const out: number[] = [];
  for (const m of log.matchAll(/id =\s*(\d+), decoder = 0, token =\s*(\d+)/g)) {
    const i = Number(m[1]);
    if (i !== out.length) break; // the next window starts again at 0
    out.push(Number(m[2]));
  }
  return out;
}

export function leadingAgreement(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

function compareFile(o: { whisperCli: string; model: string; ggml: string; threads: number; flashAttn: boolean }, wav: string): TokenComparison {
  const nfa = o.flashAttn ? [] : ['-nfa'];
  const cpp = spawnSync(o.whisperCli, ['-m', o.ggml, '-f', wav, '-l', 'en', '-t', String(o.threads), '-bs', '1', '-bo', '1', '-nf', '-nt', '-sns', ...nfa], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  if (cpp.status !== 0) throw new Error(`whisper-cli failed (${cpp.status}): ${cpp.stderr.slice(-2000)}`);
  const theirs = debugTokens(`${cpp.stdout}${cpp.stderr}`);
  if (!theirs.length) throw new Error('no token lines in the whisper-cli log: build it with -DCMAKE_CXX_FLAGS=-DWHISPER_DEBUG');
  const json = execFileSync(
    process.execPath,
    [
      join(ROOT, 'bin/stt.mjs'),
      'transcribe',
      wav,
      '--model',
      o.model,
      '--language',
      'en',
      '--no-vad',
      '--temperature',
      '0',
      '--max-new-tokens',
      String(theirs.length),
      '--threads',
      String(o.threads),
      '--json',
    ],
    { encoding: 'utf8', maxBuffer: 64 << 20 },
  );
  const ours: number[] = JSON.parse(json).tokens[0] ?? [];
  return { file: wav, theirs, ours, agree: leadingAgreement(theirs, ours) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values: v, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      'whisper-cli': { type: 'string' },
      model: { type: 'string' },
      ggml: { type: 'string' },
      threads: { type: 'string', default: '2' },
      'no-flash-attn': { type: 'boolean', default: false },
    },
  });
  if (!v['whisper-cli'] || !v.model || !v.ggml) {
    console.error('usage: npm run whispercpp:compare -- --whisper-cli PATH --model DIR --ggml FILE [--no-flash-attn] [WAV…]');
    process.exit(2);
  }
  const model = resolve(v.model);
  const files = positionals.length
    ? positionals
    : readdirSync(join(model, 'golden'))
        .filter((f) => f.endsWith('.wav'))
        .map((f) => join(model, 'golden', f));
  const o = { whisperCli: v['whisper-cli'], model, ggml: v.ggml, threads: Number(v.threads), flashAttn: !v['no-flash-attn'] };
  console.log('| file | tokens (whisper.cpp / ours) | leading tokens that agree | first difference (whisper.cpp → ours) |');
  console.log('|---|---|---|---|');
  for (const wav of files) {
    const r = compareFile(o, wav);
    const diff = r.agree < Math.min(r.theirs.length, r.ours.length) ? `#${r.agree}: ${r.theirs[r.agree]} → ${r.ours[r.agree]}` : 'none';
    console.log(`| ${wav.split('/').pop()} | ${r.theirs.length} / ${r.ours.length} | ${r.agree} | ${diff} |`);
  }
}
