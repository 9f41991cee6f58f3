/**
 * The uWebSockets HTTP core: routing, body limits, request ids, access log, metrics, the error
 * contract (`{"error": "..."}` with the right status everywhere) and graceful shutdown.
 * Routes live in src/http/routes; WebSocket endpoints register through `ws()`.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Metrics } from '../observability/metrics.ts';
import { ApiError, toApiError } from './api-error.ts';
import { CORS_HEADERS } from './cors.ts';
import { HttpContext, type Reply, tooLarge } from './http-context.ts';
import { formatBytes } from '../formats/bytes.ts';
import { type Method, Router } from './router.ts';
import { NATIVE_MAX_CONTENT_LENGTH, type TemplatedApp, type Uws, type us_listen_socket } from './uws.ts';

export type Handler = (ctx: HttpContext) => Promise<Reply | void> | Reply | void;

export interface RouteOptions {
  /** Largest accepted request body in bytes (default: the server's JSON body limit). */
  maxBodyBytes?: number;
  /** The 413 message when the body is over the limit (default names the body limit). */
  tooLargeMessage?: string;
  /** The JSON body of this route's error replies (default `{"error": message}`); the OpenAI-compatible routes use their SDK's shape. */
  errorBody?: (error: ApiError) => unknown;
}

export interface HttpServerOptions {
  uws: Uws;
  host: string;
  port: number;
  logger: Logger;
  metrics: Metrics;
  trustProxy: boolean;
  maxJsonBodyBytes: number;
  shutdownTimeoutMs: number;
  /** Largest request line + headers answered normally; larger ones get 431 (default 16 KB). */
  maxHeaderBytes?: number;
}

interface RouteEntry {
  handler: Handler;
  maxBodyBytes: number;
  tooLargeMessage?: string;
  errorBody?: (error: ApiError) => unknown;
}

const DEFAULT_MAX_HEADER_BYTES = 16 * 1024;
const REQUEST_ID = /^[\w.:-]{1,128}$/;

export class HttpServer {
  readonly app: TemplatedApp;
  private readonly router = new Router<RouteEntry>();
  private listenSocket: us_listen_socket | null = null;
  private inFlight = 0;
  private draining = false;
  private closing = false;
  private idleWaiters: (() => void)[] = [];
  private boundPort = 0;

  constructor(private readonly opts: HttpServerOptions) {
    this.app = opts.uws.App();
  }

  route(method: Method, pattern: string, handler: Handler, options: RouteOptions = {}): this {
    this.router.add(method, pattern, {
      handler,
      maxBodyBytes: options.maxBodyBytes ?? this.opts.maxJsonBodyBytes,
      tooLargeMessage: options.tooLargeMessage,
      errorBody: options.errorBody,
    });
    return this;
  }

