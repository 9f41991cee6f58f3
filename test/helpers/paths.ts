import path from 'node:path';

/** The model fixtures (random weights, real layouts): CI sets MODELS_DIR, locally ../shared/models. */
export const MODELS_DIR = path.resolve(process.env.MODELS_DIR ?? path.join(import.meta.dirname, '../../../shared/models'));
export const WHISPER_FIXTURE = path.join(MODELS_DIR, 'whisper-mini-random');
export const REPO_ROOT = path.resolve(import.meta.dirname, '../..');
