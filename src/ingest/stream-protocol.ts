/**
 * The `/v1/stream` WebSocket protocol, pure: parse/validate what clients send, build what the
 * server sends, and the close codes. No I/O here; the WebSocket route drives it.
 *
 *   client → server   text   {"language":"en","model":"large-v3-turbo","sample_rate":16000,...}   (first message)
 *   server → client   text   {"status":"loading_model","model":"...","stage":"downloading","progress":0.42}  (only while
 *                             the model is downloaded (AUTO_PULL) or loaded: before ready, on its first use)
 *   server → client   text   {"status":"ready","session_id":"...","model":"...","word_timestamps":"proportional"}
 *   client → server   binary 16-bit little-endian mono PCM at sample_rate, any number of frames
 *   server → client   text   {"partial":"..."} (interim_results) / {"text","start","end","words",...} (finals)
 *   client → server   text   {"action":"stop"}  (or {"action":"ping"} → {"status":"pong"}: a liveness check,
 *                             not activity — only audio keeps a stream from its idle timeout)
 *   client → server   text   {"action":"share"} → {"share_token","expires_at"}: lets others follow the captions
 *   server → client   text   {"is_final":true}, then close 1000
 *   errors            text   {"error":"..."} then close with one of CLOSE_CODES
 */
import { z } from 'zod';
import { WHISPER_MAX_TOKENS } from '../engines/whisper/config.ts';
import { isWhisperLanguage } from '../languages.ts';
import type { Word } from '../formats/transcript.ts';
import type { LiveOutput } from '../pipeline/live-session.ts';

// ---------------------------------------------------------------------------------------------
// Close codes (RFC 6455 §7.4.1)

export const CLOSE_CODES = {
  /** Normal end: the stream was stopped and every result sent. */
  NORMAL: 1000,
  /** Server shutting down. */
  GOING_AWAY: 1001,
  /** Unsupported data: e.g. a text frame where audio was expected, or binary before the config. */
  UNSUPPORTED_DATA: 1003,
  /** Invalid payload: bad config JSON/fields, malformed PCM. */
  INVALID_PAYLOAD: 1007,
  /** Policy violation: idle timeout, maximum duration, too many streams. */
  POLICY_VIOLATION: 1008,
  /** Try again later: the server is at capacity (finals are already late); retry or use another instance. */
  TRY_AGAIN_LATER: 1013,
  /** A frame larger than the limit. */
  MESSAGE_TOO_BIG: 1009,
  /** Unexpected server error. */
  INTERNAL_ERROR: 1011,
} as const;

export type CloseCode = (typeof CLOSE_CODES)[keyof typeof CLOSE_CODES];

/** A WebSocket close reason must fit 123 bytes of UTF-8: truncates on a character boundary. */
export function closeReason(text: string, maxBytes = 123): string {
  const enc = new TextEncoder();
  if (enc.encode(text).length <= maxBytes) return text;
  let out = '';
  let used = 0;
  const ellipsis = enc.encode('…').length;
  for (const ch of text) {
    const n = enc.encode(ch).length;
    if (used + n + ellipsis > maxBytes) break;
    out += ch;
    used += n;
  }
  return out + '…';
}

// ---------------------------------------------------------------------------------------------
// Client config message

export const TARGET_SAMPLE_RATE = 16_000;
export const MIN_SAMPLE_RATE = 8_000;
export const MAX_SAMPLE_RATE = 48_000;
export const DEFAULT_PARTIAL_INTERVAL_MS = 500;
export const MIN_PARTIAL_INTERVAL_MS = 100;
export const MAX_PARTIAL_INTERVAL_MS = 10_000;

