import { describe, expect, it } from 'vitest';
import { formatBytes } from '../../src/formats/bytes.ts';

describe('formatBytes', () => {
  it('names a limit the way people write it', () => {
    expect(formatBytes(2048 * 1024 * 1024)).toBe('2 GB');
    expect(formatBytes(1.5 * 1024 * 1024 * 1024)).toBe('1536 MB');
    expect(formatBytes(10 * 1024 * 1024 + 100 * 1024)).toBe('10.1 MB');
    expect(formatBytes(32 * 1024)).toBe('32 KB');
    expect(formatBytes(900)).toBe('900 bytes');
  });
});
