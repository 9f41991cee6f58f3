/**
 * WS /v1/stream over uWebSockets: a thin adapter between WebSocket frames and a `LiveSession`.
 *   client → {"language","model",...}   server → {"status":"ready","session_id"}
 *   client → binary PCM16 mono frames     server → {"partial"} / {"text","start","end","words"}
 *   client → {"action":"stop"}            server → {"is_final":true}, then closes (1000)
 * and WS /v1/stream/:id/captions, where followers (the owner's key or a share token) get a
 * session's results from the bus, whichever server and transport runs it.
 *
 * Everything about the session (admission, limits, metering, timers, the pipeline) is the
 * LiveSession's; this file parses frames (stream-protocol), sends messages, and turns how a session
 * ended into a close code (`error-kinds.ts` for errors). A slot under MAX_STREAMS is taken at the
 * upgrade, before the asynchronous admission. A refused upgrade (bad key, no credits, limits,
 * capacity) is accepted, sent `{"error"}` and closed at once with the kind's close code (1008, 1013…),
 * because a browser cannot read an HTTP refusal of an upgrade; a client that asks with
 * `?refuse=http` gets the HTTP status and `{"error"}` a REST call would get instead.
 */
import { STATUS_CODES } from 'node:http';
import type { Logger } from 'pino';
import { int16LeBytesToFloat32 } from '../audio/pcm.ts';
import { sessionSubject, type Bus } from '../bus/index.ts';
import { DomainError } from '../errors.ts';
import type { AudioIngest } from '../ingest/ingest.ts';
import {
  CLOSE_CODES,
  authorizationFrom,
  closeReason,
  encodeServerMessage,
  parseConfigMessage,
  parseControlMessage,
  toServerMessage,
  validatePcmFrame,
  type ServerMessage,
} from '../ingest/stream-protocol.ts';
import type { LiveEnd, LiveSession, LiveSessions } from '../pipeline/live-session.ts';
import type { StreamEvent } from '../pipeline/stream-session.ts';
import { toApiError } from './api-error.ts';
import { ERROR_KIND_CODES, closeCodeOf } from './error-kinds.ts';
import type { HttpResponse, TemplatedApp, WebSocket } from './uws.ts';

export interface WsStreamOptions {
  app: TemplatedApp;
  live: LiveSessions;
  bus: Bus;
  logger: Logger;
  defaultModel: string;
  maxFrameBytes: number;
  /** Only for uWS's own idle backstop; the session's idle timer speaks first. */
  idleTimeoutS: number;
  /** True while the server drains (new streams are refused). */
  draining: () => boolean;
}

/** A refusal told over an accepted socket: `{"error"}`, then closed with `closeCode`; never a live stream. */
interface Refused {
  refused: { error: string; closeCode: number };
}

/** Per socket (uWS copies this object at upgrade: it holds references only). */
interface LiveSocket {
  refused?: undefined;
  session: LiveSession;
  /** Set when the socket is gone or being closed by us: nothing more is sent. */
  closed: boolean;
}
type StreamSocket = LiveSocket | Refused;

interface Follower {
  refused?: undefined;
  id: string;
  replay: boolean;
  unsubscribe?: () => void;
  closed?: boolean;
}
type FollowerSocket = Follower | Refused;

interface Handshake {
  key: string;
  protocol: string;
  extensions: string;
  /** `?refuse=http`: the client reads an HTTP refusal (not a browser). */
  httpRefusal: boolean;
}

export class WsStreamIngest implements AudioIngest {
  readonly transport = 'websocket';
  private readonly followers = new Set<WebSocket<FollowerSocket>>();

  constructor(private readonly o: WsStreamOptions) {}

  get active(): number {
    return this.o.live.active(this.transport);
  }

