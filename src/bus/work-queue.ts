/**
 * Work distribution over NATS JetStream (WORK_QUEUE=nats): the stream STT_WORK (work-queue
 * retention) over `stt.work.asr.<model>`, one durable pull consumer per model shared by every
 * worker, results on core NATS to the dispatching server (`stt.work.result.<server>.<job>`).
 *
 * Dispatcher: `dispatch()` publishes one work item (a chunk of PCM plus a small JSON head) and
 * resolves with the first result for its chunk id; redelivered duplicates are dropped. A caller that
 * aborts (client gone) stops waiting and the queued message is deleted; a chunk that no worker takes
 * or reports on within `timeoutMs` fails as 'unavailable' (503).
 *
 * Presence: a durable consumer outlives its workers, so "is anyone serving model M" is asked on core
 * NATS instead: every worker answers requests on `stt.work.presence.<model>` (one queue group) while it
 * serves M. No subscriber → NATS answers "no responders" at once, and `ensureWorker()` fails (503)
 * before the caller charges anything. A worker killed with -9 loses its connection and its
 * subscription with it.
 *
 * Worker: `serve()` pulls from a model's consumer (only as many messages as it has free slots),
 * runs the handler, publishes the result, then acks. While the handler runs it sends in-progress
 * acks (`msg.working()`) and tells the dispatcher it is alive. A worker that dies before acking
 * gets its chunk redelivered to another worker after `ackWaitMs` (up to WORK_MAX_DELIVER times).
 *
 * Wire format of a work message: u32 LE length of a UTF-8 JSON head, the head ({v, op, jobId,
 * chunkId, model, options, reply}), then the audio as int16 LE mono 16 kHz (30 s = 960 000 bytes;
 * nats-server's default max_payload of 1 MiB fits one 30 s chunk, which start() checks).
 * A handler's failure travels back as `{message, kind, retryAfterS}` (src/errors.ts) and is thrown
 * again on the dispatcher as the same kind of DomainError; the transports pick the codes.
 */
import { randomUUID } from 'node:crypto';
import { connect, headers, nanos, RequestError, type NatsConnection, type Subscription as NatsSubscription } from '@nats-io/transport-node';
import {
  jetstream,
  jetstreamManager,
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { DomainError, ERROR_KINDS, type ErrorKind } from '../errors.ts';

export const WORK_STREAM = 'STT_WORK';
export const WORK_SUBJECT_PREFIX = 'stt.work.asr';
export const WORK_RESULT_PREFIX = 'stt.work.result';
export const WORK_PRESENCE_PREFIX = 'stt.work.presence';
export const WORK_MAX_DELIVER = 3;
/** Bytes of one 30 s chunk (16 kHz int16) plus room for its JSON head and NATS headers. */
export const MIN_WORK_PAYLOAD = 30 * 16_000 * 2 + 16 * 1024;

export type WorkOp = 'transcribe' | 'detect';

export interface WorkHead {
  v: 1;
  op: WorkOp;
  jobId: string;
  chunkId: string;
  /** The model id as the dispatcher resolved it. */
  model: string;
  options?: unknown;
  /** Core NATS subject for the result. */
  reply: string;
}

export interface WorkItem {
  head: WorkHead;
  audio: Float32Array;
  /** 1 on first delivery, 2+ when another worker took it before and never acked. */
  deliveryCount: number;
}

/** Failures of the work queue itself (no worker, timeout, payload too large): 'unavailable', an operational condition (not logged as a fault). */
export class WorkQueueError extends DomainError {
  constructor(message: string, opts: { retryAfterS?: number } = {}) {
    super('unavailable', message, { retryAfterS: opts.retryAfterS, expected: true });
    this.name = 'WorkQueueError';
  }
}

/** A handler's failure as it crosses NATS: the kind and message of a DomainError, nothing of a transport. */
export interface WireError {
  message: string;
  kind?: ErrorKind;
  retryAfterS?: number;
}

export function errorToWire(err: unknown): WireError {
  const message = err instanceof Error ? err.message : String(err);
  if (!(err instanceof DomainError)) return { message };
  return err.retryAfterS === undefined ? { message, kind: err.kind } : { message, kind: err.kind, retryAfterS: err.retryAfterS };
}

/** The dispatcher's side: a DomainError of the same kind, or a plain Error (an internal fault) when the worker sent none we know. */
export function errorFromWire(w: WireError): Error {
  const kind = typeof w.kind === 'string' && (ERROR_KINDS as readonly string[]).includes(w.kind) ? w.kind : undefined;
  if (!kind) return new Error(w.message);
  return new DomainError(kind, w.message, typeof w.retryAfterS === 'number' ? { retryAfterS: w.retryAfterS } : {});
}

/** A model id as one subject token / consumer name: characters NATS forbids there become `_`. */
export function modelToken(model: string): string {
  return model.replace(/[^A-Za-z0-9_-]/g, '_');
}
export const workSubject = (model: string) => `${WORK_SUBJECT_PREFIX}.${modelToken(model)}`;
export const workConsumerName = (model: string) => `asr-${modelToken(model)}`;
export const workPresenceSubject = (model: string) => `${WORK_PRESENCE_PREFIX}.${modelToken(model)}`;
/** Retry-After (seconds) of the 503 for "no live worker". */
export const NO_WORKER_RETRY_AFTER_S = 30;

/** float32 [-1, 1] → int16 LE. Exact for samples of 16-bit sources (k / 32768), as ffmpeg decodes them. */
export function encodeWork(head: WorkHead, audio: Float32Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(head, numberReplacer));
  const out = new Uint8Array(4 + json.length + audio.length * 2);
  const view = new DataView(out.buffer);
  view.setUint32(0, json.length, true);
  out.set(json, 4);
  let p = 4 + json.length;
  for (let i = 0; i < audio.length; i++, p += 2) {
    const v = Math.round(audio[i] * 32768);
    view.setInt16(p, v > 32767 ? 32767 : v < -32768 ? -32768 : v, true);
  }
  return out;
}

