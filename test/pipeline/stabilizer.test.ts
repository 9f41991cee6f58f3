import { describe, expect, it } from 'vitest';
import { alignCommitted, createStabilizer, createStabilizerState, normalizeWord, stabilizerFlush, stabilizerReducer, type StabilizerState } from '../../src/pipeline/stabilizer.ts';

const w = (s: string) => s.split(' ').filter(Boolean);

describe('normalizeWord', () => {
  it('ignores case, punctuation, spacing and compatibility forms', () => {
    expect(normalizeWord(' Hello,')).toBe('hello');
    expect(normalizeWord("Don't")).toBe('dont');
    expect(normalizeWord('«Paris»')).toBe('paris');
    expect(normalizeWord('ＡＢＣ')).toBe('abc');
    expect(normalizeWord('...')).toBe('');
    expect(normalizeWord('É')).toBe('é');
  });
});

describe('LocalAgreement-2', () => {
  it('commits the prefix two consecutive hypotheses agree on, the rest is tail', () => {
    const s = createStabilizer(); // n = 2
    let out = s.push(w('the quick'));
    expect(out).toMatchObject({ committed: [], tail: ['the', 'quick'], newlyCommitted: [] });
    out = s.push(w('the quick brown'));
    expect(out).toMatchObject({ committed: ['the', 'quick'], tail: ['brown'], newlyCommitted: ['the', 'quick'] });
    out = s.push(w('the quick brown fox'));
    expect(out).toMatchObject({ committed: ['the', 'quick', 'brown'], tail: ['fox'], newlyCommitted: ['brown'] });
    out = s.push(w('the quick brown fax jumps'));
    expect(out).toMatchObject({ committed: ['the', 'quick', 'brown'], tail: ['fax', 'jumps'], newlyCommitted: [] });
    out = s.push(w('the quick brown fox jumps over'));
    // "fox" disagrees with the previous "fax": nothing new
    expect(out).toMatchObject({ committed: ['the', 'quick', 'brown'], tail: ['fox', 'jumps', 'over'], newlyCommitted: [] });
    out = s.push(w('the quick brown fox jumps over the'));
    expect(out).toMatchObject({ committed: w('the quick brown fox jumps over'), tail: ['the'], newlyCommitted: w('fox jumps over') });
  });

  it('never retracts a committed word even when a later hypothesis disagrees', () => {
    const s = createStabilizer(2);
    s.push(w('I scream'));
    s.push(w('I scream for'));
    expect(s.committed).toEqual(['I', 'scream']);
    // the model changes its mind about the committed part
    let out = s.push(w('ice cream for you'));
    // "ice cream" is aligned to the committed "I scream"; "for" agrees with the previous tail
    expect(out.committed).toEqual(['I', 'scream', 'for']);
    expect(out.tail).toEqual(['you']);
    out = s.push(w('ice cream for you all'));
    expect(out.committed).toEqual(['I', 'scream', 'for', 'you']);
    expect(out.tail).toEqual(['all']);
  });

  it('does not flicker over a noisy sequence: the committed prefix is monotonic', () => {
    const hyps = [
      'so',
      'so what',
      'so what we',
      'so what we did',
      'So, what we did was',
      'so what we did was um',
      'So what? We did, was... I mean',
      'so what we did was i mean we',
      'so what we did was i mean we tried it',
      'so what we did was i mean we tried to',
      'so what we did was i mean we tried to build',
      'so what we did was i mean we tried to build a',
      'so what we did was, I mean, we tried to build a bridge.',
      'So what we did was I mean we tried to build a bridge',
    ];
    const s = createStabilizer(2);
    let prev: string[] = [];
    for (const h of hyps) {
      const out = s.push(w(h));
      expect(out.committed.slice(0, prev.length)).toEqual(prev); // never rewritten
      expect(out.committed.length).toBeGreaterThanOrEqual(prev.length);
      expect(out.committed.slice(prev.length)).toEqual(out.newlyCommitted);
      prev = out.committed;
    }
    expect(prev.map(normalizeWord)).toEqual(w('so what we did was i mean we tried to build a bridge'));
  });

  it('agrees across punctuation and case changes and emits the newest original spelling', () => {
    const s = createStabilizer(2);
    s.push(w('hello world how'));
    const out = s.push(w('Hello, World! How are'));
    expect(out.committed).toEqual(['Hello,', 'World!', 'How']);
    expect(out.tail).toEqual(['are']);
  });

  it('glues pure punctuation tokens to the neighbouring word', () => {
    const s = createStabilizer(2);
    s.push(['hello', ',', 'world']);
    const out = s.push(['“', 'hello', ',', 'world', '…', 'again']);
    expect(out.committed).toEqual(['“hello,', 'world…']);
    expect(out.tail).toEqual(['again']);
  });

  it('keeps word timings when hypotheses are {word,start,end}', () => {
    const s = createStabilizer(2);
    s.push([
      { word: ' one', start: 0, end: 0.4 },
      { word: ' two', start: 0.5, end: 0.8 },
    ]);
    const out = s.push([
      { word: ' One', start: 0.02, end: 0.41 },
      { word: ' two', start: 0.5, end: 0.9 },
      { word: ' three', start: 1, end: 1.3 },
    ]);
    expect(out.committedWords).toEqual([
      { word: 'One', start: 0.02, end: 0.41 },
      { word: 'two', start: 0.5, end: 0.9 },
    ]);
    expect(out.tailWords).toEqual([{ word: 'three', start: 1, end: 1.3 }]);
    expect(out.newlyCommittedWords).toHaveLength(2);
  });

  it('handles empty hypotheses and hypotheses shorter than what is committed', () => {
    const s = createStabilizer(2);
    expect(s.push([])).toMatchObject({ committed: [], tail: [] });
    s.push(w('a b c'));
    s.push(w('a b c'));
    expect(s.committed).toEqual(['a', 'b', 'c']);
    expect(s.push(w('a b'))).toMatchObject({ committed: ['a', 'b', 'c'], tail: [] });
    expect(s.push(['', '  '])).toMatchObject({ committed: ['a', 'b', 'c'], tail: [] });
  });

  it('reset() starts a new utterance; flush() commits the newest tail first', () => {
    const s = createStabilizer(2);
    s.push(w('first utterance'));
    s.push(w('first utterance ends'));
    const flushed = s.flush();
    expect(flushed.newlyCommitted).toEqual(['ends']);
    expect(flushed.committed).toEqual(['first', 'utterance', 'ends']);
    expect(s.committed).toEqual([]);
    expect(s.push(w('second'))).toMatchObject({ committed: [], tail: ['second'] });
    s.reset();
    expect(s.push(w('third'))).toMatchObject({ committed: [], tail: ['third'] });
    expect(s.push(w('third one'))).toMatchObject({ committed: ['third'], tail: ['one'] });
  });
});

