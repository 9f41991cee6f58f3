/**
 * Merges an Optimum export's split decoders (`decoder_model.onnx` + `decoder_with_past_model.onnx`) into the one
 * `decoder_model_merged.onnx` that transformers.js (and most hub exports) use, the way Optimum's `merge_decoders`
 * does (optimum/onnx/graph_transformations.py + transformations_utils.py, `strict=False` as its seq2seq exporters
 * call it):
 *  - one `If` node on the bool input `use_cache_branch` [1]: then-branch = the with-past graph, else-branch = the
 *    no-past graph; branch graphs have no inputs (they read the outer graph's inputs by name);
 *  - merged inputs = the union (decoder's first); the caller feeds empty `[batch, heads, 0, head_dim]` pasts on the
 *    first step (the no-past branch ignores them);
 *  - the with-past graph's outputs are put in the decoder's order; each output it lacks (`present.*.encoder.*`: the
 *    encoder KV does not change after the first step) becomes an empty Constant (the first dynamic axis 0, the other
 *    dynamic axes 1), which a caller replaces with the previous past (transformers.js `getPastKeyValues`; ours keeps
 *    the first step's encoder KV and does not fetch them);
 *  - every initializer except scalars and 1-D int32/int64 moves to the outer graph, initializers with the same
 *    type, dims and data in both graphs stored once (`<name>_merged_<k>`); the small ones stay in their branch
 *    (Optimum: ONNX Runtime breaks after optimization otherwise).
 * Initializers in external data files keep their (relative) locations: the merged file must be written next to
 * them, as `mergeDecodersInFolder` does. They are deduplicated only when both graphs point at the same bytes.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import onnxProto, { type onnx as OnnxTypes } from 'onnx-proto';

const { onnx } = onnxProto;

type Model = InstanceType<typeof onnx.ModelProto>;
type Graph = OnnxTypes.IGraphProto;
type ValueInfo = OnnxTypes.IValueInfoProto;
type Tensor = OnnxTypes.ITensorProto;

const { INT32, INT64, BOOL } = onnx.TensorProto.DataType;
const GRAPH_NAME = 'merged';

/** Optimum keeps these in the branches: scalars and 1-D int32/int64 tensors (shape constants). */
const staysInBranch = (t: Tensor) => (t.dims ?? []).length === 0 || ((t.dims ?? []).length === 1 && (t.dataType === INT32 || t.dataType === INT64));

function opsetOf(m: Model): number {
  const v = m.opsetImport?.[0]?.version;
  if (v == null) throw new Error('model has no opset_import');
  return Number(v);
}

const shapeOf = (v: ValueInfo) => v.type?.tensorType?.shape?.dim ?? [];
const elemType = (v: ValueInfo) => v.type?.tensorType?.elemType ?? 0;
const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);
const valueInfoBytes = (v: ValueInfo) => onnx.ValueInfoProto.encode(v).finish();

/** `_infer_output_shape`: every dim must be a name or a (non-zero) size. */
function inferredShape(v: ValueInfo): (string | number)[] {
  return shapeOf(v).map((d) => {
    if (d.dimParam) return d.dimParam;
    if (d.dimValue != null && Number(d.dimValue)) return Number(d.dimValue);
    throw new Error(`output ${v.name}: a dimension has neither a name nor a size`);
  });
}

/** `onnx.helper.make_tensor_value_info`. */
function tensorValueInfo(name: string, elem: number, shape: (string | number)[]): ValueInfo {
  const dim = shape.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d }));
  return onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: elem, shape: { dim } } } });
}

/**
 * `_unify_onnx_outputs(decoder, withPast, strict=False)`: the with-past outputs in the decoder's order with the
 * decoder's shapes; an output it lacks becomes an empty Constant of the decoder output's type.
 */
