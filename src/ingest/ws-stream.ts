/**
 * WS /v1/stream: the live-captions protocol of the API reference over uWebSockets.
 *   client → {"language","model",...}   server → {"status":"ready","session_id"}
 *   client → binary PCM16 mono frames     server → {"partial"} / {"text","start","end","words"}
 *   client → {"action":"stop"}            server → {"is_final":true}, then closes (1000)
 * Every partial and final is also published on the bus (subject per session), which is what
 * WS /v1/stream/:id/captions follows — with the owner's API key or a share token (StreamAccess).
 * Bad input gets {"error"} and a close code; the server never throws on a client's behalf, and a
 * disconnect frees the session at once. Only audio counts as activity for the idle timeout (not
 * pings), and a slot under MAX_STREAMS is reserved at the upgrade, before the asynchronous admission.
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Logger } from 'pino';
import { int16LeBytesToFloat32 } from '../audio/pcm.ts';
import { StreamResampler } from '../audio/resampler.ts';
import type { SileroVad } from '../engines/vad/silero-vad.ts';
import { sessionSubject, type Bus } from '../bus/index.ts';
import type { HttpServer } from '../http/http-server.ts';
import type { WebSocket } from '../http/uws.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { SpeechModels } from '../pipeline/speech-models.ts';
import type { AccessControl } from '../auth/index.ts';
import type { TranscriptStore } from '../store/transcripts.ts';
import { LiveRecorder } from './live-recorder.ts';
import { StreamAccess } from './stream-access.ts';
import type { StreamAdmission } from '../pipeline/stream-admission.ts';
import { StreamSession, type StreamEvent } from '../pipeline/stream-session.ts';
import {
  CLOSE_CODES,
  closeReason,
  encodeServerMessage,
  parseConfigMessage,
  parseControlMessage,
  serverMessages as msg,
  validatePcmFrame,
  type ServerMessage,
} from './stream-protocol.ts';

export interface WsStreamOptions {
  server: HttpServer;
  /** Admission and metering: who may stream, and 1 credit per started minute of audio. */
  access: AccessControl;
  /** Where finished streams are saved (finals as segments). */
  transcripts?: TranscriptStore;
  models: SpeechModels;
  vad: SileroVad;
  bus: Bus;
  logger: Logger;
  metrics: Metrics;
  defaultModel: string;
  maxStreams: number;
  maxFrameBytes: number;
  idleTimeoutS: number;
  maxDurationS: number;
  /** Load-based admission (close 1013 when live results are late); none = always admit. */
  admission?: StreamAdmission;
  /** Token budget per decode for live streams (undefined = the engine default). */
  maxNewTokens?: number;
  /** Who may follow captions (shared with the WebRTC ingest); default: one of its own. */
  followers?: StreamAccess;
}

interface Conn {
  id: string;
  ip: string;
  /** Account of the key that opened the stream (null: anonymous). */
  owner: string | null;
  /**
   * uWS copies the user data given to upgrade() into the socket's own object: callbacks made before
   * open() (the recorder's) reach the live Conn through this reference, which open() sets.
   */
  self: { current: Conn | null };
  /** Metering and the saved transcript. */
  recorder: LiveRecorder;
  phase: 'config' | 'loading' | 'streaming' | 'stopping' | 'closed';
  session: StreamSession | null;
  resampler: StreamResampler | null;
  ws: WebSocket<Conn> | null;
  idle: NodeJS.Timeout | null;
  maxDuration: NodeJS.Timeout | null;
}

/** Wire message for a pipeline event (shared by the stream itself and the captions followers). */
export function toServerMessage(e: StreamEvent): ServerMessage {
  switch (e.type) {
    case 'partial':
      return { ...msg.partial(e.text), stable: e.stable } as ServerMessage;
    case 'final':
      return msg.final(e);
    case 'end':
      return msg.isFinal();
    case 'error':
      return msg.error(e.message);
  }
}