export function decodeWork(data: Uint8Array): { head: WorkHead; audio: Float32Array } {
  if (data.length < 4) throw new Error('work message too short');
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const n = view.getUint32(0, true);
  if (4 + n > data.length || (data.length - 4 - n) % 2) throw new Error('malformed work message');
  const head = JSON.parse(new TextDecoder().decode(data.subarray(4, 4 + n)), numberReviver) as WorkHead;
  if (head?.v !== 1 || !head.chunkId || !head.reply || !head.model) throw new Error('unknown work message version or missing fields');
  const samples = (data.length - 4 - n) / 2;
  const audio = new Float32Array(samples);
  for (let i = 0, p = 4 + n; i < samples; i++, p += 2) audio[i] = view.getInt16(p, true) / 32768;
  return { head, audio };
}

/** JSON keeps NaN / ±Infinity (e.g. an avgLogprob of -Infinity) instead of turning them into null. */
function numberReplacer(_k: string, v: unknown): unknown {
  return typeof v === 'number' && !Number.isFinite(v) ? { $num: String(v) } : v;
}
function numberReviver(_k: string, v: unknown): unknown {
  if (v && typeof v === 'object' && !Array.isArray(v) && '$num' in v && Object.keys(v).length === 1) return Number((v as { $num: string }).$num);
  return v;
}
export const encodeJson = (x: unknown) => JSON.stringify(x, numberReplacer);
export const decodeJson = <T>(s: string) => JSON.parse(s, numberReviver) as T;

/** What travels back to the dispatcher on `head.reply`. */
type WorkReply =
  | { chunkId: string; kind: 'working'; worker: string }
  | { chunkId: string; kind: 'result'; worker: string; result: unknown }
  | { chunkId: string; kind: 'error'; worker: string; error: WireError };

export interface NatsWorkQueueOptions {
  /** One URL or a comma-separated list. */
  url: string;
  logger: Logger;
  /** This server's id in result subjects (default: random). */
  serverId?: string;
  /** Consumer ack wait: a taken chunk with no ack or in-progress ack for this long is redelivered (default 60 s). */
  ackWaitMs?: number;
  /** A dispatched chunk with no sign of a worker for this long fails with 503 (default 120 s). */
  timeoutMs?: number;
  /** Retention of unconsumed work (default 1 h). */
  maxAgeMs?: number;
  connectTimeoutMs?: number;
  drainTimeoutMs?: number;
}

