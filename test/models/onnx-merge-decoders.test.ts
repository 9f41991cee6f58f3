/**
 * `mergeDecodersInFolder` (src/models/onnx-merge-decoders.ts) against an Optimum-style merged export: the split
 * decoders of whisper-mini-random merged here give the inputs and outputs of its shipped `decoder_model_merged.onnx`
 * and the same logits and presents on a first step and a cached step in onnxruntime-node; the int8 pair merges to a
 * graph equal to the split int8 decoders; shared weights are stored once; decoders with external data merge to a
 * file that reads the data files in place; an existing merged file is kept unless forced; a merged decoder is refused;
 * `npm run models:merge-decoders -- DIR` writes both precisions.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mergeDecoderModels, mergeDecodersInFolder } from '../../src/models/onnx-merge-decoders.ts';
import { MODELS_DIR } from '../helpers/paths.ts';

const { onnx } = onnxProto;
const WHISPER = join(MODELS_DIR, 'whisper-mini-random');
const MADLAD = join(MODELS_DIR, 'madlad-mini-random');
const HEADS = 4;
const HEAD_DIM = 16;

type Feeds = Record<string, ort.Tensor>;
const session = (path: string, graphOptimizationLevel: 'basic' | 'all' = 'all') => ort.InferenceSession.create(path, { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel });
const bool = (v: boolean) => new ort.Tensor('bool', new Uint8Array([v ? 1 : 0]), [1]);
const ids = (xs: number[]) => new ort.Tensor('int64', BigInt64Array.from(xs.map(BigInt)), [1, xs.length]);
const emptyPasts = (s: ort.InferenceSession): Feeds =>
  Object.fromEntries(s.inputNames.filter((n) => n.startsWith('past_key_values.')).map((n) => [n, new ort.Tensor('float32', new Float32Array(0), [1, HEADS, 0, HEAD_DIM])]));
const pastsOf = (out: ort.InferenceSession.OnnxValueMapType): Feeds =>
  Object.fromEntries(
    Object.entries(out)
      .filter(([n]) => n.startsWith('present.'))
      .map(([n, t]) => [n.replace('present.', 'past_key_values.'), t as ort.Tensor]),
  );
const argmaxLast = (t: ort.Tensor): number => {
  const [, s, v] = t.dims;
  const d = (t.data as Float32Array).subarray((s - 1) * v, s * v);
  return d.reduce((best, x, i) => (x > d[best] ? i : best), 0);
};
/** Largest |a − b| of two tensors of the same shape (Infinity when the shapes differ). */
const maxDiff = (a: ort.Tensor, b: ort.Tensor): number => {
  if (a.dims.join() !== b.dims.join()) return Number.POSITIVE_INFINITY;
  const x = a.data as Float32Array;
  const y = b.data as Float32Array;
  return x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);
};

/** A copy of a fixture folder's config and ONNX files that this test may write into. */
function copyFolder(src: string, files: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'stt-merge-'));
  cpSync(join(src, 'config.json'), join(dir, 'config.json'));
  for (const f of files) cpSync(join(src, 'onnx', f), join(dir, 'onnx', f));
  return dir;
}

