/**
 * Whisper tokenizer: BPE from tokenizer.json via @huggingface/tokenizers, plus the special-token
 * geometry decoding needs (SOT prompt, language/task tokens, timestamp tokens, segment splitting).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import type { WhisperGenerationConfig } from './config.ts';

/** Seconds per timestamp token (<|0.00|> + i → i * 0.02 s). */
export const TIME_PRECISION = 0.02;

export interface TokenSegment {
  start: number | null; // seconds relative to the window, null when the text has no timestamps
  end: number | null;
  tokens: number[]; // text tokens only
  text: string;
}

export class WhisperTokenizer {
  readonly eot: number;
  readonly sot: number;
  readonly sotPrev: number;
  readonly noTimestamps: number;
  readonly timestampBegin: number;
  readonly noSpeech: number;
  readonly transcribe: number;
  readonly translate: number;
  /** language code ("en") -> token id */
  readonly languages: Map<string, number>;
  readonly languageById: Map<number, string>;

  /** The full BPE tokenizer, built on the first encode (prompts); most runs only decode. */
  private encoder: Tokenizer | null = null;

  private constructor(
    /** Decoding only: the vocabulary without the BPE merges (decode never uses them). */
    private readonly tok: Tokenizer,
    gen: WhisperGenerationConfig,
    private readonly full: () => Tokenizer,
  ) {
    this.eot = gen.eosTokenId;
    this.sot = gen.decoderStartTokenId;
    this.sotPrev = gen.prevSotTokenId;
    this.noTimestamps = gen.noTimestampsTokenId;
    this.timestampBegin = gen.noTimestampsTokenId + 1;
    // <|nospeech|> sits just before <|notimestamps|> (HF WhisperNoSpeechDetection uses the same rule);
    // older vocabularies call it <|nocaptions|>.
    this.noSpeech = tok.token_to_id('<|nospeech|>') ?? tok.token_to_id('<|nocaptions|>') ?? gen.noTimestampsTokenId - 1;
    this.transcribe = gen.taskToId.transcribe ?? tok.token_to_id('<|transcribe|>')!;
    this.translate = gen.taskToId.translate ?? tok.token_to_id('<|translate|>')!;
    this.languages = new Map();
    this.languageById = new Map();
    for (const [t, id] of Object.entries(gen.langToId)) {
      const code = t.replace(/^<\|/, '').replace(/\|>$/, '');
      this.languages.set(code, id);
      this.languageById.set(id, code);
    }
  }

  static async load(dir: string, gen: WhisperGenerationConfig): Promise<WhisperTokenizer> {
    const json = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8'));
    let cfg: object = {};
    try {
      cfg = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8'));
    } catch {
      /* optional */
    }
    // Building the BPE ranks of ~50k merges is most of the tokenizer's load time (a third of a CLI start-up's model
    // load): the decoding tokenizer goes without them, the full one is built when something is first encoded.
    const merges = json.model?.merges;
    const decodeOnly = Array.isArray(merges) ? new Tokenizer({ ...json, model: { ...json.model, merges: [] } }, cfg) : new Tokenizer(json, cfg);
    return new WhisperTokenizer(decodeOnly, gen, () => (Array.isArray(merges) ? new Tokenizer(json, cfg) : decodeOnly));
  }

  /** Token id of a language code ("en") or throws with the list of supported codes. */
  languageToken(code: string): number {
    const id = this.languages.get(code.toLowerCase());
    if (id === undefined) throw new Error(`unsupported language "${code}"`);
    return id;
  }

  isTimestamp(id: number): boolean {
    return id >= this.timestampBegin;
  }

  timestampToken(seconds: number): number {
    return this.timestampBegin + Math.round(seconds / TIME_PRECISION);
  }

  timestampSeconds(id: number): number {
    return (id - this.timestampBegin) * TIME_PRECISION;
  }

  /** Special = any added control token (eot and everything above it, timestamps included). */
  isSpecial(id: number): boolean {
    return id >= this.eot;
  }

  /**
   * The start-of-transcript prompt: [sot, lang?, task, notimestamps?] (HF init_tokens / OpenAI sot_sequence).
   * Multilingual models always get lang + task; English-only models have neither.
   */
  sotSequence(opts: { language?: string | null; task?: 'transcribe' | 'translate'; timestamps: boolean; multilingual: boolean }): number[] {
    const seq = [this.sot];
    if (opts.multilingual) {
      seq.push(this.languageToken(opts.language ?? 'en'));
      seq.push(opts.task === 'translate' ? this.translate : this.transcribe);
    }
    if (!opts.timestamps) seq.push(this.noTimestamps);
    return seq;
  }

  /** Text tokens of a prompt string, with the leading space OpenAI adds (" " + prompt.strip()). */
  encodeText(text: string): number[] {
    this.encoder ??= this.full();
    return this.encoder.encode(' ' + text.trim(), { add_special_tokens: false }).ids;
  }

  /** Decode text, dropping all special and timestamp tokens. */
  decode(ids: number[]): string {
    const text = ids.filter((t) => t < this.eot);
    // No text token (end-of-text at once, only timestamps): the tokenizers library rejects an empty list.
    if (!text.length) return '';
    return this.tok.decode(text, { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  }

  /** Decode with timestamps rendered as <|1.08|> (for debugging / verbose output). */
  decodeWithTimestamps(ids: number[]): string {
    let out = '';
    let run: number[] = [];
    const flush = () => {
      if (run.length) out += this.decode(run);
      run = [];
    };
    for (const t of ids) {
      if (this.isTimestamp(t)) {
        flush();
        out += `<|${this.timestampSeconds(t).toFixed(2)}|>`;
      } else if (t < this.eot) run.push(t);
    }
    flush();
    return out;
  }

  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }

  /**
   * Split a generated sequence into segments by timestamp tokens: text between a start timestamp and
   * the next timestamp forms a segment. Text with no surrounding timestamps yields one segment with
   * null times. (The long-form seek logic lives in generate.ts; this is for display/offline use.)
   */
  splitByTimestamps(ids: number[]): TokenSegment[] {
    const segs: TokenSegment[] = [];
    let start: number | null = null;
    let cur: number[] = [];
    for (const t of ids) {
      if (t === this.eot) break;
      if (this.isTimestamp(t)) {
        const s = this.timestampSeconds(t);
        if (cur.length) {
          segs.push({ start, end: s, tokens: cur, text: this.decode(cur) });
          cur = [];
          start = null;
        } else start = s;
      } else if (t < this.eot) cur.push(t);
    }
    if (cur.length) segs.push({ start, end: null, tokens: cur, text: this.decode(cur) });
    return segs;
  }
}
