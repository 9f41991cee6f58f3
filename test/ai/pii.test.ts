import { describe, expect, it } from 'vitest';
import { detectPii, findNameSpans, luhnValid, redact, resolveOverlaps } from '../../src/ai/pii.ts';

describe('PII redaction (deterministic)', () => {
  it('finds e-mails, phones, Luhn-valid cards, valid IBANs and IPs with exact offsets', () => {
    const text =
      'Mail jane.doe@example.co.uk or call +1 (415) 555-2671. Card 4111 1111 1111 1111, not 4111 1111 1111 1112. ' +
      'IBAN DE89 3704 0044 0532 0130 00 (bad: DE89 3704 0044 0532 0130 01). Server 192.168.1.20, v6 2001:db8::8a2e:370:7334, version 1.2.3.';
    const spans = detectPii(text);
    const got = spans.map((s) => [s.type, text.slice(s.start, s.end)]);
    expect(got).toEqual([
      ['email', 'jane.doe@example.co.uk'],
      ['phone', '+1 (415) 555-2671'],
      ['card_number', '4111 1111 1111 1111'],
      ['iban', 'DE89 3704 0044 0532 0130 00'],
      ['ip_address', '192.168.1.20'],
      ['ip_address', '2001:db8::8a2e:370:7334'],
    ]);
    // Offsets and types only: the values found are never carried along.
    for (const s of spans) expect(Object.keys(s).sort()).toEqual(['end', 'start', 'type']);
    const red = redact(text, spans);
    expect(red).toContain('Mail [EMAIL] or call [PHONE]. Card [CARD_NUMBER], not 4111 1111 1111 1112.');
    expect(red).toContain('IBAN [IBAN] (bad: DE89');
    expect(red).toContain('Server [IP_ADDRESS], v6 [IP_ADDRESS], version 1.2.3.');
  });

  it('Luhn', () => {
    expect(luhnValid('4111111111111111')).toBe(true);
    expect(luhnValid('4111111111111112')).toBe(false);
    expect(luhnValid('378282246310005')).toBe(true);
  });

  it('adds name spans without overlapping deterministic ones', () => {
    const text = 'Ask Anna Berg (anna.berg@corp.com); Anna will reply. Annabelle is someone else.';
    const spans = resolveOverlaps([...detectPii(text), ...findNameSpans(text, ['Anna Berg', 'Anna', 'x'])]);
    expect(redact(text, spans)).toBe('Ask [PERSON] ([EMAIL]); [PERSON] will reply. Annabelle is someone else.');
    expect(JSON.stringify(spans)).not.toMatch(/Anna|corp/);
  });
});
