/**
 * Language codes for translation: BCP 47 / ISO 639 codes as Node's ICU knows them (ISO 639-1 and 639-3,
 * with regions and scripts: `es`, `pt-BR`, `zh-Hant`, `ceb`). Unknown codes are rejected with examples.
 */
const names = new Intl.DisplayNames(['en'], { type: 'language', fallback: 'none' });

export const EXAMPLE_LANGUAGES = ['en', 'es', 'fr', 'de', 'it', 'pt', 'nl', 'ru', 'zh', 'ja', 'ko', 'ar', 'hi', 'tr', 'pl', 'uk'];

/** Canonical code and English name, or null when the code is not a known language. */
export function lookupLanguage(code: string): { code: string; name: string } | null {
  if (typeof code !== 'string' || !/^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$/.test(code.trim())) return null;
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