export interface StreamConfig {
  /** `auto` or a language code Whisper knows (lower-cased). */
  language: string;
  model: string;
  /**
   * Two-pass mode: finals (and language detection) on this model, partials on `model` — e.g. Moonshine partials
   * for speed with Whisper finals for accuracy. Undefined: one model for both.
   */
  finalModel?: string;
  /** Sample rate of the client's PCM. */
  sampleRate: number;
  /** Whether the audio is resampled to 16 kHz (sampleRate ≠ 16000). */
  resample: boolean;
  diarize: boolean;
  interimResults: boolean;
  partialIntervalMs: number;
  /** Token budget per decode (undefined: the server's default). */
  maxNewTokens?: number;
  /** Human-readable notes for the log / client (e.g. resampling, ignored fields). */
  notices: string[];
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

const MODEL_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const CONFIG_FIELDS = ['language', 'model', 'final_model', 'sample_rate', 'diarize', 'interim_results', 'partial_interval_ms', 'max_new_tokens'] as const;
const MAX_NEW_TOKENS = WHISPER_MAX_TOKENS;
/** camelCase spellings that would otherwise be silently ignored (a 44.1 kHz stream read as 16 kHz is garbage). */
const MISSPELLINGS: Record<string, string> = {
  sampleRate: 'sample_rate',
  samplerate: 'sample_rate',
  rate: 'sample_rate',
  interimResults: 'interim_results',
  partialIntervalMs: 'partial_interval_ms',
  partial_interval: 'partial_interval_ms',
  lang: 'language',
};

/** The config message schema (wire names). Unknown fields are ignored (and reported in notices). */
export const streamConfigSchema = z.object({
  language: z
    .string({ error: 'language: expected a string: "auto" or an ISO 639-1 code such as "en"' })
    .transform((v) => v.trim().toLowerCase())
    .refine((v) => v === 'auto' || isWhisperLanguage(v), {
      error: (iss) => `language: ${JSON.stringify(iss.input)} is not supported; expected "auto" or an ISO 639-1 code such as "en" (GET /v1/languages lists them)`,
    }),
  model: z.string({ error: 'model: expected a string naming a model, such as "large-v3-turbo" (GET /v1/models lists them)' }).regex(MODEL_RE, {
    error: "model: expected a model id such as \"large-v3-turbo\" (letters, digits, '.', '_', '-'; at most 128 characters)",
  }),
  final_model: z
    .string({ error: 'final_model: expected a string naming the model of finals, such as "small" (GET /v1/models lists them)' })
    .regex(MODEL_RE, { error: "final_model: expected a model id such as \"small\" (letters, digits, '.', '_', '-'; at most 128 characters)" })
    .optional(),
  sample_rate: z
    .number({ error: `sample_rate: expected a number of Hz, ${TARGET_SAMPLE_RATE} preferred (${MIN_SAMPLE_RATE}..${MAX_SAMPLE_RATE} accepted and resampled)` })
    .int({ error: `sample_rate: expected a whole number of Hz between ${MIN_SAMPLE_RATE} and ${MAX_SAMPLE_RATE}` })
    .min(MIN_SAMPLE_RATE, { error: `sample_rate: must be between ${MIN_SAMPLE_RATE} and ${MAX_SAMPLE_RATE} Hz (${TARGET_SAMPLE_RATE} preferred)` })
    .max(MAX_SAMPLE_RATE, { error: `sample_rate: must be between ${MIN_SAMPLE_RATE} and ${MAX_SAMPLE_RATE} Hz (${TARGET_SAMPLE_RATE} preferred)` })
    .default(TARGET_SAMPLE_RATE),
  diarize: z.boolean({ error: 'diarize: expected true or false' }).default(false),
  interim_results: z.boolean({ error: 'interim_results: expected true or false' }).default(true),
  partial_interval_ms: z
    .number({ error: `partial_interval_ms: expected a number of milliseconds between ${MIN_PARTIAL_INTERVAL_MS} and ${MAX_PARTIAL_INTERVAL_MS}` })
    .int({ error: `partial_interval_ms: expected a whole number of milliseconds between ${MIN_PARTIAL_INTERVAL_MS} and ${MAX_PARTIAL_INTERVAL_MS}` })
    .min(MIN_PARTIAL_INTERVAL_MS, { error: `partial_interval_ms: must be between ${MIN_PARTIAL_INTERVAL_MS} and ${MAX_PARTIAL_INTERVAL_MS}` })
    .max(MAX_PARTIAL_INTERVAL_MS, { error: `partial_interval_ms: must be between ${MIN_PARTIAL_INTERVAL_MS} and ${MAX_PARTIAL_INTERVAL_MS}` })
    .default(DEFAULT_PARTIAL_INTERVAL_MS),
  max_new_tokens: z
    .number({ error: `max_new_tokens: expected an integer from 1 to ${MAX_NEW_TOKENS}` })
    .int({ error: `max_new_tokens: expected an integer from 1 to ${MAX_NEW_TOKENS}` })
    .min(1, { error: `max_new_tokens: expected an integer from 1 to ${MAX_NEW_TOKENS}` })
    .max(MAX_NEW_TOKENS, { error: `max_new_tokens: expected an integer from 1 to ${MAX_NEW_TOKENS}` })
    .optional(),
});

export type StreamConfigMessage = z.input<typeof streamConfigSchema>;

export interface ParseConfigOptions {
  /** Used when the message names no model (otherwise `model` is required). */
  defaultModel?: string;
  /** Used when the message names no language (otherwise `language` is required). */
  defaultLanguage?: string;
}

/** Text frame → JSON object, or an error string. Accepts a string or UTF-8 bytes. */
function decodeJsonObject(message: string | ArrayBuffer | ArrayBufferView, what: string): Parsed<Record<string, unknown>> {
  let text: string;
  if (typeof message === 'string') text = message;
  else {
    try {
      const bytes = message instanceof ArrayBuffer ? new Uint8Array(message) : new Uint8Array(message.buffer, message.byteOffset, message.byteLength);
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      return { ok: false, error: `${what} is not valid UTF-8 text` };
    }
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, error: `${what} is not valid JSON` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, error: `${what} must be a JSON object` };
  }
  return { ok: true, value: value as Record<string, unknown> };
}