export class WsStreamIngest {
  private readonly conns = new Set<Conn>();
  private readonly followers = new Set<WebSocket<{ unsubscribe?: () => void }>>();
  private shuttingDown = false;
  /** Upgrades admitted against MAX_STREAMS whose asynchronous admission has not finished yet. */
  private pending = 0;
  readonly followAccess: StreamAccess;

  constructor(private readonly o: WsStreamOptions) {
    this.followAccess = o.followers ?? new StreamAccess({ bus: o.bus, access: o.access, logger: o.logger });
  }

  get active(): number {
    return this.conns.size;
  }

  register(): void {
    const o = this.o;
    o.server.app.ws<Conn>('/v1/stream', {
      maxPayloadLength: o.maxFrameBytes * 2, // larger frames are refused by us with a message, far larger by uWS
      idleTimeout: Math.max(8, o.idleTimeoutS + 8), // backstop; our own timer speaks first
      maxBackpressure: 1024 * 1024,
      upgrade: (res, req, context) => {
        const refuse = (status: string, error: string, headers: Record<string, string> = {}) => {
          res.cork(() => {
            res.writeStatus(status).writeHeader('content-type', 'application/json');
            for (const [k, v] of Object.entries(headers)) res.writeHeader(k, v);
            res.end(JSON.stringify({ error }));
          });
        };
        if (o.server.isDraining) return refuse('503 Service Unavailable', 'Server is shutting down; reconnect to another instance.');
        // The slot is taken now, synchronously: a burst of upgrades cannot all pass before any opens.
        if (this.conns.size + this.pending >= o.maxStreams) return refuse('503 Service Unavailable', `Too many live streams (limit ${o.maxStreams}); retry later.`);
        this.pending++;
        let reserved = true;
        const unreserve = () => {
          if (reserved) this.pending--;
          reserved = false;
        };
        // uWS's request dies with this callback: copy what the async admission needs.
        const key = req.getHeader('sec-websocket-key');
        const protocol = req.getHeader('sec-websocket-protocol');
        const extensions = req.getHeader('sec-websocket-extensions');
        // Browsers cannot set headers on a WebSocket: also accept ?api_key=… (or ?token=…).
        const query = new URLSearchParams(req.getQuery() ?? '');
        const token = query.get('api_key') ?? query.get('token');
        const authorization = req.getHeader('authorization') || (token ? `Bearer ${token}` : undefined);
        const ip = Buffer.from(res.getRemoteAddressAsText()).toString();
        let aborted = false;
        res.onAborted(() => {
          aborted = true;
          unreserve();
        });
        o.access
          .admit({ authorization, ip, kind: 'stream' })
          .then((grant) => {
            if (aborted) return grant.release();
            const id = randomUUID();
            const self: Conn['self'] = { current: null };
            const conn: Conn = { id, ip, owner: grant.account?.id ?? null, self, recorder: null as unknown as LiveRecorder, phase: 'config', session: null, resampler: null, ws: null, idle: null, maxDuration: null };
            conn.recorder = new LiveRecorder({
              sessionId: id,
              grant,
              access: o.access,
              transcripts: o.transcripts,
              logger: o.logger,
              onRefused: (message) => {
                if (self.current) this.fail(self.current, message, CLOSE_CODES.POLICY_VIOLATION);
              },
            });
            // open() runs inside upgrade() and moves the stream into this.conns.
            try {
              res.cork(() => res.upgrade(conn, key, protocol, extensions, context));
            } finally {
              unreserve();
            }
          })
          .catch((err: Error & { status?: number; headers?: Record<string, string> }) => {
            unreserve();
            if (aborted) return;
            const status = err.status ?? 500;
            if (!err.status) o.logger.error({ err }, 'stream admission failed');
            refuse(`${status} ${STATUS_CODES[status] ?? ''}`, err.status ? err.message : 'internal error', err.headers ?? {});
          });
      },
      open: (ws) => {
        const conn = ws.getUserData();
        conn.self.current = conn;
        conn.ws = ws;
        this.conns.add(conn);
        o.metrics.activeStreams.inc({ transport: 'websocket' });
        this.touch(conn);
        conn.maxDuration = setTimeout(() => this.fail(conn, `stream exceeded the maximum duration of ${Math.round(o.maxDurationS / 60)} minutes`, CLOSE_CODES.POLICY_VIOLATION), o.maxDurationS * 1000);
      },
      message: (ws, data, isBinary) => {
        const conn = ws.getUserData();
        try {
          this.onMessage(conn, data, isBinary);
        } catch (err) {
          o.logger.error({ err, session: conn.id }, 'stream message handling failed');
          this.fail(conn, 'internal error', CLOSE_CODES.INTERNAL_ERROR);
        }
      },
      close: (ws) => {
        const conn = ws.getUserData();
        conn.ws = null;
        this.dispose(conn);
      },
    });

    o.server.app.ws<{ id: string; unsubscribe?: () => void; closed?: boolean }>('/v1/stream/:id/captions', {
      idleTimeout: 120,
      maxPayloadLength: 1024,
      upgrade: (res, req, context) => {
        const id = req.getParameter(0) ?? '';
        if (!/^[A-Za-z0-9_-]{1,128}$/.test(id)) {
          res.writeStatus('400 Bad Request').writeHeader('content-type', 'application/json').end(JSON.stringify({ error: 'session id must be 1-128 letters, digits, - or _' }));
          return;
        }
        const query = new URLSearchParams(req.getQuery() ?? '');
        const replay = /^(1|true)$/.test(query.get('replay') ?? '');
        // The owner's key (header or ?api_key=, as on /v1/stream) or a share token; refused at the upgrade otherwise.
        const apiKey = query.get('api_key');
        const authorization = req.getHeader('authorization') || (apiKey ? `Bearer ${apiKey}` : undefined);
        const shareToken = query.get('share_token') ?? undefined;
        const key = req.getHeader('sec-websocket-key');
        const protocol = req.getHeader('sec-websocket-protocol');
        const extensions = req.getHeader('sec-websocket-extensions');
        let aborted = false;
        res.onAborted(() => {
          aborted = true;
        });
        this.followAccess
          .authorize(id, { authorization, shareToken })
          .then(() => {
            if (!aborted) res.cork(() => res.upgrade({ id, replay }, key, protocol, extensions, context));
          })
          .catch((err: Error & { status?: number; headers?: Record<string, string> }) => {
            if (aborted) return;
            const status = err.status ?? 500;
            if (!err.status) o.logger.error({ err, session: id }, 'captions follower admission failed');
            res.cork(() => {
              res.writeStatus(`${status} ${STATUS_CODES[status] ?? ''}`).writeHeader('content-type', 'application/json');
              for (const [k, v] of Object.entries(err.headers ?? {})) res.writeHeader(k, v);
              res.end(JSON.stringify({ error: err.status ? err.message : 'internal error' }));
            });
          });
      },
      open: (ws) => {
        const data = ws.getUserData() as { id: string; replay: boolean; unsubscribe?: () => void; closed?: boolean };
        this.followers.add(ws as never);
        this.follow(ws as never, data).catch((err) => o.logger.warn({ err, session: data.id }, 'captions follower failed'));
      },
      close: (ws) => {
        const data = ws.getUserData();
        data.closed = true;
        data.unsubscribe?.();
        this.followers.delete(ws as never);
      },
    });
  }

