/** bench:asr's section selection (`--sections`) and per-part peak marks. */

/** The sections of bench/asr.ts, in run order. */
export const ASR_SECTIONS = ['1', '2', '3', '4', '5', '6', '6b'] as const;
export type AsrSection = (typeof ASR_SECTIONS)[number];

/**
 * `--sections 6` or `--sections 1,6b`: the sections to run (comma-separated, any order, duplicates ignored). An unknown
 * name or an empty list is an error, so a typo cannot silently run nothing.
 */
export function parseSections(spec: string): Set<AsrSection> {
  const names = spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!names.length) throw new Error(`--sections needs at least one of ${ASR_SECTIONS.join(', ')}`);
  const out = new Set<AsrSection>();
  for (const n of names) {
    if (!(ASR_SECTIONS as readonly string[]).includes(n)) throw new Error(`unknown section "${n}" (sections: ${ASR_SECTIONS.join(', ')})`);
    out.add(n as AsrSection);
  }
  return out;
}

/**
 * Peaks of consecutive parts of a run: feed it samples (bytes, e.g. RSS every 100 ms) and call `mark` at the end of each
 * part; each mark holds the largest sample since the previous mark (the current value included), in MB.
 */
export class PeakMarks {
  private max = 0;
  readonly marks: { part: string; peakMb: number }[] = [];

  sample(bytes: number): void {
    if (bytes > this.max) this.max = bytes;
  }

  /** Ends the part `part` (`nowBytes`: the value at its end, also a sample) and starts the next one. */
  mark(part: string, nowBytes: number): { part: string; peakMb: number } {
    this.sample(nowBytes);
    const m = { part, peakMb: Math.round(this.max / 2 ** 20) };
    this.marks.push(m);
    this.max = 0;
    return m;
  }

  /** Forgets the samples since the last mark (a part that should not be reported). */
  reset(): void {
    this.max = 0;
  }
}
