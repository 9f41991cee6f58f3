/**
 * WHIP-style signalling for the WebRTC ingest:
 *   POST   /v1/webrtc?model=…&language=…   body: SDP offer (application/sdp)
 *          → 201, body: SDP answer (application/sdp), Location: /v1/webrtc/<session_id>
 *   DELETE /v1/webrtc/<session_id>          → 200 after the last finals and {"is_final":true} went out
 *   GET    /v1/webrtc                        → {"ice_servers": [...], "available": bool, "reason"?}
 * Session options come as query parameters with the /v1/stream config names (language, model,
 * interim_results, partial_interval_ms, max_new_tokens). The API key: `Authorization: Bearer …`
 * (or ?api_key=…), admitted and metered by the same AccessControl as /v1/stream. No trickle ICE: the answer carries every
 * server candidate, so clients should send their offer after ICE gathering (or send what they have:
 * the server's candidates reach them either way).
 */
import type { WebRtcIngest } from '../../ingest/ingest.ts';
import { authorizationFrom, parseConfigQuery } from '../../ingest/stream-protocol.ts';
import { ApiError } from '../api-error.ts';
import type { HttpContext } from '../http-context.ts';
import type { HttpServer } from '../http-server.ts';

export interface WebRtcRouteDeps {
  ingest: WebRtcIngest;
  defaultModel: string;
}

const MAX_SDP_BYTES = 64 * 1024;
const SESSION_ID = /^[A-Za-z0-9_-]{1,128}$/;

/** Query string → the session options (the /v1/stream config fields, validated in one place). */
function optionsFromQuery(ctx: HttpContext, defaultModel: string) {
  const parsed = parseConfigQuery(ctx.query, { defaultModel, defaultLanguage: 'auto', fixedSampleRate: 'not used over WebRTC (Opus is always 48 kHz)' });
  if (!parsed.ok) throw new ApiError(400, parsed.error);
  const c = parsed.value;
  return { model: c.model, finalModel: c.finalModel, language: c.language, interimResults: c.interimResults, partialIntervalMs: c.partialIntervalMs, maxNewTokens: c.maxNewTokens };
}

export function registerWebRtcRoutes(server: HttpServer, deps: WebRtcRouteDeps): void {
  const { ingest } = deps;

  server.route('GET', '/v1/webrtc', () => {
    const a = ingest.availability();
    return { body: { ice_servers: ingest.iceServers, available: a.ok, ...(a.ok ? {} : { reason: a.reason }) } };
  });

  server.route(
    'POST',
    '/v1/webrtc',
    async (ctx) => {
      const type = (ctx.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== 'application/sdp') {
        throw new ApiError(415, `Send the SDP offer as the request body with Content-Type: application/sdp (got '${type || 'none'}').`);
      }
      const options = optionsFromQuery(ctx, deps.defaultModel);
      const offer = (await ctx.readBody()).toString('utf8');
      if (!offer.trim()) throw new ApiError(400, 'Request body is empty: send the SDP offer (application/sdp).');
      // Like WS /v1/stream: the API key as a Bearer header, or ?api_key= / ?token= for simple clients.
      const authorization = authorizationFrom(ctx.headers.authorization, ctx.query);
      const answer = await ingest.createSession(offer, options, { authorization, ip: ctx.remoteAddress });
      return {
        status: 201,
        headers: {
          'content-type': 'application/sdp',
          location: `/v1/webrtc/${answer.sessionId}`,
          'x-session-id': answer.sessionId,
        },
        body: answer.sdp,
      };
    },
    { maxBodyBytes: MAX_SDP_BYTES, tooLargeMessage: `SDP offer is larger than ${MAX_SDP_BYTES / 1024} KB.` },
  );

  server.route('DELETE', '/v1/webrtc/:id', async (ctx) => {
    const id = ctx.params.id ?? '';
    if (!SESSION_ID.test(id)) throw new ApiError(400, 'session id must be 1-128 letters, digits, - or _');
    // Only the session's owner may end it (its key's account, or its client address when anonymous).
    const authorization = authorizationFrom(ctx.headers.authorization, ctx.query);
    if (!(await ingest.endSession(id, { authorization, ip: ctx.remoteAddress }))) {
      throw new ApiError(404, `No WebRTC session '${id}' of yours (it may have ended already; send the key that started it).`);
    }
    return { body: { session_id: id, status: 'ended' } };
  });

  // WHIP's PATCH (trickle ICE / ICE restart) is not supported: say so instead of a bare 405.
  server.route('PATCH', '/v1/webrtc/:id', () => {
    throw new ApiError(405, 'Trickle ICE is not supported: the answer to POST /v1/webrtc carries every server candidate; gather before you offer.', { allow: 'DELETE' });
  });
}
