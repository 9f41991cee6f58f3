/**
 * One HTTP exchange over uWS, with the parts a handler needs: parsed request line, headers, a
 * back-pressured body stream, an abort signal, and response writers that cork correctly.
 * uWS's request object dies when the handler returns, so everything is copied up front.
 */
import { STATUS_CODES } from 'node:http';
import { Readable } from 'node:stream';
import type { HttpRequest, HttpResponse } from './uws.ts';
import { ApiError } from './api-error.ts';
import { formatBytes } from '../formats/bytes.ts';

export interface Reply {
  status?: number;
  headers?: Record<string, string>;
  /** Objects are sent as JSON; strings and buffers as they are. */
  body?: unknown;
}

const BODY_HIGH_WATER = 1024 * 1024;
/**
 * uWS closes a connection that has received nothing for 10 s, even while we paused it. While a body
 * waits for a slow reader (an admission check under load), take in one more read every few seconds,
 * up to this much beyond the high-water mark; a client that sends nothing still times out.
 */
const PAUSE_NUDGE_MS = 4000;
const PAUSE_NUDGE_MAX_BYTES = 16 * 1024 * 1024;
/** A reply sent before its request body was read waits for (and discards) at most this much of the rest. */
const DRAIN_LIMIT = 8 * 1024 * 1024;

export class HttpContext {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: Record<string, string> = {};
  readonly remoteAddress: string;
  /** Size of the request line and headers as received (for the header limit). */
  readonly headerBytes: number;
  params: Record<string, string> = {};
  /** Route pattern, for metrics labels (bounded cardinality). */
  route = 'unmatched';
  /** Headers every response of this exchange carries (request id, CORS), set by HttpServer. */
  defaultHeaders: Record<string, string> = {};
  status = 0;
  bytesSent = 0;
  readonly startedAt = process.hrtime.bigint();
  private readonly abortController = new AbortController();
  private done = false;
  private aborted = false;
  private paused = false;
  private body: Readable | null = null;
  /** Why the body can no longer be read (client gone, over the limit): every later read rejects with it. */
  private bodyFailure: Error | null = null;
  private bodyComplete = false;
  private bodyReceived = 0;
  /** Set while an early reply waits for the rest of the body to be drained. */
  private afterDrain: (() => void) | null = null;

  constructor(
    private readonly res: HttpResponse,
    req: HttpRequest,
    readonly requestId: string,
    trustProxy: boolean,
  ) {
    this.method = req.getMethod().toUpperCase();
    this.path = req.getUrl();
    const query = req.getQuery() ?? '';
    this.query = new URLSearchParams(query);
    let headerBytes = this.method.length + this.path.length + query.length + 12;
    req.forEach((k, v) => {
      this.headers[k.toLowerCase()] = v;
      headerBytes += k.length + v.length + 4;
    });
    this.headerBytes = headerBytes;
    const direct = Buffer.from(res.getRemoteAddressAsText()).toString();
    const forwarded = trustProxy ? this.headers['x-forwarded-for']?.split(',')[0]?.trim() : undefined;
    this.remoteAddress = forwarded || direct;
    res.onAborted(() => {
      this.done = true;
      this.aborted = true;
      const gone = new ClientDisconnectedError();
      this.abortController.abort(gone);
      this.failBody(gone);
    });
  }

  /** Aborted when the client goes away: pass it to long work so that it is cancelled. */
  get signal(): AbortSignal {
    return this.abortController.signal;
  }

  get responded(): boolean {
    return this.done;
  }

  /**
   * Starts receiving the body (must be called synchronously in the uWS handler). Bytes beyond
   * `maxBytes` fail the stream with a 413 ApiError.
   */
  attachBody(maxBytes: number, tooLargeMessage?: string): void {
    const res = this.res;
    let received = 0;
    const stream = new Readable({
      highWaterMark: BODY_HIGH_WATER,
      read: () => {
        if (this.paused && !this.done) {
          this.paused = false;
          res.resume();
        }
      },
    });
    this.body = stream;
    let nudge: NodeJS.Timeout | null = null;
    const stopNudging = () => {
      if (nudge) clearInterval(nudge);
      nudge = null;
    };
    const pause = () => {
      this.paused = true;
      res.pause();
      nudge ??= setInterval(() => {
        if (this.done || stream.destroyed || this.bodyComplete) return stopNudging();
        if (this.paused && stream.readableLength < BODY_HIGH_WATER + PAUSE_NUDGE_MAX_BYTES) {
          this.paused = false;
          res.resume();
        }
      }, PAUSE_NUDGE_MS).unref();
    };
    stream.once('close', stopNudging);
    // The body can fail before any handler reads it (client gone during an async admission check,
    // a chunked body over the limit): a Readable without an 'error' listener would then take the
    // whole process down. Failures are kept in bodyFailure and handed to every reader instead.
    stream.on('error', () => {});
    if (this.bodyFailure) stream.destroy(this.bodyFailure);
    res.onData((chunk, isLast) => {
      this.bodyReceived += chunk.byteLength;
      if (isLast) {
        this.bodyComplete = true;
        stopNudging();
      }
      if (this.afterDrain) {
        if (isLast) {
          const reply = this.afterDrain;
          this.afterDrain = null;
          reply();
        }
        return;
      }
      if (stream.destroyed) return;
      received += chunk.byteLength;
      if (received > maxBytes) {
        this.failBody(tooLargeMessage ? new ApiError(413, tooLargeMessage) : tooLarge(maxBytes));
        return;
      }
      // uWS neuters the ArrayBuffer after this callback returns: copy it.
      const ok = stream.push(Buffer.from(chunk.slice(0)));
      if (isLast) {
        stream.push(null);
      } else if (!ok && !this.paused) {
        pause();
      }
    });
  }

