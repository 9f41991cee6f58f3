/**
 * Beam ranking of finished sequences: OpenAI's ranker (default, Whisper/Moonshine) divides the sum logprob by the
 * length without the end token, HF `generate` (rules 'hf', translation) by the length with it. A bigram toy model
 * where the two rules pick different sequences, worked out by hand.
 */
import { describe, expect, it } from 'vitest';
import { beamSearch, type DecodeTask } from '../../../src/engines/seq2seq/generate.ts';
import type { DecoderStepOutput, EncoderOutput, KVCache, StepModel } from '../../../src/engines/seq2seq/kv-decoder.ts';

const START = 0;
const EOT = 1;
const A = 2;
const B = 3;
const X = 4;
const V = 5;
/** Next-token probabilities given the last token (absent = impossible). */
const NEXT: Record<number, Record<number, number>> = {
  [START]: { [A]: 0.6, [B]: 0.4 },
  [A]: { [EOT]: 0.5, [A]: 0.25, [B]: 0.25 },
  [B]: { [X]: 0.9, [A]: 0.1 },
  [X]: { [EOT]: 0.34, [A]: 0.66 },
};
const logitsAfter = (t: number) => Float32Array.from({ length: V }, (_, v) => (NEXT[t]?.[v] ? Math.log(NEXT[t][v]) : -Infinity));

/** A StepModel whose logits depend only on the last token (no encoder, empty KV). */
const bigram: StepModel = {
  async prefill(_enc: EncoderOutput, ids: number[][]): Promise<DecoderStepOutput> {
    const s = ids[0].length;
    const logits = new Float32Array(ids.length * s * V);
    ids.forEach((row, r) => row.forEach((t, j) => logits.set(logitsAfter(t), (r * s + j) * V)));
    return { logits, seqLen: s, vocab: V, cache: { batch: ids.length, pastLength: s, decoder: {}, encoder: {}, encoderHidden: null }, crossAttentions: null };
  },
  async step(cache: KVCache, tokens: number[]): Promise<DecoderStepOutput> {
    const logits = new Float32Array(tokens.length * V);
    tokens.forEach((t, r) => logits.set(logitsAfter(t), r * V));
    return { logits, seqLen: 1, vocab: V, cache: { ...cache, pastLength: cache.pastLength + 1 }, crossAttentions: null };
  },
};

const enc: EncoderOutput = { data: new Float32Array(1), batch: 1, frames: 1, dModel: 1 };
const task: DecodeTask = { prompt: [START], sotIndex: 0, processors: [], maxNewTokens: 10 };
const ids = { eot: EOT, noSpeech: null };
// finished candidates (beam 2): [a </s>] sum ln .6 + ln .5 = -1.204; [b x </s>] sum ln .4 + ln .9 + ln .34 = -2.100
const sumA = Math.log(0.6) + Math.log(0.5);
const sumC = Math.log(0.4) + Math.log(0.9) + Math.log(0.34);

describe('beam search: length of finished sequences', () => {
  it('OpenAI (default): sum / tokens without </s> → [b x] (-1.050 beats -1.204)', async () => {
    expect(sumC / 2).toBeGreaterThan(sumA / 1);
    const [r] = await beamSearch(bigram, enc, [task], ids, { beamSize: 2 });
    expect(r.tokens).toEqual([B, X]);
    expect(r.finished).toBe(true);
    expect(r.sumLogprob).toBeCloseTo(sumC, 5);
  });

  it('HF rules: sum / tokens with </s>; the search goes on while a running beam can win → [b x a]', async () => {
    // step 2 finishes [a </s>] (-1.204 / 2 = -0.602), step 3 [b x </s>] (-2.100 / 3 = -0.700): both slots full, but
    // the running [b x a] (-1.437 / 3 = -0.479) could still win, and at step 4 [b x a </s>] -2.130 / 4 = -0.533 does;
    // then the best running beam (-2.823 / 4) cannot beat -0.602 and the search stops
    const sumBXA = Math.log(0.4) + Math.log(0.9) + Math.log(0.66) + Math.log(0.5);
    expect(sumBXA / 4).toBeGreaterThan(sumA / 2);
    expect(sumA / 2).toBeGreaterThan(sumC / 3);
    const [r] = await beamSearch(bigram, enc, [task], ids, { beamSize: 2, rules: 'hf' });
    expect(r.tokens).toEqual([B, X, A]);
    expect(r.finished).toBe(true);
    expect(r.sumLogprob).toBeCloseTo(sumBXA, 5);
  });
});