/** Validates the first (config) message. Errors name the field and what is allowed. */
export function parseConfigMessage(message: string | ArrayBuffer | ArrayBufferView | Record<string, unknown>, opts: ParseConfigOptions = {}): Parsed<StreamConfig> {
  let obj: Record<string, unknown>;
  if (typeof message === 'object' && message !== null && !ArrayBuffer.isView(message) && !(message instanceof ArrayBuffer)) {
    obj = message;
  } else {
    const decoded = decodeJsonObject(message, 'the config message');
    if (!decoded.ok) return decoded;
    obj = decoded.value;
  }
  if (typeof obj.action === 'string' && !('model' in obj) && !('language' in obj)) {
    return { ok: false, error: `expected the config message ({"language": ..., "model": ...}) first, got the action ${JSON.stringify(obj.action)}` };
  }
  for (const [wrong, right] of Object.entries(MISSPELLINGS)) {
    if (wrong in obj && !(right in obj)) return { ok: false, error: `${wrong}: unknown field; did you mean "${right}"?` };
  }
  const input = { ...obj };
  if (input.model === undefined && opts.defaultModel !== undefined) input.model = opts.defaultModel;
  if (input.language === undefined && opts.defaultLanguage !== undefined) input.language = opts.defaultLanguage;
  if (input.model === undefined) return { ok: false, error: 'model: required, e.g. "large-v3-turbo" (GET /v1/models lists them)' };
  if (input.language === undefined) return { ok: false, error: 'language: required: "auto" or an ISO 639-1 code such as "en"' };

  const parsed = streamConfigSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = String(issue.path[0] ?? '');
    // Our messages start with the field name; zod's generic ones (rare) get it prefixed.
    const error = issue.message.startsWith(`${field}:`) ? issue.message : `${field || 'config'}: ${issue.message}`;
    return { ok: false, error };
  }
  const c = parsed.data;
  const notices: string[] = [];
  const resample = c.sample_rate !== TARGET_SAMPLE_RATE;
  if (resample) notices.push(`audio at ${c.sample_rate} Hz is resampled to ${TARGET_SAMPLE_RATE} Hz`);
  const ignored = Object.keys(obj).filter((k) => !(CONFIG_FIELDS as readonly string[]).includes(k));
  if (ignored.length > 0) notices.push(`ignored unknown field${ignored.length > 1 ? 's' : ''}: ${ignored.join(', ')}`);
  return {
    ok: true,
    value: {
      language: c.language,
      model: c.model,
      ...(c.final_model && c.final_model !== c.model ? { finalModel: c.final_model } : {}),
      sampleRate: c.sample_rate,
      resample,
      diarize: c.diarize,
      interimResults: c.interim_results,
      partialIntervalMs: c.partial_interval_ms,
      maxNewTokens: c.max_new_tokens,
      notices,
    },
  };
}