interface Pending {
  resolve: (r: unknown) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
  arm: () => void;
}

export type WorkHandler = (item: WorkItem) => Promise<unknown>;

export class NatsWorkQueue {
  readonly serverId: string;
  private nc: NatsConnection | null = null;
  private js: JetStreamClient | null = null;
  private jsm: JetStreamManager | null = null;
  private resultsSub: NatsSubscription | null = null;
  private readonly pending = new Map<string, Pending>();
  private readonly consumerSeen = new Map<string, number>();
  private readonly workerSeen = new Map<string, number>();
  private readonly presenceSubs: NatsSubscription[] = [];
  private readonly fetches = new Set<ConsumerMessages>();
  private readonly loops: Promise<void>[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private readonly inflightMsgs = new Set<JsMsg>();
  private stopping = false;
  private closed = false;
  private readonly log: Logger;
  private readonly ackWaitMs: number;
  private readonly timeoutMs: number;
  /** Largest message the server accepts (its max_payload). */
  maxPayload = 0;
  /** Dispatcher: items sent, results taken, duplicate results dropped. Worker: items served, of which redeliveries (another worker took them first and never acked). */
  readonly stats = { dispatched: 0, results: 0, duplicates: 0, served: 0, redelivered: 0 };

  /** Dispatched chunks still waiting for their result. */
  get waiting(): number {
    return this.pending.size;
  }

  constructor(private readonly opts: NatsWorkQueueOptions) {
    this.log = opts.logger;
    this.serverId = opts.serverId ?? randomUUID().replace(/-/g, '');
    this.ackWaitMs = opts.ackWaitMs ?? 60_000;
    this.timeoutMs = opts.timeoutMs ?? 120_000;
  }

  async start(): Promise<void> {
    const servers = this.opts.url
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    try {
      this.nc = await connect({ servers, name: `open-stt-work-${this.serverId}`, timeout: this.opts.connectTimeoutMs ?? 5000, maxReconnectAttempts: -1, waitOnFirstConnect: false });
    } catch (err) {
      throw new WorkQueueError(`cannot connect to NATS for the work queue: ${(err as Error).message}`);
    }
    const nc = this.nc;
    this.maxPayload = nc.info?.max_payload ?? 0;
    if (this.maxPayload < MIN_WORK_PAYLOAD) {
      await nc.close().catch(() => {});
      throw new WorkQueueError(
        `the NATS server's max_payload is ${this.maxPayload} bytes; the work queue needs at least ${MIN_WORK_PAYLOAD} (one 30 s chunk as 16-bit PCM). Set max_payload: 2MB (or more) in nats-server.conf`,
      );
    }
    try {
      this.jsm = await jetstreamManager(nc);
      await this.ensureStream(this.jsm);
      this.js = jetstream(nc);
    } catch (err) {
      await nc.close().catch(() => {});
      throw new WorkQueueError(`WORK_QUEUE=nats needs JetStream on the NATS server (nats-server -js); setting up stream ${WORK_STREAM} failed: ${(err as Error).message}`);
    }
    this.resultsSub = nc.subscribe(`${WORK_RESULT_PREFIX}.${this.serverId}.>`, {
      callback: (err, m) => {
        if (err) return this.log.error({ err }, 'work result subscription failed');
        let r: WorkReply;
        try {
          r = decodeJson<WorkReply>(m.string());
        } catch (e) {
          return this.log.warn({ err: e, subject: m.subject }, 'dropping a work result that is not JSON');
        }
        this.onReply(r);
      },
    });
    await nc.flush();
    this.log.info({ stream: WORK_STREAM, serverId: this.serverId, maxPayload: this.maxPayload }, 'work queue ready');
  }

  private async ensureStream(jsm: JetStreamManager): Promise<void> {
    try {
      await jsm.streams.info(WORK_STREAM);
      return;
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err;
    }
    try {
      await jsm.streams.add({
        name: WORK_STREAM,
        subjects: [`${WORK_SUBJECT_PREFIX}.>`],
        retention: RetentionPolicy.Workqueue,
        storage: StorageType.File,
        discard: DiscardPolicy.Old,
        max_age: nanos(this.opts.maxAgeMs ?? 3600_000),
      });
      this.log.info({ stream: WORK_STREAM }, 'created JetStream work stream');
    } catch (err) {
      if (!/already in use/i.test(String((err as Error).message))) throw err;
    }
  }

  private conn(): { nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager } {
    if (this.closed || this.stopping) throw new WorkQueueError('the work queue is shutting down; retry shortly');
    if (!this.nc || !this.js || !this.jsm) throw new WorkQueueError('work queue not started');
    return { nc: this.nc, js: this.js, jsm: this.jsm };
  }

  // ───────────── dispatcher ─────────────

  private onReply(r: WorkReply): void {
    const p = this.pending.get(r.chunkId);
    if (!p) {
      if (r.kind !== 'working') this.stats.duplicates++;
      return;
    }
    if (r.kind === 'working') return p.arm();
    this.pending.delete(r.chunkId);
    clearTimeout(p.timer);
    this.stats.results++;
    if (r.kind === 'result') p.resolve(r.result);
    else p.reject(errorFromWire(r.error));
  }

  /** Fails fast (503) when no worker ever created the model's consumer. Cached for 10 s. */
  private async assertConsumer(jsm: JetStreamManager, model: string): Promise<void> {
    const name = workConsumerName(model);
    if ((this.consumerSeen.get(name) ?? 0) > Date.now()) return;
    try {
      await jsm.consumers.info(WORK_STREAM, name);
    } catch (err) {
      if (err instanceof JetStreamApiError && (err.code === JetStreamApiCodes.ConsumerNotFound || err.code === JetStreamApiCodes.StreamNotFound)) {
        throw new WorkQueueError(`No worker serves model '${model}' on the work queue (no consumer ${name} on stream ${WORK_STREAM}): start a server with WORKER=true that has this model installed`);
      }
      throw err;
    }
    this.consumerSeen.set(name, Date.now() + 10_000);
  }

  /**
   * Fails fast (503 + Retry-After) unless a live worker serves `model` right now: one presence
   * request on core NATS. No subscriber → "no responders" at once (every worker of the model is gone,
   * even though its durable consumer remains). A subscriber that does not answer in time (its event
   * loop busy) counts as alive: the dispatch timeout still covers a worker that is really stuck.
   * A positive answer is cached for 1 s.
   */
  async ensureWorker(model: string): Promise<void> {
    const { nc } = this.conn();
    const subject = workPresenceSubject(model);
    if ((this.workerSeen.get(subject) ?? 0) > Date.now()) return;
    try {
      await nc.request(subject, '', { timeout: 3000 });
    } catch (err) {
      if (!(err instanceof RequestError && err.isNoResponders())) {
        this.log.warn({ err, model }, 'work presence request got no answer; assuming a busy worker');
        return;
      }
      throw new WorkQueueError(
        `No worker is running for model '${model}' (work queue ${WORK_STREAM}): nothing was charged. Retry later, or start a server with WORKER=true that has this model installed.`,
        { retryAfterS: NO_WORKER_RETRY_AFTER_S },
      );
    }
    this.workerSeen.set(subject, Date.now() + 1000);
  }

  /**
   * Publishes one work item and resolves with the first result a worker sends for it.
   * Rejects with `signal.reason` on abort, or WorkQueueError on timeout / too large / no worker.
   */
  async dispatch<T>(op: WorkOp, model: string, audio: Float32Array, ctl: { jobId: string; options?: unknown; signal?: AbortSignal }): Promise<T> {
    const { js, jsm } = this.conn();
    ctl.signal?.throwIfAborted();
    const chunkId = randomUUID();
    const head: WorkHead = { v: 1, op, jobId: ctl.jobId, chunkId, model, options: ctl.options, reply: `${WORK_RESULT_PREFIX}.${this.serverId}.${modelToken(ctl.jobId)}` };
    const payload = encodeWork(head, audio);
    if (!this.fits(audio.length)) {
      throw new WorkQueueError(
        `This piece of audio (${(audio.length / 16_000).toFixed(1)} s, ${payload.length} bytes as 16-bit PCM) exceeds the NATS server's max_payload of ${this.maxPayload} bytes. Use vad=true (≤ 30 s chunks) or raise max_payload in nats-server.conf`,
      );
    }
    await this.assertConsumer(jsm, model);
    ctl.signal?.throwIfAborted();

    let seq: number | null = null;
    let settled = false;
    const forget = () => {
      // Not needed any more: take it off the queue if no worker has it yet (best effort).
      if (seq !== null) void jsm.streams.deleteMessage(WORK_STREAM, seq, false).catch(() => {});
    };
    const result = new Promise<T>((resolve, reject) => {
      const p: Pending = {
        resolve: (r) => {
          settled = true;
          ctl.signal?.removeEventListener('abort', onAbort);
          resolve(r as T);
        },
        reject: (e) => {
          settled = true;
          ctl.signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
        timer: undefined as unknown as NodeJS.Timeout,
        arm: () => {
          clearTimeout(p.timer);
          p.timer = setTimeout(() => {
            if (this.pending.get(chunkId) !== p) return;
            this.pending.delete(chunkId);
            forget();
            p.reject(
              new WorkQueueError(
                `No worker answered for a chunk of model '${model}' within ${Math.round(this.timeoutMs / 1000)} s (work queue ${WORK_STREAM}): workers are down or far behind; retry later`,
              ),
            );
          }, this.timeoutMs);
        },
      };
      const onAbort = () => {
        if (this.pending.get(chunkId) !== p) return;
        this.pending.delete(chunkId);
        clearTimeout(p.timer);
        forget();
        p.reject(ctl.signal!.reason ?? new Error('aborted'));
      };
      ctl.signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(chunkId, p);
      p.arm();
    });
    try {
      const h = headers();
      h.set('Stt-Job', modelToken(ctl.jobId));
      h.set('Stt-Chunk', chunkId);
      const ack = await js.publish(workSubject(model), payload, { msgID: chunkId, headers: h, timeout: 10_000 });
      seq = ack.seq;
      this.stats.dispatched++;
      if (settled) forget();
    } catch (err) {
      const p = this.pending.get(chunkId);
      if (p) {
        this.pending.delete(chunkId);
        clearTimeout(p.timer);
        p.reject(new WorkQueueError(`could not queue work on ${WORK_STREAM}: ${(err as Error).message}`));
      }
    }
    return result;
  }

  /** Whether `samples` of audio fit in one message under the server's max_payload. */
  fits(samples: number): boolean {
    return samples * 2 + 16 * 1024 <= this.maxPayload;
  }

  // ───────────── worker ─────────────

  /** Creates (or updates) the model's durable pull consumer and pulls from it until close(). */
  async serve(model: string, handler: WorkHandler, opts: { concurrency: number }): Promise<void> {
    const { jsm, js } = this.conn();
    const name = workConsumerName(model);
    const want: Partial<ConsumerConfig> = {
      durable_name: name,
      filter_subject: workSubject(model),
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(this.ackWaitMs),
      max_deliver: WORK_MAX_DELIVER,
      max_ack_pending: -1,
    };
    let info;
    try {
      info = await jsm.consumers.info(WORK_STREAM, name);
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound)) throw err;
      await jsm.consumers.add(WORK_STREAM, want);
    }
    if (info && (info.config.ack_wait !== want.ack_wait || info.config.max_deliver !== want.max_deliver)) {
      await jsm.consumers.update(WORK_STREAM, name, { ack_wait: want.ack_wait, max_deliver: want.max_deliver });
      this.log.info({ consumer: name, ackWaitMs: this.ackWaitMs }, 'updated work consumer');
    }
    const consumer = await js.consumers.get(WORK_STREAM, name);
    // Presence: answer "serving" while this process pulls for the model (see ensureWorker).
    const nc = this.nc!;
    this.presenceSubs.push(
      nc.subscribe(workPresenceSubject(model), {
        queue: 'workers',
        callback: (err, m) => {
          if (err || this.stopping) return;
          m.respond(JSON.stringify({ worker: this.serverId }));
        },
      }),
    );
    this.log.info({ model, consumer: name, concurrency: opts.concurrency }, 'serving work');
    const concurrency = Math.max(1, opts.concurrency);
    const loop = (async () => {
      let busy = 0;
      let freed: (() => void) | null = null;
      while (!this.stopping) {
        while (busy >= concurrency && !this.stopping) await new Promise<void>((r) => (freed = r));
        if (this.stopping) break;
        let batch: ConsumerMessages;
        try {
          batch = await consumer.fetch({ max_messages: concurrency - busy, expires: 5000 });
        } catch (err) {
          if (this.stopping) break;
          this.log.warn({ err, consumer: name }, 'work fetch failed; retrying');
          await new Promise((r) => setTimeout(r, 1000));
          continue;
        }
        this.fetches.add(batch);
        try {
          for await (const m of batch) {
            if (this.stopping) {
              m.nak();
              continue;
            }
            busy++;
            const run = this.handle(m, handler).finally(() => {
              busy--;
              this.inflight.delete(run);
              freed?.();
              freed = null;
            });
            this.inflight.add(run);
          }
        } catch (err) {
          if (!this.stopping) this.log.warn({ err, consumer: name }, 'work fetch ended with an error');
        } finally {
          this.fetches.delete(batch);
        }
      }
      (freed as (() => void) | null)?.();
    })();
    this.loops.push(loop);
  }