describe('merge-decoders: whisper-mini-random split decoders against its shipped merged decoder', () => {
  let dir: string;
  let ours: ort.InferenceSession;
  let shipped: ort.InferenceSession;
  let hidden: ort.Tensor;
  const prompt: number[] = JSON.parse(readFileSync(join(WHISPER, 'golden/golden.json'), 'utf8')).prompt_notimestamps;

  beforeAll(async () => {
    dir = copyFolder(WHISPER, ['decoder_model.onnx', 'decoder_with_past_model.onnx', 'decoder_model_quantized.onnx', 'decoder_with_past_model_quantized.onnx']);
    const written = mergeDecodersInFolder(dir);
    expect(written.map((w) => [w.path, w.written])).toEqual([
      [join(dir, 'onnx/decoder_model_merged.onnx'), true],
      [join(dir, 'onnx/decoder_model_merged_quantized.onnx'), true],
    ]);
    ours = await session(join(dir, 'onnx/decoder_model_merged.onnx'));
    shipped = await session(join(WHISPER, 'onnx/decoder_model_merged.onnx'));
    const encoder = await session(join(WHISPER, 'onnx/encoder_model.onnx'));
    const f = readFileSync(join(WHISPER, 'golden/jfk.features.f32'));
    const features = new Float32Array(f.buffer.slice(f.byteOffset, f.byteOffset + f.byteLength));
    hidden = (await encoder.run({ input_features: new ort.Tensor('float32', features, [1, 80, 3000]) })).last_hidden_state;
    await encoder.release();
  });
  afterAll(async () => {
    await ours?.release();
    await shipped?.release();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('has the inputs and outputs of the shipped merged decoder, use_cache_branch bool [1] last', () => {
    expect(ours.inputNames).toEqual(shipped.inputNames);
    expect(ours.outputNames).toEqual(shipped.outputNames);
    expect(ours.inputNames.at(-1)).toBe('use_cache_branch');
    const m = onnx.ModelProto.decode(readFileSync(join(dir, 'onnx/decoder_model_merged.onnx')));
    const cond = m.graph!.input!.find((i) => i.name === 'use_cache_branch')!;
    expect(cond.type!.tensorType!.elemType).toBe(onnx.TensorProto.DataType.BOOL);
    expect(cond.type!.tensorType!.shape!.dim!.map((d) => Number(d.dimValue))).toEqual([1]);
    expect(m.graph!.node!.map((n) => n.opType)).toEqual(['If']);
  });

  it('stores the weights both decoders share once, in the outer graph', () => {
    const size = (f: string) => statSync(join(dir, 'onnx', f)).size;
    // the two split files are ~27 MB each, nearly all the shared embedding and layer weights
    expect(size('decoder_model_merged.onnx')).toBeLessThan(size('decoder_model.onnx') * 1.05);
    const m = onnx.ModelProto.decode(readFileSync(join(dir, 'onnx/decoder_model_merged.onnx')));
    const outer = m.graph!.initializer!.map((t) => t.name);
    expect(outer.length).toBeGreaterThan(10);
    expect(outer.every((n) => /_merged_\d+$/.test(n!))).toBe(true);
    for (const a of m.graph!.node![0].attribute!) expect(a.g!.initializer!.every((t) => (t.dims ?? []).length <= 1)).toBe(true);
  });

  it('first step (use_cache_branch false, empty pasts) and a cached step give the shipped decoder’s logits and presents', async () => {
    const first: Feeds = { input_ids: ids(prompt), encoder_hidden_states: hidden, ...emptyPasts(ours), use_cache_branch: bool(false) };
    const [a, b] = [await ours.run(first), await shipped.run(first)];
    expect(Object.keys(a)).toEqual(Object.keys(b));
    for (const n of ours.outputNames) expect(maxDiff(a[n], b[n]), n).toBeLessThan(1e-5);
    expect(a['present.0.encoder.key'].dims).toEqual([1, HEADS, 1500, HEAD_DIM]);

    const next = argmaxLast(a.logits);
    const cached: Feeds = { input_ids: ids([next]), encoder_hidden_states: hidden, ...pastsOf(a), use_cache_branch: bool(true) };
    const [c, d] = [await ours.run(cached), await shipped.run(cached)];
    expect(c.logits.dims).toEqual([1, 1, 51865]);
    expect(maxDiff(c.logits, d.logits)).toBeLessThan(1e-5);
    for (const n of ours.outputNames.filter((x) => /^present\.\d+\.decoder\./.test(x))) {
      expect(c[n].dims).toEqual([1, HEADS, prompt.length + 1, HEAD_DIM]);
      expect(maxDiff(c[n], d[n]), n).toBeLessThan(1e-5);
    }
    // Optimum's with-past branch returns an empty constant for the encoder KV it does not recompute (callers keep
    // the previous one); this fixture's merge passes it through instead
    for (const n of ours.outputNames.filter((x) => /^present\.\d+\.encoder\./.test(x))) {
      expect(c[n].dims).toEqual([0, 1, 1, 1]);
      expect(d[n].dims).toEqual([1, HEADS, 1500, HEAD_DIM]);
    }
  });

  it('the int8 pair merges to a graph that computes what the split int8 decoders compute', async () => {
    // 'basic': at 'all' onnxruntime fuses the int8 MatMuls of a top-level graph and of an If branch differently
    // (cached-step logits then differ by ~5e-5); the graphs themselves compute the same
    const merged = await session(join(dir, 'onnx/decoder_model_merged_quantized.onnx'), 'basic');
    const noPast = await session(join(WHISPER, 'onnx/decoder_model_quantized.onnx'), 'basic');
    const withPast = await session(join(WHISPER, 'onnx/decoder_with_past_model_quantized.onnx'), 'basic');
    try {
      const a = await merged.run({ input_ids: ids(prompt), encoder_hidden_states: hidden, ...emptyPasts(merged), use_cache_branch: bool(false) });
      const b = await noPast.run({ input_ids: ids(prompt), encoder_hidden_states: hidden });
      for (const n of noPast.outputNames) expect(maxDiff(a[n], b[n]), n).toBeLessThan(1e-5);
      const next = argmaxLast(b.logits);
      const c = await merged.run({ input_ids: ids([next]), encoder_hidden_states: hidden, ...pastsOf(a), use_cache_branch: bool(true) });
      const d = await withPast.run({ input_ids: ids([next]), ...pastsOf(b) });
      expect(withPast.outputNames.length).toBe(5); // logits + decoder presents: the encoder ones were added
      for (const n of withPast.outputNames) expect(maxDiff(c[n], d[n]), n).toBeLessThan(1e-5);
    } finally {
      await Promise.all([merged.release(), noPast.release(), withPast.release()]);
    }
  });

  it('keeps an existing merged file unless forced', () => {
    const path = join(dir, 'onnx/decoder_model_merged.onnx');
    const before = readFileSync(path);
    writeFileSync(path, 'not a model');
    expect(mergeDecodersInFolder(dir).map((w) => w.written)).toEqual([false, false]);
    expect(readFileSync(path, 'utf8')).toBe('not a model');
    expect(mergeDecodersInFolder(dir, { force: true }).map((w) => w.written)).toEqual([true, true]);
    expect(Buffer.compare(readFileSync(path), before)).toBe(0); // deterministic
  });

  it('refuses a merged decoder and a folder without a split pair', () => {
    const merged = readFileSync(join(WHISPER, 'onnx/decoder_model_merged.onnx'));
    expect(() => mergeDecoderModels(merged, readFileSync(join(WHISPER, 'onnx/decoder_with_past_model.onnx')))).toThrow(/already has use_cache_branch/);
    const empty = mkdtempSync(join(tmpdir(), 'stt-merge-'));
    try {
      expect(() => mergeDecodersInFolder(empty)).toThrow(/no split decoder pair/);
    } finally {
      rmSync(empty, { recursive: true });
    }
  });
});

/**
 * What `onnx.save_model(..., save_as_external_data=True)` writes: every initializer with ≥ 1 KiB of raw data moved
 * to `dataName` (location / offset / length, data_location EXTERNAL).
 */
function externalize(bytes: Uint8Array, dataName: string): { model: Uint8Array; data: Buffer } {
  const m = onnx.ModelProto.decode(bytes);
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const t of m.graph!.initializer!) {
    if (!t.rawData || t.rawData.length < 1024) continue;
    chunks.push(Buffer.from(t.rawData));
    t.externalData = [
      { key: 'location', value: dataName },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(t.rawData.length) },
    ];
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    offset += t.rawData.length;
    t.rawData = new Uint8Array(0);
  }
  return { model: onnx.ModelProto.encode(m).finish(), data: Buffer.concat(chunks) };
}