  /**
   * The request body as a stream (for multipart uploads). Empty for requests without a body.
   * Throws the failure (client disconnected, body too large) when the body can no longer be read,
   * so that a consumer that starts late is rejected at once instead of waiting for data that never comes.
   */
  bodyStream(): Readable {
    if (this.bodyFailure) throw this.bodyFailure;
    return this.body ?? Readable.from([]);
  }

  /** The reason the body can no longer be read, or null while it can. */
  get bodyError(): Error | null {
    return this.bodyFailure;
  }

  private failBody(err: Error): void {
    this.bodyFailure ??= err;
    this.body?.destroy(err);
  }

  async readBody(): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const c of this.bodyStream()) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  /** Parses a JSON body; 400 with a useful message when it is not JSON. */
  async readJson(): Promise<unknown> {
    const raw = await this.readBody();
    if (raw.length === 0) throw new ApiError(400, 'Request body is empty: send a JSON object with Content-Type: application/json.');
    try {
      return JSON.parse(raw.toString('utf8'));
    } catch (err) {
      throw new ApiError(400, `Request body is not valid JSON: ${(err as Error).message}`);
    }
  }

  /** Sends a complete response. Safe to call from async code (corks) and after abort (no-op). */
  send(reply: Reply, extraHeaders: Record<string, string> = {}): void {
    if (this.done) return;
    this.done = true;
    const status = reply.status ?? 200;
    const headers: Record<string, string> = { ...this.defaultHeaders, ...extraHeaders, ...reply.headers };
    let body: string | Buffer;
    if (reply.body === undefined || reply.body === null) body = '';
    else if (typeof reply.body === 'string' || Buffer.isBuffer(reply.body)) body = reply.body;
    else {
      body = JSON.stringify(reply.body);
      headers['content-type'] ??= 'application/json; charset=utf-8';
    }
    this.status = status;
    this.bytesSent = Buffer.byteLength(body);
    const write = (closeConnection: boolean) => {
      if (this.aborted) return;
      this.res.cork(() => {
        this.res.writeStatus(`${status} ${STATUS_CODES[status] ?? ''}`);
        for (const [k, v] of Object.entries(headers)) this.res.writeHeader(k, v);
        this.res.end(body, closeConnection);
      });
    };
    this.body?.destroy();
    // A body that was never attached (refused on its Content-Length alone) must not be parsed as the next request.
    const unreadBody = Number(this.headers['content-length']) > 0 || this.headers['transfer-encoding'] !== undefined;
    if (this.body === null) return write(unreadBody);
    if (this.bodyComplete) return write(false);
    // Replying before the body was read (an early 401/413/429...): clients such as fetch only see the
    // reply if the upload may finish, so drain a modest remainder first; otherwise close after replying.
    const declared = Number(this.headers['content-length']);
    if (Number.isFinite(declared) && declared - this.bodyReceived <= DRAIN_LIMIT) {
      this.afterDrain = () => write(false);
      if (this.paused) this.res.resume();
      return;
    }
    write(true);
  }

  /** Starts a chunked/streamed response (server-sent events, downloads). */
  beginStream(status: number, headers: Record<string, string>): { write(chunk: string | Buffer): boolean; end(): void } {
    if (this.done) return { write: () => false, end: () => {} };
    this.status = status;
    this.res.cork(() => {
      this.res.writeStatus(`${status} ${STATUS_CODES[status] ?? ''}`);
      for (const [k, v] of Object.entries({ ...this.defaultHeaders, ...headers })) this.res.writeHeader(k, v);
    });
    return {
      write: (chunk) => {
        if (this.done) return false;
        this.bytesSent += Buffer.byteLength(chunk);
        let ok = false;
        this.res.cork(() => {
          ok = this.res.write(chunk);
        });
        return ok;
      },
      end: () => {
        if (this.done) return;
        this.done = true;
        this.res.cork(() => this.res.end());
      },
    };
  }
}

/** The client closed the connection before its request was answered (logged as 499, never sent). */
export class ClientDisconnectedError extends ApiError {
  constructor() {
    super(499, 'Client closed the connection before the request was complete.');
    this.name = 'ClientDisconnectedError';
  }
}

export function tooLarge(maxBytes: number): ApiError {
  return new ApiError(413, `Request body is larger than the limit of ${formatBytes(maxBytes)}.`);
}
