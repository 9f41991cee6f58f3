/**
 * Decoding a generation without text tokens (the model ends at once — common for an incremental live
 * partial whose prefix already holds every word — or emits only timestamps) gives '' instead of throwing.
 */
import { readFileSync } from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';
import { loadWhisperConfig, WhisperTokenizer } from '../../../src/engines/whisper/index.ts';
import { MODELS_DIR } from '../../helpers/paths.ts';

describe('WhisperTokenizer.decode', () => {
  it('is empty text for no tokens, end-of-text only, or timestamps only; text tokens still decode', async () => {
    const dir = `${MODELS_DIR}/whisper-mini-random`;
    const t = await WhisperTokenizer.load(dir, (await loadWhisperConfig(dir)).gen);
    expect(t.decode([])).toBe('');
    expect(t.decode([t.eot])).toBe('');
    expect(t.decode([t.timestampBegin, t.timestampBegin + 50])).toBe('');
    const hello = t.encodeText('hello');
    expect(t.decode([t.timestampBegin, ...hello, t.eot])).toBe(' hello');
  });
});

describe('WhisperTokenizer without BPE merges for decoding (built lazily for encoding)', () => {
  it('decodes and encodes exactly as the full tokenizer of tokenizer.json', async () => {
    const dir = `${MODELS_DIR}/whisper-mini-random`;
    const json = JSON.parse(readFileSync(`${dir}/tokenizer.json`, 'utf8'));
    expect(json.model.merges.length).toBeGreaterThan(10_000);
    const full = new Tokenizer(json, JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, 'utf8')));
    const t = await WhisperTokenizer.load(dir, (await loadWhisperConfig(dir)).gen);
    // every text id in strides (byte-level pieces, multi-byte characters split across ids included)
    for (let start = 0; start < t.eot; start += 997) {
      const ids = Array.from({ length: 40 }, (_, i) => (start + i * 131) % t.eot);
      expect(t.decode(ids)).toBe(full.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false }));
    }
    for (const text of ['hello world', 'Ask not what your country can do for you.', 'naïve café — 東京 🙂', "it's 3.14, isn't it?"]) {
      expect(t.encodeText(text)).toEqual(full.encode(` ${text}`, { add_special_tokens: false }).ids);
    }
  });
});
