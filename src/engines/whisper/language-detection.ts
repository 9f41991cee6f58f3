/** Whisper language detection (OpenAI detect_language / HF): one batched decoder step on [<|startoftranscript|>]. */
import type { EncoderOutput, StepModel } from '../seq2seq/kv-decoder.ts';
import { softmaxOver } from '../seq2seq/logits.ts';
import type { LanguageProbs } from '../speech-engine.ts';

export type { LanguageProbs } from '../speech-engine.ts';

/**
 * OpenAI detect_language / HF: one decoder step on [<|startoftranscript|>], softmax over the
 * language-token logits only. One batched run for all rows of `encoder`.
 */
export async function detectLanguage(model: StepModel, encoder: EncoderOutput, sot: number, languages: Map<string, number>): Promise<LanguageProbs[]> {
  const out = await model.prefill(
    encoder,
    Array.from({ length: encoder.batch }, () => [sot]),
  );
  const codes = [...languages.keys()];
  const tokIds = codes.map((c) => languages.get(c)!);
  const res: LanguageProbs[] = [];
  for (let r = 0; r < encoder.batch; r++) {
    const row = out.logits.subarray(r * out.vocab, (r + 1) * out.vocab);
    const p = softmaxOver(row, tokIds);
    const probs = codes.map((c, i) => [c, p[i]] as [string, number]).sort((a, b) => b[1] - a[1]);
    res.push({ probs, language: probs[0][0] });
  }
  return res;
}
