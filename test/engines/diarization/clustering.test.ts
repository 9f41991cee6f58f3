import { describe, expect, it } from 'vitest';
import { averageLinkage, clusterEmbeddings, l2normalize } from '../../../src/engines/diarization/clustering.ts';

/** Deterministic PRNG (mulberry32) and gaussian. */
function rng(seed: number) {
  let a = seed >>> 0;
  const u = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
}

/** `n` points per centre, noise `sigma`, centres random unit vectors in `dim`; interleaved order. */
function blobs(k: number, n: number, dim: number, sigma: number, seed = 1) {
  const g = rng(seed);
  const centres = Array.from({ length: k }, () => l2normalize(Array.from({ length: dim }, g)));
  const x: number[][] = [];
  const truth: number[] = [];
  for (let i = 0; i < n; i++)
    for (let c = 0; c < k; c++) {
      x.push(Array.from(centres[c], (v) => v + sigma * g()));
      truth.push(c);
    }
  return { x, truth };
}

describe('agglomerative clustering (cosine, average linkage)', () => {
  it('threshold mode finds the number of well-separated speakers', () => {
    for (const k of [1, 2, 3, 5]) {
      const { x, truth } = blobs(k, 12, 64, 0.05, k);
      const labels = clusterEmbeddings(x, { threshold: 0.5 });
      expect(Math.max(...labels) + 1).toBe(k);
      // interleaved input: labels follow first appearance → equal the truth ids
      expect(Array.from(labels)).toEqual(truth);
    }
  });

  it('fixed N gives exactly N clusters, also when the threshold would give more or fewer', () => {
    const { x } = blobs(4, 8, 32, 0.05, 7);
    for (const n of [1, 2, 3, 4, 6]) expect(Math.max(...clusterEmbeddings(x, { numClusters: n, threshold: 0.5 })) + 1).toBe(n);
    expect(Math.max(...clusterEmbeddings(x.slice(0, 3), { numClusters: 5 })) + 1).toBe(3);
  });

  it('fixed N merges the closest groups first', () => {
    // A and A' are close (cos dist ~0.005), B far away
    const A = [1, 0, 0];
    const A2 = [1, 0.1, 0];
    const B = [0, 0, 1];
    const x = [B, A, A2, A, B, A2];
    expect(Array.from(clusterEmbeddings(x, { numClusters: 2 }))).toEqual([0, 1, 1, 1, 0, 1]);
    expect(Array.from(clusterEmbeddings(x, { numClusters: 3 }))).toEqual([0, 1, 2, 1, 0, 2]);
    expect(Array.from(clusterEmbeddings(x, { threshold: 0.01 }))).toEqual([0, 1, 1, 1, 0, 1]);
    expect(Array.from(clusterEmbeddings(x, { threshold: 0.001 }))).toEqual([0, 1, 2, 1, 0, 2]);
  });

  it('scale does not matter (cosine) and merge heights are monotone (no inversions)', () => {
    const { x } = blobs(3, 10, 16, 0.2, 3);
    const scaled = x.map((v, i) => v.map((t) => t * (1 + i)));
    expect(Array.from(clusterEmbeddings(scaled, { threshold: 0.5 }))).toEqual(Array.from(clusterEmbeddings(x, { threshold: 0.5 })));
    const merges = averageLinkage(x.map((v) => l2normalize(v)));
    expect(merges.length).toBe(x.length - 1);
  });

  it('minClusterSize folds tiny clusters into the nearest large one', () => {
    const { x } = blobs(2, 10, 32, 0.05, 11);
    const outlier = blobs(1, 1, 32, 0, 99).x[0];
    const withOut = [...x, outlier];
    expect(Math.max(...clusterEmbeddings(withOut, { threshold: 0.5 })) + 1).toBe(3);
    expect(Math.max(...clusterEmbeddings(withOut, { threshold: 0.5, minClusterSize: 2 })) + 1).toBe(2);
  });

  it('large inputs: subset clustering + nearest-centroid assignment', () => {
    const { x, truth } = blobs(3, 400, 16, 0.05, 5);
    const labels = clusterEmbeddings(x, { threshold: 0.5, maxPoints: 300 });
    expect(Array.from(labels)).toEqual(truth);
    expect(clusterEmbeddings([], {}).length).toBe(0);
  });
});
