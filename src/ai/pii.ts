/**
 * Deterministic PII detection and redaction: e-mail addresses, phone numbers (libphonenumber-js, numbers
 * with a +country code anywhere, national numbers of `defaultRegion`), payment card numbers (13-19 digits,
 * Luhn-checked), IBANs (ibantools: country format + mod-97 check) and IP addresses (IPv4/IPv6, node:net).
 * Names come from the LLM's entity list (`extraSpans`); the regex-level detectors never need a model.
 * Offsets are JavaScript string indices (UTF-16 code units) into the original text, end exclusive.
 * Spans carry offsets and types only, never the values found: whatever returns, stores or logs them
 * (the /v1/analyze response) must not carry the PII it was asked to remove.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { electronicFormatIBAN, isValidIBAN } from 'ibantools';
import { findPhoneNumbersInText, type CountryCode } from 'libphonenumber-js';

export type PiiType = 'email' | 'phone' | 'card_number' | 'iban' | 'ip_address' | 'person';

export interface PiiSpan {
  start: number;
  end: number;
  type: PiiType;
}

export const PII_PLACEHOLDER: Record<PiiType, string> = {
  email: '[EMAIL]',
  phone: '[PHONE]',
  card_number: '[CARD_NUMBER]',
  iban: '[IBAN]',
  ip_address: '[IP_ADDRESS]',
  person: '[PERSON]',
};

const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g;
const CARD = /(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])/g;
const IBAN = /\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b/g;
const IPV4 = /(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])/g;
const IPV6 = /(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])/g;

export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return digits.length > 0 && sum % 10 === 0;
}

function matches(re: RegExp, text: string, type: PiiType, accept: (m: string) => boolean): PiiSpan[] {
  const out: PiiSpan[] = [];
  for (const m of text.matchAll(re)) {
    if (accept(m[0])) out.push({ start: m.index!, end: m.index! + m[0].length, type });
  }
  return out;
}

export interface DetectOptions {
  /** Region for phone numbers written without a country code (default US). */
  defaultRegion?: CountryCode;
}

/** Every deterministic PII span, overlaps resolved (earlier wins, then the longer one; detectors in priority order). */
export function detectPii(text: string, opts: DetectOptions = {}): PiiSpan[] {
  const candidates: PiiSpan[] = [
    ...matches(EMAIL, text, 'email', () => true),
    ...matches(IBAN, text, 'iban', (m) => isValidIBAN(electronicFormatIBAN(m) ?? '')),
    ...matches(CARD, text, 'card_number', (m) => luhnValid(m.replace(/[ -]/g, ''))),
    ...matches(IPV4, text, 'ip_address', (m) => isIPv4(m)),
    ...matches(IPV6, text, 'ip_address', (m) => (m.includes('::') || m.split(':').length === 8 ? isIPv6(m) : false)),
    ...findPhoneNumbersInText(text, { defaultCountry: opts.defaultRegion ?? 'US' }).map((p) => ({
      start: p.startsAt,
      end: p.endsAt,
      type: 'phone' as const,
    })),
  ];
  return resolveOverlaps(candidates);
}

/** Keeps non-overlapping spans: the first detector's claim wins (input order), then earlier and longer spans. */
export function resolveOverlaps(spans: PiiSpan[]): PiiSpan[] {
  const kept: PiiSpan[] = [];
  for (const s of spans) {
    if (s.end <= s.start) continue;
    if (kept.some((k) => s.start < k.end && k.start < s.end)) continue;
    kept.push(s);
  }
  return kept.sort((a, b) => a.start - b.start);
}

/** Spans of each occurrence of the given names (whole words, case-sensitive). */
export function findNameSpans(text: string, names: string[]): PiiSpan[] {
  const out: PiiSpan[] = [];
  for (const raw of new Set(names.map((n) => n.trim()).filter((n) => n.length >= 2))) {
    const re = new RegExp(`(?<![\\p{L}\\p{N}])${raw.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![\\p{L}\\p{N}])`, 'gu');
    for (const m of text.matchAll(re)) out.push({ start: m.index!, end: m.index! + m[0].length, type: 'person' });
  }
  return out;
}

export function redact(text: string, spans: PiiSpan[]): string {
  let out = '';
  let at = 0;
  for (const s of [...spans].sort((a, b) => a.start - b.start)) {
    out += text.slice(at, s.start) + PII_PLACEHOLDER[s.type];
    at = s.end;
  }
  return out + text.slice(at);
}
