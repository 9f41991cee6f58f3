import { readFileSync } from 'node:fs';
import onnxProto from 'onnx-proto';
const { onnx } = onnxProto;
const m = onnx.ModelProto.decode(readFileSync(process.argv[2]));
const g = m.graph!;
const inits = new Set(g.initializer!.map((t) => t.name));
const alias = new Map<string, string>();
for (const n of g.node!) if (n.opType === 'Identity' && inits.has(n.input![0])) alias.set(n.output![0], n.input![0]);
for (const n of g.node!) {
  if (n.opType === 'Identity') continue;
  const ins = (n.input ?? []).map((i) => (inits.has(i) ? i : alias.has(i) ? `${i}=>${alias.get(i)}` : null)).filter(Boolean);
  if (ins.length) console.log(n.opType, n.name, ins.join(' '));
}
