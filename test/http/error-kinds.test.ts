/**
 * The one table from a domain error's kind to an HTTP status and a WebSocket close code, and the
 * HTTP edge's mapping of DomainErrors through it (status, message, Retry-After, WWW-Authenticate,
 * what is logged as a fault).
 */
import { describe, expect, it } from 'vitest';
import { UnauthenticatedError } from '../../src/auth/errors.ts';
import { AudioDecodeError } from '../../src/audio/ffmpeg.ts';
import { errorFromWire, errorToWire, WorkQueueError } from '../../src/bus/work-queue.ts';
import { LlmQueueFullError } from '../../src/engines/llm/chat-backend.ts';
import { DomainError, ERROR_KINDS, type ErrorKind } from '../../src/errors.ts';
import { ApiError, toApiError } from '../../src/http/api-error.ts';
import { closeCodeOf, ERROR_KIND_CODES, statusOf } from '../../src/http/error-kinds.ts';
import { ModelNotInstalledError, UnknownModelError } from '../../src/models/errors.ts';
import { DuplicateEmailError } from '../../src/store/accounts.ts';

/** The codes the issue fixes for each kind (HTTP status, RFC 6455 close code). */
const EXPECTED: Record<ErrorKind, [number, number]> = {
  invalid: [400, 1007],
  unauthenticated: [401, 1008],
  payment_required: [402, 1008],
  forbidden: [403, 1008],
  not_found: [404, 1008],
  conflict: [409, 1008],
  too_large: [413, 1009],
  unsupported_media: [415, 1003],
  rate_limited: [429, 1013],
  cancelled: [499, 1000],
  upstream: [502, 1011],
  unavailable: [503, 1013],
  internal: [500, 1011],
};

describe('ERROR_KIND_CODES', () => {
  it('gives every kind an HTTP error status and a close code a server may send', () => {
    expect(Object.keys(ERROR_KIND_CODES).sort()).toEqual([...ERROR_KINDS].sort());
    for (const kind of ERROR_KINDS) {
      const { status, closeCode } = ERROR_KIND_CODES[kind];
      expect(status, kind).toBeGreaterThanOrEqual(400);
      expect(status, kind).toBeLessThan(600);
      // 1000–1011 and 1013 are the codes an endpoint may send; 1004–1006 are reserved / never sent.
      expect([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1013], kind).toContain(closeCode);
      expect([status, closeCode], kind).toEqual(EXPECTED[kind]);
    }
  });

  it('statusOf and closeCodeOf read a DomainError through the table', () => {
    for (const kind of ERROR_KINDS) {
      const err = new DomainError(kind, 'x');
      expect(statusOf(err), kind).toBe(EXPECTED[kind][0]);
      expect(closeCodeOf(err), kind).toBe(EXPECTED[kind][1]);
    }
  });

  it('anything else is internal: 500 and 1011', () => {
    for (const err of [new Error('boom'), 'a string', null, undefined, { status: 400 }]) {
      expect(statusOf(err)).toBe(500);
      expect(closeCodeOf(err)).toBe(1011);
    }
  });

  it('the HTTP edge`s own ApiError keeps its status; anything else without a kind is internal', () => {
    expect(statusOf(new ApiError(431, 'headers too large'))).toBe(431);
    expect(statusOf(Object.assign(new Error('decorated'), { status: 404 }))).toBe(500);
    expect(closeCodeOf(Object.assign(new Error('decorated'), { status: 400 }))).toBe(1011);
    expect(toApiError(Object.assign(new Error('decorated'), { status: 404 })).internal).toBe(true);
  });
});

