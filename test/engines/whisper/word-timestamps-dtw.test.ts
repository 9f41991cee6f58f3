/**
 * Cross-attention DTW word timestamps end to end on a real graph: the fixture's decoders are patched to
 * export `cross_attentions.{i}` (test/helpers/onnx-attentions.ts), the engine transcribes golden audio with
 * word timestamps, and the word times are checked against reference_timing.py, a numpy port of OpenAI
 * `whisper/timing.py` fed with the attention this test computes itself (its own onnxruntime session on the
 * patched first-step decoder, same token sequence).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WhisperEngine, type TranscribeResult } from '../../../src/engines/whisper/engine.ts';
import { longFormMel, sliceFrames } from '../../../src/engines/whisper/features.ts';
import { windowSegments } from '../../../src/engines/whisper/segments.ts';
import { alignTokens } from '../../../src/engines/whisper/word-timestamps.ts';
import { patchDecoder, patchedWhisperFolder, roundTrip } from '../../helpers/onnx-attentions.ts';
import { golden, loadAudio, MODEL_DIR } from './helpers.ts';

const SCRIPT = join(import.meta.dirname, 'reference_timing.py');
const python = (() => {
  const r = spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' });
  if (r.error) return { ok: false, why: `python3 not runnable (${r.error.message})` };
  if (r.status !== 0) return { ok: false, why: 'python3 has no numpy (apt python3-numpy)' };
  return { ok: true, why: '' };
})();

if (!python.ok) console.warn(`word-timestamps-dtw: reference comparison skipped: ${python.why}`);

/** One EngineCase: golden input, timestamp mode, and what the engine returned. */
interface EngineCase {
  name: 'speech' | 'jfk' | 'long';
  mode: 'notimestamps' | 'timestamps';
  audio: Float32Array;
  result: TranscribeResult;
}

const NAMES = ['speech', 'jfk'] as const;
const MODES = ['notimestamps', 'timestamps'] as const;
/** One DTW time step: 1500 encoder positions per 30 s. */
const STEP = 0.02;