  get port(): number {
    return this.boundPort;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  async start(): Promise<void> {
    // The catch-all must be registered after every ws() route, which uWS matches first anyway.
    this.app.any('/*', (res, req) => this.handle(res, req));
    await new Promise<void>((resolve, reject) => {
      this.app.listen(this.opts.host, this.opts.port, (socket) => {
        if (!socket) {
          reject(new Error(`Cannot listen on ${this.opts.host}:${this.opts.port} (port in use or address not available). Set HOST/PORT.`));
          return;
        }
        this.listenSocket = socket;
        this.boundPort = this.opts.uws.us_socket_local_port(socket as never) as number;
        resolve();
      });
    });
    this.opts.logger.info({ host: this.opts.host, port: this.boundPort }, 'listening');
  }

  /** Stops taking new connections (open ones go on); `isDraining` from here on. Idempotent. */
  stopAccepting(): void {
    this.draining = true;
    if (this.listenSocket) this.opts.uws.us_listen_socket_close(this.listenSocket);
    this.listenSocket = null;
  }

  /**
   * Stops accepting and waits for in-flight requests (bounded by shutdownTimeoutMs). Live sessions
   * are flushed before this by the composition root (src/app.ts), which orders the shutdown.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.stopAccepting();
    if (this.inFlight > 0) {
      this.opts.logger.info({ inFlight: this.inFlight }, 'waiting for in-flight requests');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((r) => this.idleWaiters.push(r)),
        new Promise<void>((r) => {
          timer = setTimeout(r, this.opts.shutdownTimeoutMs);
        }),
      ]);
      clearTimeout(timer);
    }
  }

  private handle(res: import('./uws.ts').HttpResponse, req: import('./uws.ts').HttpRequest): void {
    const incoming = req.getHeader('x-request-id');
    const requestId = REQUEST_ID.test(incoming) ? incoming : randomUUID();
    const ctx = new HttpContext(res, req, requestId, this.opts.trustProxy);
    this.inFlight++;
    const baseHeaders = { 'x-request-id': requestId, ...CORS_HEADERS };
    ctx.defaultHeaders = baseHeaders;
    const finish = () => {
      this.record(ctx);
      if (--this.inFlight === 0) this.idleWaiters.splice(0).forEach((r) => r());
    };
    let errorBody: RouteEntry['errorBody'];
    const fail = (err: unknown) => {
      const { error, internal } = toApiError(err);
      if (internal) this.opts.logger.error({ err, reqId: requestId }, 'request failed');
      ctx.send({ status: error.status, headers: error.headers, body: errorBody ? errorBody(error) : { error: error.message } }, baseHeaders);
    };

    const maxHeaderBytes = this.opts.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
    if (ctx.headerBytes > maxHeaderBytes) {
      fail(new ApiError(431, `Request headers are ${formatBytes(ctx.headerBytes)}, over the limit of ${formatBytes(maxHeaderBytes)}: send fewer or shorter headers (cookies, long tokens).`));
      finish();
      return;
    }

    if (ctx.method === 'OPTIONS') {
      ctx.send(
        {
          status: 204,
          headers: {
            'access-control-allow-methods': 'GET, POST, PUT, PATCH, DELETE, OPTIONS',
            'access-control-allow-headers': req.getHeader('access-control-request-headers') || 'authorization, content-type',
            'access-control-max-age': '600',
          },
        },
        baseHeaders,
      );
      finish();
      return;
    }

    const match = this.router.match(ctx.method, ctx.path);
    if (match.kind === 'not-found') {
      fail(new ApiError(404, `Not found: ${ctx.method} ${ctx.path}. See the README for the list of endpoints.`));
      finish();
      return;
    }
    if (match.kind === 'method-not-allowed') {
      ctx.route = match.pattern;
      fail(new ApiError(405, `Method ${ctx.method} is not allowed on ${ctx.path}. Allowed: ${match.allowed.join(', ')}.`, { allow: match.allowed.join(', ') }));
      finish();
      return;
    }
    ctx.route = match.pattern;
    ctx.params = match.params;
    errorBody = match.handler.errorBody;
    if (this.draining) {
      fail(new ApiError(503, 'Server is shutting down; retry on another instance.', { 'retry-after': '5' }));
      finish();
      return;
    }

    const { handler, maxBodyBytes, tooLargeMessage } = match.handler;
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      const declared = Number(ctx.headers['content-length']);
      if (Number.isFinite(declared) && declared > maxBodyBytes) {
        if (declared > NATIVE_MAX_CONTENT_LENGTH) this.warnUnparsableLength(ctx);
        fail(tooLargeMessage ? new ApiError(413, tooLargeMessage) : tooLarge(maxBodyBytes));
        finish();
        return;
      }
      if (Number.isFinite(declared) && declared > NATIVE_MAX_CONTENT_LENGTH) {
        // uWS drops this connection as soon as we return (see uws.ts): running the route would only
        // do admission work for a client that is already gone. The reply is for a build that can send it.
        this.warnUnparsableLength(ctx);
        fail(new ApiError(413, `A Content-Length of 1 GB or more cannot be received: send bodies this large with Transfer-Encoding: chunked.`));
        finish();
        return;
      }
      ctx.attachBody(maxBodyBytes, tooLargeMessage);
    }

    Promise.resolve()
      .then(() => handler(ctx))
      .then((reply) => {
        if (ctx.responded) return;
        if (reply) ctx.send(reply, baseHeaders);
        else ctx.send({ status: 204 }, baseHeaders);
      })
      .catch((err) => {
        if (ctx.responded) {
          if (!ctx.signal.aborted) this.opts.logger.error({ err, reqId: requestId }, 'error after response was sent');
          return;
        }
        fail(err);
      })
      .finally(finish);
  }

  private warnUnparsableLength(ctx: HttpContext): void {
    this.opts.logger.warn(
      { reqId: ctx.requestId, path: ctx.path, contentLength: ctx.headers['content-length'], ip: ctx.remoteAddress },
      'Content-Length of 10+ digits: the HTTP parser closes this connection without a reply; clients must send bodies of 1 GB or more with Transfer-Encoding: chunked',
    );
  }

  private record(ctx: HttpContext): void {
    const seconds = Number(process.hrtime.bigint() - ctx.startedAt) / 1e9;
    const status = ctx.signal.aborted && !ctx.status ? 499 : ctx.status;
    this.opts.metrics.httpRequests.inc({ method: ctx.method, route: ctx.route, status: String(status) });
    this.opts.metrics.httpDuration.observe({ method: ctx.method, route: ctx.route }, seconds);
    this.opts.logger.info({ reqId: ctx.requestId, method: ctx.method, path: ctx.path, status, ms: Math.round(seconds * 1e4) / 10, bytes: ctx.bytesSent, ip: ctx.remoteAddress }, 'request');
  }
}
