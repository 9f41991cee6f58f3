/** The bundle in `dir` (dir/stt.mjs) when every source file it was built from is unchanged, else null. */
export function freshBundle(dir: string): string | null;