function unifyOutputs(decoder: Graph, withPast: Graph): void {
  const out1 = decoder.output ?? [];
  const out2 = (withPast.output ??= []);
  const names1 = new Set(out1.map((o) => o.name));
  const names2 = new Set(out2.map((o) => o.name));
  for (const n of names2) if (!names1.has(n)) throw new Error(`decoder_with_past has an output the decoder lacks: ${n}`);
  const nodes = (withPast.node ??= []);
  out1.forEach((o1, idx) => {
    const o2 = out2[idx];
    if (o2 && sameBytes(valueInfoBytes(o1), valueInfoBytes(o2))) return;
    if (o2 && o1.name === o2.name && elemType(o1) === elemType(o2)) {
      // same output, other recorded shape: Optimum takes the decoder's
      out2.splice(idx, 1, tensorValueInfo(o1.name!, elemType(o1), inferredShape(o1)));
      return;
    }
    if (names2.has(o1.name!)) throw new Error(`cannot match output ${o1.name} of the decoder with ${o2?.name ?? 'nothing'}: the two graphs list their outputs in a different order`);
    const shape = inferredShape(o1);
    const firstDynamic = shape.findIndex((d) => typeof d === 'string');
    if (firstDynamic < 0) throw new Error(`output ${o1.name} has a static shape: cannot add an empty constant for it`);
    const dims = shape.map((d, j) => (j === firstDynamic ? 0 : typeof d === 'string' ? 1 : d));
    const value = onnx.TensorProto.create({ name: 'const_tensor', dataType: elemType(o1), dims });
    nodes.push(
      onnx.NodeProto.create({ opType: 'Constant', name: `Constant_${nodes.length + 1}`, output: [o1.name!], attribute: [{ name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR, t: value }] }),
    );
    out2.splice(idx, 0, tensorValueInfo(o1.name!, elemType(o1), shape));
  });
  if (out1.length !== out2.length || !out1.every((o, i) => sameBytes(valueInfoBytes(o), valueInfoBytes(out2[i])))) throw new Error('failed to unify the outputs of the two decoders');
}

/** Renames node inputs (nested graphs of If/Loop/Scan included: ONNX forbids shadowing outer names). */
function renameInputs(g: Graph, rename: Map<string, string>): void {
  for (const node of g.node ?? []) {
    node.input = (node.input ?? []).map((x) => rename.get(x) ?? x);
    for (const a of node.attribute ?? []) {
      if (a.g) renameInputs(a.g, rename);
      for (const sub of a.graphs ?? []) renameInputs(sub, rename);
    }
  }
}

/** Identity of an initializer's content: everything but its name (external data: the file and offsets). */
function tensorKey(t: Tensor): string {
  const { name: _name, docString: _doc, ...content } = t;
  const digest = createHash('sha256').update(onnx.TensorProto.encode(content).finish()).digest('hex');
  return `${t.dataType}|${(t.dims ?? []).map(Number).join('x')}|${digest}`;
}

/**
 * `_deduplicated_cross_model_initializers(models, suffix='merged')`: every large initializer of either graph gets
 * the name `<first name>_merged_<k>` (one per distinct content), node inputs are renamed, and the outer graph keeps
 * one copy of each.
 */
function deduplicatedInitializers(graphs: Graph[]): Tensor[] {
  const groups = new Map<string, { first: string; members: Array<[number, string]> }>();
  graphs.forEach((g, i) => {
    for (const t of g.initializer ?? []) {
      if (staysInBranch(t)) continue;
      const key = tensorKey(t);
      const group = groups.get(key);
      if (group) group.members.push([i, t.name!]);
      else groups.set(key, { first: t.name!, members: [[i, t.name!]] });
    }
  });
  const used = new Map<string, number>();
  const renames = graphs.map(() => new Map<string, string>());
  for (const { first, members } of groups.values()) {
    const k = used.has(first) ? used.get(first)! + 1 : 0;
    used.set(first, k);
    for (const [i, name] of members) renames[i].set(name, `${first}_${GRAPH_NAME}_${k}`);
  }
  graphs.forEach((g, i) => renameInputs(g, renames[i]));
  const kept = new Set<string>();
  const out: Tensor[] = [];
  graphs.forEach((g, i) => {
    for (const t of g.initializer ?? []) {
      const name = renames[i].get(t.name!);
      if (name === undefined || kept.has(name)) continue;
      kept.add(name);
      t.name = name;
      out.push(t);
    }
  });
  return out;
}

export interface MergeOptions {
  /** `producer_name` of the merged model. */
  producerName?: string;
}

