/**
 * Prometheus metrics on a registry of our own (no prom-client global default), created once by
 * the composition root and handed to whoever records something.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { LlmObserver } from './llm-observer.ts';

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
  readonly finalLag = new Histogram({
    name: 'stt_final_lag_seconds',
    help: 'Live finals: from the arrival of the audio that ended the utterance (after the end-of-speech silence) to the final being sent. Includes VAD backlog, queue wait and decoding.',
    labelNames: ['model'] as const,
    buckets: [0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 60],
    registers: [this.registry],
  });
  /** Per model: its scheduler's busy fractions per priority, read at scrape time (watchSchedulerLoad). */
  private readonly schedulerLoads = new Map<string, () => Record<string, number>>();
  readonly schedulerBusy: Gauge<'model' | 'priority'> = new Gauge({
    name: 'stt_scheduler_busy_ratio',
    help: "Fraction of the last 30 s a model's worker spent running batches, by priority (final, file, partial; their sum is its load). Admission refuses a new stream when its forecast would take finals plus partials past STREAM_MAX_LOAD.",
    labelNames: ['model', 'priority'] as const,
    registers: [this.registry],
    collect: () => {
      this.schedulerBusy.reset();
      for (const [model, load] of this.schedulerLoads) for (const [priority, v] of Object.entries(load())) this.schedulerBusy.set({ model, priority }, v);
    },
  });
  readonly streamsRefused = new Counter({
    name: 'stt_streams_refused_total',
    help: 'New live streams refused by admission: capacity (finals later than STREAM_MAX_FINAL_WAIT_MS), slow_start (near it, too soon after the last), capacity_forecast (one more would take the model past STREAM_MAX_LOAD).',
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
  readonly llmRequests = new Counter({
    name: 'stt_llm_requests_total',
    help: 'Chat model requests by model, backend (local|remote) and outcome (ok|error|aborted|rejected; rejected = queue full or 429 from the external server).',
    labelNames: ['model', 'backend', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly llmDuration = new Histogram({
    name: 'stt_llm_request_duration_seconds',
    help: 'Chat model request duration, queue wait included, by model, backend and outcome.',
    labelNames: ['model', 'backend', 'outcome'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
    registers: [this.registry],
  });
  readonly llmCompletionTokens = new Counter({
    name: 'stt_llm_generated_tokens_total',
    help: 'Tokens generated by the chat model (local: also those of cancelled generations; remote: as reported in usage).',
    labelNames: ['model', 'backend'] as const,
    registers: [this.registry],
  });
  readonly llmPromptTokens = new Counter({
    name: 'stt_llm_prompt_tokens_total',
    help: 'Prompt tokens evaluated by the chat model (local: requests that got a sequence; remote: as reported in usage).',
    labelNames: ['model', 'backend'] as const,
    registers: [this.registry],
  });
  readonly llmQueueDepth = new Gauge({
    name: 'stt_llm_queue_depth',
    help: 'Requests waiting for a sequence of the local chat model.',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly llmBusySequences = new Gauge({
    name: 'stt_llm_busy_sequences',
    help: 'Sequences of the local chat model generating (at most LLM_SEQUENCES).',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly llmQueueFull = new Counter({
    name: 'stt_llm_queue_full_total',
    help: 'Chat requests refused because the queue was full (local: LLM_MAX_QUEUE; remote: 429 from the server).',
    labelNames: ['model', 'backend'] as const,
    registers: [this.registry],
  });

  /** The observer a chat backend reports to (model id and backend as labels). */
  llmObserver(model: string, backend: 'local' | 'remote'): LlmObserver {
    return {
      request: (r) => {
        this.llmRequests.inc({ model, backend, outcome: r.outcome });
        this.llmDuration.observe({ model, backend, outcome: r.outcome }, r.seconds);
        if (r.outcome === 'rejected') this.llmQueueFull.inc({ model, backend });
        if (r.completionTokens) this.llmCompletionTokens.inc({ model, backend }, r.completionTokens);
        if (r.promptTokens) this.llmPromptTokens.inc({ model, backend }, r.promptTokens);
      },
      queue: (s) => {
        this.llmQueueDepth.set({ model }, s.waiting);
        this.llmBusySequences.set({ model }, s.busy);
      },
    };
  }

  /** Exports a model scheduler's busy fractions per priority (stt_scheduler_busy_ratio), read at scrape time. */
  watchSchedulerLoad(model: string, load: () => Record<string, number>): void {
    this.schedulerLoads.set(model, load);
  }

  /**
   * Exports a work queue's own counters (WORK_QUEUE=nats), read at scrape time:
   * stt_work_chunks_total{event} and stt_work_chunks_waiting.
   */
  watchWorkQueue(source: { stats: Readonly<Record<'dispatched' | 'results' | 'duplicates' | 'served' | 'redelivered', number>>; waiting: number }): void {
    new Counter({
      name: 'stt_work_chunks_total',
      help: 'File chunks over the JetStream work queue: dispatched and results (this server sent them), duplicates (redelivered results dropped), served and redelivered (this server decoded them as a worker; redelivered = another worker took it first and never acked).',
      labelNames: ['event'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [event, n] of Object.entries(source.stats)) this.inc({ event }, n);
      },
    });
    new Gauge({
      name: 'stt_work_chunks_waiting',
      help: 'Chunks this server dispatched that are still waiting for a worker result.',
      registers: [this.registry],
      collect() {
        this.set(source.waiting);
      },
    });
  }

  constructor(opts: { processMetrics?: boolean } = {}) {
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'stt_' });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
