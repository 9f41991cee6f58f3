/**
 * One of our Optimum-layout Whisper folders → a whisper.cpp ggml model file, so that whisper.cpp and our engine
 * can run the same weights side by side (bench/vs-whispercpp.ts).
 *
 *   npm run whispercpp:convert -- MODEL_DIR OUT.bin [--ftype f16|f32] [--allow-untied]
 *
 * The file is what whisper.cpp's `whisper_model_load` (src/whisper.cpp) reads: the "ggml" magic, 11 int32
 * hparams, the mel filters [n_mel][1 + n_fft/2], the byte-level vocabulary, then tensors under the OpenAI names
 * of models/convert-h5-to-ggml.py, each with its dims innermost first. The f16/f32 choice per tensor follows
 * that script (1-D tensors, conv biases and both position tables stay f32) without its detour through f16 for
 * f32 files, so an f32 file holds the ONNX weights exactly.
 *
 * Weights come from onnx/encoder_model.onnx and onnx/decoder_model.onnx (the no-past decoder computes the cross
 * K/V itself, so it holds every decoder weight), inline or in external `.onnx_data`. The exporter deduplicates
 * equal tensors behind Identity nodes (whose outputs keep the parameter names) and renames MatMul weights to
 * `onnx::MatMul_NNN`, stored transposed ([in, out]); those are named through the consuming node's scope:
 * `/e/layers.0/self_attn/q_proj/MatMul`, or the short `/k_proj_3/MatMul`, whose module the `Add` of the same
 * scope names by its bias (k_proj has no bias: its v_proj sibling of the same scope suffix does). The output
 * projection is not written: whisper.cpp always multiplies by the token embedding, so the conversion refuses an
 * export whose projection differs from it (the expanded real-size random folders: their tensors were drawn one by
 * one) unless `--allow-untied`, for timing only (same shapes and cost, different tokens).
 *
 * The mel filters are our engine's (Hugging Face's slaney filters, src/engines/whisper/features.ts), so both
 * sides compute the same front end.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import onnxProto from 'onnx-proto';
import { melFilterBank } from '../../src/engines/whisper/features.ts';
import { floatValues } from '../../src/models/onnx-initializer.ts';

const { onnx } = onnxProto;
type TensorProto = onnxProto.onnx.ITensorProto;

export const GGML_MAGIC = 0x67676d6c;
const FLOAT = 1;

/** One tensor as numpy would hold it for the h5 converter: row-major `shape` (outermost first). */
interface HfTensor {
  shape: number[];
  data: Float32Array;
}

export interface WhisperHparams {
  n_vocab: number;
  n_audio_ctx: number;
  n_audio_state: number;
  n_audio_head: number;
  n_audio_layer: number;
  n_text_ctx: number;
  n_text_state: number;
  n_text_head: number;
  n_text_layer: number;
  n_mels: number;
  ftype: number;
}

/** The order whisper.cpp reads them in. */
export const HPARAM_ORDER: (keyof WhisperHparams)[] = [
  'n_vocab',
  'n_audio_ctx',
  'n_audio_state',
  'n_audio_head',
  'n_audio_layer',
  'n_text_ctx',
  'n_text_state',
  'n_text_head',
  'n_text_layer',
  'n_mels',
  'ftype',
];

// ---- reading ONNX initializers ----

/** [rows, cols] row-major → [cols, rows] row-major. */
function transpose(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = x[r * cols + c];
  return out;
}

/** `e.`, `model.encoder.` → `encoder.`; `d.`, `model.decoder.` → `decoder.` */
function hfName(raw: string): string {
  return raw
    .replace(/^(model\.)?encoder\./, 'encoder.')
    .replace(/^e\./, 'encoder.')
    .replace(/^(model\.)?decoder\./, 'decoder.')
    .replace(/^d\./, 'decoder.');
}

/** Where graphWeights puts the decoder's output projection ([vocab, d]), which the file does not get. */
export const OUTPUT_PROJECTION = 'proj_out.weight';

const isParamName = (n: string) => /^(e|d|model\.encoder|model\.decoder|encoder|decoder)\./.test(n);
const scopeOf = (nodeName: string) => nodeName.slice(0, nodeName.lastIndexOf('/'));

/**
 * Every weight of one graph under its Hugging Face name (encoder./decoder. prefix), Linear weights back in
 * PyTorch's [out, in]. `part` tells unnamed tables apart.
 */
