/**
 * `npx stt translate "text" --to es --model DIR_OR_ID [--max-new-tokens N] [--beam-size N] [--quantized] [--json]`
 *
 * Translates with the MADLAD/T5 engine in-process (the same engine the server will run), so it can be checked from
 * outside the server. With --json it prints one object: text, target, tokens (the generated ids, `</s>` excluded),
 * finished (whether `</s>` came before the budget ran out) and timing.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../../config/config.ts';
import { TranslationEngine } from '../engines/translation/index.ts';
import { ModelRegistry } from '../models/registry.ts';
import { exitCodeOf, intFlag, UsageError } from './usage-error.ts';

export const TRANSLATE_USAGE = `usage: stt translate "TEXT" --to CODE --model DIR_OR_ID [options]

options:
  --to, -t CODE           target language (a <2xx> tag of the model's vocabulary, e.g. es)
  --model, -m DIR_OR_ID   model id in MODELS_DIR or a model folder path
  --max-new-tokens N      token budget (random-weight models never emit </s>)
  --beam-size N           beam search width (default 1 = greedy)
  --quantized             use the int8 model files
  --threads N             onnxruntime intra-op threads
  --json                  print one JSON object
  --list-targets          print the target codes the model translates into (its <2xx> tags) and exit`;

export async function translateMain(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        to: { type: 'string', short: 't' },
        model: { type: 'string', short: 'm' },
        'max-new-tokens': { type: 'string' },
        'beam-size': { type: 'string' },
        quantized: { type: 'boolean', default: false },
        threads: { type: 'string' },
        json: { type: 'boolean', default: false },
        'list-targets': { type: 'boolean', default: false },
      },
    });
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${TRANSLATE_USAGE}`);
    return 2;
  }
  const { values: o, positionals } = parsed;
  const text = positionals.join(' ');
  if (!o.model || (!o['list-targets'] && (!text.trim() || !o.to))) {
    console.error(TRANSLATE_USAGE);
    return 2;
  }
  const int = (name: string, v: string | undefined) => intFlag(name, v, 1);
  let engine: TranslationEngine | null = null;
  try {
    const maxNewTokens = int('max-new-tokens', o['max-new-tokens']);
    const beamSize = int('beam-size', o['beam-size']);
    const tLoad = performance.now();
    const isPath = o.model.includes('/') || o.model.startsWith('.');
    const dir = isPath ? path.resolve(o.model) : (await ModelRegistry.create(loadConfig().paths.modelsDir)).resolve(o.model, 'translation').path!;
    engine = await TranslationEngine.load(dir, { precision: o.quantized ? 'int8' : 'fp32', intraOpThreads: int('threads', o.threads) });
    if (o['list-targets']) {
      console.log(o.json ? JSON.stringify({ model: engine.info.id, targets: engine.targets }) : engine.targets.join('\n'));
      return 0;
    }
    const to = o.to!;
    try {
      engine.checkTarget(to);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    const loadMs = performance.now() - tLoad;
    const t0 = performance.now();
    const [r] = await engine.translate([text], to, { maxNewTokens, beamSize });
    const timing = { load_ms: Math.round(loadMs * 10) / 10, translate_ms: Math.round((performance.now() - t0) * 10) / 10, tokens: r.tokens.length };
    if (o.json) console.log(JSON.stringify({ text: r.text, target: to, model: engine.info.id, tokens: r.tokens, finished: r.finished, timing }));
    else console.log(r.text);
    return 0;
  } catch (err) {
    console.error(`error: ${(err as Error).message}`);
    return exitCodeOf(err);
  } finally {
    await engine?.close();
  }
}