describe('toApiError', () => {
  it('answers each kind with its status and the message; only internal hides it', () => {
    for (const kind of ERROR_KINDS) {
      const { error, internal } = toApiError(new DomainError(kind, `what to fix for ${kind}`));
      expect(error).toBeInstanceOf(ApiError);
      expect(error.status, kind).toBe(EXPECTED[kind][0]);
      if (kind === 'internal') {
        expect(error.message).toMatch(/^Internal server error/);
        expect(internal).toBe(true);
      } else {
        expect(error.message).toBe(`what to fix for ${kind}`);
        expect(internal, kind).toBe(false);
      }
    }
  });

  it('logs a 5xx kind as a fault unless it is expected', () => {
    expect(toApiError(new DomainError('unavailable', 'model not installed', { expected: false })).internal).toBe(true);
    expect(toApiError(new DomainError('unavailable', 'no worker right now')).internal).toBe(false);
    expect(toApiError(new DomainError('upstream', 'LLM server answered 500', { expected: false })).internal).toBe(true);
    expect(toApiError(new ModelNotInstalledError('small')).internal).toBe(true);
    expect(toApiError(new WorkQueueError('no worker')).internal).toBe(false);
    expect(toApiError(new Error('secret details'))).toMatchObject({ internal: true, error: { status: 500 } });
    expect(toApiError(new Error('secret details')).error.message).not.toMatch(/secret/);
  });

  it('sends Retry-After from retryAfterS (whole seconds, rounded up) and only then', () => {
    expect(toApiError(new DomainError('rate_limited', 'busy', { retryAfterS: 7 })).error.headers).toEqual({ 'retry-after': '7' });
    expect(toApiError(new DomainError('unavailable', 'later', { retryAfterS: 2.2 })).error.headers).toEqual({ 'retry-after': '3' });
    expect(toApiError(new DomainError('rate_limited', 'busy')).error.headers).toEqual({});
    const full = toApiError(new LlmQueueFullError(5, 2)).error;
    expect(full.status).toBe(429);
    expect(full.headers['retry-after']).toBe('5');
    const noWorker = toApiError(new WorkQueueError('No worker is running', { retryAfterS: 30 })).error;
    expect([noWorker.status, noWorker.headers['retry-after']]).toEqual([503, '30']);
  });

  it('sends the Bearer challenge with every 401', () => {
    expect(toApiError(new UnauthenticatedError('API key required')).error.headers).toEqual({ 'www-authenticate': 'Bearer' });
    expect(toApiError(new UnauthenticatedError('revoked', 'Bearer error="invalid_token"')).error.headers).toEqual({ 'www-authenticate': 'Bearer error="invalid_token"' });
    expect(toApiError(new DomainError('unauthenticated', 'no key')).error.headers).toEqual({ 'www-authenticate': 'Bearer' });
  });

  it('maps the converted domain errors to the statuses clients saw before', () => {
    const cases: [Error, number][] = [
      [new ModelNotInstalledError('small'), 503],
      [new UnknownModelError('nope', ['whisper-mini-random']), 400],
      [new DuplicateEmailError('a@x.io'), 409],
      [new AudioDecodeError('corrupt_or_unsupported', 'bad file'), 400],
      [new AudioDecodeError('aborted', 'cancelled'), 499],
      [new AudioDecodeError('ffmpeg_missing', 'install ffmpeg'), 500],
      [new AudioDecodeError('decode_failed', 'too long', { kind: 'too_large' }), 413],
    ];
    for (const [err, status] of cases) expect(toApiError(err).error.status, err.name).toBe(status);
    // Subclasses keep their own fields next to the kind.
    const decode = new AudioDecodeError('unsupported_codec', 'codec', { detail: 'stderr tail' });
    expect([decode.name, decode.code, decode.kind, decode.detail]).toEqual(['AudioDecodeError', 'unsupported_codec', 'invalid', 'stderr tail']);
    expect(new UnknownModelError('x', [], 'asr').modelKind).toBe('asr');
  });
});

describe('work-queue error replies', () => {
  it('carry the kind, message and retryAfterS over the wire, never a status', () => {
    const wire = JSON.parse(JSON.stringify(errorToWire(new LlmQueueFullError(4, 1))));
    expect(wire).toEqual({ message: expect.stringMatching(/busy/), kind: 'rate_limited', retryAfterS: 4 });
    const back = errorFromWire(wire);
    expect(back).toBeInstanceOf(DomainError);
    expect([(back as DomainError).kind, back.message, (back as DomainError).retryAfterS]).toEqual(['rate_limited', wire.message, 4]);
    const unknown = errorFromWire(errorToWire(new UnknownModelError('nope', ['whisper-mini-random'])));
    expect(toApiError(unknown).error).toMatchObject({ status: 400, message: expect.stringContaining('whisper-mini-random') });
  });

  it('a plain error or an unknown kind comes back as an internal fault', () => {
    expect(errorToWire(new Error('segfault in onnx'))).toEqual({ message: 'segfault in onnx' });
    for (const w of [{ message: 'x' }, { message: 'x', kind: 'teapot' as ErrorKind }]) {
      const back = errorFromWire(w);
      expect(back).not.toBeInstanceOf(DomainError);
      expect(statusOf(back)).toBe(500);
    }
  });
});
