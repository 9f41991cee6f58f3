/**
 * Partial-result stabilizer: LocalAgreement-n, as in whisper_streaming (Macháček, Dabre & Bojar,
 * "Turning Whisper into Real-Time Transcription System", 2023). While an utterance is being spoken
 * the engine re-transcribes the growing audio and produces successive hypotheses; a word becomes
 * *committed* once the last `n` hypotheses agree on it (longest common prefix beyond what is
 * already committed). Committed words are never retracted, so a captions viewer does not flicker;
 * the rest of the newest hypothesis is the volatile *tail*.
 *
 * Hypotheses are the whole current utterance (committed words included). A later hypothesis may
 * re-spell or even change committed words: it is aligned to the committed prefix (edit distance)
 * and only what follows is considered. Words are compared normalised (Unicode NFKC, case-folded,
 * punctuation stripped) but emitted in their original spelling (the newest hypothesis's). Tokens
 * that are pure punctuation (",", "—") are glued to the neighbouring word.
 *
 * Pure: `stabilizerReducer(state, hypothesis)` returns a new state; `createStabilizer(n)` wraps it.
 */

export interface TimedWord {
  word: string;
  start?: number;
  end?: number;
}

export type HypothesisWord = string | TimedWord;

export interface StabilizerState {
  readonly n: number;
  /** Committed words (original spelling, timings when the hypotheses had them). */
  readonly committed: readonly TimedWord[];
  readonly committedNorm: readonly string[];
  /** Tails (beyond `committed`) of up to n-1 previous hypotheses, oldest first. */
  readonly recent: readonly Tail[];
}

interface Tail {
  words: readonly TimedWord[];
  norm: readonly string[];
}

export interface StabilizerOutput {
  /** Every committed word of the utterance so far (monotonic: only ever grows). */
  committed: string[];
  /** The rest of the newest hypothesis, beyond the committed words (may change next time). */
  tail: string[];
  /** Words committed by this step (a suffix of `committed`). */
  newlyCommitted: string[];
  committedWords: TimedWord[];
  tailWords: TimedWord[];
  newlyCommittedWords: TimedWord[];
}

export interface StabilizerStep extends StabilizerOutput {
  state: StabilizerState;
}

/** Comparison key of a word: NFKC, lower-cased, punctuation and surrounding space removed ("Don't," → "dont"). */
export function normalizeWord(word: string): string {
  return word
    .normalize('NFKC')
    .toLowerCase()
    .replace(/[\p{P}\s]+/gu, '');
}

export function createStabilizerState(n = 2): StabilizerState {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`LocalAgreement n must be an integer >= 1, got ${n}`);
  return { n, committed: [], committedNorm: [], recent: [] };
}

/** Trims, drops empty words, and glues pure-punctuation tokens onto a neighbour. */
function prepare(hypothesis: readonly HypothesisWord[]): { words: TimedWord[]; norm: string[] } {
  const words: TimedWord[] = [];
  const norm: string[] = [];
  let pendingPrefix: TimedWord | null = null; // punctuation before the first real word
  for (const h of hypothesis) {
    const w: TimedWord = typeof h === 'string' ? { word: h } : { ...h };
    w.word = w.word.trim();
    if (w.word === '') continue;
    const key = normalizeWord(w.word);
    if (key === '') {
      const prev = words[words.length - 1];
      if (prev) {
        prev.word += w.word;
        if (w.end !== undefined) prev.end = w.end;
      } else if (pendingPrefix) {
        pendingPrefix.word += w.word;
        if (w.end !== undefined) pendingPrefix.end = w.end;
      } else {
        pendingPrefix = w;
      }
      continue;
    }
    if (pendingPrefix) {
      w.word = pendingPrefix.word + w.word;
      if (pendingPrefix.start !== undefined) w.start = pendingPrefix.start;
      pendingPrefix = null;
    }
    words.push(w);
    norm.push(key);
  }
  return { words, norm };
}

/**
 * How many leading words of the hypothesis correspond to the committed words: the k minimising
 * editDistance(committed, hyp[0..k]); ties go to a prefix ending on the last committed word, then
 * to the k nearest committed.length.
 */
