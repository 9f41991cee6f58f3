/**
 * Environment of the AI endpoints, validated with zod; loadConfig merges it into the one Config (`config.ai`).
 * Every variable is optional; the defaults serve Qwen2.5-1.5B-Instruct and all-MiniLM-L6-v2 from MODELS_DIR.
 */
import { z } from 'zod';

const int = (min: number, max: number, dflt: number) => z.coerce.number().int().min(min).max(max).default(dflt);

export const AiEnvSchema = z.object({
  LLM_MODEL: z.string().min(1).default('qwen2.5-1.5b-instruct'),
  LLM_BASE_URL: z.url().optional(),
  LLM_API_KEY: z.string().optional(),
  LLM_CONTEXT_SIZE: int(256, 131072, 4096),
  LLM_SEQUENCES: int(1, 64, 4),
  LLM_MAX_QUEUE: int(0, 10000, 32),
  LLM_THREADS: int(0, 256, 0),
  LLM_MAX_TOKENS: int(1, 32768, 512),
  LLM_GPU: z.enum(['auto', 'false', 'cpu']).default('false'),
  EMBED_MODEL: z.string().min(1).default('all-minilm-l6-v2'),
  TRANSLATE_MODEL: z.string().optional(),
  EMBED_QUANTIZED: z.enum(['true', 'false']).default('false'),
  EMBED_MAX_TEXTS: int(1, 10000, 256),
  AI_MAX_TEXT_CHARS: int(1, 50_000_000, 500_000),
  ENHANCE_TARGET_LUFS: z.coerce.number().min(-70).max(-5).default(-23),
  TTS_MAX_CHARS: int(1, 1_000_000, 5000),
});

export interface AiConfig {
  llm: {
    model: string;
    baseUrl: string | null;
    apiKey: string | null;
    contextSize: number;
    sequences: number;
    maxQueue: number;
    threads: number;
    maxTokens: number;
    gpu: 'auto' | false;
  };
  embedding: { model: string; quantized: boolean; maxTexts: number };
  /** /v1/translate on a seq2seq model (MADLAD-400) when set; null = on the chat LLM. */
  translation: { model: string | null };
  maxTextChars: number;
  enhance: { targetLufs: number };
  /** /v1/tts: longest text (characters); longer → 413. */
  tts: { maxChars: number };
}

export function aiConfigFromEnv(env: Record<string, string | undefined> = process.env): AiConfig {
  const r = AiEnvSchema.safeParse(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== '')));
  if (!r.success) throw new Error(`Invalid AI configuration: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const e = r.data;
  return {
    llm: {
      model: e.LLM_MODEL,
      baseUrl: e.LLM_BASE_URL ?? null,
      apiKey: e.LLM_API_KEY ?? null,
      contextSize: e.LLM_CONTEXT_SIZE,
      sequences: e.LLM_SEQUENCES,
      maxQueue: e.LLM_MAX_QUEUE,
      threads: e.LLM_THREADS,
      maxTokens: e.LLM_MAX_TOKENS,
      gpu: e.LLM_GPU === 'auto' ? 'auto' : false,
    },
    embedding: { model: e.EMBED_MODEL, quantized: e.EMBED_QUANTIZED === 'true', maxTexts: e.EMBED_MAX_TEXTS },
    translation: { model: e.TRANSLATE_MODEL ?? null },
    maxTextChars: e.AI_MAX_TEXT_CHARS,
    enhance: { targetLufs: e.ENHANCE_TARGET_LUFS },
    tts: { maxChars: e.TTS_MAX_CHARS },
  };
}
