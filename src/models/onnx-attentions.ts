/**
 * ONNX graph patcher: adds graph outputs `cross_attentions.{i}` (the cross-attention probabilities, the Softmax
 * of each decoder layer's `encoder_attn`) to the Whisper decoder exports of the Optimum / onnx-community layout,
 * so the engine can time words by cross-attention DTW (docs/whisper-engine.md, Word timestamps). Stock exports
 * lack these outputs; `npm run models:attentions -- <id or folder>` patches an installed model in place.
 *
 * It edits the protobuf *wire format* instead of decoding into a schema: every message on the path
 * (ModelProto → GraphProto → NodeProto → AttributeProto → GraphProto of an If branch) is walked as a list
 * of raw fields, and only the fields it adds are new bytes. Everything else (weights, metadata, fields
 * newer than any hand-written schema, field order) is copied byte for byte, so an unpatched round trip
 * (`decodeMessage` → `encodeMessage`) is byte-identical by construction; `roundTrip` checks that.
 * Initializers stored as external data (`*.onnx_data`: a TensorProto with `data_location = EXTERNAL` and a
 * relative `location`) are copied like any other field, so a patched file written next to its data still
 * loads; the data file itself is never read or written.
 *
 * Additions per decoder layer i (repeated protobuf fields may be appended anywhere, parsers concatenate):
 *  - split `decoder_model.onnx`: an Identity node `softmax_out → cross_attentions.{i}` and a graph output;
 *  - merged `decoder_model_merged.onnx`: in both If branches an Identity to a branch-local name and a
 *    branch output; on the If node an extra output `cross_attentions.{i}` (If outputs map to branch outputs
 *    by position); a top-level graph output.
 */
import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, fsyncSync, linkSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { sha256File } from './integrity.ts';

// ---- protobuf wire format ----

/** One field of a message: number, wire type, and its bytes (`raw` = tag + payload; `value` = payload). */
export interface WireField {
  no: number;
  wt: number;
  raw: Uint8Array;
  /** length-delimited payload (wire type 2), or the varint/fixed payload bytes */
  value: Uint8Array;
}

function readVarint(b: Uint8Array, pos: number): [number, number] {
  let x = 0;
  let mul = 1;
  for (;;) {
    if (pos >= b.length) throw new Error('truncated varint');
    const c = b[pos++];
    x += (c & 0x7f) * mul;
    if (c < 0x80) return [x, pos];
    mul *= 128;
  }
}

/** Protobuf base-128 varint. */
export function varint(n: number): Uint8Array {
  const out: number[] = [];
  if (n < 0 || !Number.isSafeInteger(n)) throw new Error(`varint out of range: ${n}`);
  do {
    let c = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) c |= 0x80;
    out.push(c);
  } while (n > 0);
  return Uint8Array.from(out);
}

/** Split a message into its fields, in wire order. */
export function decodeMessage(b: Uint8Array): WireField[] {
  const out: WireField[] = [];
  let pos = 0;
  while (pos < b.length) {
    const start = pos;
    const [tag, p1] = readVarint(b, pos);
    pos = p1;
    const no = Math.floor(tag / 8);
    const wt = tag & 7;
    let vs = pos;
    if (wt === 0) [, pos] = readVarint(b, pos);
    else if (wt === 1) pos += 8;
    else if (wt === 5) pos += 4;
    else if (wt === 2) {
      const [len, p2] = readVarint(b, pos);
      vs = p2;
      pos = p2 + len;
    } else throw new Error(`unsupported wire type ${wt} (field ${no}) at byte ${start}`);
    if (pos > b.length) throw new Error(`field ${no} overruns its message`);
    out.push({ no, wt, raw: b.subarray(start, pos), value: b.subarray(vs, pos) });
  }
  return out;
}

/** Re-serialise fields (their raw bytes) in order. */
export function encodeMessage(fields: WireField[]): Uint8Array {
  return Buffer.concat(fields.map((f) => f.raw));
}

