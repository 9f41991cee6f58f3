/**
 * `npm run models:attentions` end to end on temp copies of the Whisper fixture: patches the first-step decoders
 * (split, merged, int8) atomically, keeps the originals once, is idempotent, refuses graphs of the wrong shape
 * without touching anything, and the engine loaded from the patched folder times words by cross-attention DTW.
 * Also: a decoder whose weights live in external data (`*.onnx_data`, built here from the fixture by moving its
 * initializers out) is patched without reading or changing the data file and still computes the same logits.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WhisperEngine } from '../../src/engines/whisper/engine.ts';
import { lenField, varintField, crossAttentionOutputs, decodeMessage, encodeMessage, modelGraph, patchWhisperFolder, usesExternalData } from '../../src/models/onnx-attentions.ts';
import { loadAudio, MODEL_DIR } from '../engines/whisper/helpers.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');

function cli(args: string[], env: Record<string, string>) {
  return run('npx', ['tsx', 'src/cli/models.ts', ...args], { cwd: ROOT, env: { ...process.env, ...env }, timeout: 120_000 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }),
  );
}

const FILES = [
  'config.json',
  'generation_config.json',
  'preprocessor_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'onnx/encoder_model.onnx',
  'onnx/decoder_model.onnx',
  'onnx/decoder_with_past_model.onnx',
  'onnx/decoder_model_merged.onnx',
  'onnx/encoder_model_quantized.onnx',
  'onnx/decoder_model_quantized.onnx',
  'onnx/decoder_with_past_model_quantized.onnx',
];

function copyFixture(modelsDir: string, name: string, files = FILES): string {
  const dir = join(modelsDir, name);
  for (const f of files) {
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    copyFileSync(join(MODEL_DIR, f), join(dir, f));
  }
  return dir;
}

const same = (a: string, b: string) => Buffer.compare(readFileSync(a), readFileSync(b)) === 0;

// ---- minimal protobuf writers for the external-data conversion (test only) ----
const entry = (k: string, v: string) => lenField(13, encodeMessage([lenField(1, Buffer.from(k)), lenField(2, Buffer.from(v))]));

/**
 * What onnx.save_model(..., save_as_external_data=True) produces: every top-level initializer with ≥ 1 KiB of
 * raw_data gets `data_location = EXTERNAL` and `location/offset/length` entries pointing into `dataName`.
 */
function externalize(model: Uint8Array, dataName: string): { model: Uint8Array; data: Buffer; moved: number } {
  const chunks: Buffer[] = [];
  let offset = 0;
  let moved = 0;
  const graph = decodeMessage(modelGraph(model)).map((f) => {
    if (f.no !== 5) return f; // GraphProto.initializer
    const t = decodeMessage(f.value);
    const raw = t.find((x) => x.no === 9); // TensorProto.raw_data
    if (!raw || raw.value.length < 1024) return f;
    const pad = (4096 - (offset % 4096)) % 4096; // onnx aligns large tensors to 4 KiB
    chunks.push(Buffer.alloc(pad), Buffer.from(raw.value));
    offset += pad;
    const fields = [...t.filter((x) => x.no !== 9), entry('location', dataName), entry('offset', String(offset)), entry('length', String(raw.value.length)), varintField(14, 1)];
    offset += raw.value.length;
    moved++;
    return lenField(5, encodeMessage(fields));
  });
  const top = decodeMessage(model).map((f) => (f.no === 7 ? lenField(7, encodeMessage(graph)) : f));
  return { model: encodeMessage(top), data: Buffer.concat(chunks), moved };
}

