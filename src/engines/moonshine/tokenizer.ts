/**
 * Moonshine's tokenizer: the Llama-style BPE of its tokenizer.json (Metaspace pre-tokenizer, byte fallback in the
 * real vocabulary) via @huggingface/tokenizers, plus what decoding needs: text without special tokens, and
 * pieces with their word-initial space kept (to split words for word timings).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { decodeWithUnknown } from '../seq2seq/hf-files.ts';

export class MoonshineTokenizer {
  private constructor(
    private readonly tok: Tokenizer,
    /** Ids at or above it (a random-weight model at real size emits them) read as U+FFFD. */
    readonly size: number,
    private readonly special: Set<number>,
  ) {}

  static async load(dir: string): Promise<MoonshineTokenizer> {
    const json = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8'));
    let cfg: object = {};
    try {
      cfg = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8'));
    } catch {
      /* optional */
    }
    const added = (json.added_tokens ?? []) as { id: number; special?: boolean }[];
    const vocab = json.model?.vocab ?? {};
    const size = Math.max(Object.keys(vocab).length, ...added.map((t) => t.id + 1));
    return new MoonshineTokenizer(new Tokenizer(json, cfg), size, new Set(added.filter((t) => t.special).map((t) => t.id)));
  }

  private known(ids: readonly number[]): number[] {
    return ids.filter((t) => t >= 0 && t < this.size && !this.special.has(t));
  }

  /**
   * Text of generated ids, special tokens dropped (the leading space of the first word removed). An id the
   * tokenizer does not have (a random-weight model at real size emits them: its vocabulary is larger than the
   * fixture's tokenizer) reads as U+FFFD, as an undecodable byte does.
   */
  decode(ids: readonly number[]): string {
    return decodeWithUnknown(ids, {
      known: (t) => t >= 0 && t < this.size,
      skip: (t) => this.special.has(t),
      decodeRun: (run, first) => (first ? this.tok.decode(run, { skip_special_tokens: true, clean_up_tokenization_spaces: false }) : this.decodePiece(run)),
    });
  }

  /**
   * A run of ids as it reads inside a text: a word-initial piece keeps its leading space (" the"), which
   * `decode` drops at the start of a text. Word splitting (splitWords) reads word starts from it.
   */
  decodePiece(ids: readonly number[]): string {
    const text = this.known(ids);
    if (!text.length) return '';
    const first = this.tok.id_to_token(text[0]) ?? '';
    const body = this.tok.decode(text, { skip_special_tokens: true, clean_up_tokenization_spaces: false });
    return first.startsWith('\u2581') && !body.startsWith(' ') ? ` ${body}` : body;
  }

  /** Ids of a text that continues a transcript (a live partial's agreed words, forced after <s>). */
  encodeText(text: string): number[] {
    return this.tok.encode(text.trim(), { add_special_tokens: false }).ids;
  }
}