/** A length-delimited field (message, string or bytes). */
export function lenField(no: number, payload: Uint8Array): WireField {
  const raw = Buffer.concat([varint(no * 8 + 2), varint(payload.length), payload]);
  return { no, wt: 2, raw, value: raw.subarray(raw.length - payload.length) };
}
/** A varint field. */
export function varintField(no: number, n: number): WireField {
  const v = varint(n);
  return { no, wt: 0, raw: Buffer.concat([varint(no * 8), v]), value: v };
}
const str = (no: number, s: string) => lenField(no, Buffer.from(s, 'utf8'));
const msg = (no: number, fields: WireField[]) => lenField(no, encodeMessage(fields));
const text = (f: WireField) => Buffer.from(f.value).toString('utf8');

// ---- the ONNX messages this patcher reads (field numbers from onnx.proto) ----

const MODEL_GRAPH = 7; // ModelProto.graph
const GRAPH_NODE = 1; // GraphProto.node
const GRAPH_OUTPUT = 12; // GraphProto.output
const NODE_INPUT = 1;
const NODE_OUTPUT = 2;
const NODE_NAME = 3;
const NODE_OP_TYPE = 4;
const NODE_ATTRIBUTE = 5;
const ATTR_NAME = 1;
const ATTR_G = 6;

export interface NodeInfo {
  name: string;
  opType: string;
  inputs: string[];
  outputs: string[];
}

export function nodeInfo(node: Uint8Array): NodeInfo {
  const f = decodeMessage(node);
  return {
    name: f.filter((x) => x.no === NODE_NAME).map(text)[0] ?? '',
    opType: f.filter((x) => x.no === NODE_OP_TYPE).map(text)[0] ?? '',
    inputs: f.filter((x) => x.no === NODE_INPUT).map(text),
    outputs: f.filter((x) => x.no === NODE_OUTPUT).map(text),
  };
}

/** Nodes of a GraphProto (top level only). */
export function graphNodes(graph: Uint8Array): NodeInfo[] {
  return decodeMessage(graph)
    .filter((f) => f.no === GRAPH_NODE)
    .map((f) => nodeInfo(f.value));
}

/** Names of a GraphProto's outputs. */
export function graphOutputNames(graph: Uint8Array): string[] {
  return decodeMessage(graph)
    .filter((f) => f.no === GRAPH_OUTPUT)
    .map((f) => text(decodeMessage(f.value).find((x) => x.no === 1)!));
}

/** ValueInfoProto: float tensor of rank 4 [batch, heads, seq, frames] with symbolic/unknown dims. */
function floatOutput(name: string, dims: (string | number)[]): WireField {
  const dimMsgs = dims.map((d) => msg(1, [typeof d === 'number' ? varintField(1, d) : str(2, d)]));
  const shape = msg(2, dimMsgs); // TypeProto.Tensor.shape
  const tensorType = msg(1, [varintField(1, 1 /* FLOAT */), shape]); // TypeProto.tensor_type
  return msg(GRAPH_OUTPUT, [str(1, name), msg(2, [tensorType])]);
}

function identityNode(input: string, output: string, name: string): WireField {
  return msg(GRAPH_NODE, [str(NODE_INPUT, input), str(NODE_OUTPUT, output), str(NODE_NAME, name), str(NODE_OP_TYPE, 'Identity')]);
}

/**
 * Layer index → Softmax output name of that decoder layer's cross-attention. Optimum's recent exports
 * name nodes flatly (`/Softmax_1`), so a Softmax counts as layer i's cross-attention when its consumer
 * is the `probs @ V` MatMul whose V is `present.{i}.encoder.value` (first-step graphs) or
 * `past_key_values.{i}.encoder.value` (cached branch), directly or through an Identity. Scoped names
 * (`/model/decoder/layers.{i}/encoder_attn/Softmax`) are accepted too.
 */
