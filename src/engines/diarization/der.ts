/**
 * Diarization error rate, as pyannote.metrics / NIST md-eval compute it:
 *   DER = (missed speech + false alarm + speaker confusion) / total reference speech
 * with the optimal one-to-one mapping of hypothesis to reference speakers (Hungarian algorithm on
 * the overlap-duration matrix) and a forgiveness collar: `collar` seconds on EACH side of every
 * reference turn boundary are not scored (md-eval `-c 0.25`, = pyannote `collar=0.5`). Overlapped
 * speech is scored (each reference speaker in a region counts). Pure functions, exact (no time grid).
 */

export interface Turn {
  start: number;
  end: number;
  speaker: string;
}

export interface DerResult {
  der: number;
  /** Seconds. */
  total: number;
  missed: number;
  falseAlarm: number;
  confusion: number;
  /** Reference speaker → hypothesis speaker (optimal mapping). */
  mapping: Record<string, string>;
}

/** Parse RTTM `SPEAKER <file> <chan> <start> <dur> <NA> <NA> <name> ...` lines (one file). */
export function parseRttm(text: string, file?: string): Turn[] {
  const out: Turn[] = [];
  for (const line of text.split(/\r?\n/)) {
    const f = line.trim().split(/\s+/);
    if (f[0] !== 'SPEAKER' || f.length < 8) continue;
    if (file && f[1] !== file) continue;
    const start = Number(f[3]);
    const dur = Number(f[4]);
    if (!Number.isFinite(start) || !Number.isFinite(dur)) throw new Error(`bad RTTM line: ${line}`);
    out.push({ start, end: start + dur, speaker: f[7] });
  }
  return out;
}

export function toRttm(turns: Turn[], file = 'audio'): string {
  return turns.map((t) => `SPEAKER ${file} 1 ${t.start.toFixed(3)} ${(t.end - t.start).toFixed(3)} <NA> <NA> ${t.speaker.replace(/\s+/g, '_')} <NA> <NA>\n`).join('');
}

/** Maximum-weight assignment of rows to columns (Hungarian, O(n³)); returns col per row or -1. */
export function maxWeightAssignment(w: number[][]): number[] {
  const nr = w.length;
  const nc = nr ? w[0].length : 0;
  const n = Math.max(nr, nc);
  if (!n) return [];
  let max = 0;
  for (const row of w) for (const x of row) max = Math.max(max, x);
  // square cost matrix (minimisation), 1-indexed as in the classic e-maxx formulation
  const cost = (i: number, j: number) => (i < nr && j < nc ? max - w[i][j] : max);
  const u = new Float64Array(n + 1);
  const v = new Float64Array(n + 1);
  const p = new Int32Array(n + 1);
  const way = new Int32Array(n + 1);
  for (let i = 1; i <= n; i++) {
    p[0] = i;
    let j0 = 0;
    const minv = new Float64Array(n + 1).fill(Infinity);
    const used = new Uint8Array(n + 1);
    do {
      used[j0] = 1;
      const i0 = p[j0];
      let delta = Infinity;
      let j1 = 0;
      for (let j = 1; j <= n; j++) {
        if (used[j]) continue;
        const cur = cost(i0 - 1, j - 1) - u[i0] - v[j];
        if (cur < minv[j]) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j] < delta) {
          delta = minv[j];
          j1 = j;
        }
      }
      for (let j = 0; j <= n; j++) {
        if (used[j]) {
          u[p[j]] += delta;
          v[j] -= delta;
        } else minv[j] -= delta;
      }
      j0 = j1;
    } while (p[j0] !== 0);
    do {
      const j1 = way[j0];
      p[j0] = p[j1];
      j0 = j1;
    } while (j0);
  }
  const out = new Array<number>(nr).fill(-1);
  for (let j = 1; j <= n; j++) if (p[j] - 1 < nr && j - 1 < nc) out[p[j] - 1] = j - 1;
  return out;
}

/** Elementary intervals with the active reference/hypothesis speakers, collar zones removed. */
function intervals(ref: Turn[], hyp: Turn[], collar: number): Array<{ dur: number; r: string[]; h: string[] }> {
  const noScore: Array<[number, number]> = [];
  if (collar > 0) for (const t of ref) noScore.push([t.start - collar, t.start + collar], [t.end - collar, t.end + collar]);
  const pts = new Set<number>();
  for (const t of [...ref, ...hyp]) pts.add(t.start).add(t.end);
  for (const [a, b] of noScore) pts.add(a).add(b);
  const xs = [...pts].sort((a, b) => a - b);
  const out: Array<{ dur: number; r: string[]; h: string[] }> = [];
  for (let i = 0; i + 1 < xs.length; i++) {
    const a = xs[i];
    const b = xs[i + 1];
    if (b <= a) continue;
    const m = (a + b) / 2;
    if (noScore.some(([s, e]) => m > s && m < e)) continue;
    const r = [...new Set(ref.filter((t) => t.start < m && m < t.end).map((t) => t.speaker))];
    const h = [...new Set(hyp.filter((t) => t.start < m && m < t.end).map((t) => t.speaker))];
    if (r.length || h.length) out.push({ dur: b - a, r, h });
  }
  return out;
}

export function diarizationErrorRate(reference: Turn[], hypothesis: Turn[], opts: { collar?: number } = {}): DerResult {
  const collar = opts.collar ?? 0.25;
  const iv = intervals(reference, hypothesis, collar);
  const rs = [...new Set(reference.map((t) => t.speaker))];
  const hs = [...new Set(hypothesis.map((t) => t.speaker))];
  const w = rs.map(() => hs.map(() => 0));
  for (const { dur, r, h } of iv) for (const a of r) for (const b of h) w[rs.indexOf(a)][hs.indexOf(b)] += dur;
  const assign = maxWeightAssignment(w);
  const mapping: Record<string, string> = {};
  assign.forEach((j, i) => {
    if (j >= 0 && w[i][j] > 0) mapping[rs[i]] = hs[j];
  });
  let total = 0;
  let missed = 0;
  let fa = 0;
  let conf = 0;
  for (const { dur, r, h } of iv) {
    total += dur * r.length;
    const correct = r.filter((s) => mapping[s] !== undefined && h.includes(mapping[s])).length;
    missed += dur * Math.max(0, r.length - h.length);
    fa += dur * Math.max(0, h.length - r.length);
    conf += dur * (Math.min(r.length, h.length) - correct);
  }
  const der = total > 0 ? (missed + fa + conf) / total : fa > 0 ? 1 : 0;
  return { der, total, missed, falseAlarm: fa, confusion: conf, mapping };
}
