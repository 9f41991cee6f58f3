import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cosine, SentenceEmbedder } from '../../../src/engines/embedding/sentence-embedder.ts';
import { MODELS_DIR } from '../../helpers/paths.ts';

const DIR = join(MODELS_DIR, 'minilm-mini-random');
const golden = JSON.parse(readFileSync(join(DIR, 'golden', 'golden.json'), 'utf8')) as {
  dimensions: number;
  single: { text: string; input_ids: number[]; embedding: number[] }[];
};
const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

describe('SentenceEmbedder (minilm-mini-random goldens)', () => {
  let fp32: SentenceEmbedder;
  let int8: SentenceEmbedder;
  beforeAll(async () => {
    fp32 = await SentenceEmbedder.load(DIR, { intraOpThreads: 1 });
    int8 = await SentenceEmbedder.load(DIR, { quantized: true, intraOpThreads: 1 });
  });
  afterAll(async () => {
    await fp32.close();
    await int8.close();
  });

  it('tokenizes exactly like the reference (truncation at 256 with [SEP] kept)', () => {
    for (const g of golden.single) expect(fp32.tokenize(g.text)).toEqual(g.input_ids);
    const long = golden.single.find((g) => g.input_ids.length === 256);
    expect(long).toBeDefined();
    expect(long!.input_ids.at(-1)).toBe(3);
  });

  it('fp32: each text alone and all texts in one padded batch within 1e-5', async () => {
    expect(fp32.dimensions).toBe(golden.dimensions);
    const texts = golden.single.map((g) => g.text);
    const batch = await fp32.embed(texts);
    for (let i = 0; i < texts.length; i++) {
      const [alone] = await fp32.embed([texts[i]]);
      expect(maxAbs(alone, golden.single[i].embedding)).toBeLessThan(1e-5);
      expect(maxAbs(batch[i], golden.single[i].embedding)).toBeLessThan(1e-5);
    }
  });

  it('int8: cosine >= 0.9999 with the reference, alone and batched', async () => {
    const texts = golden.single.map((g) => g.text);
    const batch = await int8.embed(texts);
    for (let i = 0; i < texts.length; i++) {
      const [alone] = await int8.embed([texts[i]]);
      expect(cosine(alone, golden.single[i].embedding)).toBeGreaterThanOrEqual(0.9999);
      expect(cosine(batch[i], golden.single[i].embedding)).toBeGreaterThanOrEqual(0.9999);
    }
  });
});
