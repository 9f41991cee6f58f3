/**
 * Beam ranking of finished sequences: OpenAI's ranker (default, Whisper/Moonshine) divides the sum logprob by the
 * length without the end token, HF `generate` (eotInLength, translation) by the length with it. A bigram toy model
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

  it('HF (eotInLength): sum / tokens with </s> → [a] (-0.602 beats -0.700)', async () => {
    expect(sumA / 2).toBeGreaterThan(sumC / 3);
    const [r] = await beamSearch(bigram, enc, [task], ids, { beamSize: 2, eotInLength: true });
    expect(r.tokens).toEqual([A]);
    expect(r.finished).toBe(true);
    expect(r.sumLogprob).toBeCloseTo(sumA, 5);
  });
});
