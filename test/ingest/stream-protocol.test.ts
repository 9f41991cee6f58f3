import { describe, expect, it } from 'vitest';
import {
  CLOSE_CODES,
  DEFAULT_PARTIAL_INTERVAL_MS,
  closeReason,
  encodeServerMessage,
  error,
  final,
  isFinal,
  parseConfigMessage,
  parseControlMessage,
  partial,
  pong,
  ready,
  serverMessages,
  toServerMessage,
  validatePcmFrame,
  type StreamConfig,
} from '../../src/ingest/stream-protocol.ts';

const cfg = (o: unknown) => parseConfigMessage(JSON.stringify(o));
const ok = (o: unknown, opts = {}): StreamConfig => {
  const r = parseConfigMessage(JSON.stringify(o), opts);
  if (!r.ok) throw new Error(r.error);
  return r.value;
};
const err = (o: unknown, opts = {}): string => {
  const r = typeof o === 'string' ? parseConfigMessage(o, opts) : parseConfigMessage(JSON.stringify(o), opts);
  if (r.ok) throw new Error(`expected an error, got ${JSON.stringify(r.value)}`);
  return r.error;
};

describe('parseConfigMessage', () => {
  it('applies the defaults', () => {
    expect(ok({ language: 'en', model: 'large-v3-turbo' })).toEqual({
      language: 'en',
      model: 'large-v3-turbo',
      sampleRate: 16000,
      resample: false,
      diarize: false,
      interimResults: true,
      partialIntervalMs: DEFAULT_PARTIAL_INTERVAL_MS,
      notices: [],
    });
  });

  it('takes every field', () => {
    expect(ok({ language: 'auto', model: 'small', sample_rate: 16000, diarize: true, interim_results: false, partial_interval_ms: 250 })).toMatchObject({
      language: 'auto',
      model: 'small',
      diarize: true,
      interimResults: false,
      partialIntervalMs: 250,
    });
  });

  it('accepts Whisper language codes, case-insensitively', () => {
    for (const l of ['de', 'FR', ' ja ', 'haw', 'auto', 'AUTO']) expect(ok({ language: l, model: 'm' }).language).toBe(l.trim().toLowerCase());
  });

  it('rejects unknown or malformed languages, naming the field and allowed values', () => {
    for (const l of ['xx', 'english', '', 'en-US']) {
      const e = err({ language: l, model: 'm' });
      expect(e).toMatch(/^language: /);
      expect(e).toMatch(/"auto" or an ISO 639-1 code/);
    }
    expect(err({ language: 5, model: 'm' })).toMatch(/^language: expected a string/);
  });

  it('requires language and model unless defaults are given', () => {
    expect(err({ model: 'm' })).toMatch(/^language: required/);
    expect(err({ language: 'en' })).toMatch(/^model: required/);
    expect(ok({}, { defaultModel: 'large-v3-turbo', defaultLanguage: 'auto' })).toMatchObject({ model: 'large-v3-turbo', language: 'auto' });
    expect(ok({ model: 'tiny' }, { defaultModel: 'large-v3-turbo', defaultLanguage: 'auto' }).model).toBe('tiny');
  });

  it('rejects bad model ids', () => {
    for (const m of ['', '../etc/passwd', 'a b', '.hidden', 'x'.repeat(129)]) expect(err({ language: 'en', model: m })).toMatch(/^model: expected a model id/);
    expect(err({ language: 'en', model: 7 })).toMatch(/^model: expected a string/);
  });

  it('final_model (two-pass): taken when it names another model, dropped when it is the same, validated as a model id', () => {
    expect(ok({ language: 'en', model: 'moonshine-tiny', final_model: 'small' })).toMatchObject({ model: 'moonshine-tiny', finalModel: 'small', notices: [] });
    expect(ok({ language: 'en', model: 'small', final_model: 'small' })).not.toHaveProperty('finalModel');
    expect(ok({ language: 'en', model: 'small' })).not.toHaveProperty('finalModel');
    for (const m of ['', '../x', 'a b']) expect(err({ language: 'en', model: 'm', final_model: m })).toMatch(/^final_model: expected a model id/);
    expect(err({ language: 'en', model: 'm', final_model: 3 })).toMatch(/^final_model: expected a string/);
  });

  it('accepts 8000..48000 Hz and says it resamples', () => {
    for (const rate of [8000, 22050, 44100, 48000]) {
      const c = ok({ language: 'en', model: 'm', sample_rate: rate });
      expect(c.sampleRate).toBe(rate);
      expect(c.resample).toBe(true);
      expect(c.notices).toContain(`audio at ${rate} Hz is resampled to 16000 Hz`);
    }
    expect(ok({ language: 'en', model: 'm', sample_rate: 16000 }).resample).toBe(false);
  });

  it('rejects sample rates out of range or not whole numbers', () => {
    for (const rate of [7999, 48001, 0, -16000]) expect(err({ language: 'en', model: 'm', sample_rate: rate })).toMatch(/^sample_rate: must be between 8000 and 48000 Hz/);
    expect(err({ language: 'en', model: 'm', sample_rate: 16000.5 })).toMatch(/^sample_rate: expected a whole number/);
    expect(err({ language: 'en', model: 'm', sample_rate: '16000' })).toMatch(/^sample_rate: expected a number/);
  });

  it('rejects non-boolean flags', () => {
    expect(err({ language: 'en', model: 'm', diarize: 'yes' })).toBe('diarize: expected true or false');
    expect(err({ language: 'en', model: 'm', interim_results: 1 })).toBe('interim_results: expected true or false');
  });

  it('validates partial_interval_ms', () => {
    expect(err({ language: 'en', model: 'm', partial_interval_ms: 50 })).toMatch(/^partial_interval_ms: must be between 100 and 10000/);
    expect(err({ language: 'en', model: 'm', partial_interval_ms: 20000 })).toMatch(/^partial_interval_ms: must be between/);
    expect(err({ language: 'en', model: 'm', partial_interval_ms: 'fast' })).toMatch(/^partial_interval_ms: expected a number/);
    expect(err({ language: 'en', model: 'm', partial_interval_ms: 150.5 })).toMatch(/^partial_interval_ms: expected a whole number/);
  });

  it('rejects camelCase spellings instead of ignoring them, ignores other unknown fields with a notice', () => {
    expect(err({ language: 'en', model: 'm', sampleRate: 44100 })).toBe('sampleRate: unknown field; did you mean "sample_rate"?');
    expect(err({ language: 'en', model: 'm', interimResults: false })).toMatch(/did you mean "interim_results"/);
    const c = ok({ language: 'en', model: 'm', encoding: 'pcm_s16le', channels: 1 });
    expect(c.notices).toEqual(['ignored unknown fields: encoding, channels']);
  });

  it('rejects what is not a JSON object', () => {
    expect(err('not json')).toBe('the config message is not valid JSON');
    expect(err('[1,2]')).toBe('the config message must be a JSON object');
    expect(err('null')).toBe('the config message must be a JSON object');
    expect(err('"en"')).toBe('the config message must be a JSON object');
    expect(err('{"action":"stop"}')).toMatch(/expected the config message .* first, got the action "stop"/);
  });

  it('accepts UTF-8 bytes and plain objects', () => {
    const bytes = new TextEncoder().encode(JSON.stringify({ language: 'en', model: 'm' }));
    expect(parseConfigMessage(bytes).ok).toBe(true);
    expect(parseConfigMessage(bytes.buffer).ok).toBe(true);
    expect(parseConfigMessage(Buffer.from(bytes)).ok).toBe(true);
    expect(parseConfigMessage({ language: 'en', model: 'm' }).ok).toBe(true);
    expect(parseConfigMessage(new Uint8Array([0xff, 0xfe]))).toEqual({ ok: false, error: 'the config message is not valid UTF-8 text' });
    expect(cfg({ language: 'en', model: 'm' }).ok).toBe(true);
  });
});

