import { pino } from 'pino';
import { HttpServer, type HttpServerOptions } from '../../src/http/http-server.ts';
import { loadNativeUws } from '../../src/http/uws.ts';
import { Metrics } from '../../src/observability/metrics.ts';

const uws = loadNativeUws();

/** A bare, unstarted HttpServer on 127.0.0.1 (random port, silent logs) for route tests. */
export function testHttpServer(opts: Partial<Omit<HttpServerOptions, 'uws'>> = {}): HttpServer {
  return new HttpServer({
    uws,
    host: '127.0.0.1',
    port: 0,
    logger: pino({ level: 'silent' }),
    metrics: new Metrics({ processMetrics: false }),
    trustProxy: false,
    maxJsonBodyBytes: 64 * 1024,
    shutdownTimeoutMs: 5000,
    ...opts,
  });
}