export function crossAttentionSoftmaxes(graph: Uint8Array): Map<number, string> {
  const nodes = graphNodes(graph);
  const VALUE = /^(?:.*\/)?(?:present|past_key_values)\.(\d+)\.encoder\.value$/;
  const found = new Map<number, string>();
  const add = (layer: number, out: string) => {
    const prev = found.get(layer);
    if (prev !== undefined && prev !== out) throw new Error(`two cross-attention Softmax nodes for layer ${layer}: ${prev} and ${out}`);
    found.set(layer, out);
  };
  for (const n of nodes) {
    if (n.opType !== 'Softmax') continue;
    const out = n.outputs[0];
    const scoped = /\/layers\.(\d+)\/encoder_attn\//.exec(n.name);
    if (scoped) add(Number(scoped[1]), out);
    for (const c of nodes) {
      if (c.opType !== 'MatMul' || c.inputs[0] !== out) continue;
      const v = c.inputs[1];
      const aliases = [v, ...nodes.filter((x) => x.opType === 'Identity' && x.inputs[0] === v).flatMap((x) => x.outputs)];
      const m = aliases.map((a) => VALUE.exec(a)).find((x) => x);
      if (m) add(Number(m[1]), out);
    }
  }
  return found;
}

const DIMS = (heads: number) => ['batch_size', heads, 'decoder_sequence_length', 'encoder_sequence_length_out'];

/** Graph with `Identity(softmax_i) → prefix + i` nodes and outputs appended; returns the new graph and output names. */
function addOutputs(graph: Uint8Array, heads: number, outName: (layer: number) => string): { graph: Uint8Array; layers: number[] } {
  const soft = crossAttentionSoftmaxes(graph);
  if (!soft.size) throw new Error('no Softmax node under /layers.{i}/encoder_attn/ in this graph');
  const layers = [...soft.keys()].sort((a, b) => a - b);
  layers.forEach((l, k) => {
    if (l !== k) throw new Error(`cross-attention Softmax layers are not 0..n-1: ${layers.join(',')}`);
  });
  const extra: WireField[] = [];
  for (const l of layers) {
    extra.push(identityNode(soft.get(l)!, outName(l), `/cross_attentions/Identity_${outName(l)}`));
    extra.push(floatOutput(outName(l), DIMS(heads)));
  }
  return { graph: encodeMessage([...decodeMessage(graph), ...extra]), layers };
}

/** Replace the payload of the first field `no` of a message. */
function replaceField(fields: WireField[], no: number, payload: Uint8Array): WireField[] {
  const k = fields.findIndex((f) => f.no === no);
  if (k < 0) throw new Error(`field ${no} not found`);
  return fields.map((f, i) => (i === k ? lenField(no, payload) : f));
}

export const modelGraph = (model: Uint8Array): Uint8Array => {
  const g = decodeMessage(model).find((f) => f.no === MODEL_GRAPH);
  if (!g) throw new Error('ModelProto has no graph');
  return g.value;
};

/** Split first-step decoder (`decoder_model.onnx`): outputs `cross_attentions.{i}`. */
export function patchDecoder(model: Uint8Array, heads: number): Uint8Array {
  const top = decodeMessage(model);
  const { graph } = addOutputs(modelGraph(model), heads, (l) => `cross_attentions.${l}`);
  return encodeMessage(replaceField(top, MODEL_GRAPH, graph));
}