  private async handle(m: JsMsg, handler: WorkHandler): Promise<void> {
    let item: WorkItem;
    try {
      const { head, audio } = decodeWork(m.data);
      item = { head, audio, deliveryCount: m.info.deliveryCount };
    } catch (err) {
      this.log.error({ err, subject: m.subject }, 'dropping a malformed work message');
      m.term('malformed');
      return;
    }
    const { head } = item;
    const nc = this.nc!;
    const reply = (r: WorkReply) => {
      try {
        nc.publish(head.reply, encodeJson(r));
      } catch (err) {
        this.log.warn({ err, chunkId: head.chunkId }, 'could not publish a work reply');
      }
    };
    this.inflightMsgs.add(m);
    reply({ chunkId: head.chunkId, kind: 'working', worker: this.serverId });
    const beat = setInterval(
      () => {
        m.working();
        reply({ chunkId: head.chunkId, kind: 'working', worker: this.serverId });
      },
      Math.max(500, Math.floor(Math.min(this.ackWaitMs, this.timeoutMs) / 3)),
    );
    try {
      const result = await handler(item);
      reply({ chunkId: head.chunkId, kind: 'result', worker: this.serverId, result });
      // Result first, then ack: a crash in between means a redelivery and a duplicate result (dropped), never a lost chunk.
      await nc.flush().catch(() => {});
      m.ack();
      this.stats.served++;
      if (item.deliveryCount > 1) this.stats.redelivered++;
    } catch (err) {
      if (this.stopping || (err instanceof DomainError && err.kind === 'unavailable')) {
        // Shutting down / model closing or missing here: let another worker have it now.
        m.nak();
      } else {
        this.log.warn({ err, chunkId: head.chunkId, model: head.model }, 'work item failed');
        reply({ chunkId: head.chunkId, kind: 'error', worker: this.serverId, error: errorToWire(err) });
        await nc.flush().catch(() => {});
        m.term('failed');
      }
    } finally {
      clearInterval(beat);
      this.inflightMsgs.delete(m);
    }
  }

  /** Stops pulling, lets running items finish (up to `graceMs`, then naks them), fails waiting dispatches, drains. */
  async close(graceMs = 10_000): Promise<void> {
    if (this.closed) return;
    this.stopping = true;
    // New requests must not be admitted on the strength of a worker that is leaving.
    for (const sub of this.presenceSubs.splice(0)) sub.unsubscribe();
    for (const f of this.fetches) {
      try {
        f.stop();
      } catch {
        /* already done */
      }
    }
    if (this.inflight.size) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...this.inflight]), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
      for (const m of this.inflightMsgs) m.nak();
    }
    await Promise.allSettled(this.loops);
    this.closed = true;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new WorkQueueError('the work queue is shutting down; retry shortly'));
      this.pending.delete(id);
    }
    const nc = this.nc;
    if (nc && !nc.isClosed()) {
      let timer: NodeJS.Timeout | undefined;
      const drained = nc.drain().catch(() => {});
      const timedOut = new Promise<void>((r) => (timer = setTimeout(r, this.opts.drainTimeoutMs ?? 5000)));
      await Promise.race([drained, timedOut]);
      clearTimeout(timer);
      if (!nc.isClosed()) await nc.close().catch(() => {});
    }
  }
}
