/** Splits text into chunks of at most `maxTokens` tokens, at paragraph, then sentence, then word boundaries. */
export function splitByTokens(text: string, maxTokens: number, countTokens: (s: string) => number): string[] {
  const units = text
    .split(/\n\s*\n/)
    .flatMap((p) => p.match(/[^.!?…。！？]+(?:[.!?…。！？]+["'”’)\]]*|$)\s*/g) ?? [p])
    .filter((s) => s.trim().length > 0);
  const pieces: { text: string; tokens: number }[] = [];
  for (const u of units) {
    const n = countTokens(u);
    if (n <= maxTokens) {
      pieces.push({ text: u, tokens: n });
      continue;
    }
    // An over-long sentence: split by words (and a single over-long word by characters).
    let cur = '';
    for (const w of u.split(/(?<=\s)/)) {
      if (countTokens(cur + w) <= maxTokens) {
        cur += w;
        continue;
      }
      if (cur) pieces.push({ text: cur, tokens: countTokens(cur) });
      cur = w;
      while (countTokens(cur) > maxTokens) {
        let cut = Math.max(1, Math.floor(cur.length * (maxTokens / countTokens(cur)) * 0.9));
        while (cut > 1 && countTokens(cur.slice(0, cut)) > maxTokens) cut = Math.floor(cut * 0.8);
        pieces.push({ text: cur.slice(0, cut), tokens: countTokens(cur.slice(0, cut)) });
        cur = cur.slice(cut);
      }
    }
    if (cur) pieces.push({ text: cur, tokens: countTokens(cur) });
  }
  const chunks: string[] = [];
  let cur = '';
  let curTokens = 0;
  for (const p of pieces) {
    // Token counts are not exactly additive across boundaries: re-count when close to the limit.
    if (cur && (curTokens + p.tokens > maxTokens || countTokens(cur + p.text) > maxTokens)) {
      chunks.push(cur.trim());
      cur = '';
      curTokens = 0;
    }
    cur += p.text;
    curTokens += p.tokens;
  }
  if (cur.trim()) chunks.push(cur.trim());
  return chunks;
}