describe(`whisper cross-attention DTW word timestamps on a patched real graph${python.ok ? '' : ` (reference check skipped: ${python.why})`}`, () => {
  const cfg = JSON.parse(readFileSync(join(MODEL_DIR, 'config.json'), 'utf8'));
  const heads: number = cfg.decoder_attention_heads;
  let dir = '';
  let work = '';
  let split: WhisperEngine;
  const cases: EngineCase[] = [];
  const longCases: EngineCase[] = [];

  beforeAll(async () => {
    dir = patchedWhisperFolder(MODEL_DIR, { heads });
    work = mkdtempSync(join(tmpdir(), 'xattn-ref-'));
    split = await WhisperEngine.load(dir, { decoderLayout: 'split', intraOpThreads: 1, interOpThreads: 1 });
    for (const name of NAMES) {
      const audio = loadAudio(name);
      for (const mode of MODES) {
        const [result] = await split.transcribe([
          {
            audio,
            options: { language: 'en', timestamps: mode === 'timestamps', temperature: 0, maxNewTokens: 24, wordTimestamps: true, noSpeechThreshold: null },
          },
        ]);
        cases.push({ name, mode, audio, result });
      }
    }
    // long.wav: two windows (time offset, last_speech_timestamp carried between windows)
    const long = loadAudio('long');
    for (const mode of MODES) {
      const [result] = await split.transcribe([
        { audio: long, options: { language: 'en', timestamps: mode === 'timestamps', temperature: 0, maxNewTokens: 24, wordTimestamps: true, noSpeechThreshold: null } },
      ]);
      longCases.push({ name: 'long', mode, audio: long, result });
    }
  });
  afterAll(async () => {
    await split?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('patcher: an unpatched decode/encode round trip is byte-identical; patching changes no existing output', async () => {
    const srcPath = join(MODEL_DIR, 'onnx', 'decoder_model.onnx');
    const src = readFileSync(srcPath);
    for (const f of ['decoder_model.onnx', 'decoder_model_merged.onnx']) {
      const b = readFileSync(join(MODEL_DIR, 'onnx', f));
      expect(Buffer.compare(Buffer.from(roundTrip(b)), b)).toBe(0);
    }
    const orig = await ort.InferenceSession.create(srcPath);
    const patched = await ort.InferenceSession.create(Buffer.from(patchDecoder(src, heads)));
    expect(patched.outputNames).toEqual([...orig.outputNames, ...Array.from({ length: cfg.decoder_layers }, (_, i) => `cross_attentions.${i}`)]);
    const ids = [50258, 50259, 50359, 50363, ...golden.inputs.jfk.generate!.notimestamps.slice(0, 6)];
    const enc = await split.encode([split.features(loadAudio('jfk'))]);
    const feeds = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
      encoder_hidden_states: new ort.Tensor('float32', enc.data, [1, enc.frames, enc.dModel]),
    };
    const a = await orig.run(feeds);
    const b = await patched.run(feeds);
    for (const n of orig.outputNames) expect(Buffer.compare(Buffer.from((b[n].data as Float32Array).buffer), Buffer.from((a[n].data as Float32Array).buffer))).toBe(0);
    const x = b['cross_attentions.0'];
    expect(x.dims).toEqual([1, heads, ids.length, enc.frames]);
    const p = x.data as Float32Array;
    for (let r = 0; r < heads * ids.length; r++) {
      let s = 0;
      for (let c = 0; c < enc.frames; c++) s += p[r * enc.frames + c];
      expect(s).toBeCloseTo(1, 4); // softmax rows
    }
    await orig.release();
    await patched.release();
  });

  it('the engine detects the outputs and uses cross-attention DTW; tokens stay the golden ones', () => {
    expect(split.info.crossAttentions).toBe(true);
    for (const c of cases) {
      expect(c.result.wordTimestamps).toBe('cross-attention-dtw');
      expect(c.result.tokensPerWindow).toEqual([golden.inputs[c.name].generate![c.mode]]);
    }
  });

  it('word times are monotonic and inside the audio; words carry the window text', () => {
    // random weights: the "words" are random tokens, often zero-length; only the structure is checked here
    expect(cases.reduce((n, c) => n + c.result.segments.flatMap((s) => s.words ?? []).length, 0)).toBeGreaterThan(20);
    const tok = split.tokenizer;
    for (const c of [...cases, ...longCases]) {
      const words = c.result.segments.flatMap((s) => s.words ?? []);
      expect(words.length).toBeGreaterThan(0);
      const duration = c.audio.length / 16000;
      let prevEnd = 0;
      for (const w of words) {
        expect(w.start).toBeGreaterThanOrEqual(prevEnd);
        expect(w.end).toBeGreaterThanOrEqual(w.start);
        expect(w.end).toBeLessThanOrEqual(duration);
        prevEnd = w.end;
      }
      // punctuation may move between neighbouring segments, but no text is lost or invented
      if (c.name !== 'long') expect(words.map((w) => w.word).join('')).toBe(c.result.segments.map((s) => s.text).join(''));
      // segment times follow the words, except where OpenAI pulls a too-long edge word in instead: then that word
      // may still reach past its segment by at most the median word duration (≤ 0.7 s)
      for (const s of c.result.segments) {
        if (!s.words!.length) continue;
        expect(s.words![0].start).toBeGreaterThanOrEqual(s.start - 0.7);
        expect(s.words!.at(-1)!.end).toBeLessThanOrEqual(s.end + 0.7);
      }
      expect(c.result.segments.every((s) => s.tokens.some((t) => t < tok.eot))).toBe(true);
    }
  });

  it.skipIf(!python.ok)('final words and segment times equal the numpy port of OpenAI timing.py (DTW, punctuation, duration clean-up)', async () => {
    // attention and logits from our own session on the patched first-step decoder, same token sequence as the engine's pass
    const session = await ort.InferenceSession.create(join(dir, 'onnx', 'decoder_model.onnx'), { intraOpNumThreads: 1, interOpNumThreads: 1 });
    const gen = JSON.parse(readFileSync(join(MODEL_DIR, 'generation_config.json'), 'utf8'));
    const alignmentHeads: [number, number][] = gen.alignment_heads;
    const tok = split.tokenizer;
    const sot = [tok.sot, 50259 /* <|en|> */, 50359 /* <|transcribe|> */];
    expect(longCases.every((c) => c.result.tokensPerWindow.length === 2)).toBe(true);
    const refCases: object[] = [];
    const oursTokens: number[][] = [];
    const all = [...cases, ...longCases];
    let file = 0;
    for (const c of all) {
      const contentFrames = Math.floor(c.audio.length / 160);
      const long = c.audio.length > 480000 ? longFormMel(c.audio, split.config.features) : null;
      const windows: object[] = [];
      let seek = 0;
      for (const windowTokens of c.result.tokensPerWindow) {
        const numFrames = Math.min(3000, contentFrames - seek);
        // the text of every piece of the window (before instantaneous/empty segments are dropped), as the engine aligns it
        const { pieces, seekAdvance } = windowSegments(windowTokens, {
          timestamps: c.mode === 'timestamps',
          timestampBegin: tok.timestampBegin,
          timePrecision: 0.02,
          segmentSize: numFrames,
          frameSec: 0.01,
          inputStride: 2,
        });
        const text = pieces.flatMap((p) => windowTokens.slice(p.from, p.to).filter((t) => t < tok.eot));
        const ids = [...sot, tok.noTimestamps, ...text, tok.eot];
        const enc = await split.encode([long ? sliceFrames(long, seek, 3000) : split.features(c.audio)]);
        const out = await session.run({
          input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
          encoder_hidden_states: new ort.Tensor('float32', enc.data, [1, enc.frames, enc.dModel]),
        });
        const seq = ids.length;
        const frames = enc.frames;
        const buf = new Float32Array(alignmentHeads.length * seq * frames);
        alignmentHeads.forEach(([layer, head], h) => {
          const a = out[`cross_attentions.${layer}`].data as Float32Array;
          buf.set(a.subarray(head * seq * frames, (head + 1) * seq * frames), h * seq * frames);
        });
        const attnFile = join(work, `attn${file}.f32`);
        writeFileSync(attnFile, Buffer.from(buf.buffer));
        const logits = out.logits.data as Float32Array;
        const logitsFile = join(work, `logits${file++}.f32`);
        writeFileSync(logitsFile, Buffer.from(logits.buffer, logits.byteOffset, logits.byteLength));
        windows.push({ seek, window_tokens: windowTokens, attn: attnFile, logits: logitsFile, n_rows: seq, attn_tokens: ids });
        // token level: our alignTokens on the same matrices (one start time per aligned row)
        const headMats = alignmentHeads.map((_, h) => buf.subarray(h * seq * frames, (h + 1) * seq * frames));
        oursTokens.push(text.length ? alignTokens(headMats, seq, frames, numFrames, cfg.median_filter_width ?? 7, sot.length, text.length + 1) : []);
        seek += seekAdvance;
      }
      refCases.push({
        n_heads: alignmentHeads.length,
        n_frames: 1500,
        vocab: 51865,
        sot_sequence: sot,
        medfilt_width: cfg.median_filter_width ?? 7,
        tokenizer_json: join(MODEL_DIR, 'tokenizer.json'),
        language: 'en',
        eot: tok.eot,
        no_timestamps: tok.noTimestamps,
        timestamp_begin: tok.timestampBegin,
        content_frames: contentFrames,
        windows,
      });
    }
    await session.release();
    const casesFile = join(work, 'cases.json');
    writeFileSync(casesFile, JSON.stringify(refCases));
    const py = spawnSync('python3', [SCRIPT, casesFile], { encoding: 'utf8', timeout: 120_000 });
    expect(py.stderr).toBe('');
    expect(py.status).toBe(0);
    type RefWord = { word: string; start: number; end: number; probability: number };
    const ref: { windows: { jump_times?: number[] }[]; segments: { start: number; end: number; text_tokens: number[]; words: RefWord[] }[] }[] = JSON.parse(py.stdout);
    const refTokens = ref.flatMap((r) => r.windows.map((w) => w.jump_times ?? []));

    // token start times (DTW jumps), straight from alignTokens
    let maxTokDiff = 0;
    let nTok = 0;
    refTokens.forEach((r, k) => {
      expect(oursTokens[k].length).toBe(r.length);
      r.forEach((t, i) => {
        maxTokDiff = Math.max(maxTokDiff, Math.abs(t - oursTokens[k][i]));
        nTok++;
      });
    });
    // final words and segments
    let maxDiff = 0;
    let maxSegDiff = 0;
    let maxProbDiff = 0;
    let nWords = 0;
    let nSegs = 0;
    let exact = 0;
    let merged = 0;
    ref.forEach((r, k) => {
      const segs = all[k].result.segments;
      expect(segs.length, `${all[k].name}/${all[k].mode}: segments`).toBe(r.segments.length);
      r.segments.forEach((rs, j) => {
        const s = segs[j];
        expect(s.tokens.filter((t) => t < split.tokenizer.eot)).toEqual(rs.text_tokens);
        maxSegDiff = Math.max(maxSegDiff, Math.abs(s.start - rs.start), Math.abs(s.end - rs.end));
        nSegs++;
        expect(s.words!.map((w) => w.word)).toEqual(rs.words.map((w) => w.word));
        rs.words.forEach((w, i) => {
          const o = s.words![i];
          const d = Math.max(Math.abs(w.start - o.start), Math.abs(w.end - o.end));
          maxDiff = Math.max(maxDiff, d);
          maxProbDiff = Math.max(maxProbDiff, Math.abs(w.probability - o.probability));
          nWords++;
          if (d === 0) exact++;
          if (/^\s*[\p{P}]|[\p{P}]$/u.test(w.word) && w.word.trim().length > 1) merged++;
        });
      });
    });
    console.log(
      `timing.py port vs engine: ${nTok} token times (max |diff| ${maxTokDiff.toFixed(3)} s); ${nSegs} segments (max |diff| ${maxSegDiff.toFixed(3)} s); ` +
        `${nWords} words in ${refTokens.length} windows of ${ref.length} transcriptions (${merged} with merged punctuation), ${exact} identical times, max |ours - reference| = ${maxDiff.toFixed(3)} s, ` +
        `max probability diff ${maxProbDiff.toExponential(1)}`,
    );
    // Tolerance: one DTW time step (20 ms). Both sides do the same float32 maths, but in different summation
    // orders (numpy pairwise vs sequential JS), so a near-tie in the DTW may resolve one column differently.
    expect(maxTokDiff).toBeLessThanOrEqual(STEP + 1e-9);
    expect(maxDiff).toBeLessThanOrEqual(STEP + 1e-9);
    expect(maxSegDiff).toBeLessThanOrEqual(STEP + 1e-9);
    expect(maxProbDiff).toBeLessThan(1e-5);
    expect(nWords).toBeGreaterThan(20);
  });

  it('merged decoder (If branches patched) gives the same tokens and word times as split', async () => {
    const merged = await WhisperEngine.load(dir, { decoderLayout: 'merged', intraOpThreads: 1, interOpThreads: 1 });
    try {
      expect(merged.info.crossAttentions).toBe(true);
      for (const c of cases.filter((x) => x.name === 'jfk')) {
        const [r] = await merged.transcribe([
          {
            audio: c.audio,
            options: { language: 'en', timestamps: c.mode === 'timestamps', temperature: 0, maxNewTokens: 24, wordTimestamps: true, noSpeechThreshold: null },
          },
        ]);
        expect(r.wordTimestamps).toBe('cross-attention-dtw');
        expect(r.tokensPerWindow).toEqual(c.result.tokensPerWindow);
        expect(r.segments.map((s) => s.words)).toEqual(c.result.segments.map((s) => s.words));
      }
    } finally {
      await merged.close();
    }
  });
});