describe('models:attentions (ONNX cross-attention outputs for stock Whisper exports)', () => {
  let modelsDir: string;

  beforeAll(() => {
    modelsDir = mkdtempSync(join(tmpdir(), 'stt-attn-'));
  });
  afterAll(() => {
    if (modelsDir) rmSync(modelsDir, { recursive: true, force: true });
  });

  it('patches split, merged and int8 decoders in place, keeps the originals once, is idempotent; the engine then uses DTW', async () => {
    const dir = copyFixture(modelsDir, 'whisper-copy');
    const env = { MODELS_DIR: modelsDir };
    const r1 = await cli(['attentions', 'whisper-copy'], env);
    expect(r1.stderr).not.toMatch(/failed|Error/);
    expect(r1.code).toBe(0);
    expect(r1.stdout).toContain('`models verify` reports the patched files as "patched (original verified)"');
    for (const f of ['decoder_model.onnx', 'decoder_model_merged.onnx', 'decoder_model_quantized.onnx']) {
      expect(r1.stdout).toContain(`onnx/${f}: patched, 2 cross_attentions outputs; original kept as onnx/${f.replace('.onnx', '.orig.onnx')}`);
      // the original is kept byte for byte; the patched file has the outputs
      expect(same(join(dir, 'onnx', f.replace('.onnx', '.orig.onnx')), join(MODEL_DIR, 'onnx', f))).toBe(true);
      expect(crossAttentionOutputs(readFileSync(join(dir, 'onnx', f)))).toEqual(['cross_attentions.0', 'cross_attentions.1']);
    }
    // untouched: the cached-step decoders and the encoder; no temp files left
    expect(same(join(dir, 'onnx/decoder_with_past_model.onnx'), join(MODEL_DIR, 'onnx/decoder_with_past_model.onnx'))).toBe(true);
    expect(existsSync(join(dir, 'onnx/decoder_with_past_model.orig.onnx'))).toBe(false);
    expect(readFileSync(join(dir, 'onnx/decoder_model.onnx')).length).toBeGreaterThan(0);
    const { readdirSync } = await import('node:fs');
    expect(readdirSync(join(dir, 'onnx')).filter((n) => n.includes('.tmp'))).toEqual([]);

    // second run: nothing to do, nothing rewritten
    const before = statSync(join(dir, 'onnx/decoder_model.onnx')).mtimeMs;
    const r2 = await cli(['attentions', dir], env); // a folder path works too
    expect(r2.code).toBe(0);
    expect(r2.stdout).toContain('onnx/decoder_model.onnx: already patched (2 cross_attentions outputs)');
    expect(r2.stdout).toContain('already patched, nothing to do.');
    expect(statSync(join(dir, 'onnx/decoder_model.onnx')).mtimeMs).toBe(before);

    // the engine loaded from the folder reports cross-attention DTW (split, merged, int8)
    for (const opts of [{ decoderLayout: 'split' as const }, { decoderLayout: 'merged' as const }, { decoderLayout: 'split' as const, quantized: true }]) {
      const engine = await WhisperEngine.load(dir, { ...opts, intraOpThreads: 1, interOpThreads: 1 });
      try {
        expect(engine.info.crossAttentions).toBe(true);
        const [res] = await engine.transcribe([{ audio: loadAudio('jfk'), options: { language: 'en', temperature: 0, maxNewTokens: 12, wordTimestamps: true, noSpeechThreshold: null } }]);
        expect(res.wordTimestamps).toBe('cross-attention-dtw');
        expect(res.segments.flatMap((s) => s.words ?? []).length).toBeGreaterThan(0);
      } finally {
        await engine.close();
      }
    }
  }, 120_000);

  it('refuses a graph without the cross-attention structure and changes nothing; unknown ids and folders exit 2', async () => {
    const dir = copyFixture(modelsDir, 'whisper-bad', ['config.json', 'generation_config.json', 'onnx/decoder_model.onnx', 'onnx/encoder_model.onnx']);
    // a "decoder" that is really the encoder graph: no Softmax feeding an encoder.value MatMul
    copyFileSync(join(MODEL_DIR, 'onnx/encoder_model.onnx'), join(dir, 'onnx/decoder_model_merged.onnx'));
    const r = await cli(['attentions', 'whisper-bad'], { MODELS_DIR: modelsDir });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/onnx\/decoder_model_merged\.onnx: unexpected graph structure, not patched/);
    expect(r.stderr).toContain('Nothing was changed.');
    // all-or-nothing: the good split decoder was not patched either
    expect(same(join(dir, 'onnx/decoder_model.onnx'), join(MODEL_DIR, 'onnx/decoder_model.onnx'))).toBe(true);
    expect(existsSync(join(dir, 'onnx/decoder_model.orig.onnx'))).toBe(false);

    const notWhisper = join(modelsDir, 'not-whisper');
    mkdirSync(notWhisper);
    writeFileSync(join(notWhisper, 'config.json'), JSON.stringify({ model_type: 'bert', decoder_attention_heads: 4, decoder_layers: 2 }));
    await expect(patchWhisperFolder(notWhisper)).rejects.toThrow(/model_type is 'bert', not 'whisper'/);

    expect((await cli(['attentions', 'no-such-model'], { MODELS_DIR: modelsDir })).code).toBe(2);
    const nf = await cli(['attentions', './no/such/folder'], { MODELS_DIR: modelsDir });
    expect(nf.code).toBe(2);
    expect(nf.stderr).toMatch(/No such folder/);
  }, 60_000);

  it('external data: weights in decoder_model.onnx_data stay valid; the patched graph computes the same logits', async () => {
    const dir = copyFixture(modelsDir, 'whisper-ext', ['config.json', 'generation_config.json']);
    const { model, data, moved } = externalize(readFileSync(join(MODEL_DIR, 'onnx/decoder_model.onnx')), 'decoder_model.onnx_data');
    expect(moved).toBeGreaterThan(10);
    mkdirSync(join(dir, 'onnx'));
    writeFileSync(join(dir, 'onnx/decoder_model.onnx'), model);
    writeFileSync(join(dir, 'onnx/decoder_model.onnx_data'), data);
    expect(usesExternalData(model)).toBe(true);
    expect(model.length).toBeLessThan(data.length / 10); // the graph file really is small now

    // the external-data model loads and matches the fixture before patching (the conversion is sound)
    const ids = [50258, 50259, 50359, 50363, 1, 2, 3];
    const hidden = new Float32Array(1500 * 64).map((_, i) => Math.sin(i * 0.37));
    const feeds = () => ({
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
      encoder_hidden_states: new ort.Tensor('float32', hidden, [1, 1500, 64]),
    });
    const logits = async (path: string) => {
      const s = await ort.InferenceSession.create(path);
      try {
        const out = await s.run(feeds());
        return { logits: out.logits.data as Float32Array, outputs: s.outputNames, cross: out['cross_attentions.0']?.dims };
      } finally {
        await s.release();
      }
    };
    const reference = await logits(join(MODEL_DIR, 'onnx/decoder_model.onnx'));
    const beforePatch = await logits(join(dir, 'onnx/decoder_model.onnx'));
    expect(Buffer.compare(Buffer.from(beforePatch.logits.buffer), Buffer.from(reference.logits.buffer))).toBe(0);

    const dataBefore = readFileSync(join(dir, 'onnx/decoder_model.onnx_data'));
    const r = await cli(['attentions', dir], {});
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('onnx/decoder_model.onnx: patched, 2 cross_attentions outputs (external data left as is)');
    expect(Buffer.compare(readFileSync(join(dir, 'onnx/decoder_model.onnx_data')), dataBefore)).toBe(0);
    // both the patched file and the kept original resolve the same data file
    const patched = await logits(join(dir, 'onnx/decoder_model.onnx'));
    expect(patched.outputs).toEqual([...reference.outputs, 'cross_attentions.0', 'cross_attentions.1']);
    expect(patched.cross).toEqual([1, 4, ids.length, 1500]);
    expect(Buffer.compare(Buffer.from(patched.logits.buffer), Buffer.from(reference.logits.buffer))).toBe(0);
    const orig = await logits(join(dir, 'onnx/decoder_model.orig.onnx'));
    expect(Buffer.compare(Buffer.from(orig.logits.buffer), Buffer.from(reference.logits.buffer))).toBe(0);
  }, 60_000);
});
