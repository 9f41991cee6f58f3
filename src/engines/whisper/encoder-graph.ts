/**
 * Whisper's encoder on shorter audio (whisper.cpp's `audio_ctx`), for the stock ONNX exports.
 *
 * The exports fix the encoder's time axis at 3000 mel frames because the conv output [B, T, d] is
 * added to a [1500, d] position table. This rewrites the graph in memory at load: the time axis of
 * `input_features` and `last_hidden_state` becomes symbolic, and the table is sliced to the conv
 * output's length (Shape → Slice → Slice before that Add), i.e. `embed_positions[:frames/2]`, which is
 * what `shared/models/whisper-mini-random/golden/short_encoder.json` defines. At 3000 frames the slice
 * is the whole table, so the outputs stay bit-identical to the original graph.
 *
 * Pure: ONNX bytes in, ONNX bytes out (external data references are kept as they are; the caller
 * tells onnxruntime where they live). Returns null when the graph does not have the expected shape,
 * so the caller keeps the original graph and the full 30 s window.
 */
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

export interface TrimmedEncoderGraph {
  bytes: Uint8Array;
  /** Name of the position-table initializer that is now sliced. */
  positionTable: string;
}

const INT64 = 7;

function int64Tensor(name: string, values: number[]): InstanceType<typeof onnx.TensorProto> {
  const raw = new Uint8Array(8 * values.length);
  const view = new DataView(raw.buffer);
  values.forEach((v, i) => view.setBigInt64(8 * i, BigInt(v), true));
  return onnx.TensorProto.create({ name, dataType: INT64, dims: [values.length], rawData: raw });
}

const dimNumber = (d: { dimValue?: unknown } | null | undefined): number | null => (d?.dimValue == null ? null : Number(d.dimValue));

/**
 * Rewrites an encoder graph so its time axis is symbolic. `maxPositions` (1500) and `dModel` identify the
 * position table: the initializer of shape [maxPositions, dModel] that an Add node adds to the conv output.
 */
export function trimmableEncoderGraph(bytes: Uint8Array, o: { maxPositions: number; dModel: number }): TrimmedEncoderGraph | null {
  const model = onnx.ModelProto.decode(bytes);
  const g = model.graph;
  if (!g?.initializer || !g.node) return null;
  const nodes = g.node;
  const inputsOf = (n: (typeof nodes)[number]) => n.input ?? [];
  const table = g.initializer.find((t) => t.dims?.length === 2 && Number(t.dims[0]) === o.maxPositions && Number(t.dims[1]) === o.dModel);
  const tableName = table?.name;
  if (!tableName) return null;
  const addIndex = nodes.findIndex((n) => n.opType === 'Add' && inputsOf(n).length === 2 && inputsOf(n).includes(tableName));
  if (addIndex < 0) return null;
  const add = nodes[addIndex];
  // The only other users of the table would still see all 1500 rows: refuse rather than guess.
  if (nodes.some((n, i) => i !== addIndex && inputsOf(n).includes(tableName))) return null;
  const hidden = inputsOf(add).find((x) => x !== tableName)!;

  const input = g.input?.find((i) => i.name === 'input_features');
  const output = g.output?.find((x) => x.name === 'last_hidden_state');
  const inDims = input?.type?.tensorType?.shape?.dim;
  const outDims = output?.type?.tensorType?.shape?.dim;
  if (!inDims || inDims.length !== 3 || !outDims || outDims.length !== 3) return null;
  if (dimNumber(outDims[1]) !== o.maxPositions && !outDims[1].dimParam) return null;

  const p = 'trim_positions';
  g.initializer.push(int64Tensor(`${p}/one`, [1]), int64Tensor(`${p}/two`, [2]), int64Tensor(`${p}/zero`, [0]));
  const slicing = [
    onnx.NodeProto.create({ opType: 'Shape', name: `${p}/Shape`, input: [hidden], output: [`${p}/shape`] }),
    // [B, T, d] → [T]: the number of positions the conv produced
    onnx.NodeProto.create({ opType: 'Slice', name: `${p}/Length`, input: [`${p}/shape`, `${p}/one`, `${p}/two`, `${p}/zero`], output: [`${p}/length`] }),
    onnx.NodeProto.create({ opType: 'Slice', name: `${p}/Table`, input: [tableName, `${p}/zero`, `${p}/length`, `${p}/zero`], output: [`${p}/table`] }),
  ];
  add.input = inputsOf(add).map((x) => (x === tableName ? `${p}/table` : x));
  nodes.splice(addIndex, 0, ...slicing);

  inDims[2] = onnx.TensorShapeProto.Dimension.create({ dimParam: 'encoder_frames' });
  outDims[1] = onnx.TensorShapeProto.Dimension.create({ dimParam: 'encoder_positions' });
  // Recorded intermediate shapes would pin 1500 again: onnxruntime infers them.
  g.valueInfo = [];
  return { bytes: onnx.ModelProto.encode(model).finish(), positionTable: tableName };
}