/**
 * The same config as query parameters (WebRTC's POST /v1/webrtc?model=…&language=…): strings are
 * converted to the JSON types, then validated by parseConfigMessage. `sample_rate` is refused
 * when the transport fixes the rate (Opus is always 48 kHz).
 */
export function parseConfigQuery(query: URLSearchParams, opts: ParseConfigOptions & { fixedSampleRate?: string } = {}): Parsed<StreamConfig> {
  const raw: Record<string, unknown> = {};
  for (const [k, v] of query) {
    if (CREDENTIAL_PARAMS.includes(k)) continue;
    if (k === 'interim_results' || k === 'diarize') {
      if (!/^(true|false|1|0)$/.test(v)) return { ok: false, error: `${k}: expected true or false` };
      raw[k] = v === 'true' || v === '1';
    } else if (k === 'partial_interval_ms' || k === 'sample_rate' || k === 'max_new_tokens') {
      raw[k] = v.trim() === '' ? v : Number(v);
    } else raw[k] = v;
  }
  if ('sample_rate' in raw && opts.fixedSampleRate) return { ok: false, error: `sample_rate: ${opts.fixedSampleRate}; leave it out` };
  return parseConfigMessage(raw, opts);
}

/** Query parameters that carry credentials (never session options). */
const CREDENTIAL_PARAMS = ['api_key', 'token', 'share_token'];

/**
 * The API key of a live-session request: the Authorization header, or — because browsers cannot
 * set headers on a WebSocket — `?api_key=…` (or `?token=…`) as `Bearer <key>`.
 */
export function authorizationFrom(header: string | undefined, query: URLSearchParams): string | undefined {
  if (header) return header;
  const token = query.get('api_key') ?? query.get('token');
  return token ? `Bearer ${token}` : undefined;
}

// ---------------------------------------------------------------------------------------------
// Control messages

export const CONTROL_ACTIONS = ['stop', 'ping', 'share'] as const;
export type ControlAction = (typeof CONTROL_ACTIONS)[number];

export const controlMessageSchema = z.object({
  action: z.enum(CONTROL_ACTIONS, { error: `action: expected one of ${CONTROL_ACTIONS.map((a) => `"${a}"`).join(', ')}` }),
});

/** A text frame after the config: `{"action":"stop"}`, `{"action":"ping"}` or `{"action":"share"}`. */
export function parseControlMessage(message: string | ArrayBuffer | ArrayBufferView): Parsed<ControlAction> {
  const decoded = decodeJsonObject(message, 'the control message');
  if (!decoded.ok) return decoded;
  if (!('action' in decoded.value)) {
    if ('model' in decoded.value || 'language' in decoded.value) {
      return { ok: false, error: 'the stream is already configured; send audio, or {"action":"stop"} to end it' };
    }
    return { ok: false, error: 'action: required; expected {"action":"stop"} or {"action":"ping"}' };
  }
  const parsed = controlMessageSchema.safeParse(decoded.value);
  if (!parsed.success) return { ok: false, error: parsed.error.issues[0]!.message };
  return { ok: true, value: parsed.data.action };
}

// ---------------------------------------------------------------------------------------------
// Binary audio frames

export type FrameCheck = { ok: true; samples: number } | { ok: false; error: string; closeCode: typeof CLOSE_CODES.INVALID_PAYLOAD | typeof CLOSE_CODES.MESSAGE_TOO_BIG };

/** A binary frame must be non-empty 16-bit PCM (even byte count) no larger than maxBytes. */
export function validatePcmFrame(bytes: ArrayBuffer | ArrayBufferView | number, maxBytes: number): FrameCheck {
  const n = typeof bytes === 'number' ? bytes : bytes.byteLength;
  if (n === 0) return { ok: false, error: 'empty audio frame', closeCode: CLOSE_CODES.INVALID_PAYLOAD };
  if (n > maxBytes) {
    return { ok: false, error: `audio frame of ${n} bytes exceeds the limit of ${maxBytes} bytes`, closeCode: CLOSE_CODES.MESSAGE_TOO_BIG };
  }
  if (n % 2 !== 0) {
    return {
      ok: false,
      error: `audio frame of ${n} bytes is not 16-bit PCM (odd byte count); send 16-bit little-endian mono samples`,
      closeCode: CLOSE_CODES.INVALID_PAYLOAD,
    };
  }
  return { ok: true, samples: n / 2 };
}