  /** Registers the two WebSocket routes (before the HTTP server's catch-all). */
  async start(): Promise<void> {
    const o = this.o;
    o.app.ws<StreamSocket>('/v1/stream', {
      maxPayloadLength: o.maxFrameBytes * 2, // larger frames are refused by us with a message, far larger by uWS
      idleTimeout: Math.max(8, o.idleTimeoutS + 8),
      maxBackpressure: 1024 * 1024,
      upgrade: (res, req, context) => {
        // uWS's request dies with this callback: copy what the async admission needs.
        const query = new URLSearchParams(req.getQuery() ?? '');
        const handshake = upgradeHeaders(req, query);
        if (o.draining()) return refuse(res, context, handshake, new DomainError('unavailable', 'Server is shutting down; reconnect to another instance.'));
        let slot;
        try {
          slot = o.live.reserve();
        } catch (err) {
          return refuse(res, context, handshake, err);
        }
        const authorization = authorizationFrom(req.getHeader('authorization'), query);
        const ip = Buffer.from(res.getRemoteAddressAsText()).toString();
        let aborted = false;
        res.onAborted(() => {
          aborted = true;
          slot.release();
        });
        o.live
          .open(slot, { authorization, ip }, this.transport)
          .then((session) => {
            if (aborted) return session.close();
            res.cork(() => res.upgrade<StreamSocket>({ session, closed: false }, handshake.key, handshake.protocol, handshake.extensions, context));
          })
          .catch((err) => {
            if (!aborted) refuse(res, context, handshake, err, o.logger);
          });
      },
      open: (ws) => {
        const data = ws.getUserData();
        if (data.refused) return tellRefusal(ws, data);
        const { session } = data;
        session.output$.subscribe((m) => this.send(ws, data, toServerMessage(m)));
        void session.ended.then((end) => this.closeFor(ws, data, end));
        session.touch(); // the config must come within the idle timeout
      },
      message: (ws, bytes, isBinary) => {
        const data = ws.getUserData();
        if (data.refused) return;
        try {
          this.onMessage(ws, data, bytes, isBinary);
        } catch (err) {
          o.logger.error({ err, session: data.session.id }, 'stream message handling failed');
          data.session.fail(err);
        }
      },
      close: (ws) => {
        const data = ws.getUserData();
        if (data.refused) return;
        data.closed = true;
        data.session.close();
      },
    });

    o.app.ws<FollowerSocket>('/v1/stream/:id/captions', {
      idleTimeout: 120,
      maxPayloadLength: 1024,
      upgrade: (res, req, context) => {
        const id = req.getParameter(0) ?? '';
        const query = new URLSearchParams(req.getQuery() ?? '');
        const handshake = upgradeHeaders(req, query);
        if (!/^[A-Za-z0-9_-]{1,128}$/.test(id)) return refuse(res, context, handshake, new DomainError('invalid', 'session id must be 1-128 letters, digits, - or _'));
        const replay = /^(1|true)$/.test(query.get('replay') ?? '');
        // The owner's key (header or ?api_key=, as on /v1/stream) or a share token.
        const authorization = authorizationFrom(req.getHeader('authorization'), query);
        const shareToken = query.get('share_token') ?? undefined;
        let aborted = false;
        res.onAborted(() => {
          aborted = true;
        });
        o.live.followers
          .authorize(id, { authorization, shareToken })
          .then(() => {
            if (!aborted) res.cork(() => res.upgrade<FollowerSocket>({ id, replay }, handshake.key, handshake.protocol, handshake.extensions, context));
          })
          .catch((err) => {
            if (!aborted) refuse(res, context, handshake, err, o.logger);
          });
      },
      open: (ws) => {
        const data = ws.getUserData();
        if (data.refused) return tellRefusal(ws, data);
        this.followers.add(ws);
        this.follow(ws, data).catch((err) => o.logger.warn({ err, session: data.id }, 'captions follower failed'));
      },
      close: (ws) => {
        const data = ws.getUserData();
        if (data.refused) return;
        data.closed = true;
        data.unsubscribe?.();
        this.followers.delete(ws);
      },
    });
  }

  /** Shutdown (after LiveSessions.close() has flushed the streams): followers are told to go elsewhere. */
  async close(): Promise<void> {
    for (const f of this.followers) {
      try {
        f.end(CLOSE_CODES.GOING_AWAY, 'server shutting down');
      } catch {
        /* already closed */
      }
    }
  }

  private onMessage(ws: WebSocket<StreamSocket>, data: LiveSocket, bytes: ArrayBuffer, isBinary: boolean): void {
    const { session } = data;
    if (session.phase === 'config') {
      if (isBinary) return this.refuseFrame(ws, data, 'expected the JSON config message first, e.g. {"language": "en", "model": "large-v3-turbo"}', CLOSE_CODES.UNSUPPORTED_DATA);
      const parsed = parseConfigMessage(bytes, { defaultModel: this.o.defaultModel, defaultLanguage: 'auto' });
      if (!parsed.ok) return this.refuseFrame(ws, data, parsed.error, CLOSE_CODES.INVALID_PAYLOAD);
      const cfg = parsed.value;
      if (cfg.notices.length) this.o.logger.info({ session: session.id, notices: cfg.notices }, 'stream config notices');
      session.configure(cfg).then(
        () => session.touch(),
        (err) => session.fail(err),
      );
      return;
    }
    if (session.phase === 'loading') return this.refuseFrame(ws, data, 'wait for {"status":"ready"} before sending audio', CLOSE_CODES.POLICY_VIOLATION);
    if (session.phase !== 'streaming') return;
    if (isBinary) {
      const check = validatePcmFrame(bytes, this.o.maxFrameBytes);
      if (!check.ok) return this.refuseFrame(ws, data, check.error, check.closeCode);
      session.pushAudio(int16LeBytesToFloat32(new Uint8Array(bytes)));
      return;
    }
    const ctl = parseControlMessage(bytes);
    if (!ctl.ok) return this.refuseFrame(ws, data, `${ctl.error}; audio goes in binary frames, control messages are {"action":"stop"}`, CLOSE_CODES.UNSUPPORTED_DATA);
    session.control(ctl.value);
  }

