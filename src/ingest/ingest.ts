/**
 * How live audio gets into the server, independent of the transport that carries it.
 *
 * An ingest is a thin adapter: it takes a slot and opens a `LiveSession` (pipeline/live-session.ts)
 * per client, hands it the client's config, audio (any sample rate) and control messages, and sends
 * what the session emits back in the `/v1/stream` message shapes (`toServerMessage`). Admission,
 * metering, the pipeline, the bus, followers and timers are the session's. The composition root
 * starts and closes ingests; HTTP routes only call the signalling methods.
 *
 * The WebRTC ingest here runs on werift (pure TypeScript, in-process). The design card's choice is
 * mediasoup (a C++ SFU worker per core); a mediasoup-backed class can implement `WebRtcIngest` with
 * the same routes and pages: `createSession` = a WebRtcTransport for the client's Opus producer and
 * a DirectTransport consumer that hands its RTP to Node → Opus decode → `LiveSession.pushAudio`
 * (results over a DataProducer on the same transport).
 * See docs/webrtc.md.
 */

import type { LiveClient, LiveConfig } from '../pipeline/live-session.ts';

/** Something that receives live audio and runs it through the streaming pipeline. */
export interface AudioIngest {
  /** Short name for logs and metrics (`transport` label): 'websocket', 'webrtc', … */
  readonly transport: string;
  /** Live sessions right now. */
  readonly active: number;
  /** Acquires what the ingest needs (ports, workers, native decoders); idempotent. */
  start(): Promise<void>;
  /**
   * Shutdown, after `LiveSessions.close()` has flushed every session (last finals, then
   * `{"is_final":true}`): frees what the transport holds (sockets, peer connections, followers).
   */
  close(): Promise<void>;
}

/** The result of WHIP-style signalling: the server's SDP answer for a new session. */
export interface WebRtcAnswer {
  sessionId: string;
  /** Complete SDP answer (non-trickle: every server candidate is in it). */
  sdp: string;
}

/** A WebRTC ingest: offer in, answer out; the media and the data channel are the ingest's business. */
export interface WebRtcIngest extends AudioIngest {
  /** Whether the ingest can take sessions now, and if not, why (e.g. the Opus decoder is missing). */
  availability(): { ok: true } | { ok: false; reason: string };
  /** ICE servers clients should use (STUN/TURN); empty on a LAN / same host. */
  readonly iceServers: ReadonlyArray<{ urls: string | string[]; username?: string; credential?: string }>;
  /**
   * Creates a session from the client's SDP offer (one audio m-line with Opus, and a data channel
   * for the results). Throws a DomainError (invalid offer or options; unauthenticated,
   * payment_required, rate_limited; unavailable: full, model not installed, decoder missing).
   */
  createSession(offerSdp: string, options: Omit<LiveConfig, 'sampleRate'>, client: LiveClient): Promise<WebRtcAnswer>;
  /** Ends a session: flushes its last finals, then `{"is_final":true}`, then closes. False if unknown. */
  endSession(sessionId: string, client?: LiveClient): Promise<boolean>;
}