describe('parseControlMessage', () => {
  it('parses stop and ping', () => {
    expect(parseControlMessage('{"action":"stop"}')).toEqual({ ok: true, value: 'stop' });
    expect(parseControlMessage(new TextEncoder().encode('{"action":"ping"}'))).toEqual({ ok: true, value: 'ping' });
    expect(parseControlMessage('{"action":"share"}')).toEqual({ ok: true, value: 'share' });
  });

  it('rejects unknown actions, missing action, repeated config, and non-JSON', () => {
    expect(parseControlMessage('{"action":"pause"}')).toEqual({ ok: false, error: 'action: expected one of "stop", "ping", "share"' });
    expect(parseControlMessage('{"action":5}')).toEqual({ ok: false, error: 'action: expected one of "stop", "ping", "share"' });
    expect(parseControlMessage('{}')).toEqual({ ok: false, error: 'action: required; expected {"action":"stop"} or {"action":"ping"}' });
    expect(parseControlMessage('{"language":"en","model":"m"}')).toMatchObject({ ok: false, error: expect.stringMatching(/already configured/) });
    expect(parseControlMessage('stop')).toEqual({ ok: false, error: 'the control message is not valid JSON' });
    expect(parseControlMessage('[]')).toEqual({ ok: false, error: 'the control message must be a JSON object' });
  });
});