  /** A frame the protocol does not allow: `{"error"}`, the session freed, the socket closed with `code`. */
  private refuseFrame(ws: WebSocket<StreamSocket>, data: LiveSocket, error: string, code: number): void {
    this.send(ws, data, { error });
    this.closeSocket(ws, data, code, error);
    data.session.close();
  }

  /** How the session ended → the close code. */
  private closeFor(ws: WebSocket<StreamSocket>, data: LiveSocket, end: LiveEnd): void {
    switch (end.reason) {
      case 'complete':
        return this.closeSocket(ws, data, CLOSE_CODES.NORMAL, 'stream complete');
      case 'shutdown':
        return this.closeSocket(ws, data, CLOSE_CODES.GOING_AWAY, 'server shutting down');
      case 'policy':
        return this.closeSocket(ws, data, CLOSE_CODES.POLICY_VIOLATION, end.message);
      case 'error':
        return this.closeSocket(ws, data, ERROR_KIND_CODES[end.kind].closeCode, end.message);
      case 'gone':
        return this.closeSocket(ws, data, CLOSE_CODES.GOING_AWAY, 'stream closed');
    }
  }

  private closeSocket(ws: WebSocket<StreamSocket>, data: LiveSocket, code: number, reason: string): void {
    if (data.closed) return;
    data.closed = true;
    try {
      ws.end(code, closeReason(reason));
    } catch {
      /* already closed */
    }
  }

  private send(ws: WebSocket<StreamSocket>, data: LiveSocket, m: ServerMessage): void {
    if (data.closed) return;
    try {
      // Sends from async code must be corked, or uWS may not flush them before a close that follows.
      ws.cork(() => ws.send(encodeServerMessage(m), false));
    } catch {
      /* socket already closed */
    }
  }

  private async follow(ws: WebSocket<FollowerSocket>, data: Follower): Promise<void> {
    const subject = sessionSubject(data.id);
    const send = (e: StreamEvent) => {
      if (data.closed) return false;
      try {
        ws.send(encodeServerMessage(toServerMessage(e)));
        if (e.type === 'end') ws.end(CLOSE_CODES.NORMAL, 'stream complete');
      } catch {
        return false;
      }
      return e.type !== 'end';
    };
    if (data.replay) {
      // Everything so far, then live: JetStream (NATS) or the in-process history.
      const it = this.o.bus.replay<StreamEvent>(subject, { follow: true })[Symbol.asyncIterator]();
      data.unsubscribe = () => void it.return?.();
      for (let r = await it.next(); !r.done; r = await it.next()) if (!send(r.value.data)) break;
      return;
    }
    const sub = this.o.bus.subscribe<StreamEvent>(subject);
    data.unsubscribe = () => sub.unsubscribe();
    if (data.closed) return sub.unsubscribe();
    for await (const m of sub) if (!send(m.data)) break;
  }
}

function upgradeHeaders(req: { getHeader(name: string): string }, query: URLSearchParams): Handshake {
  return {
    key: req.getHeader('sec-websocket-key'),
    protocol: req.getHeader('sec-websocket-protocol'),
    extensions: req.getHeader('sec-websocket-extensions'),
    httpRefusal: query.get('refuse') === 'http',
  };
}

/**
 * Refuses an upgrade. By default the upgrade is accepted and the socket told `{"error"}` and closed
 * with the kind's close code (`tellRefusal`): a browser's WebSocket cannot read an HTTP refusal.
 * `?refuse=http` gets the status, headers and `{"error"}` a REST call would get. Either way no slot
 * is held and no session exists: the socket never counts as a live stream.
 */
function refuse(res: HttpResponse, context: unknown, handshake: Handshake, err: unknown, logger?: Logger): void {
  const { error, internal } = toApiError(err);
  if (internal) logger?.error({ err }, 'stream admission failed');
  res.cork(() => {
    if (!handshake.httpRefusal) {
      const refused = { error: error.message, closeCode: closeCodeOf(err) };
      res.upgrade<Refused>({ refused }, handshake.key, handshake.protocol, handshake.extensions, context as never);
      return;
    }
    res.writeStatus(`${error.status} ${STATUS_CODES[error.status] ?? ''}`).writeHeader('content-type', 'application/json');
    for (const [k, v] of Object.entries(error.headers)) res.writeHeader(k, v);
    res.end(JSON.stringify({ error: error.message }));
  });
}

/** An accepted-but-refused socket: the error, then closed at once. */
function tellRefusal(ws: Pick<WebSocket<unknown>, 'cork' | 'send' | 'end'>, data: Refused): void {
  const { error, closeCode } = data.refused;
  try {
    ws.cork(() => ws.send(encodeServerMessage({ error }), false));
    ws.end(closeCode, closeReason(error));
  } catch {
    /* the client already went away */
  }
}
