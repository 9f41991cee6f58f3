/**
 * Translation on a seq2seq engine (MADLAD-400) behind the `Translator` interface: every sentence of every request
 * is one request of a shared BatchScheduler, so concurrent /v1/translate calls share padded encoder batches and
 * decoder batches (the engine's `translateBatch`; one group per token budget). A text is split at sentence
 * boundaries (Intl.Segmenter) and rejoined with its own whitespace; a sentence longer than {@link MAX_PIECE_CHARS}
 * is cut at spaces so no encoder input is unbounded.
 */
import { DomainError } from '../errors.ts';
import type { TranslationEngine, TranslationItem, Translation } from '../engines/translation/index.ts';
import { BatchScheduler } from '../pipeline/batch-scheduler.ts';
import type { Language, TranslateOptions, Translator } from './translate.ts';

/** Longest piece sent to the encoder (characters): MADLAD was trained on sentences, and a huge one is unbounded work. */
export const MAX_PIECE_CHARS = 1000;

/** The text as [piece, whitespace that followed it] pairs: sentences, long ones cut at spaces (pure). */
export function splitSentences(text: string, maxChars = MAX_PIECE_CHARS): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const seg = new Intl.Segmenter(undefined, { granularity: 'sentence' });
  for (const { segment } of seg.segment(text)) {
    const body = segment.trimEnd();
    const tail = segment.slice(body.length);
    if (!body.trim()) {
      if (out.length) out[out.length - 1][1] += segment;
      else out.push(['', segment]);
      continue;
    }
    let rest = body;
    while (rest.length > maxChars) {
      const cut = rest.lastIndexOf(' ', maxChars);
      const at = cut > 0 ? cut : maxChars;
      out.push([rest.slice(0, at), ' ']);
      rest = rest.slice(at).trimStart();
    }
    out.push([rest, tail]);
  }
  return out;
}

/**
 * The model's `<2xx>` code for a requested target: as written, canonical (`pt-BR`), or with `_` for `-` (MADLAD's
 * script tags such as `<2zh_Latn>`); the code as written when the model has none of them (its error lists the codes).
 */
export function modelTarget(target: Language, has: (code: string) => boolean): string {
  const forms = [target.raw, target.code, target.code.replace(/-/g, '_'), target.raw.replace(/-/g, '_')];
  return forms.find(has) ?? target.raw;
}

interface PieceRequest extends TranslationItem {
  maxNewTokens: number;
}

let keySeq = 0;

export class Seq2SeqTranslator implements Translator {
  private readonly scheduler: BatchScheduler<PieceRequest, Translation>;

  constructor(
    private readonly engine: TranslationEngine,
    private readonly o: { maxBatch?: number; windowMs?: number; defaultMaxNewTokens?: number } = {},
  ) {
    this.scheduler = new BatchScheduler<PieceRequest, Translation>({
      name: engine.info.id,
      maxBatch: o.maxBatch ?? 16,
      windowMs: o.windowMs ?? 5,
      // one token budget per batch (the engine decodes a batch with one budget)
      group: (r) => String(r.maxNewTokens),
      run: (batch) => engine.translateBatch(batch, { maxNewTokens: batch[0].maxNewTokens }),
    });
  }

  get model(): string {
    return this.engine.info.id;
  }

  get stats(): { batches: number; requests: number; maxBatchSize: number } {
    return this.scheduler.stats;
  }

  /** Target codes the model translates into. */
  get targets(): string[] {
    return this.engine.targets;
  }

  async translate(texts: string[], _source: Language, target: Language, signal?: AbortSignal, opts: TranslateOptions = {}): Promise<string[]> {
    const tag = modelTarget(target, (c) => this.engine.tokenizer.hasTarget(c));
    try {
      this.engine.checkTarget(tag);
    } catch (err) {
      throw new DomainError('invalid', `target: ${(err as Error).message}`);
    }
    const maxNewTokens = opts.maxNewTokens ?? this.o.defaultMaxNewTokens ?? 256;
    const key = `t${++keySeq}`;
    return Promise.all(
      texts.map(async (text) => {
        const pieces = splitSentences(text);
        const done = await Promise.all(
          pieces.map(([p]) => (p.trim() ? this.scheduler.submit({ text: p, target: tag, maxNewTokens }, { priority: 'file', key, signal }).then((r) => r.text.trim()) : Promise.resolve(''))),
        );
        return pieces
          .map(([, ws], i) => done[i] + (i < pieces.length - 1 ? ws || ' ' : ''))
          .join('')
          .trim();
      }),
    );
  }

  async close(): Promise<void> {
    await this.scheduler.close();
    await this.engine.close();
  }
}
