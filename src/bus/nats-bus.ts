/**
 * NATS bus (NATS_URL set): core NATS publish/subscribe for live fan-out between servers, plus a
 * JetStream stream STT_SESSIONS capturing `stt.session.>` (limits retention, max age 24 h by
 * default) so that a listener joining late can replay a session from its start.
 *
 * Session subjects are published through JetStream (acknowledged: once publish() resolves the
 * message is stored and replayable); other subjects, or every subject when the server has no
 * JetStream, use core publish. Core subscribers receive both kinds alike.
 *
 * Reconnects are unlimited; subscriptions are restored by the client; status changes are logged.
 * close() drains: pending publishes are flushed and in-flight messages delivered before closing.
 */
import { connect, nanos, type NatsConnection, type Subscription as NatsSubscription } from '@nats-io/transport-node';
import {
  jetstream,
  jetstreamManager,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import type { Logger } from 'pino';
import {
  BusError,
  DEFAULT_MAX_PENDING,
  PushSubscription,
  SESSIONS_STREAM_SUBJECTS,
  assertReplayable,
  assertValidPattern,
  assertValidSubject,
  subjectMatches,
  type Bus,
  type BusMessage,
  type ReplayOptions,
  type Subscription,
} from './bus.ts';

export const SESSIONS_STREAM = 'STT_SESSIONS';

export interface NatsBusOptions {
  /** One URL or a comma-separated list (nats://host:4222,nats://other:4222). */
  url: string;
  logger: Logger;
  /** Connection name shown by the server's monitoring. */
  name?: string;
  /** Replay retention of the STT_SESSIONS stream (default 24 h). */
  streamMaxAgeMs?: number;
  /** Optional byte cap of the stream (-1/undefined = unlimited; oldest discarded first). */
  streamMaxBytes?: number;
  /** Use JetStream for persistence and replay (default true; degrades to core NATS with a warning if the server lacks it). */
  jetstream?: boolean;
  connectTimeoutMs?: number;
  reconnectTimeWaitMs?: number;
  /** How long close() waits for the drain before closing hard (default 5 s). */
  drainTimeoutMs?: number;
  /** How long a session-subject publish waits for JetStream's acknowledgement (default 5 s). */
  publishTimeoutMs?: number;
  maxPending?: number;
}

/** `nats://user:secret@host` → `nats://user:***@host`, for logs and errors. */
function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):([^@/]+)@/g, '//$1:***@').replace(/\/\/([^:@/]+)@/g, '//***@');
}

export class NatsBus implements Bus {
  private nc: NatsConnection | null = null;
  private js: JetStreamClient | null = null;
  private jsm: JetStreamManager | null = null;
  private readonly subs = new Set<PushSubscription<any>>();
  private readonly replays = new Set<ConsumerMessages>();
  private starting: Promise<void> | null = null;
  private isClosed = false;
  private statusLoop: Promise<void> | null = null;
  private readonly log: Logger;
  private readonly maxAgeMs: number;

  constructor(private readonly opts: NatsBusOptions) {
    this.log = opts.logger;
    this.maxAgeMs = opts.streamMaxAgeMs ?? 24 * 3600 * 1000;
    if (!(this.maxAgeMs > 0)) throw new BusError('streamMaxAgeMs must be positive');
  }

  /** Whether JetStream (persistence + replay) is in use. */
  get jetstreamEnabled(): boolean {
    return this.js !== null;
  }

  start(): Promise<void> {
    if (this.isClosed) return Promise.reject(new BusError('bus is closed'));
    this.starting ??= this.doStart().catch((err) => {
      this.starting = null;
      throw err;
    });
    return this.starting;
  }