// A second bigram model where HF's rules and OpenAI's stopping part ways (worked out by hand, beam 2):
// step 1: A (.50), B (.45), </s> (.05, rank 3: HF ignores it; OpenAI finishes it)
// step 2: [A </s>] -0.798 (rank 1: finished by both), [B Y] -0.904, [A X] -2.996, [B </s>] -3.101 (rank 4)
//   OpenAI: 2 finished → stop, best of [</s>] and [A] → [A].
//   HF: 1 finished of 2 → go on; step 3: [B Y </s>] -0.904 / 3 = -0.301 beats [A </s>] -0.798 / 2 = -0.399 → [B Y].
const Y = 5;
const NEXT2: Record<number, Record<number, number>> = {
  [START]: { [A]: 0.5, [B]: 0.45, [EOT]: 0.05 },
  [A]: { [EOT]: 0.9, [X]: 0.1 },
  [B]: { [Y]: 0.9, [EOT]: 0.1 },
  [X]: { [EOT]: 0.5, [X]: 0.5 },
  [Y]: { [EOT]: 1 },
};
const V2 = 6;
function bigramOf(next: Record<number, Record<number, number>>, vocab: number): StepModel & { steps: number } {
  const after = (t: number) => Float32Array.from({ length: vocab }, (_, v) => (next[t]?.[v] ? Math.log(next[t][v]) : -Infinity));
  const m = {
    steps: 0,
    async prefill(_enc: EncoderOutput, ids: number[][]): Promise<DecoderStepOutput> {
      const s = ids[0].length;
      const logits = new Float32Array(ids.length * s * vocab);
      ids.forEach((row, r) => row.forEach((t, j) => logits.set(after(t), (r * s + j) * vocab)));
      return { logits, seqLen: s, vocab, cache: { batch: ids.length, pastLength: s, decoder: {}, encoder: {}, encoderHidden: null }, crossAttentions: null };
    },
    async step(cache: KVCache, tokens: number[]): Promise<DecoderStepOutput> {
      m.steps++;
      const logits = new Float32Array(tokens.length * vocab);
      tokens.forEach((t, r) => logits.set(after(t), r * vocab));
      return { logits, seqLen: 1, vocab, cache: { ...cache, pastLength: cache.pastLength + 1 }, crossAttentions: null };
    },
  };
  return m;
}

describe('beam search: when the end token is emitted', () => {
  it('OpenAI: every </s> candidate finishes, the search stops at beamSize finished → [A]', async () => {
    const [r] = await beamSearch(bigramOf(NEXT2, V2), enc, [task], ids, { beamSize: 2 });
    expect(r.tokens).toEqual([A]);
  });

  it('HF: a </s> ranked below the top beamSize does not finish; the search goes on while a running beam can win → [B Y]', async () => {
    const [r] = await beamSearch(bigramOf(NEXT2, V2), enc, [task], ids, { beamSize: 2, rules: 'hf' });
    expect(r.tokens).toEqual([B, Y]);
    expect(r.finished).toBe(true);
    expect(r.sumLogprob).toBeCloseTo(Math.log(0.45) + Math.log(0.9), 5);
  });

  it('HF: early_stopping false stops once no running beam can beat the worst finished; never assumes it could reach the budget', async () => {
    // after step 3 both finished slots are full ([B Y </s>], [A </s>]) and the best running beam [A X X] -3.689 / 3
    // cannot beat -0.399: 2 decoder steps after the prefill, not the 9 the budget allows
    const m = bigramOf(NEXT2, V2);
    await beamSearch(m, enc, [task], ids, { beamSize: 2, rules: 'hf' });
    expect(m.steps).toBe(2);
    // 'never' with a budget of 10: [A X X] -3.689 at length 10 (-0.369) could beat -0.399, so one more step
    // ([A X X X] -4.382 / 10 cannot), with the same result
    const never = bigramOf(NEXT2, V2);
    const [r] = await beamSearch(never, enc, [task], ids, { beamSize: 2, rules: 'hf', earlyStopping: 'never' });
    expect(r.tokens).toEqual([B, Y]);
    expect(never.steps).toBe(3);
  });

  it('HF at the budget: the top beamSize candidates finish with their last token (no </s>), ranked by sum / length', async () => {
    const [r] = await beamSearch(bigramOf(NEXT2, V2), enc, [{ ...task, maxNewTokens: 1 }], ids, { beamSize: 2, rules: 'hf' });
    expect(r).toMatchObject({ tokens: [A], finished: false });
  });
});
