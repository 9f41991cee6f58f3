/**
 * bench/whispercpp/onnx-to-ggml.ts on the Whisper fixture, read back with a reader written here from whisper.cpp's
 * `whisper_model_load`: hparams, mel filters, vocabulary, the exact tensor set and shapes the loader creates
 * (it refuses a file with a missing, extra or misshapen tensor), per-tensor types, and values against the ONNX
 * initializers (MatMul weights transposed back, deduplicated tensors resolved). whisper.cpp itself is not needed.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertOnnxToGgml, f32ToF16Bits, GGML_MAGIC } from '../../bench/whispercpp/onnx-to-ggml.ts';
import { melFilterBank } from '../../src/engines/whisper/features.ts';
import { WHISPER_FIXTURE } from '../helpers/paths.ts';

const { onnx } = onnxProto;

interface GgmlTensor {
  ne: number[];
  ttype: number;
  data: Float32Array;
}

/** whisper_model_load's reading order, nothing more. */
function readGgml(file: string) {
  const b = readFileSync(file);
  let o = 0;
  const i32 = () => {
    const v = b.readInt32LE(o);
    o += 4;
    return v;
  };
  const f32s = (n: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = b.readFloatLE(o + 4 * i);
    o += 4 * n;
    return a;
  };
  const magic = i32() >>> 0;
  const names = ['n_vocab', 'n_audio_ctx', 'n_audio_state', 'n_audio_head', 'n_audio_layer', 'n_text_ctx', 'n_text_state', 'n_text_head', 'n_text_layer', 'n_mels', 'ftype'];
  const hparams = Object.fromEntries(names.map((k) => [k, i32()]));
  const nMel = i32();
  const nFft = i32();
  const filters = f32s(nMel * nFft);
  const vocab: Buffer[] = [];
  for (let n = i32(), i = 0; i < n; i++) {
    const len = i32();
    vocab.push(b.subarray(o, o + len));
    o += len;
  }
  const tensors = new Map<string, GgmlTensor>();
  while (o < b.length) {
    const nDims = i32();
    const len = i32();
    const ttype = i32();
    const ne = Array.from({ length: nDims }, i32);
    const name = b.subarray(o, o + len).toString('utf8');
    o += len;
    const n = ne.reduce((a, x) => a * x, 1);
    let data: Float32Array;
    if (ttype === 0) data = f32s(n);
    else {
      data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = halfToFloat(b.readUInt16LE(o + 2 * i));
      o += 2 * n;
    }
    expect(tensors.has(name), name).toBe(false);
    tensors.set(name, { ne, ttype, data });
  }
  return { magic, hparams, nMel, nFft, filters, vocab, tensors };
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** The tensors whisper_model_load creates, with their ne (innermost first) and whether they follow wtype. */
function expectedTensors(h: Record<string, number>): Map<string, { ne: number[]; big: boolean }> {
  const d = h.n_audio_state;
  const m = new Map<string, { ne: number[]; big: boolean }>();
  const add = (name: string, ne: number[], big = false) => m.set(name, { ne, big });
  add('encoder.positional_embedding', [d, h.n_audio_ctx]);
  add('encoder.conv1.weight', [3, h.n_mels, d], true);
  add('encoder.conv1.bias', [1, d]);
  add('encoder.conv2.weight', [3, d, d], true);
  add('encoder.conv2.bias', [1, d]);
  add('encoder.ln_post.weight', [d]);
  add('encoder.ln_post.bias', [d]);
  const block = (p: string) => {
    add(`${p}.attn_ln.weight`, [d]);
    add(`${p}.attn_ln.bias`, [d]);
    add(`${p}.attn.query.weight`, [d, d], true);
    add(`${p}.attn.query.bias`, [d]);
    add(`${p}.attn.key.weight`, [d, d], true);
    add(`${p}.attn.value.weight`, [d, d], true);
    add(`${p}.attn.value.bias`, [d]);
    add(`${p}.attn.out.weight`, [d, d], true);
    add(`${p}.attn.out.bias`, [d]);
    add(`${p}.mlp_ln.weight`, [d]);
    add(`${p}.mlp_ln.bias`, [d]);
    add(`${p}.mlp.0.weight`, [d, 4 * d], true);
    add(`${p}.mlp.0.bias`, [4 * d]);
    add(`${p}.mlp.2.weight`, [4 * d, d], true);
    add(`${p}.mlp.2.bias`, [d]);
  };
  for (let i = 0; i < h.n_audio_layer; i++) block(`encoder.blocks.${i}`);
  add('decoder.positional_embedding', [d, h.n_text_ctx]);
  add('decoder.token_embedding.weight', [d, h.n_vocab], true);
  add('decoder.ln.weight', [d]);
  add('decoder.ln.bias', [d]);
  for (let i = 0; i < h.n_text_layer; i++) {
    const p = `decoder.blocks.${i}`;
    block(p);
    add(`${p}.cross_attn_ln.weight`, [d]);
    add(`${p}.cross_attn_ln.bias`, [d]);
    add(`${p}.cross_attn.query.weight`, [d, d], true);
    add(`${p}.cross_attn.query.bias`, [d]);
    add(`${p}.cross_attn.key.weight`, [d, d], true);
    add(`${p}.cross_attn.value.weight`, [d, d], true);
    add(`${p}.cross_attn.value.bias`, [d]);
    add(`${p}.cross_attn.out.weight`, [d, d], true);
    add(`${p}.cross_attn.out.bias`, [d]);
  }
  return m;
}

const graphs = new Map<string, onnxProto.onnx.IGraphProto>();
const graphOf = (file: string) => {
  if (!graphs.has(file)) graphs.set(file, onnx.ModelProto.decode(readFileSync(file)).graph!);
  return graphs.get(file)!;
};

/** The initializer that a node consumes as input `k` (through an Identity, as the exporter deduplicates). */
function initializerOf(onnxFile: string, nodeName: string, k: number): { dims: number[]; data: Float32Array } {
  const g = graphOf(onnxFile);
  const node = g.node!.find((n) => n.name === nodeName);
  if (!node) throw new Error(`no node ${nodeName}`);
  let name = node.input![k];
  const identity = g.node!.find((n) => n.opType === 'Identity' && n.output![0] === name);
  if (identity) name = identity.input![0];
  const t = g.initializer!.find((x) => x.name === name);
  if (!t) throw new Error(`${nodeName} input ${k} (${name}) is not an initializer`);
  const dims = t.dims!.map(Number);
  const n = dims.reduce((a, x) => a * x, 1);
  return { dims, data: new Float32Array(Uint8Array.from(t.rawData!).buffer, 0, n) };
}

/** Index of the first unequal element, -1 when equal (toEqual on millions of floats takes seconds). */
function firstDifference(a: Float32Array, b: Float32Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'ggml-convert-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.skipIf(!existsSync(WHISPER_FIXTURE))('onnx-to-ggml (whisper.cpp model file)', () => {
  const cfg = () => JSON.parse(readFileSync(path.join(WHISPER_FIXTURE, 'config.json'), 'utf8'));
  const enc = path.join(WHISPER_FIXTURE, 'onnx', 'encoder_model.onnx');
  const dec = path.join(WHISPER_FIXTURE, 'onnx', 'decoder_model.onnx');
  let f32: ReturnType<typeof readGgml>;
  let f16: ReturnType<typeof readGgml>;
  beforeAll(() => {
    expect(convertOnnxToGgml(WHISPER_FIXTURE, path.join(tmp, 'f32.bin'), 'f32').tiedOutput).toBe(true);
    convertOnnxToGgml(WHISPER_FIXTURE, path.join(tmp, 'f16.bin'), 'f16');
    f32 = readGgml(path.join(tmp, 'f32.bin'));
    f16 = readGgml(path.join(tmp, 'f16.bin'));
  });

  it('writes the magic and the hparams of config.json', () => {
    const c = cfg();
    expect(f32.magic).toBe(GGML_MAGIC);
    expect(f32.hparams).toEqual({
      n_vocab: c.vocab_size,
      n_audio_ctx: c.max_source_positions,
      n_audio_state: c.d_model,
      n_audio_head: c.encoder_attention_heads,
      n_audio_layer: c.encoder_layers,
      n_text_ctx: c.max_target_positions,
      n_text_state: c.d_model,
      n_text_head: c.decoder_attention_heads,
      n_text_layer: c.decoder_layers,
      n_mels: c.num_mel_bins,
      ftype: 0,
    });
    expect(f16.hparams.ftype).toBe(1);
  });

  it("writes our engine's mel filters as [n_mel][1 + n_fft/2]", () => {
    expect([f32.nMel, f32.nFft]).toEqual([80, 201]);
    const ours = melFilterBank(201, 80, 0, 8000, 16000);
    for (let i = 0; i < ours.length; i++) expect(f32.filters[i]).toBe(Math.fround(ours[i]));
    // orientation: the first mel band covers the lowest FFT bins only
    expect(f32.filters[1]).toBeGreaterThan(0);
    expect(f32.filters.subarray(10, 201).every((x) => x === 0)).toBe(true);
  });

  it('writes the byte-level vocabulary as bytes, in id order', () => {
    const tok = JSON.parse(readFileSync(path.join(WHISPER_FIXTURE, 'tokenizer.json'), 'utf8'));
    expect(f32.vocab.length).toBe(Object.keys(tok.model.vocab).length);
    expect(f32.vocab[0].toString()).toBe('!');
    expect(f32.vocab[220].toString()).toBe(' '); // whisper.cpp looks " " up to suppress a blank start
    expect(f32.vocab[tok.model.vocab['Ġthe']].toString()).toBe(' the');
    const cafe = tok.model.vocab['Ã©']; // 'é' is two bytes, two byte-level characters
    if (cafe !== undefined) expect([...f32.vocab[cafe]]).toEqual([0xc3, 0xa9]);
  });

  it('holds exactly the tensors whisper_model_load creates, with its shapes, f16 where it uses wtype', () => {
    const want = expectedTensors(f32.hparams);
    expect([...f32.tensors.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [name, w] of want) {
      expect(f32.tensors.get(name)!.ne, name).toEqual(w.ne);
      expect(f32.tensors.get(name)!.ttype, name).toBe(0);
      expect(f16.tensors.get(name)!.ttype, name).toBe(w.big ? 1 : 0);
    }
  });

  it('holds the ONNX values: MatMul weights transposed back to [out, in], deduplicated tensors resolved', () => {
    const d = f32.hparams.n_audio_state;
    const cases: [string, string, string][] = [
      ['encoder.blocks.0.attn.query.weight', enc, '/e/layers.0/self_attn/q_proj/MatMul'],
      ['encoder.blocks.1.mlp.0.weight', enc, '/e/layers.1/fc1/MatMul'],
      ['decoder.blocks.0.attn.key.weight', dec, '/k_proj/MatMul'], // no bias: named by its v_proj sibling
      ['decoder.blocks.0.cross_attn.key.weight', dec, '/k_proj_1/MatMul'],
      ['decoder.blocks.1.attn.key.weight', dec, '/k_proj_2/MatMul'],
      ['decoder.blocks.1.cross_attn.out.weight', dec, '/out_proj_3/MatMul'],
      ['decoder.blocks.1.mlp.2.weight', dec, '/fc2_1/MatMul'],
    ];
    for (const [name, file, node] of cases) {
      const { dims, data } = initializerOf(file, node, 1); // [in, out]
      const t = f32.tensors.get(name)!;
      expect(t.ne, name).toEqual([dims[0], dims[1]]); // ne = [in, out]: rows of `out`, each `in` long
      const [nIn, nOut] = dims;
      for (const [i, o] of [
        [0, 1],
        [1, 0],
        [nIn - 1, nOut - 2],
        [3, 5],
      ])
        expect(t.data[o * nIn + i], `${name}[${o}][${i}]`).toBe(data[i * nOut + o]);
      // f16: rounded, not reordered
      const h = f16.tensors.get(name)!.data;
      for (let k = 0; k < t.data.length; k += 97) expect(Math.abs(h[k] - t.data[k])).toBeLessThanOrEqual(Math.abs(t.data[k]) * 2 ** -11 + 2 ** -25);
    }
    const direct: [string, string, string, number][] = [
      ['encoder.positional_embedding', enc, '/e/Add_2', 1],
      ['encoder.conv1.weight', enc, '/e/conv1/Conv', 1],
      ['decoder.token_embedding.weight', dec, '/embed_tokens/Gather', 0],
      ['decoder.blocks.1.attn.value.bias', dec, '/v_proj_2/Add', 0],
      ['decoder.blocks.1.mlp_ln.weight', dec, '/final_layer_norm_1/LayerNormalization', 1], // behind an Identity
      ['decoder.ln.bias', dec, '/layer_norm/LayerNormalization', 2],
    ];
    for (const [name, file, node, k] of direct) {
      const { data } = initializerOf(file, node, k);
      const got = f32.tensors.get(name)!.data;
      expect(got.length, name).toBe(data.length);
      expect(firstDifference(got, data), name).toBe(-1);
    }
    expect(f32.tensors.get('decoder.token_embedding.weight')!.data.length).toBe(d * f32.hparams.n_vocab);
  });

  it('skips the output projection only because it is the token embedding transposed (whisper.cpp ties them)', () => {
    const g = graphOf(dec);
    const proj = g.node!.find((n) => n.opType === 'MatMul' && g.initializer!.some((t) => t.name === n.input![1] && Number(t.dims![1]) === cfg().vocab_size))!;
    const { dims, data } = initializerOf(dec, proj.name!, 1); // [d, vocab]
    const emb = f32.tensors.get('decoder.token_embedding.weight')!.data; // [vocab][d]
    for (const [v, i] of [
      [0, 0],
      [50257, 3],
      [dims[1] - 1, dims[0] - 1],
    ])
      expect(data[i * dims[1] + v]).toBe(emb[v * dims[0] + i]);
  });

  it('refuses an export whose output projection is not the token embedding, unless told it is for timing only', () => {
    const dir = path.join(tmp, 'untied');
    mkdirSync(path.join(dir, 'onnx'), { recursive: true });
    for (const f of ['config.json', 'tokenizer.json', 'preprocessor_config.json']) copyFileSync(path.join(WHISPER_FIXTURE, f), path.join(dir, f));
    copyFileSync(enc, path.join(dir, 'onnx', 'encoder_model.onnx'));
    const model = onnx.ModelProto.decode(readFileSync(dec));
    const proj = model.graph!.initializer!.find((t) => Number(t.dims?.[1]) === cfg().vocab_size)!;
    const raw = Uint8Array.from(proj.rawData!);
    new Float32Array(raw.buffer)[12345] += 0.5; // one weight of the projection no longer equals the embedding
    proj.rawData = raw;
    writeFileSync(path.join(dir, 'onnx', 'decoder_model.onnx'), onnx.ModelProto.encode(model).finish());
    expect(() => convertOnnxToGgml(dir, path.join(tmp, 'untied.bin'), 'f16')).toThrow(/output projection is not the token embedding/);
    const r = convertOnnxToGgml(dir, path.join(tmp, 'untied.bin'), 'f16', { allowUntied: true });
    expect(r.tiedOutput).toBe(false);
    expect(r.tensors.length).toBe(f16.tensors.size);
  });

  it('rounds to half precision as numpy does (nearest, ties to even)', () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f32ToF16Bits(-2)).toBe(0xc000);
    expect(f32ToF16Bits(0.1)).toBe(0x2e66);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // rounds up to inf
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (up)
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16Bits(2 ** -26)).toBe(0); // below half of it
    expect(halfToFloat(f32ToF16Bits(6.097555160522461e-5))).toBe(6.097555160522461e-5); // largest subnormal, exact
    expect(halfToFloat(f32ToF16Bits(-3.140625))).toBe(-3.140625);
  });
});