/** Merges the two decoder graphs (ONNX bytes) into one merged decoder (ONNX bytes). */
export function mergeDecoderModels(decoderBytes: Uint8Array, withPastBytes: Uint8Array, o: MergeOptions = {}): Uint8Array {
  const decoder = onnx.ModelProto.decode(decoderBytes);
  const withPast = onnx.ModelProto.decode(withPastBytes);
  const [g1, g2] = [decoder.graph, withPast.graph];
  if (!g1 || !g2) throw new Error('a decoder model has no graph');
  if (opsetOf(decoder) !== opsetOf(withPast)) throw new Error(`decoder opset ${opsetOf(decoder)} != decoder_with_past opset ${opsetOf(withPast)}: export both with the same opset`);
  if (g1.input?.some((i) => i.name === 'use_cache_branch')) throw new Error('the decoder already has use_cache_branch: it is a merged decoder');

  unifyOutputs(g1, g2);
  const inputs: ValueInfo[] = [];
  for (const i of [...(g1.input ?? []), ...(g2.input ?? [])]) if (!inputs.some((x) => x.name === i.name)) inputs.push(i);
  // decoder-only exports: attention_mask spans past + new tokens on cached steps, unlike input_ids
  const mask = inputs.find((i) => i.name === 'attention_mask');
  const maskDims = mask ? shapeOf(mask) : [];
  if (maskDims[1]?.dimParam === 'sequence_length') maskDims[1].dimParam = 'attention_mask_sequence_length';

  const shared = deduplicatedInitializers([g1, g2]);
  const branch = (g: Graph, name: string) => onnx.GraphProto.create({ name, node: g.node, output: g.output, initializer: (g.initializer ?? []).filter(staysInBranch) });
  const noPast = branch(g1, 'no_past');
  const withPastBranch = branch(g2, 'with_past');
  const { GRAPH } = onnx.AttributeProto.AttributeType;
  const ifNode = onnx.NodeProto.create({
    opType: 'If',
    name: 'optimum::if',
    input: ['use_cache_branch'],
    output: (g1.output ?? []).map((x) => x.name!),
    attribute: [
      { name: 'then_branch', type: GRAPH, g: withPastBranch },
      { name: 'else_branch', type: GRAPH, g: noPast },
    ],
  });
  const graph = onnx.GraphProto.create({ name: GRAPH_NAME, node: [ifNode], input: [...inputs, tensorValueInfo('use_cache_branch', BOOL, [1])], output: g1.output, initializer: shared });
  const opsetImport: OnnxTypes.IOperatorSetIdProto[] = [];
  for (const op of [...decoder.opsetImport, ...withPast.opsetImport]) if (!opsetImport.some((x) => (x.domain ?? '') === (op.domain ?? ''))) opsetImport.push(op);
  const model = onnx.ModelProto.create({ irVersion: 9, producerName: o.producerName ?? 'open-stt-server merge-decoders (optimum merge_decoders)', opsetImport, graph });
  return onnx.ModelProto.encode(model).finish();
}

export interface MergedFile {
  path: string;
  /** false: the file was there already (left as it is). */
  written: boolean;
}

/**
 * Writes `decoder_model_merged{,_quantized}.onnx` next to the split decoders of an Optimum folder (its `onnx/`
 * subfolder when there is one) for every precision that has both split files. An existing merged file is kept
 * unless `force`.
 */
export function mergeDecodersInFolder(dir: string, o: { force?: boolean } & MergeOptions = {}): MergedFile[] {
  const onnxDir = existsSync(join(dir, 'onnx')) ? join(dir, 'onnx') : dir;
  const out: MergedFile[] = [];
  for (const q of ['', '_quantized']) {
    const decoder = join(onnxDir, `decoder_model${q}.onnx`);
    const withPast = join(onnxDir, `decoder_with_past_model${q}.onnx`);
    if (!existsSync(decoder) || !existsSync(withPast)) continue;
    const path = join(onnxDir, `decoder_model_merged${q}.onnx`);
    if (existsSync(path) && !o.force) {
      out.push({ path, written: false });
      continue;
    }
    const bytes = mergeDecoderModels(readFileSync(decoder), readFileSync(withPast), o);
    const tmp = `${path}.tmp-${process.pid}`;
    try {
      writeFileSync(tmp, bytes);
      renameSync(tmp, path);
    } finally {
      rmSync(tmp, { force: true });
    }
    out.push({ path, written: true });
  }
  if (!out.length) throw new Error(`no split decoder pair (decoder_model.onnx + decoder_with_past_model.onnx) in ${onnxDir}`);
  return out;
}