/** Merged decoder: both If branches and the If node get the outputs, then the top-level graph. */
export function patchMergedDecoder(model: Uint8Array, heads: number): Uint8Array {
  const top = decodeMessage(model);
  const graphFields = decodeMessage(modelGraph(model));
  const ifs = graphFields.filter((f) => f.no === GRAPH_NODE && nodeInfo(f.value).opType === 'If');
  if (ifs.length !== 1) throw new Error(`expected one If node in the merged decoder, found ${ifs.length}`);
  const ifField = ifs[0];
  const ifNode = decodeMessage(ifField.value);
  let nLayers = -1;
  const newIf: WireField[] = ifNode.map((f) => {
    if (f.no !== NODE_ATTRIBUTE) return f;
    const attr = decodeMessage(f.value);
    const name = text(attr.find((x) => x.no === ATTR_NAME)!);
    if (name !== 'then_branch' && name !== 'else_branch') return f;
    const g = attr.find((x) => x.no === ATTR_G)!;
    const { graph, layers } = addOutputs(g.value, heads, (l) => `cross_attentions.${l}/${name}`);
    if (nLayers >= 0 && nLayers !== layers.length) throw new Error('If branches have different numbers of cross-attention layers');
    nLayers = layers.length;
    return msg(NODE_ATTRIBUTE, replaceField(attr, ATTR_G, graph));
  });
  if (nLayers < 0) throw new Error('If node without then_branch/else_branch');
  const names = Array.from({ length: nLayers }, (_, l) => `cross_attentions.${l}`);
  const patchedIf = msg(GRAPH_NODE, [...newIf, ...names.map((n) => str(NODE_OUTPUT, n))]);
  const newGraph = [...graphFields.map((f) => (f === ifField ? patchedIf : f)), ...names.map((n) => floatOutput(n, DIMS(heads)))];
  return encodeMessage(replaceField(top, MODEL_GRAPH, encodeMessage(newGraph)));
}

/** Decode every message on the patch path and re-encode it, without changes (must be byte-identical). */
export function roundTrip(model: Uint8Array): Uint8Array {
  const rebuildGraph = (g: Uint8Array): Uint8Array =>
    encodeMessage(
      decodeMessage(g).map((f) => {
        if (f.no !== GRAPH_NODE) return f;
        const node = decodeMessage(f.value).map((nf) => {
          if (nf.no !== NODE_ATTRIBUTE) return nf;
          const attr = decodeMessage(nf.value).map((af) => (af.no === ATTR_G ? lenField(ATTR_G, rebuildGraph(af.value)) : af));
          return msg(NODE_ATTRIBUTE, attr);
        });
        return msg(GRAPH_NODE, node);
      }),
    );
  return encodeMessage(decodeMessage(model).map((f) => (f.no === MODEL_GRAPH ? lenField(MODEL_GRAPH, rebuildGraph(f.value)) : f)));
}

// ---- model folders ----

/** True when a decoder file already has `cross_attentions.*` top-level outputs. */
export function hasCrossAttentionOutputs(model: Uint8Array): boolean {
  return graphOutputNames(modelGraph(model)).some((n) => /^cross_attentions\.\d+$/.test(n));
}

/** Top-level `cross_attentions.{i}` outputs of a decoder file, in order. */
export function crossAttentionOutputs(model: Uint8Array): string[] {
  return graphOutputNames(modelGraph(model)).filter((n) => /^cross_attentions\.\d+$/.test(n));
}

export interface DecoderFilePatch {
  /** path relative to the model folder, e.g. `onnx/decoder_model_merged.onnx` */
  file: string;
  layout: 'split' | 'merged';
  status: 'patched' | 'already-patched';
  /** `cross_attentions.{i}` outputs the file has now */
  layers: number;
  /** the original, kept once (relative path); null when the file was already patched before this run */
  original: string | null;
  /** the file uses external data (`*.onnx_data` next to it), which stays as it is */
  externalData: boolean;
}

export interface PatchFolderOptions {
  /**
   * Check each patched graph before it replaces the file (e.g. open it in onnxruntime from the temp path, next
   * to its external data, and compare the output names). Throw to refuse; the file is then left untouched.
   */
  check?: (tmpPath: string, expectedOutputs: string[]) => Promise<void>;
}

export interface PatchFolderResult {
  dir: string;
  heads: number;
  layers: number;
  files: DecoderFilePatch[];
  /** generation_config.json has `alignment_heads` (the engine needs them to use the outputs) */
  alignmentHeads: boolean;
}

/** Thrown when a folder or graph does not look like a Whisper decoder export this patcher understands. */
export class UnsupportedGraphError extends Error {}

/** The first-step decoder files the engine loads: `decoder_model{,_merged}{,_quantized}.onnx`. */
export const DECODER_FILES: { name: string; layout: 'split' | 'merged' }[] = [
  { name: 'decoder_model.onnx', layout: 'split' },
  { name: 'decoder_model_merged.onnx', layout: 'merged' },
  { name: 'decoder_model_quantized.onnx', layout: 'split' },
  { name: 'decoder_model_merged_quantized.onnx', layout: 'merged' },
];