describe('LocalAgreement-1 and -3', () => {
  it('n=1 commits every hypothesis at once (words after a disagreement included)', () => {
    const s = createStabilizer(1);
    expect(s.push(w('a b'))).toMatchObject({ committed: ['a', 'b'], tail: [], newlyCommitted: ['a', 'b'] });
    expect(s.push(w('a b c'))).toMatchObject({ committed: ['a', 'b', 'c'], tail: [], newlyCommitted: ['c'] });
    expect(s.push(w('a x c d'))).toMatchObject({ committed: ['a', 'b', 'c', 'd'], newlyCommitted: ['d'] });
    expect(s.flush().newlyCommitted).toEqual([]);
  });

  it('n=3 needs three agreeing hypotheses', () => {
    const s = createStabilizer(3);
    expect(s.push(w('a b')).committed).toEqual([]);
    expect(s.push(w('a b c')).committed).toEqual([]);
    expect(s.push(w('a b c d'))).toMatchObject({ committed: ['a', 'b'], tail: ['c', 'd'] });
    expect(s.push(w('a b c e'))).toMatchObject({ committed: ['a', 'b', 'c'], tail: ['e'] });
    expect(s.push(w('a b c d f'))).toMatchObject({ committed: ['a', 'b', 'c'], tail: ['d', 'f'] });
    expect(s.push(w('a b c d f'))).toMatchObject({ committed: ['a', 'b', 'c'] }); // e/d/d: no agreement yet
    expect(s.push(w('a b c d f g'))).toMatchObject({ committed: w('a b c d f'), tail: ['g'] });
  });

  it('rejects n < 1', () => {
    expect(() => createStabilizer(0)).toThrow(RangeError);
    expect(() => createStabilizerState(1.5)).toThrow(RangeError);
  });
});