export function alignCommitted(committed: readonly string[], hyp: readonly string[]): number {
  const c = committed.length;
  if (c === 0) return 0;
  if (hyp.length >= c && committed.every((w, i) => w === hyp[i])) return c;
  const h = hyp.length;
  // D[i][j] = edit distance of committed[0..i] vs hyp[0..j]; rolling rows.
  let prev = Array.from({ length: h + 1 }, (_, j) => j);
  for (let i = 1; i <= c; i++) {
    const cur = new Array<number>(h + 1);
    cur[0] = i;
    for (let j = 1; j <= h; j++) {
      const sub = prev[j - 1]! + (committed[i - 1] === hyp[j - 1] ? 0 : 1);
      cur[j] = Math.min(sub, prev[j]! + 1, cur[j - 1]! + 1);
    }
    prev = cur;
  }
  // Ties: prefer a prefix ending on the last committed word, then the length nearest c.
  const anchored = (k: number) => (k > 0 && hyp[k - 1] === committed[c - 1] ? 0 : 1);
  let best = 0;
  for (let k = 1; k <= h; k++) {
    const better = prev[k]! < prev[best]! || (prev[k] === prev[best] && (anchored(k) < anchored(best) || (anchored(k) === anchored(best) && Math.abs(k - c) < Math.abs(best - c))));
    if (better) best = k;
  }
  return best;
}

function commonPrefixLength(tails: readonly Tail[]): number {
  const [first, ...others] = tails;
  if (!first) return 0;
  let m = first.norm.length;
  for (const t of others) {
    let i = 0;
    while (i < m && i < t.norm.length && t.norm[i] === first.norm[i]) i++;
    m = i;
  }
  return m;
}

const text = (ws: readonly TimedWord[]) => ws.map((w) => w.word);

/** Feeds one hypothesis (the whole current utterance). Does not mutate `state`. */
export function stabilizerReducer(state: StabilizerState, hypothesis: readonly HypothesisWord[]): StabilizerStep {
  const { words, norm } = prepare(hypothesis);
  const k = alignCommitted(state.committedNorm, norm);
  const newest: Tail = { words: words.slice(k), norm: norm.slice(k) };
  const window = [...state.recent, newest];
  const m = window.length >= state.n ? commonPrefixLength(window) : 0;

  const newlyCommittedWords = newest.words.slice(0, m);
  const committed = [...state.committed, ...newlyCommittedWords];
  const committedNorm = [...state.committedNorm, ...newest.norm.slice(0, m)];
  const recent = window.slice(Math.max(0, window.length - (state.n - 1))).map((t) => ({ words: t.words.slice(m), norm: t.norm.slice(m) }));
  const tailWords = newest.words.slice(m);
  const next: StabilizerState = { n: state.n, committed, committedNorm, recent: state.n > 1 ? recent : [] };
  return {
    state: next,
    committed: text(committed),
    tail: text(tailWords),
    newlyCommitted: text(newlyCommittedWords),
    committedWords: committed.map((w) => ({ ...w })),
    tailWords: tailWords.map((w) => ({ ...w })),
    newlyCommittedWords: newlyCommittedWords.map((w) => ({ ...w })),
  };
}

/**
 * End of utterance: commits the newest hypothesis's tail as it stands (the engine's final result
 * normally replaces it anyway) and returns the state to start the next utterance with.
 */
export function stabilizerFlush(state: StabilizerState): StabilizerStep {
  const last = state.recent[state.recent.length - 1];
  const flushed = last ? [...last.words] : [];
  const committed = [...state.committed, ...flushed];
  return {
    state: createStabilizerState(state.n),
    committed: text(committed),
    tail: [],
    newlyCommitted: text(flushed),
    committedWords: committed.map((w) => ({ ...w })),
    tailWords: [],
    newlyCommittedWords: flushed.map((w) => ({ ...w })),
  };
}

export interface Stabilizer {
  readonly n: number;
  /** Feeds the newest hypothesis of the current utterance. */
  push(hypothesis: readonly HypothesisWord[]): StabilizerOutput;
  /** Committed words so far. */
  readonly committed: string[];
  /** Ends the utterance committing the newest tail (see stabilizerFlush), then resets. */
  flush(): StabilizerOutput;
  /** Ends the utterance, discarding everything (call at end of utterance when the final result comes from elsewhere). */
  reset(): void;
  readonly state: StabilizerState;
}

export function createStabilizer(n = 2): Stabilizer {
  let state = createStabilizerState(n);
  const strip = ({ state: _s, ...out }: StabilizerStep): StabilizerOutput => out;
  return {
    n,
    push(hypothesis) {
      const step = stabilizerReducer(state, hypothesis);
      state = step.state;
      return strip(step);
    },
    get committed() {
      return text(state.committed);
    },
    flush() {
      const step = stabilizerFlush(state);
      state = step.state;
      return strip(step);
    },
    reset() {
      state = createStabilizerState(n);
    },
    get state() {
      return state;
    },
  };
}
