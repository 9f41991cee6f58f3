/**
 * Block-wise 8-bit weights for an ONNX graph's matrix multiplies, at load, in memory: every
 * `MatMul(x, W)` whose W is a constant fp32 [K, N] initializer becomes onnxruntime's
 * `com.microsoft.MatMulNBits` (what onnxruntime's `matmul_nbits_quantizer.py` writes for LLMs): W is
 * stored as uint8 per block of `blockSize` input rows of each output column, with its own scale and zero
 * point, and `accuracy_level` 4 lets the CPU kernel multiply in int8 (VNNI where present).
 *
 * Why: a decoder step at batch 1 reads every weight once per token. Optimum's int8 exports quantize each
 * whole tensor with one scale and run `DynamicQuantizeLinear → MatMulInteger → Cast → Mul` per MatMul; a
 * block of 32 has 1/32 of a column's range to cover (far smaller rounding error) and one fused kernel
 * made for one-row inputs. On Whisper tiny's vocabulary projection ([384, 51865], 80 MB of fp32) one
 * call is ~3× faster than the fp32 MatMul (bench:decoder-step).
 *
 * The results change slightly (as with any quantization): the caller chooses it (`precision: 'q8'`).
 * Pure apart from reading external data: ONNX bytes in, ONNX bytes out; initializers that stay fp32 keep
 * their external-data references (the caller tells onnxruntime where they live).
 */
import onnxProto, { type onnx as OnnxTypes } from 'onnx-proto';
import { floatValues } from './onnx-initializer.ts';

const { onnx } = onnxProto;
type Tensor = OnnxTypes.ITensorProto;

const { FLOAT, UINT8 } = onnx.TensorProto.DataType;
const INT = onnx.AttributeProto.AttributeType.INT;

export interface NBitsOptions {
  /** Input rows per block (a power of two ≥ 16; default 32). */
  blockSize?: number;
  /** MatMulNBits accuracy_level: 4 = int8 compute (the fast CPU path, default); 0 = fp32 compute. */
  accuracyLevel?: number;
  /** Weights with fewer elements stay fp32 (default 4096: not worth a kernel of their own). */
  minElements?: number;
  /** Folder of the model file, where its external data files are (needed when weights live there). */
  externalDataDir?: string;
}

export interface NBitsResult {
  bytes: Uint8Array;
  /** MatMuls rewritten, and their weights' elements (fp32 bytes saved = 3 × elements, less the scales). */
  matmuls: number;
  elements: number;
}

export interface BlockQuantized {
  /** [N, blocks, blockSize] uint8, column-major by output (MatMulNBits' B layout). */
  q: Uint8Array;
  /** [N * blocks] */
  scales: Float32Array;
  /** [N * blocks] uint8 */
  zeroPoints: Uint8Array;
  blocks: number;
}

/**
 * Asymmetric 8-bit quantization of W [K, N] (row-major, as a MatMul's B) per block of `blockSize` rows of
 * each column: scale = (max − min) / 255 over the block's range widened to include 0, zero point = the code
 * of 0, so w ≈ (q − zp) · scale (codes rounded half to even); rows past K pad with the zero point (they meet no input).
 */
export function quantizeBlocks8(w: Float32Array, K: number, N: number, blockSize: number): BlockQuantized {
  const blocks = Math.ceil(K / blockSize);
  const q = new Uint8Array(N * blocks * blockSize);
  // Uint8ClampedArray rounds to nearest, ties to even, and clamps to 0..255 (numpy's round, as onnxruntime's quantizer).
  const codes = new Uint8ClampedArray(blockSize);
  const scales = new Float32Array(N * blocks);
  const zeroPoints = new Uint8Array(N * blocks);
  for (let b = 0; b < blocks; b++) {
    const k0 = b * blockSize;
    const rows = Math.min(K, k0 + blockSize) - k0;
    // One column of one block at a time: its rows are N apart, but the block's few cache lines serve the next columns too.
    for (let n = 0; n < N; n++) {
      let lo = 0;
      let hi = 0;
      for (let r = 0, i = k0 * N + n; r < rows; r++, i += N) {
        const v = w[i];
        if (v < lo) lo = v;
        else if (v > hi) hi = v;
      }
      const scale = (hi - lo) / 255;
      const at = n * blocks + b;
      const zp = scale === 0 ? 0 : Math.min(255, Math.max(0, Math.round(-lo / scale)));
      scales[at] = scale;
      zeroPoints[at] = zp;
      const inv = scale === 0 ? 0 : 1 / scale;
      codes.fill(zp); // rows past K
      for (let r = 0, i = k0 * N + n; r < rows; r++, i += N) codes[r] = w[i] * inv + zp;
      q.set(codes, at * blockSize);
    }
  }
  return { q, scales, zeroPoints, blocks };
}