  /** Shutdown: flush every live stream (finals out, then {"is_final":true}) and close with 1001. */
  async close(): Promise<void> {
    this.shuttingDown = true;
    await Promise.all(
      [...this.conns].map(async (conn) => {
        if (conn.session && conn.phase === 'streaming') {
          conn.phase = 'stopping';
          await conn.session.stop();
        } else {
          this.send(conn, msg.isFinal());
        }
        this.end(conn, CLOSE_CODES.GOING_AWAY, 'server shutting down');
      }),
    );
    for (const f of this.followers) {
      try {
        f.end(CLOSE_CODES.GOING_AWAY, 'server shutting down');
      } catch {
        /* already closed */
      }
    }
  }

  private onMessage(conn: Conn, data: ArrayBuffer, isBinary: boolean): void {
    // Activity for the idle timeout is audio (below), the config and stop — never a ping.
    if (conn.phase === 'config') {
      if (isBinary) return this.fail(conn, 'expected the JSON config message first, e.g. {"language": "en", "model": "large-v3-turbo"}', CLOSE_CODES.UNSUPPORTED_DATA);
      const text = Buffer.from(data).toString('utf8');
      const parsed = parseConfigMessage(text, { defaultModel: this.o.defaultModel, defaultLanguage: 'auto' });
      if (!parsed.ok) return this.fail(conn, parsed.error, CLOSE_CODES.INVALID_PAYLOAD);
      const cfg = parsed.value;
      let maxNewTokens = this.o.maxNewTokens;
      try {
        const raw = JSON.parse(text) as { max_new_tokens?: unknown };
        if (raw.max_new_tokens !== undefined) {
          if (!Number.isInteger(raw.max_new_tokens) || (raw.max_new_tokens as number) < 1 || (raw.max_new_tokens as number) > 448) {
            return this.fail(conn, 'max_new_tokens: expected an integer from 1 to 448', CLOSE_CODES.INVALID_PAYLOAD);
          }
          maxNewTokens = raw.max_new_tokens as number;
        }
      } catch {
        /* parseConfigMessage already validated the JSON */
      }
      conn.phase = 'loading';
      // Loading the model (seconds for a large one, on first use) is the server's time, not the client's silence.
      if (conn.idle) clearTimeout(conn.idle);
      conn.idle = null;
      Promise.resolve()
        .then(() => Promise.all([this.o.models.get(cfg.model), StreamResampler.create(cfg.sampleRate, 16_000), this.followAccess.open(conn.id, conn.owner)]))
        .then(([model, resampler]) => {
          if (conn.phase !== 'loading') {
            resampler.close();
            this.followAccess.close(conn.id);
            return;
          }
          if (cfg.language !== 'auto' && !model.engine.info.languages.includes(cfg.language)) {
            resampler.close();
            return this.fail(conn, `language: model '${model.id}' does not support '${cfg.language}'`, CLOSE_CODES.INVALID_PAYLOAD);
          }
          const capacity = this.o.admission?.admit(model, 'websocket') ?? { ok: true as const };
          if (!capacity.ok) {
            resampler.close();
            return this.fail(conn, capacity.message, CLOSE_CODES.TRY_AGAIN_LATER);
          }
          conn.resampler = resampler;
          const session = new StreamSession({
            id: conn.id,
            model,
            vad: this.o.vad,
            language: cfg.language,
            interimResults: cfg.interimResults,
            partialIntervalMs: cfg.partialIntervalMs,
            maxNewTokens,
          });
          conn.session = session;
          conn.recorder.model = model.id;
          conn.recorder.language = cfg.language;
          session.events$.subscribe((e) => this.onEvent(conn, e));
          conn.phase = 'streaming';
          this.touch(conn);
          this.send(conn, msg.ready(conn.id));
          this.o.logger.info({ session: conn.id, model: model.id, language: cfg.language, notices: cfg.notices }, 'stream started');
        })
        .catch((err: Error & { status?: number }) => {
          if (err.status === undefined) this.o.logger.error({ err, session: conn.id }, 'stream start failed');
          this.fail(conn, err.status ? err.message : 'internal error: could not start the stream', err.status && err.status < 500 ? CLOSE_CODES.INVALID_PAYLOAD : CLOSE_CODES.INTERNAL_ERROR);
        });
      return;
    }
    if (conn.phase === 'loading') return this.fail(conn, 'wait for {"status":"ready"} before sending audio', CLOSE_CODES.POLICY_VIOLATION);
    if (conn.phase !== 'streaming') return;
    if (isBinary) {
      const check = validatePcmFrame(data, this.o.maxFrameBytes);
      if (!check.ok) return this.fail(conn, check.error, check.closeCode);
      this.touch(conn);
      const pcm = int16LeBytesToFloat32(new Uint8Array(data));
      conn.session!.push(conn.resampler ? conn.resampler.process(pcm) : pcm);
      // Metered as it goes: a stream whose account runs dry is closed.
      conn.recorder.addAudio(pcm.length / (conn.resampler?.inputRate ?? 16_000));
      return;
    }
    const ctl = parseControlMessage(Buffer.from(data).toString('utf8'));
    if (!ctl.ok) return this.fail(conn, `${ctl.error}; audio goes in binary frames, control messages are {"action":"stop"}`, CLOSE_CODES.UNSUPPORTED_DATA);
    if (ctl.value === 'ping') return this.send(conn, msg.pong());
    if (ctl.value === 'share') {
      this.followAccess
        .share(conn.id)
        .then((token) => this.send(conn, msg.share(token)))
        .catch((err) => {
          this.o.logger.error({ err, session: conn.id }, 'could not create a share token');
          this.send(conn, msg.error('could not create a share token; try again'));
        });
      return;
    }
    // Flushing is the server's work, not the client's silence: no idle timeout from here on.
    conn.phase = 'stopping';
    if (conn.idle) clearTimeout(conn.idle);
    void conn.session!.stop();
  }

