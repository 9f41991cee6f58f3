/**
 * The Moonshine engine against the reference (`moonshine-mini-random/golden/golden.json`: Hugging Face `generate`,
 * greedy, 24 new tokens, fp32): encoder first outputs within 1e-4, every greedy token identical on both decoder
 * layouts, int8 within the tolerance MANIFEST states, batches of equal-length audio equal to single runs, and what
 * the engine adds around the model (windows, budget, word timings, validation).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeGreedy } from '../../../src/engines/seq2seq/generate.ts';
import { loadMoonshineConfig, MOONSHINE_MIN_SAMPLES, MoonshineEngine, MoonshineTokenizer, moonshineFrames, paddedSamples } from '../../../src/engines/moonshine/index.ts';
import { MODELS_DIR } from '../../helpers/paths.ts';
import { readWav } from '../whisper/helpers.ts';

const DIR = join(MODELS_DIR, 'moonshine-mini-random');
interface GoldenCase {
  wav: string;
  samples: number;
  encoder: { shape: number[]; first8: number[] };
  greedy: number[];
}
const golden: { inputs: Record<string, GoldenCase> } = JSON.parse(readFileSync(join(DIR, 'golden/golden.json'), 'utf8'));
const NAMES = Object.keys(golden.inputs);
const audioOf = (name: string) => readWav(join(DIR, 'golden', golden.inputs[name].wav)).samples;
const GREEDY = { maxNewTokens: 24, temperature: 0 } as const;

describe('Moonshine config and tokenizer', () => {
  it('reads dimensions from config.json and computes encoder frames from the sample count as the golden shapes', async () => {
    const c = await loadMoonshineConfig(DIR);
    expect(c).toMatchObject({ hiddenSize: 64, decoderLayers: 2, decoderKvHeads: 4, headDim: 16, vocabSize: 2048, startTokenId: 1, eosTokenId: 2, samplingRate: 16000 });
    for (const g of Object.values(golden.inputs)) expect(moonshineFrames(g.samples)).toBe(g.encoder.shape[1]);
    expect(moonshineFrames(MOONSHINE_MIN_SAMPLES)).toBe(1);
    expect(moonshineFrames(MOONSHINE_MIN_SAMPLES - 1)).toBe(0);
  });

  it('refuses a folder that is not Moonshine', async () => {
    await expect(loadMoonshineConfig(join(MODELS_DIR, 'whisper-mini-random'))).rejects.toThrow(/not a Moonshine model/);
  });

  it('decodes text without specials, keeps word-initial spaces in pieces, round-trips text', async () => {
    const t = await MoonshineTokenizer.load(DIR);
    const ids = t.encodeText('ask not what your country');
    expect(t.decode([1, ...ids, 2])).toBe('ask not what your country');
    const pieces = ids.map((i) => t.decodePiece([i]));
    expect(pieces.join('')).toBe(' ask not what your country');
    expect(pieces.filter((p) => p.startsWith(' '))).toHaveLength(5);
    expect(t.decode([])).toBe('');
    // ids past the tokenizer's vocabulary (a random model at real size emits them) read as U+FFFD, not fatal
    const withUnknown = t.decode([...ids.slice(0, 2), 999_999, ...ids.slice(2)]);
    expect(withUnknown.split('\uFFFD')).toHaveLength(2);
    expect(withUnknown.replace('\uFFFD', '')).toBe('ask not what your country');
  });
});

for (const layout of ['merged', 'split'] as const) {
  describe(`Moonshine fp32, ${layout} decoder, against the golden`, () => {
    let eng: MoonshineEngine;
    beforeAll(async () => {
      eng = await MoonshineEngine.load(DIR, { decoderLayout: layout });
    });
    afterAll(async () => eng?.close());

    it('loads the requested layout and describes itself as an English transcription model', () => {
      expect(eng.info).toMatchObject({ family: 'moonshine', layout, quantized: false, languages: ['en'], multilingual: false, tasks: ['transcribe'], crossAttentions: false });
    });

    it.each(NAMES)('%s: encoder shape and first outputs within 1e-4', async (name) => {
      const g = golden.inputs[name];
      const enc = await eng.model.encode([audioOf(name)]);
      expect([enc.batch, enc.frames, enc.dModel]).toEqual(g.encoder.shape);
      g.encoder.first8.forEach((v, i) => expect(Math.abs(enc.data[i] - v)).toBeLessThan(1e-4));
    });

    it.each(NAMES)('%s: transcribe gives the 24 golden greedy tokens', async (name) => {
      const [r] = await eng.transcribe([{ audio: audioOf(name), options: GREEDY }]);
      expect(r.tokensPerWindow).toEqual([golden.inputs[name].greedy]);
      expect(r.language).toBe('en');
      expect(r.segments).toHaveLength(r.text ? 1 : 0);
    });
  });
}

describe('Moonshine int8 (merged and split)', () => {
  // MANIFEST: int8 merged agrees fully on 2 of 3 inputs; measured here: tone diverges at its 7th token (9 of 24 equal).
  for (const layout of ['merged', 'split'] as const) {
    it(`${layout}: at least 2 of 3 inputs give all 24 golden tokens, and every input its first 6`, async () => {
      const eng = await MoonshineEngine.load(DIR, { decoderLayout: layout, precision: 'int8' });
      try {
        expect(eng.info.quantized).toBe(true);
        let full = 0;
        for (const name of NAMES) {
          const [r] = await eng.transcribe([{ audio: audioOf(name), options: GREEDY }]);
          const toks = r.tokensPerWindow[0];
          expect(toks).toHaveLength(24);
          expect(toks.slice(0, 6)).toEqual(golden.inputs[name].greedy.slice(0, 6));
          if (toks.every((t, i) => t === golden.inputs[name].greedy[i])) full++;
        }
        expect(full).toBeGreaterThanOrEqual(2);
      } finally {
        await eng.close();
      }
    });
  }
});

describe('Moonshine q8 (the fp32 decoder rewritten to 8-bit blocks at load)', () => {
  // Measured: speech and jfk give all 24 golden tokens; tone's first token is a near-tie that flips (its logits are
  // within 0.017 RMS of fp32, the int8 export's 0.038: see test/models/onnx-matmul-nbits.test.ts for Whisper's).
  it('split: reports q8, and at least 2 of 3 inputs give all 24 golden tokens (the bar MANIFEST sets for int8)', async () => {
    const eng = await MoonshineEngine.load(DIR, { decoderLayout: 'split', precision: 'q8' });
    try {
      expect(eng.info).toMatchObject({ precision: 'q8', quantized: false });
      let full = 0;
      for (const name of NAMES) {
        const [r] = await eng.transcribe([{ audio: audioOf(name), options: GREEDY }]);
        expect(r.tokensPerWindow[0]).toHaveLength(24);
        if (r.tokensPerWindow[0].every((t, i) => t === golden.inputs[name].greedy[i])) full++;
      }
      expect(full).toBeGreaterThanOrEqual(2);
    } finally {
      await eng.close();
    }
  });
});

describe('Moonshine engine behaviour', () => {
  let eng: MoonshineEngine;
  beforeAll(async () => {
    eng = await MoonshineEngine.load(DIR, {});
  });
  afterAll(async () => eng?.close());

  it('a batch of equal-length audio is one encoder run and gives exactly the single runs', async () => {
    const tone = audioOf('tone');
    const jfkCut = audioOf('jfk').slice(0, tone.length);
    const speechCut = audioOf('speech').slice(0, tone.length);
    const singles = [];
    for (const a of [tone, jfkCut, speechCut]) singles.push((await eng.transcribe([{ audio: a, options: GREEDY }]))[0].tokensPerWindow[0]);
    const runs = eng.model.timing.encoderMs;
    const before = eng.counters().decoderRuns;
    const batch = await eng.transcribe([tone, jfkCut, speechCut].map((audio) => ({ audio, options: GREEDY })));
    expect(batch.map((r) => r.tokensPerWindow[0])).toEqual(singles);
    expect(batch[0].tokensPerWindow[0]).toEqual(golden.inputs.tone.greedy);
    // one prefill + 23 cached steps for the three rows together
    expect(eng.counters().decoderRuns - before).toBe(24);
    expect(eng.model.timing.encoderMs).toBeGreaterThan(runs);
  });

  it('audio of different lengths in one call: each as alone (one encoder batch per length)', async () => {
    const all = await eng.transcribe(NAMES.map((n) => ({ audio: audioOf(n), options: GREEDY })));
    all.forEach((r, i) => expect(r.tokensPerWindow[0]).toEqual(golden.inputs[NAMES[i]].greedy));
  });

  it('the decoding machinery is the shared one: decodeGreedy on the engine model equals transcribe', async () => {
    const audio = audioOf('jfk');
    const enc = await eng.model.encode([audio]);
    const [r] = await decodeGreedy(eng.model, enc, [{ prompt: [1], sotIndex: 0, processors: [], maxNewTokens: 24 }], eng.ids);
    expect(r.tokens).toEqual(golden.inputs.jfk.greedy);
    expect(Number.isNaN(r.noSpeechProb)).toBe(true); // Moonshine has no no-speech token
  });

  it('beam search: beam 1 is greedy; beam 4 keeps the budget and scores at least its own first beam', async () => {
    const audio = audioOf('speech');
    const [b1] = await eng.transcribe([{ audio, options: { ...GREEDY, beamSize: 1 } }]);
    expect(b1.tokensPerWindow[0]).toEqual(golden.inputs.speech.greedy);
    const [b4] = await eng.transcribe([{ audio, options: { ...GREEDY, beamSize: 4 } }]);
    expect(b4.tokensPerWindow[0]).toHaveLength(24);
    expect(b4.segments[0].avgLogprob).toBeGreaterThanOrEqual(b1.segments[0].avgLogprob - 1e-9);
  });

  it('the token budget follows the audio (6.5 tokens/s) unless the request sets one', async () => {
    const audio = audioOf('tone'); // 5 s → 33 tokens; random weights never emit </s>
    const [r] = await eng.transcribe([{ audio, options: { temperature: 0 } }]);
    expect(r.tokensPerWindow[0]).toHaveLength(Math.ceil(5 * 6.5));
  });

  it('word timings are the proportional fallback inside the segment, and the result says so', async () => {
    const [r] = await eng.transcribe([{ audio: audioOf('jfk'), options: { ...GREEDY, wordTimestamps: true } }]);
    expect(r.wordTimestamps).toBe('proportional');
    const seg = r.segments[0];
    expect(seg.words!.length).toBeGreaterThan(0);
    expect(seg.words!.map((w) => w.word).join('')).toBe(seg.text);
    expect(seg.words![0].start).toBe(seg.start);
    expect(seg.words!.at(-1)!.end).toBe(seg.end);
  });

  it('audio over 30 s is decoded in 30 s windows, one segment each at its offset', async () => {
    const jfk = audioOf('jfk');
    const long = new Float32Array(40 * 16000);
    for (let i = 0; i < long.length; i += jfk.length) long.set(jfk.subarray(0, Math.min(jfk.length, long.length - i)), i);
    const [r] = await eng.transcribe([{ audio: long, options: { maxNewTokens: 4, temperature: 0 } }]);
    expect(r.tokensPerWindow).toHaveLength(2);
    expect(r.segments.map((s) => [s.start, s.end])).toEqual([
      [0, 30],
      [30, 40],
    ]);
    expect(r.duration).toBe(40);
  });

  it('very short audio is padded to the encoder minimum instead of failing; empty audio gives no text', async () => {
    const [short] = await eng.transcribe([{ audio: audioOf('jfk').slice(0, 200), options: { maxNewTokens: 2, temperature: 0 } }]);
    expect(short.tokensPerWindow[0]).toHaveLength(2);
    const [empty] = await eng.transcribe([{ audio: new Float32Array(0), options: { maxNewTokens: 2, temperature: 0 } }]);
    expect(empty.duration).toBe(0);
  });

  it("by default (MOONSHINE_PARTIAL_PAD_MS=0) a 'trimmed' request (live partial) runs the exact audio, keyed by its length", async () => {
    expect(eng.shapeKey(17000, 'trimmed')).toBe('exact@17000');
    expect(eng.shapeKey(200, 'trimmed')).toBe(`exact@${MOONSHINE_MIN_SAMPLES}`);
    expect(eng.shapeKey(17000, 'full')).toBe('');
    expect(eng.shapeKey(31 * 16000, 'trimmed')).toBe('');
    const [r] = await eng.transcribe([{ audio: audioOf('speech'), options: { ...GREEDY, encoder: 'trimmed' } }]);
    expect(r.tokensPerWindow[0]).toEqual(golden.inputs.speech.greedy);
  });

  it('with a padding quantum (padQuantumS 0.5) trimmed requests are padded to it and keyed by the padded length', async () => {
    expect(paddedSamples(16000, 8000)).toBe(16000);
    expect(paddedSamples(16001, 8000)).toBe(24000);
    expect(paddedSamples(10, 8000)).toBe(8000);
    const padding = await MoonshineEngine.load(DIR, { padQuantumS: 0.5 });
    try {
      expect(padding.shapeKey(17000, 'trimmed')).toBe('padded@24000');
      expect(padding.shapeKey(23000, 'trimmed')).toBe('padded@24000');
      expect(padding.shapeKey(17000, 'full')).toBe('');
      // speech (125,964 samples) is padded with zeros to 128,000: the same as transcribing that padded audio exactly
      const audio = audioOf('speech');
      const [r] = await padding.transcribe([{ audio, options: { ...GREEDY, encoder: 'trimmed' } }]);
      const zeroPadded = new Float32Array(128_000);
      zeroPadded.set(audio);
      const [byHand] = await padding.transcribe([{ audio: zeroPadded, options: GREEDY }]);
      expect(r.tokensPerWindow[0]).toEqual(byHand.tokensPerWindow[0]);
      expect(r.duration).toBe(audio.length / 16000);
      // 'full' on the same engine stays exact: the golden tokens
      const [full] = await padding.transcribe([{ audio, options: GREEDY }]);
      expect(full.tokensPerWindow[0]).toEqual(golden.inputs.speech.greedy);
    } finally {
      await padding.close();
    }
  });

  it('a prefix is forced after <s>: the result holds only what follows it', async () => {
    const audio = audioOf('jfk');
    const prefixIds = eng.tokenizer.encodeText('and so');
    const [r] = await eng.transcribe([{ audio, options: { maxNewTokens: 6, temperature: 0, prefix: 'and so' } }]);
    const enc = await eng.model.encode([audio]);
    const [hand] = await decodeGreedy(eng.model, enc, [{ prompt: [1, ...prefixIds], sotIndex: 0, processors: [], maxNewTokens: 6 }], eng.ids);
    expect(r.tokensPerWindow[0]).toEqual(hand.tokens);
  });

  it('refuses other languages and translation with a message naming the model', async () => {
    const audio = audioOf('tone');
    await expect(eng.transcribe([{ audio, options: { language: 'de' } }])).rejects.toThrow(/English model/);
    await expect(eng.transcribe([{ audio, options: { task: 'translate' } }])).rejects.toThrow(/only transcribes/);
    const [ok] = await eng.transcribe([{ audio, options: { language: 'en', maxNewTokens: 1 } }]);
    expect(ok.language).toBe('en');
    expect(await eng.detectLanguage([audio])).toEqual([{ language: 'en', probs: [['en', 1]] }]);
  });
});