describe('validatePcmFrame', () => {
  it('accepts even, non-empty frames within the limit', () => {
    expect(validatePcmFrame(new Uint8Array(3200), 4096)).toEqual({ ok: true, samples: 1600 });
    expect(validatePcmFrame(new ArrayBuffer(4096), 4096)).toEqual({ ok: true, samples: 2048 });
    expect(validatePcmFrame(new Int16Array(10), 4096)).toEqual({ ok: true, samples: 10 });
    expect(validatePcmFrame(2, 4096)).toEqual({ ok: true, samples: 1 });
  });

  it('rejects empty frames (1007)', () => {
    expect(validatePcmFrame(new ArrayBuffer(0), 4096)).toEqual({ ok: false, error: 'empty audio frame', closeCode: 1007 });
  });

  it('rejects odd byte counts as not 16-bit PCM (1007)', () => {
    const r = validatePcmFrame(new Uint8Array(3201), 4096);
    expect(r).toMatchObject({ ok: false, closeCode: CLOSE_CODES.INVALID_PAYLOAD });
    expect(!r.ok && r.error).toMatch(/not 16-bit PCM/);
  });

  it('rejects frames over the limit (1009), odd or not', () => {
    for (const n of [4098, 4097]) {
      const r = validatePcmFrame(new Uint8Array(n), 4096);
      expect(r).toMatchObject({ ok: false, closeCode: CLOSE_CODES.MESSAGE_TOO_BIG });
      expect(!r.ok && r.error).toBe(`audio frame of ${n} bytes exceeds the limit of 4096 bytes`);
    }
  });
});

describe('server messages', () => {
  it('builds each message with the wire shape', () => {
    expect(ready('abc')).toEqual({ status: 'ready', session_id: 'abc' });
    expect(ready('abc', { id: 'moonshine-tiny', wordTimestamps: 'proportional' })).toEqual({ status: 'ready', session_id: 'abc', model: 'moonshine-tiny', word_timestamps: 'proportional' });
    expect(partial('hello wor')).toEqual({ partial: 'hello wor' });
    expect(isFinal()).toEqual({ is_final: true });
    expect(error('boom')).toEqual({ error: 'boom' });
    expect(pong()).toEqual({ status: 'pong' });
  });

  it('builds finals from result-model segments (times as the one mapping rounded them), optional speaker', () => {
    const words = [
      { word: 'hello', start: 0.12, end: 0.5, probability: 0.8 },
      { word: 'world', start: 0.6, end: 1, speaker: 'S1' },
    ];
    expect(final({ text: 'hello world', start: 0.12, end: 1, words })).toEqual({
      text: 'hello world',
      start: 0.12,
      end: 1,
      words: [
        { word: 'hello', start: 0.12, end: 0.5 },
        { word: 'world', start: 0.6, end: 1, speaker: 'S1' },
      ],
    });
    expect(final({ text: '', start: 0, end: 0, words: [], speaker: 'S2' })).toEqual({ text: '', start: 0, end: 0, words: [], speaker: 'S2' });
    expect('speaker' in final({ text: '', start: 0, end: 0, words: [], speaker: null })).toBe(false);
  });

  it('offers the builders as a namespace and encodes JSON', () => {
    expect(serverMessages.final).toBe(final);
    expect(JSON.parse(encodeServerMessage(ready('s')))).toEqual({ status: 'ready', session_id: 's' });
    // A session's ready names its model and word-time method on the wire.
    const live = toServerMessage({ type: 'ready', sessionId: 's', model: 'base', wordTimestamps: 'cross-attention-dtw' });
    expect(JSON.parse(encodeServerMessage(live))).toEqual({ status: 'ready', session_id: 's', model: 'base', word_timestamps: 'cross-attention-dtw' });
  });
});

describe('close codes and reasons', () => {
  it('has the codes of the protocol', () => {
    expect(CLOSE_CODES).toEqual({
      NORMAL: 1000,
      GOING_AWAY: 1001,
      UNSUPPORTED_DATA: 1003,
      INVALID_PAYLOAD: 1007,
      POLICY_VIOLATION: 1008,
      MESSAGE_TOO_BIG: 1009,
      INTERNAL_ERROR: 1011,
      TRY_AGAIN_LATER: 1013,
    });
  });

  it('truncates close reasons to 123 UTF-8 bytes on a character boundary', () => {
    expect(closeReason('idle timeout')).toBe('idle timeout');
    const long = 'é'.repeat(100); // 200 bytes
    const r = closeReason(long);
    expect(new TextEncoder().encode(r).length).toBeLessThanOrEqual(123);
    expect(r.endsWith('…')).toBe(true);
    expect(r.slice(0, -1)).toMatch(/^é+$/);
    expect(closeReason('x'.repeat(123))).toBe('x'.repeat(123));
  });
});
