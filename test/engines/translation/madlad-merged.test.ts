/**
 * The merged decoder layout of MADLAD/T5 (`decoder_model_merged.onnx`, what hub exports and transformers.js use),
 * built from madlad-mini-random's split decoders by `mergeDecodersInFolder` in a temp copy of the folder:
 *  - our TranslationEngine on the merged layout gives every golden greedy and beam-4 token (fp32), the golden padded
 *    batch, and int8 within the tolerance of the split int8 test;
 *  - transformers.js's `translation` pipeline on the same files (fp32, local files only, greedy, 16 new tokens) gives
 *    the golden input ids, the golden greedy tokens (= ours) and the golden text, single and batched.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TranslationEngine } from '../../../src/engines/translation/index.ts';
import { mergeDecodersInFolder } from '../../../src/models/onnx-merge-decoders.ts';
import { MODELS_DIR } from '../../helpers/paths.ts';

const SRC = join(MODELS_DIR, 'madlad-mini-random');
interface GoldenCase {
  target: string;
  text: string;
  source: string;
  input_ids: number[];
  greedy: number[];
  beam4: number[];
  greedy_text: string;
}
const golden: { single: GoldenCase[]; batch: { greedy: number[][] } } = JSON.parse(readFileSync(join(SRC, 'golden/golden.json'), 'utf8'));
const CASES = golden.single;
const NEW = 16;
const commonPrefix = (a: number[], b: number[]) => {
  let k = 0;
  while (k < a.length && k < b.length && a[k] === b[k]) k++;
  return k;
};

let dir: string;
beforeAll(() => {
  dir = join(mkdtempSync(join(tmpdir(), 'stt-madlad-merged-')), 'madlad-mini-random');
  cpSync(SRC, dir, { recursive: true });
  expect(mergeDecodersInFolder(dir).map((w) => basename(w.path))).toEqual(['decoder_model_merged.onnx', 'decoder_model_merged_quantized.onnx']);
});
afterAll(() => {
  if (dir) rmSync(dirname(dir), { recursive: true, force: true });
});

describe('MADLAD fp32 on the merged decoder', () => {
  let eng: TranslationEngine;
  beforeAll(async () => {
    eng = await TranslationEngine.load(dir); // auto: merged when present
  });
  afterAll(async () => eng?.close());

  it('picks the merged layout by default', () => {
    expect(eng.info).toMatchObject({ layout: 'merged', quantized: false });
  });

  it.each(CASES.map((c) => [c.target, c] as const))('%s: greedy and beam 4 give the 16 golden tokens', async (_t, c) => {
    const [g] = await eng.translate([c.text], c.target, { maxNewTokens: NEW });
    expect(g.tokens).toEqual(c.greedy);
    expect(g.text).toBe(c.greedy_text);
    const [b] = await eng.translate([c.text], c.target, { maxNewTokens: NEW, beamSize: 4 });
    expect(b.tokens).toEqual(c.beam4);
  });

  it('the padded batch of the four sources equals the golden batch (greedy) and the single runs (beam 4)', async () => {
    const items = CASES.map((c) => ({ text: c.text, target: c.target }));
    expect((await eng.translateBatch(items, { maxNewTokens: NEW })).map((r) => r.tokens)).toEqual(golden.batch.greedy);
    expect((await eng.translateBatch(items, { maxNewTokens: NEW, beamSize: 4 })).map((r) => r.tokens)).toEqual(CASES.map((c) => c.beam4));
  });
});

describe('MADLAD int8 on the merged decoder', () => {
  it('loads the merged quantized file; every case within the split int8 tolerance (first 2 greedy tokens equal the golden)', async () => {
    const eng = await TranslationEngine.load(dir, { precision: 'int8', decoderLayout: 'merged' });
    try {
      expect(eng.info).toMatchObject({ layout: 'merged', quantized: true });
      for (const c of CASES) {
        const [r] = await eng.translate([c.text], c.target, { maxNewTokens: NEW });
        expect(r.tokens).toHaveLength(NEW);
        expect(commonPrefix(r.tokens, c.greedy), c.target).toBeGreaterThanOrEqual(2);
      }
    } finally {
      await eng.close();
    }
  });
});

/** The parts of transformers.js's translation pipeline used here (its generic types are too deep for tsc). */
interface Pipe {
  (texts: string | string[], o: object): Promise<Array<{ translation_text: string }>>;
  tokenizer: (text: string) => { input_ids: { tolist: () => bigint[][] }; attention_mask: unknown };
  model: { generate: (o: object) => Promise<{ tolist: () => bigint[][] }> };
  dispose: () => Promise<unknown>;
}

describe('transformers.js translation pipeline on the same merged files', () => {
  let pipe: Pipe;
  let ours: TranslationEngine;
  beforeAll(async () => {
    const tjs = await import('@huggingface/transformers');
    tjs.env.allowRemoteModels = false;
    tjs.env.allowLocalModels = true;
    tjs.env.localModelPath = `${dirname(dir)}/`;
    const load = tjs.pipeline as unknown as (task: string, model: string, o: object) => Promise<Pipe>;
    pipe = await load('translation', basename(dir), { dtype: 'fp32', device: 'cpu', local_files_only: true, session_options: { intraOpNumThreads: 1, interOpNumThreads: 1 } });
    ours = await TranslationEngine.load(dir, { decoderLayout: 'merged', intraOpThreads: 1 });
  });
  afterAll(async () => {
    await pipe?.dispose();
    await ours?.close();
  });

  it.each(CASES.map((c) => [c.target, c] as const))('%s: "<2xx> " + text → golden input ids; greedy 16 tokens = golden = ours; text = golden text', async (_t, c) => {
    const enc = pipe.tokenizer(c.source);
    expect(enc.input_ids.tolist()[0].map(Number)).toEqual(c.input_ids);
    const out = (await pipe.model.generate({ ...enc, max_new_tokens: NEW, do_sample: false, num_beams: 1 })).tolist()[0].map(Number);
    expect(out[0]).toBe(0); // decoder_start_token_id
    const theirs = out.slice(1);
    expect(theirs).toEqual(c.greedy);
    const [mine] = await ours.translate([c.text], c.target, { maxNewTokens: NEW });
    expect(theirs).toEqual(mine.tokens);
    const [t] = await pipe(c.source, { max_new_tokens: NEW });
    expect(t.translation_text).toBe(c.greedy_text);
  });

  it('a batch of the four sources through the pipeline gives the four golden texts', async () => {
    const out = await pipe(
      CASES.map((c) => c.source),
      { max_new_tokens: NEW },
    );
    expect(out.map((o) => o.translation_text)).toEqual(CASES.map((c) => c.greedy_text));
  });
});
