/**
 * Prometheus metrics on a registry of our own (no prom-client global default), created once by
 * the composition root and handed to whoever records something.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests = new Counter({
    name: 'stt_http_requests_total',
    help: 'HTTP requests by method, route pattern and status code.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'stt_http_request_duration_seconds',
    help: 'HTTP request latency by method and route pattern.',
    labelNames: ['method', 'route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });
  readonly activeStreams = new Gauge({
    name: 'stt_active_streams',
    help: 'Live streaming sessions (WebSocket and WebRTC).',
    labelNames: ['transport'] as const,
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'stt_scheduler_queue_depth',
    help: 'Requests waiting in a model batching scheduler.',
    labelNames: ['model', 'priority'] as const,
    registers: [this.registry],
  });
  readonly droppedPartials = new Counter({
    name: 'stt_partials_dropped_total',
    help: 'Partial decodes dropped under load (superseded by a newer one, or waited too long). Finals are never dropped.',
    labelNames: ['model', 'reason'] as const,
    registers: [this.registry],
  });
  readonly finalWait = new Gauge({
    name: 'stt_final_wait_seconds',
    help: 'How long finals wait for a model call (longest of the oldest queued and the p90 of the last 10 s); admission control refuses new streams above STREAM_MAX_FINAL_WAIT_MS.',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly streamsRefused = new Counter({
    name: 'stt_streams_refused_total',
    help: 'New live streams refused because the model was behind (reason capacity).',
    labelNames: ['transport', 'reason'] as const,
    registers: [this.registry],
  });
  readonly batchSize = new Histogram({
    name: 'stt_batch_size',
    help: 'Requests per model call of a batching scheduler.',
    labelNames: ['model'] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64],
    registers: [this.registry],
  });
  readonly batchSeconds = new Histogram({
    name: 'stt_batch_duration_seconds',
    help: 'Duration of one batched model call.',
    labelNames: ['model'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly modelLoaded = new Gauge({
    name: 'stt_model_loaded',
    help: '1 when a model is loaded in memory, 0 when known but not loaded.',
    labelNames: ['model', 'kind'] as const,
    registers: [this.registry],
  });
  readonly modelInstalled = new Gauge({
    name: 'stt_model_installed',
    help: '1 when a model is installed in MODELS_DIR.',
    labelNames: ['model', 'kind'] as const,
    registers: [this.registry],
  });

  constructor(opts: { processMetrics?: boolean } = {}) {
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'stt_' });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
