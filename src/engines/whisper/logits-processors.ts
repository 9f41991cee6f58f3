/**
 * Whisper logits processors, rule-for-rule the Hugging Face ones that `generate` installs from
 * generation_config (same order: begin-suppress, suppress, timestamp rules), which also equal
 * OpenAI's SuppressBlank/SuppressTokens/ApplyTimestampRules for the shipped configs.
 * The generic processors and helpers are in ../seq2seq/logits.ts.
 */
import { type LogitsProcessor, suppressTokens, suppressTokensAtBegin } from '../seq2seq/logits.ts';

export interface TimestampRulesConfig {
  eot: number;
  noTimestamps: number;
  timestampBegin: number;
  /** generation_config.max_initial_timestamp_index (50 = 1.00 s); null = no limit. */
  maxInitialTimestampIndex: number | null;
}

/**
 * HF WhisperTimeStampLogitsProcessor (= OpenAI ApplyTimestampRules):
 *  - <|notimestamps|> is never generated;
 *  - timestamps come in pairs: after a lone timestamp the next token must be a timestamp or EOT,
 *    after a pair it must be text;
 *  - timestamps never decrease (and a timestamp ending a pair cannot be repeated as the next start);
 *  - the first generated token must be a timestamp ≤ max_initial_timestamp_index;
 *  - if the total probability of all timestamps beats the most likely text token, force a timestamp.
 */
export function timestampRules(c: TimestampRulesConfig): LogitsProcessor {
  const { eot, noTimestamps, timestampBegin: tb, maxInitialTimestampIndex } = c;
  return (logits, ctx) => {
    const V = logits.length;
    logits[noTimestamps] = -Infinity;
    const seq = ctx.tokens.slice(ctx.beginIndex);
    const n = seq.length;
    const lastWasTs = n >= 1 && seq[n - 1] >= tb;
    const penultimateWasTs = n < 2 || seq[n - 2] >= tb;
    if (lastWasTs) {
      if (penultimateWasTs)
        logits.fill(-Infinity, tb, V); // has to be text (or EOT)
      else logits.fill(-Infinity, 0, eot); // cannot be normal text
    }
    let lastTs = -1;
    for (let i = n - 1; i >= 0; i--) {
      if (seq[i] >= tb) {
        lastTs = seq[i];
        break;
      }
    }
    if (lastTs >= 0) {
      // OpenAI PR #914: a closing timestamp may equal the opening one; otherwise strictly increase.
      const limit = lastWasTs && !penultimateWasTs ? lastTs : lastTs + 1;
      logits.fill(-Infinity, tb, Math.min(limit, V));
    }
    if (ctx.tokens.length === ctx.beginIndex) {
      logits.fill(-Infinity, 0, tb);
      if (maxInitialTimestampIndex !== null) {
        const lastAllowed = tb + maxInitialTimestampIndex;
        if (lastAllowed + 1 < V) logits.fill(-Infinity, lastAllowed + 1, V);
      }
    }
    // Compare log(sum p(timestamps)) with max log p(text); the log-softmax normaliser cancels out.
    let maxAll = -Infinity;
    for (let i = 0; i < V; i++) if (logits[i] > maxAll) maxAll = logits[i];
    if (maxAll === -Infinity) return;
    let sumTs = 0;
    for (let i = tb; i < V; i++) sumTs += Math.exp(logits[i] - maxAll);
    const tsLogSum = Math.log(sumTs) + maxAll;
    let maxText = -Infinity;
    for (let i = 0; i < tb; i++) if (logits[i] > maxText) maxText = logits[i];
    if (tsLogSum > maxText) logits.fill(-Infinity, 0, tb);
  };
}

export interface WhisperProcessorOptions {
  suppressTokens: readonly number[];
  beginSuppressTokens: readonly number[];
  timestamps: boolean;
  timestampRules: TimestampRulesConfig;
}

/** The processor list HF `generate` builds for Whisper, in HF order. */
export function whisperLogitsProcessors(o: WhisperProcessorOptions): LogitsProcessor[] {
  const list: LogitsProcessor[] = [];
  if (o.beginSuppressTokens.length) list.push(suppressTokensAtBegin(o.beginSuppressTokens));
  if (o.suppressTokens.length) list.push(suppressTokens(o.suppressTokens));
  if (o.timestamps) list.push(timestampRules(o.timestampRules));
  return list;
}
