/**
 * Decoding a generation without text tokens (the model ends at once — common for an incremental live
 * partial whose prefix already holds every word — or emits only timestamps) gives '' instead of throwing.
 */
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
