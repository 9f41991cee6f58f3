/**
 * MADLAD's tokenizer: the SentencePiece Unigram of its tokenizer.json (NFKC, Metaspace, `</s>` appended by the
 * post-processor) via @huggingface/tokenizers, and the target languages its vocabulary carries as `<2xx>` tags.
 * The target is chosen by prefixing the source: `"<2xx> " + text`.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { decodeWithUnknown } from '../seq2seq/hf-files.ts';

const TAG = /^<2([^<>\s]+)>$/;

export class TranslationTokenizer {
  private constructor(
    private readonly tok: Tokenizer,
    /** target code → id of its `<2xx>` token */
    private readonly tags: Map<string, number>,
    /** Ids at or above it (a random-weight model at real size emits them) read as U+FFFD. */
    readonly size: number,
  ) {}

  static async load(dir: string): Promise<TranslationTokenizer> {
    const path = join(dir, 'tokenizer.json');
    let json: { model?: { vocab?: unknown }; added_tokens?: { id: number; content: string }[] } & Record<string, unknown>;
    try {
      json = JSON.parse(await readFile(path, 'utf8'));
    } catch (e) {
      throw new Error(`cannot read ${path}: ${(e as Error).message}`);
    }
    let cfg: object = {};
    try {
      cfg = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8'));
    } catch {
      /* optional */
    }
    const tags = new Map<string, number>();
    const add = (piece: unknown, id: number) => {
      const m = typeof piece === 'string' ? TAG.exec(piece) : null;
      if (m && !tags.has(m[1])) tags.set(m[1], id);
    };
    // Unigram vocab: [piece, score][] (the real MADLAD vocabulary has its tags there); added tokens (the fixture's)
    const vocab: unknown = json.model?.vocab ?? [];
    if (Array.isArray(vocab)) vocab.forEach((v, id) => add(Array.isArray(v) ? v[0] : v, id));
    else for (const [piece, id] of Object.entries(vocab as Record<string, number>)) add(piece, id);
    const added = json.added_tokens ?? [];
    for (const t of added) add(t.content, t.id);
    const size = Math.max(Array.isArray(vocab) ? vocab.length : Object.keys(vocab as object).length, ...added.map((t) => t.id + 1));
    return new TranslationTokenizer(new Tokenizer(json, cfg), tags, size);
  }

  /** Target language codes the vocabulary has a `<2xx>` tag for, sorted. */
  get targets(): string[] {
    return [...this.tags.keys()].sort();
  }

  hasTarget(code: string): boolean {
    return this.tags.has(code);
  }

  /** The source ids of `text` for `target`: `"<2xx> " + text` with `</s>` appended (as HF's tokenizer). */
  encode(text: string, target: string): number[] {
    if (!this.tags.has(target)) throw new Error(`unknown target language "${target}"`);
    return this.tok.encode(`<2${target}> ${text}`).ids;
  }

  /** Text of generated ids, special tokens (`<pad>`, `</s>`, `<unk>`) dropped; unknown ids read as U+FFFD. */
  decode(ids: readonly number[]): string {
    return decodeWithUnknown(ids, {
      known: (t) => t >= 0 && t < this.size,
      decodeRun: (run) => this.tok.decode(run, { skip_special_tokens: true, clean_up_tokenization_spaces: false }),
    });
  }
}
