/** Reading a Hugging Face model folder's JSON files and decoding ids a tokenizer may not have: shared by the engines. */
import { readFile } from 'node:fs/promises';

/** A JSON file of a model folder; `optional`: a missing or unreadable file reads as {}. */
export async function readModelJson(path: string, optional = false): Promise<Record<string, any>> {
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    if (optional) return {};
    throw new Error(`cannot read ${path}: ${(e as Error).message}`);
  }
}

/**
 * Text of `ids` where an id the tokenizer does not have (`known` false: a random-weight model at real size emits
 * them when its vocabulary is larger than the fixture's tokenizer) reads as U+FFFD, as an undecodable byte does.
 * `skip` ids are dropped; each run of known ids is decoded by `decodeRun` (`first`: the run starts the text).
 */
export function decodeWithUnknown(ids: readonly number[], o: { known: (id: number) => boolean; skip?: (id: number) => boolean; decodeRun: (run: number[], first: boolean) => string }): string {
  let out = '';
  let run: number[] = [];
  const flush = () => {
    // the tokenizers library rejects an empty list
    if (run.length) out += o.decodeRun(run, out === '');
    run = [];
  };
  for (const t of ids) {
    if (o.skip?.(t)) continue;
    if (o.known(t)) run.push(t);
    else {
      flush();
      out += '\uFFFD';
    }
  }
  flush();
  return out;
}