  private async doStart(): Promise<void> {
    const servers = this.opts.url
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers,
        name: this.opts.name ?? 'open-stt-server',
        timeout: this.opts.connectTimeoutMs ?? 5000,
        maxReconnectAttempts: -1,
        reconnectTimeWait: this.opts.reconnectTimeWaitMs ?? 1000,
        waitOnFirstConnect: false,
      });
    } catch (err) {
      throw new BusError(`cannot connect to NATS at ${redact(this.opts.url)}: ${(err as Error).message}`);
    }
    this.nc = nc;
    this.statusLoop = this.watchStatus(nc);
    this.log.info({ server: nc.getServer() }, 'connected to NATS');

    if (this.opts.jetstream !== false) {
      try {
        this.jsm = await jetstreamManager(nc);
        await this.ensureStream(this.jsm);
        this.js = jetstream(nc);
      } catch (err) {
        this.jsm = null;
        this.js = null;
        if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.JetStreamNotEnabledForAccount) {
          this.log.warn('NATS server has no JetStream: live fan-out only, no replay');
        } else if ((err as Error).name === 'JetStreamNotEnabled' || /jetstream (is )?not enabled/i.test(String((err as Error).message))) {
          this.log.warn({ err }, 'NATS server has no JetStream: live fan-out only, no replay');
        } else {
          await nc.close().catch(() => {});
          this.nc = null;
          throw new BusError(`cannot set up JetStream stream ${SESSIONS_STREAM}: ${(err as Error).message}`);
        }
      }
    }
  }

  private streamConfig(): Partial<StreamConfig> & { name: string } {
    const maxAge = nanos(this.maxAgeMs);
    return {
      name: SESSIONS_STREAM,
      subjects: [SESSIONS_STREAM_SUBJECTS],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: maxAge,
      max_bytes: this.opts.streamMaxBytes ?? -1,
      // The duplicate window may not exceed max_age (default 2 min).
      duplicate_window: Math.min(nanos(120_000), maxAge),
    };
  }

  /** Creates STT_SESSIONS, or updates its limits when another server (or an older config) made it differently. */
  private async ensureStream(jsm: JetStreamManager): Promise<void> {
    const want = this.streamConfig();
    for (let attempt = 0; attempt < 3; attempt++) {
      let info;
      try {
        info = await jsm.streams.info(SESSIONS_STREAM);
      } catch (err) {
        if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err;
        try {
          await jsm.streams.add(want);
          this.log.info({ stream: SESSIONS_STREAM, maxAgeMs: this.maxAgeMs }, 'created JetStream stream');
          return;
        } catch (addErr) {
          // Another server created it at the same moment: look again.
          if (/already in use/i.test(String((addErr as Error).message))) continue;
          throw addErr;
        }
      }
      const c = info.config;
      if (c.max_age !== want.max_age || c.max_bytes !== want.max_bytes || !(c.subjects ?? []).includes(SESSIONS_STREAM_SUBJECTS)) {
        await jsm.streams.update(SESSIONS_STREAM, {
          subjects: Array.from(new Set([...(c.subjects ?? []), SESSIONS_STREAM_SUBJECTS])),
          max_age: want.max_age,
          max_bytes: want.max_bytes,
          duplicate_window: want.duplicate_window,
        });
        this.log.info({ stream: SESSIONS_STREAM, maxAgeMs: this.maxAgeMs }, 'updated JetStream stream limits');
      }
      return;
    }
    throw new BusError(`could not create or find JetStream stream ${SESSIONS_STREAM}`);
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    try {
      for await (const s of nc.status()) {
        switch (s.type) {
          case 'disconnect':
            this.log.warn({ server: s.server }, 'NATS disconnected; reconnecting');
            break;
          case 'reconnect':
            this.log.info({ server: s.server }, 'NATS reconnected');
            break;
          case 'ldm':
            this.log.warn({ server: s.server }, 'NATS server entering lame duck mode');
            break;
          case 'error':
            this.log.error({ err: s.error }, 'NATS error');
            break;
          case 'slowConsumer':
            this.log.warn({ subject: s.sub.getSubject(), pending: s.pending }, 'NATS slow consumer');
            break;
          default:
            break;
        }
      }
    } catch {
      // the iterator ends when the connection closes
    }
    const err = await nc.closed();
    if (err && !this.isClosed) this.log.error({ err }, 'NATS connection closed with an error');
  }

  private conn(): NatsConnection {
    if (this.isClosed) throw new BusError('bus is closed');
    if (!this.nc) throw new BusError('bus not started: call start() first');
    return this.nc;
  }

  async publish(subject: string, msg: unknown): Promise<void> {
    const nc = this.conn();
    assertValidSubject(subject);
    const json = JSON.stringify(msg);
    if (json === undefined) throw new BusError(`cannot publish ${typeof msg} on ${subject}: not JSON-serialisable`);
    if (this.js && subjectMatches(SESSIONS_STREAM_SUBJECTS, subject)) {
      await this.js.publish(subject, json, { timeout: this.opts.publishTimeoutMs ?? 5000 });
    } else {
      nc.publish(subject, json);
    }
  }

  subscribe<T = unknown>(pattern: string): Subscription<T> {
    const nc = this.conn();
    assertValidPattern(pattern);
    let natsSub: NatsSubscription | undefined;
    const sub: PushSubscription<T> = new PushSubscription<T>(
      pattern,
      () => {
        this.subs.delete(sub);
        try {
          natsSub?.unsubscribe();
        } catch {
          // connection already closed
        }
      },
      () => (this.nc && !this.nc.isClosed() && !this.nc.isDraining() ? this.nc.flush() : Promise.resolve()),
      this.opts.maxPending ?? DEFAULT_MAX_PENDING,
    );
    natsSub = nc.subscribe(pattern, {
      callback: (err, m) => {
        if (err) {
          this.log.error({ err, subject: pattern }, 'NATS subscription failed');
          this.subs.delete(sub);
          sub.end(err);
          return;
        }
        let data: T;
        try {
          data = m.json<T>();
        } catch (e) {
          this.log.warn({ subject: m.subject, err: e }, 'dropping a bus message that is not JSON');
          return;
        }
        sub.push({ subject: m.subject, data });
      },
    });
    void natsSub.closed.then(() => {
      this.subs.delete(sub);
      sub.end();
    });
    this.subs.add(sub);
    return sub;
  }

  replay<T = unknown>(pattern: string, opts: ReplayOptions = {}): AsyncIterable<BusMessage<T>> {
    this.conn();
    assertValidPattern(pattern);
    if (!this.js || !this.jsm) throw new BusError('replay needs JetStream, which this NATS server does not have');
    assertReplayable(pattern);
    return this.replayGen<T>(this.js, this.jsm, pattern, opts.follow === true);
  }

  private async *replayGen<T>(js: JetStreamClient, jsm: JetStreamManager, pattern: string, follow: boolean): AsyncGenerator<BusMessage<T>> {
    if (!follow) {
      // An ordered consumer waits forever when nothing matches: learn first whether anything is stored.
      const si = await jsm.streams.info(SESSIONS_STREAM, { subjects_filter: pattern });
      const stored = Object.values(si.state.subjects ?? {}).reduce((a, b) => a + b, 0);
      if (stored === 0) return;
    }
    const consumer = await js.consumers.get(SESSIONS_STREAM, {
      filter_subjects: pattern,
      deliver_policy: DeliverPolicy.All,
    });
    const messages = await consumer.consume();
    this.replays.add(messages);
    try {
      for await (const m of messages) {
        let data: T;
        try {
          data = m.json<T>();
        } catch (e) {
          this.log.warn({ subject: m.subject, err: e }, 'skipping a stored bus message that is not JSON');
          if (!follow && m.info.pending === 0) break;
          continue;
        }
        yield { subject: m.subject, data };
        if (!follow && m.info.pending === 0) break;
      }
    } finally {
      this.replays.delete(messages);
      await messages.close().catch(() => {});
    }
  }

  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    await this.starting?.catch(() => {});
    const nc = this.nc;
    for (const r of this.replays) await r.close().catch(() => {});
    this.replays.clear();
    if (nc && !nc.isClosed()) {
      const timeoutMs = this.opts.drainTimeoutMs ?? 5000;
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), timeoutMs);
      });
      const drained = nc.drain().then(
        () => 'drained' as const,
        (err: unknown) => {
          this.log.warn({ err }, 'NATS drain failed');
          return 'failed' as const;
        },
      );
      const outcome = await Promise.race([drained, timedOut]);
      clearTimeout(timer);
      if (outcome !== 'drained') {
        if (outcome === 'timeout') this.log.warn({ timeoutMs }, 'NATS drain timed out; closing');
        await nc.close().catch(() => {});
      }
    }
    for (const s of this.subs) s.end();
    this.subs.clear();
    await this.statusLoop;
    this.log.debug('NATS bus closed');
  }
}
