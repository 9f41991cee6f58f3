import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EmbeddingService } from '../../src/pipeline/embedding-service.ts';
import { MODELS_DIR } from '../helpers/paths.ts';

const DIR = join(MODELS_DIR, 'minilm-mini-random');
const golden = JSON.parse(readFileSync(join(DIR, 'golden', 'golden.json'), 'utf8')) as {
  single: { text: string; embedding: number[] }[];
};
const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

describe('EmbeddingService', () => {
  it('batches texts of concurrent requests into shared model calls', async () => {
    const svc = await EmbeddingService.load({ dir: DIR, modelId: 'minilm-mini-random', intraOpThreads: 1, windowMs: 20 });
    try {
      const texts = golden.single.map((g) => g.text);
      const results = await Promise.all(texts.map((t) => svc.embed([t, t])));
      expect(svc.stats.maxBatchSize).toBeGreaterThan(2);
      results.forEach((r, i) => {
        expect(maxAbs(r[0], golden.single[i].embedding)).toBeLessThan(1e-5);
        expect(maxAbs(r[1], golden.single[i].embedding)).toBeLessThan(1e-5);
      });
    } finally {
      await svc.close();
    }
  });
});
