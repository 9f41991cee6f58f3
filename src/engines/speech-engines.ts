/**
 * Which engine runs a speech model folder, told by its config.json `model_type` (Whisper or Moonshine), and what
 * a folder is without loading it (for API-only servers that never create ONNX sessions).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadMoonshineConfig, MoonshineEngine, type MoonshineEngineOptions } from './moonshine/index.ts';
import type { SpeechEngine } from './speech-engine.ts';
import { loadWhisperConfig, WhisperEngine, type WhisperEngineOptions } from './whisper/index.ts';

export type SpeechFamily = 'whisper' | 'moonshine';

/** Options of every speech engine: each takes its own (Whisper's trimmableEncoder, Moonshine's padQuantumS). */
export type SpeechEngineOptions = WhisperEngineOptions & Pick<MoonshineEngineOptions, 'padQuantumS'>;

/** What a model is, without loading it: read from the folder's config files. */
export interface SpeechFolderInfo {
  family: SpeechFamily;
  /** Language codes the model accepts ("en", …), as the engine's tokenizer lists them. */
  languages: string[];
  multilingual: boolean;
  samplingRate: number;
  tasks: ('transcribe' | 'translate')[];
}

/** The family of a model folder from its config.json (Whisper when it does not say Moonshine). */
export async function speechFamily(dir: string): Promise<SpeechFamily> {
  try {
    const c = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
    return String(c.model_type).toLowerCase() === 'moonshine' ? 'moonshine' : 'whisper';
  } catch {
    return 'whisper'; // the Whisper loader reports what is missing
  }
}

export async function loadSpeechEngine(dir: string, opts: SpeechEngineOptions = {}): Promise<SpeechEngine> {
  if ((await speechFamily(dir)) === 'moonshine') {
    const { trimmableEncoder: _t, ...rest } = opts;
    return MoonshineEngine.load(dir, rest);
  }
  const { padQuantumS: _p, ...whisper } = opts;
  return WhisperEngine.load(dir, whisper);
}

export async function describeSpeechFolder(dir: string): Promise<SpeechFolderInfo> {
  if ((await speechFamily(dir)) === 'moonshine') {
    const c = await loadMoonshineConfig(dir);
    return { family: 'moonshine', languages: ['en'], multilingual: false, samplingRate: c.samplingRate, tasks: ['transcribe'] };
  }
  const config = await loadWhisperConfig(dir);
  // Language codes as WhisperTokenizer derives them: "<|en|>" -> "en", in the config's order.
  const languages = Object.keys(config.gen.langToId).map((t) => t.replace(/^<\|/, '').replace(/\|>$/, ''));
  return {
    family: 'whisper',
    languages: [...new Set(languages)],
    multilingual: config.gen.isMultilingual,
    samplingRate: config.features.samplingRate,
    tasks: config.gen.isMultilingual ? ['transcribe', 'translate'] : ['transcribe'],
  };
}
