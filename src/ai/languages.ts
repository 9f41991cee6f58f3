/**
 * Language codes for translation: BCP 47 / ISO 639 codes as Node's ICU knows them (ISO 639-1 and 639-3,
 * with regions and scripts: `es`, `pt-BR`, `zh-Hant`, `ceb`). A well-formed code ICU does not know (MADLAD-400
 * covers 400+ languages, some ICU has no name for, and tags like `zh_Latn`) is kept with `known: false`: the
 * translator decides (a seq2seq model by its vocabulary; the chat model needs a language name and refuses it).
 */
const names = new Intl.DisplayNames(['en'], { type: 'language', fallback: 'none' });

export const EXAMPLE_LANGUAGES = ['en', 'es', 'fr', 'de', 'it', 'pt', 'nl', 'ru', 'zh', 'ja', 'ko', 'ar', 'hi', 'tr', 'pl', 'uk'];

/** A language code of a request: canonical where ICU knows it, as written otherwise. */
export interface LanguageCode {
  /** Canonical BCP 47 code (ICU), or the code as the client wrote it when ICU does not know it. */
  code: string;
  /** English name (the code itself when not known). */
  name: string;
  /** The code as the client wrote it (trimmed), e.g. `zh_Latn` where `code` is `zh-Latn`. */
  raw: string;
  /** false: well formed, but not a language ICU names. */
  known: boolean;
}

const CODE_RE = /^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$/;

/** Canonical code and English name, or null when the code is not a known language. */
export function lookupLanguage(code: string): { code: string; name: string } | null {
  if (typeof code !== 'string' || !CODE_RE.test(code.trim())) return null;
  let canon: string;
  try {
    canon = Intl.getCanonicalLocales(code.trim().replace(/_/g, '-'))[0];
  } catch {
    return null;
  }
  const base = canon.split('-')[0];
  if (['mul', 'zxx', 'und', 'mis'].includes(base)) return null;
  const baseName = names.of(base);
  if (!baseName || baseName === base) return null;
  return { code: canon, name: names.of(canon) ?? baseName };
}

export function unknownLanguageMessage(field: string, code: unknown): string {
  return `${field} must be a language code (ISO 639-1/639-3 or BCP 47), such as ${EXAMPLE_LANGUAGES.join(', ')} (got ${JSON.stringify(code)})`;
}

/** The code as {@link LanguageCode}: known (ICU), well formed but unknown, or null when it is not a code at all. */
export function parseLanguageCode(code: unknown): LanguageCode | null {
  if (typeof code !== 'string' || !CODE_RE.test(code.trim())) return null;
  const raw = code.trim();
  const lang = lookupLanguage(raw);
  return lang ? { ...lang, raw, known: true } : { code: raw, name: raw, raw, known: false };
}
