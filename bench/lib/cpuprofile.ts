/**
 * Reading a V8 `.cpuprofile` (what `node --cpu-prof` writes): where the main thread's time went in
 * a time window, split into idle, ONNX Runtime calls (tagged by bench/lib/ort-profile-tags.ts) and
 * everything else, with the top self-time functions of "everything else". Pure: data in, numbers out.
 *
 * Profile format: `nodes` (a call tree: id, callFrame {functionName, url, lineNumber}, children),
 * `samples` (the node id on top of the stack at each tick) and `timeDeltas` (µs since the previous
 * tick; the first is relative to `startTime`). Timestamps are V8 TimeTicks in µs, on Linux the same
 * CLOCK_MONOTONIC as `process.hrtime` (so another process can name the window).
 */

export interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber?: number };
  children?: number[];
}

export interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** What a stack is doing, decided by its frames (innermost tag wins). */
export type Category = 'idle' | 'program' | 'gc' | 'ort-model' | 'ort-vad' | 'other';

export interface ProfileSummary {
  /** Window length, ms. */
  wallMs: number;
  /** ms per category in the window. */
  ms: Record<Category, number>;
  /** Main thread busy (everything but idle), ms. */
  busyMs: number;
  /** Busy minus the model's ORT calls (VAD calls, GC and native "(program)" time count as outside). */
  outsideModelMs: number;
  /** Self time of frames outside every ORT call (incl. GC / program), by "file:function:line", descending. */
  topSelf: Array<{ key: string; ms: number }>;
  /** Outside ORT calls: time with a frame of this src/ function on the stack (inclusive), descending. */
  topInclusive: Array<{ key: string; ms: number }>;
  /** ms inside each ORT tag frame (`ORT_vad`, `ORT_model_encoder`, `ORT_model_decoder`, …). */
  byTag: Record<string, number>;
  samples: number;
}

/** Prefix of the named frames the ORT tag preload wraps each session.run in (`ORT_vad`, `ORT_model_encoder`, …). */
export const ORT_TAG = 'ORT_';

/** Short, stable file name for a callFrame url: repo-relative for our files, package-relative for node_modules. */
export function shortUrl(url: string): string {
  if (!url) return '';
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) return u.slice(nm + '/node_modules/'.length);
  for (const dir of ['/src/', '/bench/', '/loadtest/']) {
    const i = u.lastIndexOf(dir);
    if (i >= 0) return u.slice(i + 1);
  }
  return u;
}

/** "file:function" (plus ":line" for anonymous functions; tsx-compiled sources report line 1 for all). */
export function frameKey(cf: CpuProfileNode['callFrame']): string {
  const file = shortUrl(cf.url);
  if (!file) return cf.functionName || '(anonymous)';
  if (cf.functionName) return `${file}:${cf.functionName}`;
  return `${file}:(anonymous)${cf.lineNumber > 0 ? `:${cf.lineNumber + 1}` : ''}`;
}

/**
 * Summary of the samples whose time falls in [fromUs, toUs] (profile clock; defaults: all).
 * A sample's duration is the gap to the next sample (the last one gets the mean gap).
 */
export function summarizeProfile(p: CpuProfile, o: { fromUs?: number; toUs?: number; top?: number } = {}): ProfileSummary {
  const byId = new Map<number, CpuProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const cat = new Map<number, Category>();
  const tagOf = new Map<number, string | null>();
  const ortTagOf = (id: number): string | null => {
    if (tagOf.has(id)) return tagOf.get(id)!;
    const name = byId.get(id)?.callFrame.functionName ?? '';
    const up = parent.get(id);
    const t = name.startsWith(ORT_TAG) ? name : up === undefined ? null : ortTagOf(up);
    tagOf.set(id, t);
    return t;
  };
  const byTag: Record<string, number> = {};
  const categoryOf = (id: number): Category => {
    const known = cat.get(id);
    if (known) return known;
    const name = byId.get(id)?.callFrame.functionName ?? '';
    let c: Category;
    if (name === '(idle)') c = 'idle';
    else if (name === '(program)') c = 'program';
    else if (name === '(garbage collector)') c = 'gc';
    else if (name.startsWith(`${ORT_TAG}vad`)) c = 'ort-vad';
    else if (name.startsWith(ORT_TAG)) c = 'ort-model';
    else {
      const up = parent.get(id);
      c = up === undefined ? 'other' : categoryOf(up);
    }
    cat.set(id, c);
    return c;
  };

  const from = o.fromUs ?? -Infinity;
  const to = o.toUs ?? Infinity;
  const ms: Record<Category, number> = { idle: 0, program: 0, gc: 0, 'ort-model': 0, 'ort-vad': 0, other: 0 };
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  const stackKeys = new Map<number, string[]>();
  const srcKeysOf = (id: number): string[] => {
    let keys = stackKeys.get(id);
    if (keys) return keys;
    const node = byId.get(id);
    const up = parent.get(id);
    keys = up === undefined ? [] : srcKeysOf(up);
    if (node && /\/src\//.test(node.callFrame.url) && !node.callFrame.url.includes('/node_modules/')) {
      const k = frameKey(node.callFrame);
      if (!keys.includes(k)) keys = [...keys, k];
    }
    stackKeys.set(id, keys);
    return keys;
  };
  const n = p.samples.length;
  const meanGap = n > 1 ? (p.endTime - p.startTime) / n : 0;
  let t = p.startTime;
  let counted = 0;
  let first = Infinity;
  let last = -Infinity;
  for (let i = 0; i < n; i++) {
    t += p.timeDeltas[i] ?? 0;
    if (t < from || t > to) continue;
    const dur = (i + 1 < n ? (p.timeDeltas[i + 1] ?? meanGap) : meanGap) / 1000;
    const id = p.samples[i];
    const c = categoryOf(id);
    ms[c] += dur;
    counted++;
    if (c === 'ort-model' || c === 'ort-vad') {
      const t = ortTagOf(id)!;
      byTag[t] = (byTag[t] ?? 0) + dur;
    }
    first = Math.min(first, t);
    last = Math.max(last, t + dur * 1000);
    if (c === 'other' || c === 'gc' || c === 'program') {
      const node = byId.get(id);
      if (node) {
        const key = frameKey(node.callFrame);
        self.set(key, (self.get(key) ?? 0) + dur);
      }
      for (const k of srcKeysOf(id)) incl.set(k, (incl.get(k) ?? 0) + dur);
    }
  }
  const busyMs = ms.program + ms.gc + ms['ort-model'] + ms['ort-vad'] + ms.other;
  const wallMs = Number.isFinite(o.fromUs) && Number.isFinite(o.toUs) ? (to - from) / 1000 : counted ? (last - first) / 1000 : 0;
  const top = (m: Map<string, number>) =>
    [...m.entries()]
      .map(([key, v]) => ({ key, ms: v }))
      .sort((a, b) => b.ms - a.ms)
      .slice(0, o.top ?? 15);
  return { wallMs, ms, busyMs, outsideModelMs: busyMs - ms['ort-model'], topSelf: top(self), topInclusive: top(incl), byTag, samples: counted };
}
