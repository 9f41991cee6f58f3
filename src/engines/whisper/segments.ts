/**
 * OpenAI transcribe() window bookkeeping as a pure function: split one window's generated tokens
 * into segments at consecutive timestamp pairs and decide how far to seek.
 *  - tokens end with a lone timestamp ("single timestamp ending"): the whole window is consumed;
 *  - otherwise, with pairs: seek to the last pair's timestamp (the unfinished tail is re-decoded
 *    in the next window);
 *  - no pairs: one segment; its end is the last timestamp if any, else the window's audio end.
 */
export interface WindowGeometry {
  /** the timestamp rules were on (otherwise stray timestamp tokens are treated as text) */
  timestamps: boolean;
  timestampBegin: number;
  /** seconds per timestamp step (0.02) */
  timePrecision: number;
  /** mel frames of real audio in this window (≤ 3000) */
  segmentSize: number;
  /** seconds per mel frame (0.01) */
  frameSec: number;
  /** mel frames per encoder position (3000 / 1500 = 2) */
  inputStride: number;
}

export interface WindowPiece {
  /** seconds relative to the window start */
  start: number;
  end: number;
  /** token slice [from, to) of the window's tokens */
  from: number;
  to: number;
}

export function windowSegments(tokens: readonly number[], g: WindowGeometry): { pieces: WindowPiece[]; seekAdvance: number } {
  const pos = (t: number) => t - g.timestampBegin;
  const isTs = tokens.map((t) => g.timestamps && t >= g.timestampBegin);
  const n = tokens.length;
  const singleEnding = n >= 2 && !isTs[n - 2] && isTs[n - 1];
  const consecutive: number[] = [];
  for (let k = 1; k < n; k++) if (isTs[k - 1] && isTs[k]) consecutive.push(k);
  const pieces: WindowPiece[] = [];
  let seekAdvance: number;
  if (consecutive.length) {
    const slices = singleEnding ? [...consecutive, n] : consecutive;
    let last = 0;
    for (const cur of slices) {
      // a slice starts and ends with a timestamp token (the rules force the first token to be one)
      const first = isTs[last] ? pos(tokens[last]) : 0;
      pieces.push({ start: first * g.timePrecision, end: pos(tokens[cur - 1]) * g.timePrecision, from: last, to: cur });
      last = cur;
    }
    seekAdvance = singleEnding ? g.segmentSize : Math.round(pos(tokens[last - 1]) * g.inputStride);
  } else {
    let duration = g.segmentSize * g.frameSec;
    const ts = tokens.filter((_, k) => isTs[k]);
    if (ts.length && ts[ts.length - 1] !== g.timestampBegin) duration = pos(ts[ts.length - 1]) * g.timePrecision;
    pieces.push({ start: 0, end: duration, from: 0, to: n });
    seekAdvance = g.segmentSize;
  }
  // always make progress (e.g. "<|0.00|><|0.00|>" would otherwise seek by 0 forever)
  if (seekAdvance <= 0) seekAdvance = g.segmentSize;
  return { pieces, seekAdvance };
}