describe('stabilizerReducer', () => {
  it('is pure: the input state is not mutated and can be replayed', () => {
    const s0 = createStabilizerState(2);
    const r1 = stabilizerReducer(s0, w('x y'));
    const snapshot = JSON.stringify(r1.state);
    const r2 = stabilizerReducer(r1.state, w('x y z'));
    expect(JSON.stringify(r1.state)).toBe(snapshot);
    expect(s0.committed).toEqual([]);
    const again = stabilizerReducer(r1.state, w('x y z'));
    expect(again.committed).toEqual(r2.committed);
    expect(r2).toMatchObject({ committed: ['x', 'y'], tail: ['z'], newlyCommitted: ['x', 'y'] });
    const f = stabilizerFlush(r2.state);
    expect(f.newlyCommitted).toEqual(['z']);
    expect(f.state.committed).toEqual([]);
  });

  it('works as an Array.reduce reducer', () => {
    const final = [w('a'), w('a b'), w('a b c')].reduce<StabilizerState>((st, h) => stabilizerReducer(st, h).state, createStabilizerState(2));
    expect(final.committed.map((x) => x.word)).toEqual(['a', 'b']);
  });
});

describe('alignCommitted', () => {
  it('finds where the committed words end in a hypothesis', () => {
    expect(alignCommitted([], w('a b'))).toBe(0);
    expect(alignCommitted(w('a b c'), w('a b c d'))).toBe(3);
    expect(alignCommitted(w('a b c'), w('a x c d'))).toBe(3); // substitution
    expect(alignCommitted(w('i scream'), w('ice cream for'))).toBe(2);
    expect(alignCommitted(w('a b c'), w('a b x c d'))).toBe(4); // insertion inside the committed span
    expect(alignCommitted(w('a b c'), w('a c d'))).toBe(2); // deletion
    expect(alignCommitted(w('a b c'), w('a'))).toBe(1);
  });
});

describe('monotonicity under random hypotheses', () => {
  it.each([1, 2, 3])('n=%i: committed only grows, newlyCommitted is exactly what was added', (n) => {
    let seed = 12345 + n;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const vocab = ['a', 'b', 'c', 'd', 'E,', 'e', 'F.', 'f', 'g'];
    const s = createStabilizer(n);
    let prev: string[] = [];
    let truth: string[] = [];
    for (let step = 0; step < 300; step++) {
      if (rand() < 0.7) truth = [...truth, vocab[Math.floor(rand() * vocab.length)]!];
      const noisy = truth.map((x) => (rand() < 0.1 ? vocab[Math.floor(rand() * vocab.length)]! : x));
      const out = s.push(noisy);
      expect(out.committed.slice(0, prev.length)).toEqual(prev);
      expect(out.committed.slice(prev.length)).toEqual(out.newlyCommitted);
      if (step % 50 === 49) {
        s.reset();
        truth = [];
        prev = [];
      } else prev = out.committed;
    }
  });
});