// ---------------------------------------------------------------------------------------------
// Server messages

/** A word of a final on the wire: the result model's `Word` (times already rounded by its one mapping). */
export type WordResult = Pick<Word, 'word' | 'start' | 'end' | 'speaker'>;

export interface ReadyMessage {
  status: 'ready';
  session_id: string;
  /** Extensions: the model serving the stream (its partials), the model of its finals when another, and how its finals' word times are made. */
  model?: string;
  final_model?: string;
  word_timestamps?: 'cross-attention-dtw' | 'proportional';
}
/** Before `ready` (extension): the stream's model is being downloaded (AUTO_PULL) or loaded; `progress` 0..1 or null. */
export interface LoadingModelMessage {
  status: 'loading_model';
  model: string;
  stage: 'downloading' | 'loading';
  progress: number | null;
}
export interface PartialMessage {
  partial: string;
}
export interface FinalMessage {
  text: string;
  start: number;
  end: number;
  words: WordResult[];
  speaker?: string;
}
export interface IsFinalMessage {
  is_final: true;
}
export interface ErrorMessage {
  error: string;
}
export interface PongMessage {
  status: 'pong';
}
/** Answer to {"action":"share"}: a token for WS /v1/stream/<id>/captions?share_token=… (only its hash is kept). */
export interface ShareMessage {
  share_token: string;
  expires_at: string;
}
export type ServerMessage = ReadyMessage | LoadingModelMessage | PartialMessage | FinalMessage | IsFinalMessage | ErrorMessage | PongMessage | ShareMessage;

export function ready(sessionId: string, model?: { id: string; finalModel?: string; wordTimestamps: 'cross-attention-dtw' | 'proportional' }): ReadyMessage {
  if (!model) return { status: 'ready', session_id: sessionId };
  return { status: 'ready', session_id: sessionId, model: model.id, ...(model.finalModel ? { final_model: model.finalModel } : {}), word_timestamps: model.wordTimestamps };
}

export function partial(text: string): PartialMessage {
  return { partial: text };
}

export function final(r: { text: string; start: number; end: number; words: readonly WordResult[]; speaker?: string | null }): FinalMessage {
  const msg: FinalMessage = {
    text: r.text,
    start: r.start,
    end: r.end,
    words: r.words.map((w) => (w.speaker !== undefined ? { word: w.word, start: w.start, end: w.end, speaker: w.speaker } : { word: w.word, start: w.start, end: w.end })),
  };
  if (r.speaker != null) msg.speaker = r.speaker;
  return msg;
}

export function isFinal(): IsFinalMessage {
  return { is_final: true };
}

export function error(message: string): ErrorMessage {
  return { error: message };
}

/** Reply to {"action":"ping"}. A ping does not reset the idle timer: only audio does (a slot held without audio is freed). */
export function pong(): PongMessage {
  return { status: 'pong' };
}

export function share(token: { share_token: string; expires_at: string }): ShareMessage {
  return { share_token: token.share_token, expires_at: token.expires_at };
}

/** The builders as one namespace (`serverMessages.final(...)`) for call sites where `final`/`error` read ambiguously. */
export const serverMessages = { ready, partial, final, isFinal, error, pong, share } as const;

/** The wire message for what a live session emits (the stream itself, its data channel, and captions followers). */
export function toServerMessage(o: LiveOutput): ServerMessage {
  switch (o.type) {
    case 'ready':
      return ready(o.sessionId, { id: o.model, finalModel: o.finalModel, wordTimestamps: o.wordTimestamps });
    case 'loading_model':
      return { status: 'loading_model', model: o.model, stage: o.stage, progress: o.progress };
    case 'partial':
      return { ...partial(o.text), stable: o.stable } as ServerMessage;
    case 'final':
      return final(o);
    case 'end':
      return isFinal();
    case 'error':
      return error(o.message);
    case 'pong':
      return pong();
    case 'share':
      return share(o.token);
  }
}

export function encodeServerMessage(msg: ServerMessage): string {
  return JSON.stringify(msg);
}
