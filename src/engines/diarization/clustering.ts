/**
 * Agglomerative clustering of embeddings, cosine distance, average linkage (Lance–Williams), built
 * with the nearest-neighbour-chain algorithm (O(n²) time, one float32 n×n matrix). Average linkage
 * has no inversions, so cutting the dendrogram at a height (`threshold`) or at a cluster count
 * (`numClusters`) is done by replaying the merges in order of height.
 *
 * Labels are 0..k-1 in order of first appearance in the input.
 */

export interface ClusterOptions {
  /** Exactly this many clusters (capped at the number of points); 0/undefined = use `threshold`. */
  numClusters?: number;
  /** Cosine distance (1 - cos) at which merging stops (auto mode). */
  threshold?: number;
  /** Auto mode: clusters with fewer points are merged into the nearest large cluster. */
  minClusterSize?: number;
  /** After the cut, reassign every point to the nearest cluster centroid (one k-means step). */
  refine?: boolean;
  /** Largest number of points clustered exactly; the rest are assigned to the nearest centroid. */
  maxPoints?: number;
}

export function l2normalize(v: ArrayLike<number>): Float64Array {
  let n = 0;
  for (let i = 0; i < v.length; i++) n += v[i] * v[i];
  n = Math.sqrt(n) || 1;
  const out = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = v[i] / n;
  return out;
}

export function cosineDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    d += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return 1 - d / (Math.sqrt(na * nb) || 1);
}

export interface Merge {
  a: number;
  b: number;
  height: number;
}

/** Full average-linkage dendrogram (n-1 merges, unsorted) of L2-normalised vectors. */
export function averageLinkage(x: Float64Array[]): Merge[] {
  const n = x.length;
  const D = new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      let d = 0;
      const a = x[i];
      const b = x[j];
      for (let k = 0; k < a.length; k++) d += a[k] * b[k];
      D[i * n + j] = D[j * n + i] = 1 - d;
    }
  }
  const size = new Int32Array(n).fill(1);
  const active = new Uint8Array(n).fill(1);
  let nActive = n;
  const merges: Merge[] = [];
  const chain: number[] = [];
  let nextStart = 0;
  while (nActive > 1) {
    if (!chain.length) {
      while (!active[nextStart]) nextStart++;
      chain.push(nextStart);
    }
    const a = chain[chain.length - 1];
    const prev = chain.length > 1 ? chain[chain.length - 2] : -1;
    let best = -1;
    let bestD = Infinity;
    for (let k = 0; k < n; k++) {
      if (k === a || !active[k]) continue;
      const d = D[a * n + k];
      if (d < bestD || (d === bestD && k === prev)) {
        bestD = d;
        best = k;
      }
    }
    if (best === prev) {
      chain.pop();
      chain.pop();
      const [p, q] = a < prev ? [a, prev] : [prev, a];
      merges.push({ a: p, b: q, height: bestD });
      const sp = size[p];
      const sq = size[q];
      for (let k = 0; k < n; k++) {
        if (!active[k] || k === p || k === q) continue;
        const d = (sp * D[p * n + k] + sq * D[q * n + k]) / (sp + sq);
        D[p * n + k] = D[k * n + p] = d;
      }
      size[p] = sp + sq;
      active[q] = 0;
      nActive--;
    } else {
      chain.push(best);
    }
  }
  return merges;
}

function relabelByFirstAppearance(labels: Int32Array): Int32Array {
  const map = new Map<number, number>();
  const out = new Int32Array(labels.length);
  labels.forEach((l, i) => {
    if (!map.has(l)) map.set(l, map.size);
    out[i] = map.get(l)!;
  });
  return out;
}

function centroids(x: Float64Array[], labels: Int32Array, k: number): Float64Array[] {
  const dim = x[0].length;
  const c = Array.from({ length: k }, () => new Float64Array(dim));
  x.forEach((v, i) => {
    const cc = c[labels[i]];
    for (let d = 0; d < dim; d++) cc[d] += v[d];
  });
  return c.map((v) => l2normalize(v));
}

function nearest(v: Float64Array, cs: Float64Array[], allowed?: (j: number) => boolean): number {
  let best = -1;
  let bd = -Infinity;
  cs.forEach((c, j) => {
    if (allowed && !allowed(j)) return;
    let d = 0;
    for (let k = 0; k < v.length; k++) d += v[k] * c[k];
    if (d > bd) {
      bd = d;
      best = j;
    }
  });
  return best;
}

/** Cluster embeddings; returns labels 0..k-1 in order of first appearance. */
export function clusterEmbeddings(embeddings: ArrayLike<number>[], opts: ClusterOptions = {}): Int32Array {
  const n = embeddings.length;
  if (n === 0) return new Int32Array(0);
  const all = embeddings.map((e) => l2normalize(e));
  const maxPoints = opts.maxPoints ?? 3000;
  // very long inputs: cluster an evenly spaced subset exactly, assign the rest to its centroids
  const pick = n > maxPoints ? Array.from({ length: maxPoints }, (_, i) => Math.floor((i * n) / maxPoints)) : null;
  const x = pick ? pick.map((i) => all[i]) : all;
  const m = x.length;
  const fixed = opts.numClusters && opts.numClusters > 0 ? Math.min(opts.numClusters, m) : 0;
  const threshold = opts.threshold ?? 0.5;

  const merges = m > 1 ? averageLinkage(x).sort((p, q) => p.height - q.height) : [];
  const parent = Int32Array.from({ length: m }, (_, i) => i);
  const find = (i: number): number => {
    while (parent[i] !== i) i = parent[i] = parent[parent[i]];
    return i;
  };
  const nMerges = fixed ? m - fixed : merges.filter((mg) => mg.height <= threshold).length;
  for (let i = 0; i < nMerges; i++) parent[find(merges[i].b)] = find(merges[i].a);
  let labels = relabelByFirstAppearance(Int32Array.from({ length: m }, (_, i) => find(i)));
  let k = Math.max(...labels) + 1;

  if (!fixed && opts.minClusterSize && opts.minClusterSize > 1 && k > 1) {
    const counts = new Int32Array(k);
    labels.forEach((l) => counts[l]++);
    const large = (j: number) => counts[j] >= opts.minClusterSize!;
    if (Array.from(counts).some((c, j) => large(j)) && Array.from(counts).some((c, j) => !large(j))) {
      const cs = centroids(x, labels, k);
      labels = relabelByFirstAppearance(labels.map((l, i) => (large(l) ? l : nearest(x[i], cs, large))));
      k = Math.max(...labels) + 1;
    }
  }
  if (opts.refine && k > 1) {
    const cs = centroids(x, labels, k);
    const re = labels.map((_, i) => nearest(x[i], cs));
    // keep the requested count: only accept the refinement if no cluster vanished
    if (new Set(re).size === k) labels = relabelByFirstAppearance(re);
  }
  if (!pick) return labels;
  const cs = centroids(x, labels, k);
  return relabelByFirstAppearance(Int32Array.from(all, (v) => nearest(v, cs)));
}
