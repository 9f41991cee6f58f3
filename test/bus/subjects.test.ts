import { describe, expect, it } from 'vitest';
import { ALL_SESSION_EVENTS, BusError, isReplayable, isValidId, isValidPattern, isValidSubject, parseSessionSubject, sessionSubject, subjectMatches } from '../../src/bus/bus.ts';
import { subjectMatches as reexported } from '../../src/bus/in-process-bus.ts';

describe('subjectMatches (NATS semantics)', () => {
  const cases: Array<[pattern: string, subject: string, expected: boolean]> = [
    ['a.b.c', 'a.b.c', true],
    ['a.b.c', 'a.b', false],
    ['a.b', 'a.b.c', false],
    ['a.b.c', 'a.b.d', false],
    ['a.*.c', 'a.b.c', true],
    ['a.*.c', 'a.b.x.c', false],
    ['a.*', 'a', false],
    ['a.*', 'a.b', true],
    ['a.*', 'a.b.c', false],
    ['*', 'a', true],
    ['*', 'a.b', false],
    ['*.*', 'a.b', true],
    ['a.>', 'a', false],
    ['a.>', 'a.b', true],
    ['a.>', 'a.b.c.d', true],
    ['>', 'a', true],
    ['>', 'a.b.c', true],
    ['a.*.>', 'a.b', false],
    ['a.*.>', 'a.b.c', true],
    ['*.b.>', 'x.b.c.d', true],
    ['*.b.>', 'x.c.c.d', false],
    ['stt.session.*.events', 'stt.session.abc.events', true],
    ['stt.session.*.events', 'stt.session.abc.events.x', false],
    ['ab.c', 'a.bc', false],
    ['a.b', 'a.b.', false],
  ];
  it.each(cases)('%s ~ %s → %s', (p, s, want) => {
    expect(subjectMatches(p, s)).toBe(want);
  });
  it('is re-exported by the in-process bus', () => {
    expect(reexported).toBe(subjectMatches);
  });
});

describe('subjects and ids', () => {
  it('builds and parses session subjects', () => {
    expect(sessionSubject('abc_DEF-123')).toBe('stt.session.abc_DEF-123.events');
    expect(parseSessionSubject('stt.session.abc_DEF-123.events')).toBe('abc_DEF-123');
    expect(parseSessionSubject('stt.session.abc.other')).toBeNull();
    expect(parseSessionSubject('stt.session.*.events')).toBeNull();
    expect(parseSessionSubject('x.session.a.events')).toBeNull();
    expect(subjectMatches(ALL_SESSION_EVENTS, sessionSubject('z'))).toBe(true);
  });

  it.each(['', 'a.b', 'a*', '>', 'a b', 'é', 'a/b', 'x'.repeat(129)])('rejects the id %j', (id) => {
    expect(isValidId(id)).toBe(false);
    expect(() => sessionSubject(id)).toThrow(BusError);
    expect(() => sessionSubject(id)).toThrow(/session id/);
  });

  it('accepts ids of [A-Za-z0-9_-]', () => {
    for (const id of ['a', 'A9', 'x_y-z', '0'.repeat(128)]) expect(isValidId(id)).toBe(true);
  });

  it('validates subjects and patterns', () => {
    expect(isValidSubject('a.b.c')).toBe(true);
    for (const s of ['', 'a..b', '.a', 'a.', 'a.*', 'a.>', 'a b', 'a\tb']) expect(isValidSubject(s)).toBe(false);
    for (const p of ['a', 'a.*', '*.b', 'a.>', '>', '*.*.>']) expect(isValidPattern(p)).toBe(true);
    for (const p of ['', 'a.>.b', '>.a', 'a*', 'a.b>', 'a..b', 'a b']) expect(isValidPattern(p)).toBe(false);
  });

  it('knows which patterns are retained for replay', () => {
    expect(isReplayable('stt.session.abc.events')).toBe(true);
    expect(isReplayable('stt.session.>')).toBe(true);
    expect(isReplayable('stt.session.*.events')).toBe(true);
    expect(isReplayable('stt.>')).toBe(false);
    expect(isReplayable('>')).toBe(false);
    expect(isReplayable('stt.sessions.a')).toBe(false);
  });
});
