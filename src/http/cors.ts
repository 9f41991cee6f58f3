/**
 * CORS for every reply: any origin may call the API (keys, not cookies, authenticate), and
 * cross-origin scripts may read every header of ours, which a browser hides unless it is listed in
 * `Access-Control-Expose-Headers`. The one list: a route that sends a new header adds it here
 * (test/http/cors-expose.test.ts reads the routes and fails on a header that is missing).
 */

/** Response headers that clients read: ids, timings, engine details, retry hints, downloads. */
export const EXPOSED_HEADERS = [
  'x-request-id',
  'retry-after',
  'location',
  'content-disposition',
  'x-job-id',
  'x-session-id',
  'x-transcript-id',
  'x-duration',
  'x-generation-time',
  'x-word-timestamps',
  'x-diarization',
  'x-tts-engine',
  'x-input-loudness-lufs',
  'x-output-loudness-lufs',
] as const;

export const CORS_HEADERS: Readonly<Record<string, string>> = {
  'access-control-allow-origin': '*',
  'access-control-expose-headers': EXPOSED_HEADERS.join(', '),
};