describe('merge-decoders: weights in external data files', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stt-merge-ext-'));
    cpSync(join(MADLAD, 'onnx/decoder_model.onnx'), join(dir, 'reference/decoder_model.onnx'));
    for (const f of ['decoder_model', 'decoder_with_past_model']) {
      const { model, data } = externalize(readFileSync(join(MADLAD, 'onnx', `${f}.onnx`)), `${f}.onnx_data`);
      writeFileSync(join(dir, `${f}.onnx`), model);
      writeFileSync(join(dir, `${f}.onnx_data`), data);
    }
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('writes a merged file next to the data files that loads and computes what the inline decoder computes', async () => {
    const [w] = mergeDecodersInFolder(dir);
    expect(w.path).toBe(join(dir, 'decoder_model_merged.onnx'));
    // the weights stay in the data files
    expect(statSync(w.path).size).toBeLessThan(statSync(join(dir, 'decoder_model.onnx_data')).size / 4);
    const merged = await session(w.path);
    const inline = await session(join(dir, 'reference/decoder_model.onnx'));
    try {
      const src = [2942, 59, 2033, 46, 1];
      const hidden = new ort.Tensor(
        'float32',
        Float32Array.from({ length: src.length * 64 }, (_, i) => Math.sin(i)),
        [1, src.length, 64],
      );
      const feeds: Feeds = { input_ids: ids([0]), encoder_attention_mask: ids(src.map(() => 1)), encoder_hidden_states: hidden };
      const a = await merged.run({ ...feeds, ...emptyPasts(merged), use_cache_branch: bool(false) });
      const b = await inline.run(feeds);
      expect(maxDiff(a.logits, b.logits)).toBeLessThan(1e-5);
      expect(a.logits.dims).toEqual([1, 1, 2991]);
    } finally {
      await Promise.all([merged.release(), inline.release()]);
    }
  });
});

describe('npm run models:merge-decoders', () => {
  it('writes the merged fp32 and int8 decoders of a folder, keeps them on a second run, says when a folder is missing', async () => {
    const dir = copyFolder(MADLAD, ['decoder_model.onnx', 'decoder_with_past_model.onnx', 'decoder_model_quantized.onnx', 'decoder_with_past_model_quantized.onnx']);
    const cli = (args: string[]) =>
      promisify(execFile)('npx', ['tsx', 'src/cli/models.ts', 'merge-decoders', ...args], { cwd: join(import.meta.dirname, '../..'), timeout: 120_000 }).then(
        (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
        (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, out: e.stdout ?? '', err: e.stderr ?? '' }),
      );
    try {
      const r = await cli([dir]);
      expect(r.code).toBe(0);
      expect(r.out).toBe(`${join(dir, 'onnx/decoder_model_merged.onnx')}: written\n${join(dir, 'onnx/decoder_model_merged_quantized.onnx')}: written\n`);
      const s = await session(join(dir, 'onnx/decoder_model_merged_quantized.onnx'));
      expect(s.inputNames).toContain('use_cache_branch');
      await s.release();
      expect((await cli([dir])).out).toMatch(/decoder_model_merged\.onnx: exists, kept \(--force rewrites it\)/);
      const missing = await cli([join(dir, 'nope')]);
      expect(missing.code).toBe(2);
      expect(missing.err).toMatch(/needs one model folder/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