  private onEvent(conn: Conn, e: StreamEvent): void {
    conn.recorder.record(e);
    this.o.bus.publish(sessionSubject(conn.id), e).catch((err) => this.o.logger.warn({ err, session: conn.id }, 'bus publish failed'));
    this.send(conn, toServerMessage(e));
    if (e.type === 'end') this.end(conn, this.shuttingDown ? CLOSE_CODES.GOING_AWAY : CLOSE_CODES.NORMAL, this.shuttingDown ? 'server shutting down' : 'stream complete');
    if (e.type === 'error') this.end(conn, CLOSE_CODES.INTERNAL_ERROR, e.message);
  }

  private async follow(ws: WebSocket<unknown>, data: { id: string; replay: boolean; unsubscribe?: () => void; closed?: boolean }): Promise<void> {
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

  private touch(conn: Conn): void {
    if (conn.idle) clearTimeout(conn.idle);
    if (conn.phase === 'stopping' || conn.phase === 'closed') return;
    conn.idle = setTimeout(() => this.fail(conn, `no data for ${this.o.idleTimeoutS} s; closing the stream`, CLOSE_CODES.POLICY_VIOLATION), this.o.idleTimeoutS * 1000);
  }

  private send(conn: Conn, m: ServerMessage): void {
    if (!conn.ws) return;
    const ws = conn.ws;
    try {
      // Sends from async code must be corked, or uWS may not flush them before a close that follows.
      ws.cork(() => ws.send(encodeServerMessage(m), false));
    } catch {
      /* socket already closed */
    }
  }

  private fail(conn: Conn, error: string, code: number): void {
    if (conn.phase === 'closed') return;
    this.send(conn, msg.error(error));
    this.end(conn, code, error);
  }

  private end(conn: Conn, code: number, reason: string): void {
    const ws = conn.ws;
    this.dispose(conn);
    if (!ws) return;
    try {
      ws.end(code, closeReason(reason));
    } catch {
      /* already closed */
    }
  }

  /** Frees everything of a stream at once. */
  private dispose(conn: Conn): void {
    if (conn.phase === 'closed') return;
    conn.phase = 'closed';
    if (conn.idle) clearTimeout(conn.idle);
    if (conn.maxDuration) clearTimeout(conn.maxDuration);
    conn.session?.close();
    conn.session = null;
    conn.resampler?.close();
    conn.resampler = null;
    conn.recorder.finish();
    this.followAccess.close(conn.id);
    if (this.conns.delete(conn)) this.o.metrics.activeStreams.dec({ transport: 'websocket' });
  }
}