/** `decoder_model.onnx` → `decoder_model.orig.onnx` */
export const originalName = (name: string) => name.replace(/\.onnx$/, '.orig.onnx');

function readJson(path: string): Record<string, unknown> | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/** Does any initializer of the graph (or of an If branch) keep its data outside the file (TensorProto.data_location = EXTERNAL)? */
export function usesExternalData(model: Uint8Array): boolean {
  const GRAPH_INITIALIZER = 5;
  const TENSOR_DATA_LOCATION = 14;
  const visit = (graph: Uint8Array): boolean => {
    for (const f of decodeMessage(graph)) {
      if (f.no === GRAPH_INITIALIZER) {
        const loc = decodeMessage(f.value).find((x) => x.no === TENSOR_DATA_LOCATION);
        if (loc && loc.value[0] === 1) return true;
      } else if (f.no === GRAPH_NODE) {
        for (const a of decodeMessage(f.value).filter((x) => x.no === NODE_ATTRIBUTE)) {
          const g = decodeMessage(a.value).find((x) => x.no === ATTR_G);
          if (g && visit(g.value)) return true;
        }
      }
    }
    return false;
  };
  return visit(modelGraph(model));
}

function writeDurably(path: string, data: Uint8Array): void {
  const fd = openSync(path, 'w');
  try {
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off, data.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Patch the first-step decoders of a Whisper model folder in place (`onnx/` or the folder itself):
 * every present `decoder_model{,_merged}{,_quantized}.onnx` gets `cross_attentions.{i}` outputs. All files are
 * patched in memory and checked first, so a graph of the wrong shape refuses the whole folder before anything
 * is written. Each file is then replaced atomically: the patched bytes go to a temp file in the same folder,
 * the original is kept once as `*.orig.onnx` (a hard link where the file system allows, else a copy), and the
 * temp file is renamed over the original. Files that already have the outputs are left alone (idempotent).
 */
export async function patchWhisperFolder(dir: string, opts: PatchFolderOptions = {}): Promise<PatchFolderResult> {
  const config = readJson(join(dir, 'config.json'));
  if (!config) throw new UnsupportedGraphError(`${dir}: no readable config.json (not a Whisper model folder)`);
  if (config.model_type !== undefined && config.model_type !== 'whisper') {
    throw new UnsupportedGraphError(`${dir}: config.json model_type is '${String(config.model_type)}', not 'whisper'`);
  }
  const heads = Number(config.decoder_attention_heads);
  const layers = Number(config.decoder_layers);
  if (!(heads > 0) || !(layers > 0)) throw new UnsupportedGraphError(`${dir}: config.json lacks decoder_attention_heads / decoder_layers`);
  const gen = readJson(join(dir, 'generation_config.json'));
  const alignmentHeads = Array.isArray(gen?.alignment_heads) && (gen!.alignment_heads as unknown[]).length > 0;

  const onnxDir = existsSync(join(dir, 'onnx')) && statSync(join(dir, 'onnx')).isDirectory() ? join(dir, 'onnx') : dir;
  const rel = (name: string) => (onnxDir === dir ? name : `onnx/${name}`);
  const present = DECODER_FILES.filter((f) => existsSync(join(onnxDir, f.name)));
  if (!present.length) {
    throw new UnsupportedGraphError(`${dir}: no first-step decoder (${DECODER_FILES.map((f) => rel(f.name)).join(', ')})`);
  }

  // 1) everything in memory: refuse before writing anything
  const plans: { f: (typeof DECODER_FILES)[number]; path: string; patched: Uint8Array | null; outputs: number; external: boolean }[] = [];
  for (const f of present) {
    const path = join(onnxDir, f.name);
    const bytes = readFileSync(path);
    let external: boolean;
    let existing: string[];
    try {
      external = usesExternalData(bytes);
      existing = crossAttentionOutputs(bytes);
    } catch (e) {
      throw new UnsupportedGraphError(`${rel(f.name)}: not a readable ONNX model (${(e as Error).message})`);
    }
    if (existing.length) {
      if (existing.length !== layers) throw new UnsupportedGraphError(`${rel(f.name)}: has ${existing.length} cross_attentions outputs, config says ${layers} layers`);
      plans.push({ f, path, patched: null, outputs: existing.length, external });
      continue;
    }
    let patched: Uint8Array;
    try {
      patched = f.layout === 'split' ? patchDecoder(bytes, heads) : patchMergedDecoder(bytes, heads);
    } catch (e) {
      throw new UnsupportedGraphError(`${rel(f.name)}: unexpected graph structure, not patched (${(e as Error).message})`);
    }
    const outputs = crossAttentionOutputs(patched).length;
    if (outputs !== layers) {
      throw new UnsupportedGraphError(`${rel(f.name)}: found the cross-attention Softmax of ${outputs} layers, config.json says ${layers}; not patched`);
    }
    plans.push({ f, path, patched, outputs, external });
  }

  // 2) write: temp file + check + keep original once + rename
  const files: DecoderFilePatch[] = [];
  for (const p of plans) {
    if (!p.patched) {
      files.push({ file: rel(p.f.name), layout: p.f.layout, status: 'already-patched', layers: p.outputs, original: null, externalData: p.external });
      continue;
    }
    const tmp = join(onnxDir, `.${p.f.name}.patch-${process.pid}.tmp`);
    try {
      writeDurably(tmp, p.patched);
      if (opts.check)
        await opts.check(
          tmp,
          Array.from({ length: layers }, (_, i) => `cross_attentions.${i}`),
        );
      const orig = join(onnxDir, originalName(p.f.name));
      if (!existsSync(orig)) {
        try {
          linkSync(p.path, orig);
        } catch {
          copyFileSync(p.path, orig);
        }
      }
      renameSync(tmp, p.path);
    } finally {
      rmSync(tmp, { force: true });
    }
    files.push({ file: rel(p.f.name), layout: p.f.layout, status: 'patched', layers: p.outputs, original: rel(originalName(p.f.name)), externalData: p.external });
  }
  return { dir, heads, layers, files, alignmentHeads };
}

/** The outcome of `checkPatchedDecoder`. */
export type PatchCheck = { ok: true; original: string; layers: number } | { ok: false; reason: string };

/**
 * Is `file` (a first-step decoder, path relative to the model folder `dir`) exactly what `patchWhisperFolder`
 * writes from the original kept next to it as `*.orig.onnx`? The patch is a pure function of the original's
 * bytes and `decoder_attention_heads`, so it is recomputed in memory and its sha256 compared with the file's
 * (the original must have been verified by the caller). Memory as when patching: about 3× the graph file.
 */
export async function checkPatchedDecoder(dir: string, file: string): Promise<PatchCheck> {
  const layout = DECODER_FILES.find((f) => f.name === basename(file))?.layout;
  if (!layout) return { ok: false, reason: 'not a first-step decoder file that models:attentions patches' };
  const original = join(dirname(file), originalName(basename(file)));
  const origPath = join(dir, original);
  if (!existsSync(origPath)) return { ok: false, reason: `no ${original}` };
  const heads = Number(readJson(join(dir, 'config.json'))?.decoder_attention_heads);
  if (!(heads > 0)) return { ok: false, reason: 'config.json lacks decoder_attention_heads' };
  let patched: Uint8Array;
  try {
    const bytes = readFileSync(origPath);
    patched = layout === 'split' ? patchDecoder(bytes, heads) : patchMergedDecoder(bytes, heads);
  } catch (e) {
    return { ok: false, reason: `${original} cannot be patched (${(e as Error).message})` };
  }
  const path = join(dir, file);
  const same = statSync(path).size === patched.length && createHash('sha256').update(patched).digest('hex') === (await sha256File(path));
  if (!same) return { ok: false, reason: `not ${original} as models:attentions patches it` };
  return { ok: true, original, layers: crossAttentionOutputs(patched).length };
}
