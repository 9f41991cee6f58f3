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
import { alignTokens, splitWords } from '../../../src/engines/whisper/word-timestamps.ts';
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
  name: 'speech' | 'jfk';
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

  it('word times are monotonic and inside the audio', () => {
    // random weights: the "words" are random tokens, often zero-length; only the structure is checked here
    expect(cases.reduce((n, c) => n + c.result.segments.flatMap((s) => s.words ?? []).length, 0)).toBeGreaterThan(20);
    for (const c of cases) {
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
      for (const s of c.result.segments) expect(s.words!.map((w) => w.word).join('')).toBe(s.text);
    }
  });

  it.skipIf(!python.ok)('word times equal the numpy port of OpenAI find_alignment (within one 20 ms step)', async () => {
    // attention from our own session on the patched first-step decoder, same token sequence as the engine's pass
    const session = await ort.InferenceSession.create(join(dir, 'onnx', 'decoder_model.onnx'), { intraOpNumThreads: 1, interOpNumThreads: 1 });
    const alignmentHeads: [number, number][] = JSON.parse(readFileSync(join(MODEL_DIR, 'generation_config.json'), 'utf8')).alignment_heads;
    const tok = split.tokenizer;
    const sot = [tok.sot, 50259 /* <|en|> */, 50359 /* <|transcribe|> */];
    const refCases: object[] = [];
    const ours: { start: number; end: number }[][] = [];
    const oursTokens: number[][] = [];
    for (const [k, c] of cases.entries()) {
      const segs = c.result.segments;
      const text = segs.flatMap((s) => s.tokens.filter((t) => t < tok.eot));
      const ids = [...sot, tok.noTimestamps, ...text, tok.eot];
      const enc = await split.encode([split.features(c.audio)]);
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
      const file = join(work, `attn${k}.f32`);
      writeFileSync(file, Buffer.from(buf.buffer));
      // word token counts per segment, split as the engine splits them
      const counts = segs.flatMap((s) => splitWords(s.tokens.filter((t) => t < tok.eot), [], (t) => tok.decode(t)).map((w) => w.tokens.length));
      refCases.push({
        attn: file,
        n_heads: alignmentHeads.length,
        n_rows: seq,
        n_frames: frames,
        num_frames: Math.min(3000, Math.floor(c.audio.length / 160)),
        sot_len: sot.length,
        medfilt_width: cfg.median_filter_width ?? 7,
        word_token_counts: counts,
        time_offset: 0,
      });
      ours.push(segs.flatMap((s) => s.words!.map((w) => ({ start: w.start, end: w.end }))));
      // token level: our alignTokens on the same matrices (one start time per aligned row)
      const headMats = alignmentHeads.map((_, h) => buf.subarray(h * seq * frames, (h + 1) * seq * frames));
      oursTokens.push(alignTokens(headMats, seq, frames, Math.min(3000, Math.floor(c.audio.length / 160)), cfg.median_filter_width ?? 7, sot.length, text.length + 1));
    }
    await session.release();
    const casesFile = join(work, 'cases.json');
    writeFileSync(casesFile, JSON.stringify(refCases));
    const py = spawnSync('python3', [SCRIPT, casesFile], { encoding: 'utf8', timeout: 60_000 });
    expect(py.stderr).toBe('');
    expect(py.status).toBe(0);
    const ref: { words: { start: number; end: number }[]; jump_times: number[] }[] = JSON.parse(py.stdout);

    // token start times (DTW jumps), straight from alignTokens
    let maxTokDiff = 0;
    let nTok = 0;
    ref.forEach((r, k) => {
      expect(oursTokens[k].length).toBe(r.jump_times.length);
      r.jump_times.forEach((t, i) => {
        maxTokDiff = Math.max(maxTokDiff, Math.abs(t - oursTokens[k][i]));
        nTok++;
      });
    });
    let maxDiff = 0;
    let nWords = 0;
    let exact = 0;
    ref.forEach((r, k) => {
      expect(r.words.length).toBe(ours[k].length);
      r.words.forEach((w, i) => {
        const d = Math.max(Math.abs(w.start - ours[k][i].start), Math.abs(w.end - ours[k][i].end));
        maxDiff = Math.max(maxDiff, d);
        nWords++;
        if (d < 1e-9) exact++;
      });
    });
    console.log(
      `DTW vs reference_timing.py: ${nTok} token times (max |diff| ${maxTokDiff.toFixed(3)} s); ` +
        `${nWords} words in ${ref.length} windows, ${exact} identical, max |ours - reference| = ${maxDiff.toFixed(3)} s`,
    );
    // Tolerance: one DTW time step (20 ms). Both sides do the same float32 maths, but in different summation
    // orders (numpy pairwise vs sequential JS), so a near-tie in the DTW may resolve one column differently.
    expect(maxTokDiff).toBeLessThanOrEqual(STEP + 1e-9);
    expect(maxDiff).toBeLessThanOrEqual(STEP + 1e-9);
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
