/**
 * How live audio gets into the server, independent of the transport that carries it.
 *
 * Every ingest turns its transport's audio into 16 kHz mono PCM for a `StreamSession`, sends the
 * session's events back to its client in the `/v1/stream` message shapes (`toServerMessage`), and
 * publishes them on the bus (`sessionSubject(id)`) so that captions followers work whatever the
 * transport. The composition root starts and closes ingests; HTTP routes only call the signalling
 * methods.
 *
 * The WebRTC ingest here runs on werift (pure TypeScript, in-process). The design card's choice is
 * mediasoup (a C++ SFU worker per core); a mediasoup-backed class can implement `WebRtcIngest` with
 * the same routes and pages: `createSession` = a WebRtcTransport for the client's Opus producer and
 * a DirectTransport consumer that hands its RTP to Node → Opus decode → the same StreamSession path
 * (results over a DataProducer on the same transport).
 * See docs/webrtc.md.
 */

/** Per-session options a client chooses (the same fields as the /v1/stream config message). */
export interface LiveSessionOptions {
  model: string;
  /** 'auto' or a language code. */
  language: string;
  interimResults: boolean;
  partialIntervalMs: number;
  /** Token budget per decode (undefined = the engine default). */
  maxNewTokens?: number;
}

/** Who is asking (for admission and metering by the server's AccessControl). */
export interface IngestClient {
  /** The Authorization header (`Bearer <api key>`), if any. */
  authorization?: string;
  /** Client address. */
  ip: string;
}

/** Something that receives live audio and runs it through the streaming pipeline. */
export interface AudioIngest {
  /** Short name for logs and metrics (`transport` label): 'websocket', 'webrtc', … */
  readonly transport: string;
  /** Live sessions right now. */
  readonly active: number;
  /** Acquires what the ingest needs (ports, workers, native decoders); idempotent. */
  start(): Promise<void>;
  /** Shutdown: flushes live sessions (last finals, then `{"is_final":true}`) and frees everything. */
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
   * for the results). Throws an error with `status` (400 bad offer/options, 401/402/429 access,
   * 503 full, model not installed or decoder missing) for the HTTP layer.
   */
  createSession(offerSdp: string, options: LiveSessionOptions, client: IngestClient): Promise<WebRtcAnswer>;
  /** Ends a session: flushes its last finals, then `{"is_final":true}`, then closes. False if unknown. */
  endSession(sessionId: string, client?: IngestClient): Promise<boolean>;
}
