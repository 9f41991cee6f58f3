/** Engine behaviour beyond the goldens: beam search, long-form seeking, fallback, no-speech skip, words, prompts. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WhisperEngine } from '../../../src/engines/whisper/engine.ts';
import { beamSearch, decodeGreedy } from '../../../src/engines/seq2seq/generate.ts';
import type { EncoderOutput } from '../../../src/engines/whisper/model.ts';
import { golden, GOLDEN_NAMES, loadAudio, MODEL_DIR } from './helpers.ts';

describe('whisper engine (fp32, merged decoder)', () => {
  let eng: WhisperEngine;
  let enc: EncoderOutput;
  const audio = GOLDEN_NAMES.map((n) => loadAudio(n));
  const long = loadAudio('long');

  beforeAll(async () => {
    eng = await WhisperEngine.load(MODEL_DIR, { intraOpThreads: 1, interOpThreads: 1 });
    enc = await eng.encode(audio.map((a) => eng.features(a)));
  });
  afterAll(async () => eng?.close());

  for (const ts of [false, true]) {
    it(`beam search with beamSize 1 equals greedy (timestamps=${ts})`, async () => {
      const tasks = GOLDEN_NAMES.map(() => eng.task({ language: 'en', timestamps: ts, maxNewTokens: 24 }));
      const greedy = await decodeGreedy(eng.model, enc, tasks, eng.ids);
      const beam1 = await beamSearch(eng.model, enc, tasks, eng.ids, { beamSize: 1 });
      beam1.forEach((b, i) => {
        expect(b.tokens).toEqual(greedy[i].tokens);
        expect(b.sumLogprob).toBeCloseTo(greedy[i].sumLogprob, 6);
        expect(b.noSpeechProb).toBeCloseTo(greedy[i].noSpeechProb, 12);
      });
      expect(greedy[0].tokens).toEqual(golden.inputs.tone.generate![ts ? 'timestamps' : 'notimestamps']);
    });
  }

  it('beamSize 4 runs batched and returns tokens within budget, scoring at least as well as greedy', async () => {
    const tasks = GOLDEN_NAMES.map(() => eng.task({ language: 'en', timestamps: true, maxNewTokens: 12 }));
    const beam = await beamSearch(eng.model, enc, tasks, eng.ids, { beamSize: 4 });
    const greedy = await decodeGreedy(eng.model, enc, tasks, eng.ids);
    beam.forEach((b, i) => {
      expect(b.tokens.length).toBeGreaterThan(0);
      expect(b.tokens.length).toBeLessThanOrEqual(12);
      expect(b.tokens[0]).toBeGreaterThanOrEqual(eng.tokenizer.timestampBegin); // timestamp rules apply
      expect(b.tokenLogprobs).toHaveLength(b.tokens.length);
      // budget-capped beams have the same length, so the best beam's sum logprob >= greedy's path
      expect(b.sumLogprob).toBeGreaterThanOrEqual(greedy[i].sumLogprob - 1e-6);
    });
    const viaEngine = await eng.transcribe([{ audio: audio[2], options: { language: 'en', beamSize: 4, temperature: 0, maxNewTokens: 12 } }]);
    expect(viaEngine[0].tokensPerWindow[0]).toEqual(beam[2].tokens);
  });

  it('long.wav (31.5 s) goes through 2+ windows with seeking; segment times stay inside the audio', async () => {
    const [r] = await eng.transcribe([{ audio: long, options: { language: 'en', temperature: 0, maxNewTokens: 24, noSpeechThreshold: null } }]);
    expect(r.duration).toBeCloseTo(31.49, 2);
    expect(r.tokensPerWindow.length).toBeGreaterThan(1);
    expect(r.segments.length).toBeGreaterThan(0);
    const seeks = [...new Set(r.segments.map((s) => s.seek))];
    expect(seeks.length).toBeGreaterThan(1);
    expect(seeks[0]).toBe(0);
    for (let k = 1; k < seeks.length; k++) expect(seeks[k]).toBeGreaterThan(seeks[k - 1]);
    for (const s of r.segments) {
      expect(s.start).toBeGreaterThanOrEqual(s.seek * 0.01 - 1e-9);
      expect(s.end).toBeGreaterThan(s.start);
      expect(s.end).toBeLessThanOrEqual(r.duration + 1e-6);
    }
    for (const w of r.tokensPerWindow) expect(w.length).toBeLessThanOrEqual(24);
  });

  it('mixed batch (long + short, auto language) matches the same requests run alone', async () => {
    const opts = { temperature: 0, maxNewTokens: 16, noSpeechThreshold: null } as const;
    const both = await eng.transcribe([
      { audio: long, options: opts },
      { audio: audio[2], options: { ...opts, language: 'auto' } },
    ]);
    const alone = await eng.transcribe([{ audio: audio[2], options: { ...opts, language: 'auto' } }]);
    expect(both[1].tokensPerWindow).toEqual(alone[0].tokensPerWindow);
    expect(both[1].language).toBe('la'); // golden top-1 for jfk on this random model
    expect(both[1].languageProbs![0][1]).toBeCloseTo(golden.inputs.jfk.language_detection!.top5[0][1], 3);
    expect(both[0].tokensPerWindow.length).toBeGreaterThan(1);
  });

  it('temperature fallback re-decodes repetitive output by sampling, reproducibly with a seed', async () => {
    const req = { audio: audio[1], options: { language: 'en', maxNewTokens: 24, temperature: [0, 0.5, 1.0], seed: 3, noSpeechThreshold: null } };
    const [a] = await eng.transcribe([req]);
    const [b] = await eng.transcribe([req]);
    expect(a.tokensPerWindow).toEqual(b.tokensPerWindow);
    // greedy output of a random model is a token loop: compression ratio > 2.4 forces the fallback
    expect(a.segments.length).toBeGreaterThan(0);
    for (const s of a.segments) {
      expect([0.5, 1.0]).toContain(s.temperature);
      expect(s.compressionRatio).toBeGreaterThan(0);
    }
    // a hot temperature really samples (this model's logits are ~150 with gaps of a few units)
    const [hot] = await eng.transcribe([{ ...req, options: { ...req.options, temperature: [0, 50] } }]);
    expect(hot.tokensPerWindow[0]).not.toEqual(golden.inputs.speech.generate!.timestamps);
    // thresholds off: no fallback, greedy golden tokens
    const [c] = await eng.transcribe([{ ...req, options: { ...req.options, compressionRatioThreshold: null, logprobThreshold: null } }]);
    expect(c.tokensPerWindow[0]).toEqual(golden.inputs.speech.generate!.timestamps);
  });

  it('no-speech skip drops the window text but still reports its tokens', async () => {
    const [r] = await eng.transcribe([{ audio: audio[0], options: { language: 'en', temperature: 0, maxNewTokens: 8, noSpeechThreshold: -1, logprobThreshold: null } }]);
    expect(r.segments).toEqual([]);
    expect(r.text).toBe('');
    expect(r.tokensPerWindow[0]).toEqual(golden.inputs.tone.generate!.timestamps.slice(0, 8));
  });

  it('word timestamps fall back to proportional timing on exports without cross-attentions', async () => {
    const [r] = await eng.transcribe([{ audio: audio[2], options: { language: 'en', temperature: 0, maxNewTokens: 24, wordTimestamps: true, timestamps: false } }]);
    expect(r.wordTimestamps).toBe('proportional');
    expect(r.segments.length).toBeGreaterThan(0);
    for (const s of r.segments) {
      expect(s.words!.length).toBeGreaterThan(0);
      expect(s.words!.map((w) => w.word).join('')).toBe(s.text);
      for (const w of s.words!) {
        expect(w.start).toBeGreaterThanOrEqual(s.start - 1e-9);
        expect(w.end).toBeLessThanOrEqual(s.end + 1e-9);
        expect(w.probability).toBeGreaterThan(0);
        expect(w.probability).toBeLessThanOrEqual(1);
      }
    }
  });

  it('prompts: <|startofprev|> + previous text before the SOT sequence; initialPrompt conditions window 1', async () => {
    const p = eng.buildPrompt({ language: 'en', timestamps: true, previous: [1, 2, 3] });
    expect(p.prompt).toEqual([50361, 1, 2, 3, 50258, 50259, 50359]);
    expect(p.sotIndex).toBe(4);
    const tr = eng.buildPrompt({ language: 'de', task: 'translate', timestamps: false });
    expect(tr.prompt).toEqual([50258, 50261, 50358, 50363]);
    const long = eng.buildPrompt({ language: 'en', timestamps: true, previous: Array(500).fill(7) });
    expect(long.prompt.length).toBe(1 + 223 + 3);
    const [r] = await eng.transcribe([{ audio: audio[2], options: { language: 'en', temperature: 0, maxNewTokens: 8, initialPrompt: 'Ask not.', noSpeechThreshold: null } }]);
    expect(r.tokensPerWindow[0]).toHaveLength(8);
  });

  it('detectLanguage(batch) from raw audio', async () => {
    const res = await eng.detectLanguage([audio[0], audio[2]]);
    res.forEach((r, i) => {
      const g = golden.inputs[GOLDEN_NAMES[i * 2]].language_detection!.top5;
      expect(`<|${r.language}|>`).toBe(g[0][0]);
      expect(r.probs[0][1]).toBeCloseTo(g[0][1], 3);
    });
  });

  it('tokenizer: timestamps, specials and segment splitting', () => {
    const t = eng.tokenizer;
    expect(t.timestampToken(0)).toBe(50364);
    expect(t.timestampToken(1.08)).toBe(50364 + 54);
    expect(t.timestampSeconds(50364 + 1500)).toBeCloseTo(30, 9);
    expect(t.noSpeech).toBe(50362);
    const text = t.encodeText('hello world');
    expect(t.decode([50258, ...text, 50257])).toBe(' hello world');
    const segs = t.splitByTimestamps([50364, ...text, 50364 + 50, 50364 + 50, ...text, 50364 + 100]);
    expect(segs.map((s) => [s.start, s.end, s.text])).toEqual([
      [0, 1, ' hello world'],
      [1, 2, ' hello world'],
    ]);
    expect(t.decodeWithTimestamps([50364, ...text, 50414])).toBe('<|0.00|> hello world<|1.00|>');
  });
});
