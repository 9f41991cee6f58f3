/**
 * The default bus: one process, rxjs Subject fan-out, NATS wildcard semantics. Messages are
 * JSON round-tripped on publish so that listeners see exactly what they would over NATS (and
 * cannot mutate the publisher's object). Session subjects (`stt.session.>`) are also kept in a
 * bounded in-memory history for replay(), mirroring the JetStream stream of NatsBus.
 */
import { Subject, filter, type Subscription as RxSubscription } from 'rxjs';
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

export { subjectMatches } from './bus.ts';

export interface InProcessBusOptions {
  logger?: Logger;
  /** How long session messages are kept for replay (default 24 h; 0 = no history). */
  historyMaxAgeMs?: number;
  /** At most this many session messages are kept for replay (oldest dropped first; default 100 000). */
  historyMaxMessages?: number;
  /** Per-subscription iterator buffer (slow consumer drops the oldest beyond it). */
  maxPending?: number;
  /** Clock, for tests. */
  now?: () => number;
}

interface Stored {
  at: number;
  msg: BusMessage;
}

export class InProcessBus implements Bus {
  private readonly subject = new Subject<BusMessage>();
  private readonly subs = new Set<PushSubscription<any>>();
  private history: Stored[] = [];
  private historyStart = 0; // index of the first live entry (amortised pruning)
  private started = false;
  private isClosed = false;
  private readonly maxAgeMs: number;
  private readonly maxMessages: number;
  private readonly maxPending: number;
  private readonly now: () => number;

  constructor(private readonly opts: InProcessBusOptions = {}) {
    this.maxAgeMs = opts.historyMaxAgeMs ?? 24 * 3600 * 1000;
    this.maxMessages = opts.historyMaxMessages ?? 100_000;
    this.maxPending = opts.maxPending ?? DEFAULT_MAX_PENDING;
    this.now = opts.now ?? Date.now;
  }

  async start(): Promise<void> {
    if (this.isClosed) throw new BusError('bus is closed');
    this.started = true;
  }

  private ensureOpen(): void {
    if (this.isClosed) throw new BusError('bus is closed');
    if (!this.started) throw new BusError('bus not started: call start() first');
  }

  async publish(subject: string, msg: unknown): Promise<void> {
    this.ensureOpen();
    assertValidSubject(subject);
    const json = JSON.stringify(msg);
    if (json === undefined) throw new BusError(`cannot publish ${typeof msg} on ${subject}: not JSON-serialisable`);
    const message: BusMessage = { subject, data: JSON.parse(json) };
    if (this.maxAgeMs > 0 && this.maxMessages > 0 && subjectMatches(SESSIONS_STREAM_SUBJECTS, subject)) {
      this.history.push({ at: this.now(), msg: message });
      this.prune();
    }
    this.subject.next(message);
  }

  subscribe<T = unknown>(pattern: string): Subscription<T> {
    this.ensureOpen();
    assertValidPattern(pattern);
    let rx: RxSubscription | undefined;
    const sub: PushSubscription<T> = new PushSubscription<T>(
      pattern,
      () => {
        rx?.unsubscribe();
        this.subs.delete(sub);
      },
      undefined,
      this.maxPending,
    );
    rx = this.subject.pipe(filter((m) => subjectMatches(pattern, m.subject))).subscribe((m) => {
      // Each subscriber gets its own copy, like separate NATS deliveries.
      sub.push({ subject: m.subject, data: structuredClone(m.data) as T });
    });
    this.subs.add(sub);
    return sub;
  }

  replay<T = unknown>(pattern: string, opts: ReplayOptions = {}): AsyncIterable<BusMessage<T>> {
    this.ensureOpen();
    assertValidPattern(pattern);
    assertReplayable(pattern);
    return {
      [Symbol.asyncIterator]: () => {
        this.prune();
        // Snapshot + live subscription taken synchronously together: nothing is missed or duplicated.
        const stored = this.history
          .slice(this.historyStart)
          .filter((s) => subjectMatches(pattern, s.msg.subject))
          .map((s) => ({ subject: s.msg.subject, data: structuredClone(s.msg.data) as T }));
        const live = opts.follow && !this.isClosed ? this.subscribe<T>(pattern) : null;
        let i = 0;
        const liveIt = live?.[Symbol.asyncIterator]();
        return {
          next: async (): Promise<IteratorResult<BusMessage<T>>> => {
            if (i < stored.length) return { value: stored[i++]!, done: false };
            if (liveIt) return liveIt.next();
            return { value: undefined, done: true };
          },
          return: async (): Promise<IteratorResult<BusMessage<T>>> => {
            i = stored.length;
            live?.unsubscribe();
            return { value: undefined, done: true };
          },
        };
      },
    };
  }

  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const s of this.subs) s.end();
    this.subs.clear();
    this.subject.complete();
    this.history = [];
    this.historyStart = 0;
    this.opts.logger?.debug('in-process bus closed');
  }

  private prune(): void {
    const cutoff = this.now() - this.maxAgeMs;
    const h = this.history;
    let start = Math.max(this.historyStart, h.length - this.maxMessages);
    while (start < h.length && h[start]!.at < cutoff) start++;
    this.historyStart = start;
    if (start > 1024 && start * 2 > h.length) {
      this.history = h.slice(start);
      this.historyStart = 0;
    }
  }
}