/** Rewrites the graph's constant-weight MatMuls to MatMulNBits (8 bits); `matmuls: 0` when there is none. */
export function quantizeMatMulsNBits(bytes: Uint8Array, o: NBitsOptions = {}): NBitsResult {
  const blockSize = o.blockSize ?? 32;
  if (blockSize < 16 || (blockSize & (blockSize - 1)) !== 0) throw new RangeError(`blockSize must be a power of two ≥ 16, got ${blockSize}`);
  const minElements = o.minElements ?? 4096;
  const model = onnx.ModelProto.decode(bytes);
  const g = model.graph;
  if (!g?.node || !g.initializer) return { bytes, matmuls: 0, elements: 0 };
  const inits = new Map(g.initializer.map((t) => [t.name ?? '', t]));
  // Nodes of the graph and of its subgraphs (a merged decoder's If branches read the outer initializers).
  const nodes: OnnxTypes.INodeProto[] = [];
  const collect = (graph: OnnxTypes.IGraphProto) => {
    for (const n of graph.node ?? []) {
      nodes.push(n);
      for (const a of n.attribute ?? []) for (const sub of [a.g, ...(a.graphs ?? [])]) if (sub) collect(sub);
    }
  };
  collect(g);
  // A weight also read by another node (e.g. a tied embedding's Gather) must stay as it is for that node.
  const readers = new Map<string, number>();
  for (const n of nodes) for (const i of n.input ?? []) readers.set(i, (readers.get(i) ?? 0) + 1);
  const replaced = new Set<string>();
  const added: Tensor[] = [];
  let matmuls = 0;
  let elements = 0;
  for (const node of nodes) {
    if (node.opType !== 'MatMul' || (node.domain ?? '') !== '' || node.input?.length !== 2) continue;
    const w = inits.get(node.input[1]);
    const dims = (w?.dims ?? []).map(Number);
    if (!w || w.dataType !== FLOAT || dims.length !== 2 || dims[0] * dims[1] < minElements) continue;
    const [K, N] = dims;
    const name = w.name ?? '';
    const qName = `${name}_Q8`;
    const sName = `${name}_scales`;
    const zName = `${name}_zero_points`;
    const blocks = Math.ceil(K / blockSize);
    if (!replaced.has(name)) {
      const { q, scales, zeroPoints } = quantizeBlocks8(floatValues(w, o.externalDataDir), K, N, blockSize);
      added.push(
        onnx.TensorProto.create({ name: qName, dataType: UINT8, dims: [N, blocks, blockSize], rawData: q }),
        onnx.TensorProto.create({ name: sName, dataType: FLOAT, dims: [N * blocks], rawData: new Uint8Array(scales.buffer) }),
        onnx.TensorProto.create({ name: zName, dataType: UINT8, dims: [N * blocks], rawData: zeroPoints }),
      );
      replaced.add(name);
    }
    node.opType = 'MatMulNBits';
    node.domain = 'com.microsoft';
    node.input = [node.input[0], qName, sName, zName];
    node.attribute = [
      onnx.AttributeProto.create({ name: 'K', type: INT, i: K }),
      onnx.AttributeProto.create({ name: 'N', type: INT, i: N }),
      onnx.AttributeProto.create({ name: 'bits', type: INT, i: 8 }),
      onnx.AttributeProto.create({ name: 'block_size', type: INT, i: blockSize }),
      onnx.AttributeProto.create({ name: 'accuracy_level', type: INT, i: o.accuracyLevel ?? 4 }),
    ];
    readers.set(name, (readers.get(name) ?? 1) - 1);
    matmuls++;
    elements += K * N;
  }
  if (!matmuls) return { bytes, matmuls: 0, elements: 0 };
  g.initializer = [...g.initializer.filter((t) => !replaced.has(t.name ?? '') || (readers.get(t.name ?? '') ?? 0) > 0), ...added];
  if (!model.opsetImport?.some((op) => op.domain === 'com.microsoft')) {
    model.opsetImport = [...(model.opsetImport ?? []), onnx.OperatorSetIdProto.create({ domain: 'com.microsoft', version: 1 })];
  }
  return { bytes: onnx.ModelProto.encode(model).finish(), matmuls, elements };
}