export function graphWeights(onnxPath: string, part: 'encoder' | 'decoder', hp: { d: number; vocab: number; audioCtx: number }): Map<string, HfTensor> {
  const modelDir = dirname(onnxPath);
  const g = onnx.ModelProto.decode(readFileSync(onnxPath)).graph!;
  const inits = new Map(g.initializer!.map((t) => [t.name!, t]));
  // Identity outputs keep the parameter names of deduplicated tensors: value name → initializer
  const source = new Map<string, TensorProto>(inits);
  for (let changed = true; changed; ) {
    changed = false;
    for (const n of g.node!) {
      if (n.opType !== 'Identity' || source.has(n.output![0])) continue;
      const t = source.get(n.input![0]);
      if (t) source.set(n.output![0], t), (changed = true);
    }
  }
  // scope of a bias Add → module path, for MatMuls whose scope does not spell the module out
  const moduleOfScope = new Map<string, string>();
  for (const n of g.node!) {
    if (n.opType !== 'Add') continue;
    const bias = (n.input ?? []).find((i) => source.has(i) && isParamName(i) && i.endsWith('.bias'));
    if (bias) moduleOfScope.set(scopeOf(n.name!), hfName(bias.slice(0, -'.bias'.length)));
  }
  const matmulModule = (nodeName: string): string => {
    const scope = scopeOf(nodeName);
    const known = moduleOfScope.get(scope);
    if (known) return known;
    if (/\/layers\.\d+\//.test(scope)) return hfName(scope.replace(/^\//, '').replace(/\//g, '.'));
    const k = /^(.*\/)k_proj(_\d+)?$/.exec(scope);
    const sibling = k && moduleOfScope.get(`${k[1]}v_proj${k[2] ?? ''}`);
    if (sibling) return sibling.replace(/v_proj$/, 'k_proj');
    throw new Error(`${part}: cannot tell which module MatMul ${nodeName} belongs to`);
  };

  const out = new Map<string, HfTensor>();
  const put = (name: string, t: HfTensor) => {
    const prev = out.get(name);
    if (prev && (prev.data.length !== t.data.length || prev.data.some((v, i) => v !== t.data[i]))) throw new Error(`${name}: two different tensors`);
    out.set(name, t);
  };
  for (const n of g.node!) {
    if (n.opType === 'Identity') continue;
    for (const input of n.input ?? []) {
      const t = source.get(input);
      if (!t) continue;
      const dims = (t.dims ?? []).map(Number);
      if (t.dataType !== FLOAT || dims.length === 0) continue; // shapes, axes, scalars
      if (n.opType === 'MatMul' && dims.length === 2) {
        if (part === 'decoder' && dims[1] === hp.vocab) {
          // the output projection: whisper.cpp has none (it multiplies by the token embedding); kept to compare
          put(OUTPUT_PROJECTION, { shape: [dims[1], dims[0]], data: transpose(floatValues(t, modelDir), dims[0], dims[1]) });
          continue;
        }
        const module = isParamName(input) ? hfName(input.replace(/\.weight$/, '')) : matmulModule(n.name!);
        put(`${module}.weight`, { shape: [dims[1], dims[0]], data: transpose(floatValues(t, modelDir), dims[0], dims[1]) });
      } else if (isParamName(input)) {
        put(hfName(input), { shape: dims, data: floatValues(t, modelDir) });
      } else if (part === 'encoder' && n.opType === 'Add' && dims.length === 2 && dims[0] === hp.audioCtx && dims[1] === hp.d) {
        put('encoder.embed_positions.weight', { shape: dims, data: floatValues(t, modelDir) });
      } else if (dims.reduce((a, d) => a * d, 1) > 16) {
        // small float constants (a scale, an epsilon) are not weights; anything bigger must be named
        throw new Error(`${part}: unnamed weight ${input} ${JSON.stringify(dims)} used by ${n.opType} ${n.name}`);
      }
    }
  }
  return out;
}

// ---- Hugging Face → OpenAI names (models/convert-h5-to-ggml.py) ----

const CONV_MAP: Record<string, string> = {
  'self_attn.k_proj': 'attn.key',
  'self_attn.q_proj': 'attn.query',
  'self_attn.v_proj': 'attn.value',
  'self_attn.out_proj': 'attn.out',
  self_attn_layer_norm: 'attn_ln',
  'encoder_attn.q_proj': 'cross_attn.query',
  'encoder_attn.k_proj': 'cross_attn.key',
  'encoder_attn.v_proj': 'cross_attn.value',
  'encoder_attn.out_proj': 'cross_attn.out',
  encoder_attn_layer_norm: 'cross_attn_ln',
  fc1: 'mlp.0',
  fc2: 'mlp.2',
  final_layer_norm: 'mlp_ln',
  'encoder.layer_norm.bias': 'encoder.ln_post.bias',
  'encoder.layer_norm.weight': 'encoder.ln_post.weight',
  'encoder.embed_positions.weight': 'encoder.positional_embedding',
  'decoder.layer_norm.bias': 'decoder.ln.bias',
  'decoder.layer_norm.weight': 'decoder.ln.weight',
  'decoder.embed_positions.weight': 'decoder.positional_embedding',
  'decoder.embed_tokens.weight': 'decoder.token_embedding.weight',
};

export function ggmlName(hf: string): string {
  const nn = hf.split('.');
  if (nn[1] === 'layers') {
    const mapped = CONV_MAP[nn.slice(3, -1).join('.')];
    if (!mapped) throw new Error(`no whisper.cpp name for ${hf}`);
    return [nn[0], 'blocks', nn[2], mapped, nn[nn.length - 1]].join('.');
  }
  return CONV_MAP[hf] ?? hf;
}

/** f32 in f16 files too (convert-h5-to-ggml.py): 1-D tensors, conv biases, both position tables. */
function keepsF32(name: string, nDims: number): boolean {
  return nDims < 2 || name === 'encoder.conv1.bias' || name === 'encoder.conv2.bias' || name.endsWith('positional_embedding');
}

// ---- writing ----

const F32_VIEW = new Float32Array(1);
const U32_VIEW = new Uint32Array(F32_VIEW.buffer);

/** IEEE half, round to nearest even (numpy's astype(float16)). */
export function f32ToF16Bits(v: number): number {
  F32_VIEW[0] = v;
  const x = U32_VIEW[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf, nan
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow → inf
  if (e <= 0) {
    if (e < -10) return sign; // underflows to ±0
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let m = mant >>> shift;
    if (rest > half || (rest === half && m & 1)) m++;
    return sign | m; // a carry into the exponent field is the right smallest normal
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++; // may carry into the exponent, or up to inf: both right
  return sign | h;
}

/** GPT-2's bytes_to_unicode, inverted: the byte-level BPE character → the byte it stands for. */
function byteDecoder(): Map<string, number> {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  return new Map(bs.map((b, i) => [String.fromCodePoint(cs[i]), b]));
}

/** The BPE vocabulary (ids 0…n−1, without the added special tokens whisper.cpp numbers itself), as bytes. */
export function vocabBytes(tokenizerJson: { model: { vocab: Record<string, number> } }): Buffer[] {
  const dec = byteDecoder();
  const byId: string[] = [];
  for (const [tok, id] of Object.entries(tokenizerJson.model.vocab)) byId[id] = tok;
  const out: Buffer[] = [];
  for (let id = 0; id < byId.length; id++) {
    const tok = byId[id];
    if (tok === undefined) throw new Error(`tokenizer.json: vocabulary id ${id} missing`);
    out.push(Buffer.from([...tok].map((c) => dec.get(c) ?? c.codePointAt(0)!)));
  }
  return out;
}

class Writer {
  private parts: Buffer[] = [];
  i32(...xs: number[]) {
    const b = Buffer.alloc(4 * xs.length);
    xs.forEach((x, i) => b.writeInt32LE(x, 4 * i));
    this.parts.push(b);
  }
  bytes(b: Buffer) {
    this.parts.push(b);
  }
  f32(x: ArrayLike<number>) {
    this.parts.push(Buffer.from(Float32Array.from(x).buffer));
  }
  f16(x: Float32Array) {
    const h = new Uint16Array(x.length);
    for (let i = 0; i < x.length; i++) h[i] = f32ToF16Bits(x[i]);
    this.parts.push(Buffer.from(h.buffer));
  }
  buffer() {
    return Buffer.concat(this.parts);
  }
}

export interface ConvertResult {
  hparams: WhisperHparams;
  /** The export's output projection equals the token embedding (whisper.cpp's tie): the same logits on both sides. */
  tiedOutput: boolean;
  tensors: { name: string; ne: number[]; ftype: 0 | 1 }[];
  bytes: number;
}

export function convertOnnxToGgml(modelDir: string, outFile: string, ftype: 'f16' | 'f32' = 'f16', o: { allowUntied?: boolean } = {}): ConvertResult {
  const cfg = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8'));
  const tok = JSON.parse(readFileSync(join(modelDir, 'tokenizer.json'), 'utf8'));
  const hparams: WhisperHparams = {
    n_vocab: cfg.vocab_size,
    n_audio_ctx: cfg.max_source_positions,
    n_audio_state: cfg.d_model,
    n_audio_head: cfg.encoder_attention_heads,
    n_audio_layer: cfg.encoder_layers,
    n_text_ctx: cfg.max_target_positions,
    n_text_state: cfg.d_model,
    n_text_head: cfg.decoder_attention_heads,
    n_text_layer: cfg.decoder_layers,
    n_mels: cfg.num_mel_bins,
    ftype: ftype === 'f16' ? 1 : 0,
  };
  if (cfg.tie_word_embeddings === false) throw new Error('whisper.cpp ties the output projection to the token embedding; this model does not');
  const hp = { d: cfg.d_model, vocab: cfg.vocab_size, audioCtx: cfg.max_source_positions };
  const weights = new Map([...graphWeights(join(modelDir, 'onnx', 'encoder_model.onnx'), 'encoder', hp), ...graphWeights(join(modelDir, 'onnx', 'decoder_model.onnx'), 'decoder', hp)]);
  // whisper.cpp computes logits with the token embedding: the same model only when the export's projection is it
  const proj = weights.get(OUTPUT_PROJECTION);
  const emb = weights.get('decoder.embed_tokens.weight');
  weights.delete(OUTPUT_PROJECTION);
  let maxDiff = 0;
  if (proj && emb) for (let i = 0; i < proj.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(proj.data[i] - emb.data[i]));
  const tiedOutput = maxDiff === 0;
  if (!tiedOutput && !o.allowUntied)
    throw new Error(
      `the output projection is not the token embedding (max |Δ| ${maxDiff}), as whisper.cpp assumes: its logits would differ from ours. ` +
        'Pass --allow-untied for a timing-only conversion (same shapes and cost, different tokens).',
    );

  const w = new Writer();
  w.i32(GGML_MAGIC, ...HPARAM_ORDER.map((k) => hparams[k]));
  const pre = JSON.parse(readFileSync(join(modelDir, 'preprocessor_config.json'), 'utf8'));
  const nFft = pre.n_fft ?? 400;
  const sr = pre.sampling_rate ?? 16000;
  const nFreq = 1 + Math.floor(nFft / 2);
  w.i32(hparams.n_mels, nFreq);
  w.f32(melFilterBank(nFreq, hparams.n_mels, 0, sr / 2, sr)); // [n_mel][n_freq], as whisper.cpp indexes it
  const vocab = vocabBytes(tok);
  w.i32(vocab.length);
  for (const v of vocab) {
    w.i32(v.length);
    w.bytes(v);
  }

  const tensors: ConvertResult['tensors'] = [];
  for (const [hf, t] of weights) {
    const name = ggmlName(hf);
    // conv biases [n] → [n, 1], as the h5 converter reshapes them
    const shape = name === 'encoder.conv1.bias' || name === 'encoder.conv2.bias' ? [t.shape[0], 1] : t.shape;
    const ne = [...shape].reverse();
    const tt: 0 | 1 = ftype === 'f16' && !keepsF32(name, shape.length) ? 1 : 0;
    const nameBytes = Buffer.from(name, 'utf8');
    w.i32(shape.length, nameBytes.length, tt, ...ne);
    w.bytes(nameBytes);
    if (tt === 1) w.f16(t.data);
    else w.f32(t.data);
    tensors.push({ name, ne, ftype: tt });
  }
  const buf = w.buffer();
  writeFileSync(outFile, buf);
  return { hparams, tiedOutput, tensors, bytes: buf.length };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { ftype: { type: 'string', default: 'f16' }, 'allow-untied': { type: 'boolean', default: false } },
  });
  const [modelDir, outFile] = positionals;
  if (!modelDir || !outFile || (values.ftype !== 'f16' && values.ftype !== 'f32')) {
    console.error('usage: npm run whispercpp:convert -- MODEL_DIR OUT.bin [--ftype f16|f32] [--allow-untied]');
    process.exit(2);
  }
  const r = convertOnnxToGgml(modelDir, outFile, values.ftype, { allowUntied: values['allow-untied'] });
  console.log(`${outFile}: ${r.tensors.length} tensors, ${(r.bytes / 1e6).toFixed(1)} MB, ${values.ftype}`);
  if (!r.tiedOutput) console.warn('warning: output projection ≠ token embedding; whisper.cpp will use the embedding (timing only: tokens differ)');
}
