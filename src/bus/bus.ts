/**
 * The result bus: every live session publishes its events on a subject of its own so that
 * listeners (a captions viewer, another server) can follow it. Two implementations share this
 * contract and one conformance suite (test/bus): InProcessBus (default, one process) and NatsBus
 * (NATS_URL set; fan-out across servers plus JetStream replay).
 *
 * Subjects use NATS syntax: dot-separated tokens; in subscription patterns `*` matches exactly
 * one token and `>` (last token only) matches one or more tokens.
 */
import { type Observable, Subject } from 'rxjs';

export interface BusMessage<T = unknown> {
  subject: string;
  /** The JSON-decoded payload. */
  data: T;
}

/**
 * One subscription. Consume it either as an async iterable (`for await`, buffered from the moment
 * `subscribe()` returned; leaving a loop early ends the subscription; several iterators share one
 * buffer, each message going to one of them) or through `.observable` (hot: each rxjs subscriber
 * sees what arrives after it subscribed). `unsubscribe()`, or the bus closing,
 * completes both.
 */
export interface Subscription<T = unknown> extends AsyncIterable<BusMessage<T>> {
  readonly subject: string;
  readonly observable: Observable<BusMessage<T>>;
  /** Resolves once the subscription is registered where publishers' messages are routed (NATS: server round trip). */
  ready(): Promise<void>;
  unsubscribe(): void;
  readonly closed: boolean;
  /** Messages dropped because the iterator buffer was full (slow consumer). */
  readonly dropped: number;
}

export interface ReplayOptions {
  /**
   * false (default): yield what is stored, then end. true: keep following live messages after the
   * stored ones, until the loop is left or the bus closes.
   */
  follow?: boolean;
}

export interface Bus {
  /** Connects (NATS) / readies the bus. Idempotent. publish/subscribe before start() throw. */
  start(): Promise<void>;
  /** Publishes `msg` JSON-encoded on a concrete subject (no wildcards). */
  publish(subject: string, msg: unknown): Promise<void>;
  /** Subscribes to a subject or wildcard pattern (`*` one token, `>` tail). */
  subscribe<T = unknown>(subject: string): Subscription<T>;
  /**
   * Replays the retained messages of `subject` (a session subject, or a pattern) from the start, in
   * publication order. NatsBus: JetStream stream STT_SESSIONS (subjects `stt.session.>`);
   * InProcessBus: a bounded in-memory history of the same subjects.
   */
  replay<T = unknown>(subject: string, opts?: ReplayOptions): AsyncIterable<BusMessage<T>>;
  /** Drains (NATS: flushes pending publishes, ends subscriptions) and closes. Idempotent. */
  close(): Promise<void>;
}

export class BusError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BusError';
  }
}

// ---------------------------------------------------------------------------------------------
// Subjects

export const SESSION_SUBJECT_PREFIX = 'stt.session';
/** What the JetStream stream captures: every session subject. */
export const SESSIONS_STREAM_SUBJECTS = 'stt.session.>';
/** Pattern that follows the events of every session. */
export const ALL_SESSION_EVENTS = 'stt.session.*.events';

const ID_RE = /^[A-Za-z0-9_-]+$/;
/** Characters never allowed inside a NATS subject token. */
const BAD_TOKEN_CHARS = /[\s.*>]/;

/** Ids embedded in subjects (session ids…): one token of [A-Za-z0-9_-], at most 128 characters. */
export function isValidId(id: string): boolean {
  return typeof id === 'string' && id.length > 0 && id.length <= 128 && ID_RE.test(id);
}

export function assertValidId(id: string, what = 'id'): void {
  if (!isValidId(id)) {
    throw new BusError(`invalid ${what} ${JSON.stringify(id)}: expected 1-128 characters of [A-Za-z0-9_-]`);
  }
}

/** `stt.session.<id>.events`; throws BusError for an id that is not a single safe token. */
export function sessionSubject(sessionId: string): string {
  assertValidId(sessionId, 'session id');
  return `${SESSION_SUBJECT_PREFIX}.${sessionId}.events`;
}

/** The session id of a `stt.session.<id>.events` subject, or null. */
export function parseSessionSubject(subject: string): string | null {
  const t = subject.split('.');
  if (t.length !== 4 || t[0] !== 'stt' || t[1] !== 'session' || t[3] !== 'events') return null;
  return isValidId(t[2]!) ? t[2]! : null;
}

/** A concrete subject one can publish on: non-empty tokens, no whitespace, no wildcards. */
export function isValidSubject(subject: string): boolean {
  if (typeof subject !== 'string' || subject.length === 0) return false;
  return subject.split('.').every((t) => t.length > 0 && !BAD_TOKEN_CHARS.test(t));
}

/** A subscription pattern: like a subject, but tokens may be `*`, and the last may be `>`. */
export function isValidPattern(pattern: string): boolean {
  if (typeof pattern !== 'string' || pattern.length === 0) return false;
  const tokens = pattern.split('.');
  return tokens.every((t, i) => {
    if (t === '*') return true;
    if (t === '>') return i === tokens.length - 1;
    return t.length > 0 && !BAD_TOKEN_CHARS.test(t);
  });
}

export function assertValidSubject(subject: string): void {
  if (!isValidSubject(subject)) {
    throw new BusError(`invalid subject ${JSON.stringify(subject)}: expected dot-separated tokens without spaces or wildcards`);
  }
}

export function assertValidPattern(pattern: string): void {
  if (!isValidPattern(pattern)) {
    throw new BusError(`invalid subject pattern ${JSON.stringify(pattern)}: expected dot-separated tokens, '*' for one token, '>' only as the last token`);
  }
}

/** Whether every subject `pattern` can match lies within the retained `stt.session.>` subjects. */
export function isReplayable(pattern: string): boolean {
  const t = pattern.split('.');
  return t.length >= 3 && t[0] === 'stt' && t[1] === 'session';
}

export function assertReplayable(pattern: string): void {
  if (!isReplayable(pattern)) {
    throw new BusError(`cannot replay ${JSON.stringify(pattern)}: only subjects under ${SESSIONS_STREAM_SUBJECTS} are retained`);
  }
}

/**
 * NATS subject matching: `*` matches exactly one token, `>` (last token) one or more tokens,
 * anything else must be equal. Pure; both arguments are assumed syntactically valid.
 */
export function subjectMatches(pattern: string, subject: string): boolean {
  if (pattern === subject) return true;
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    const tok = p[i];
    if (tok === '>') return i === p.length - 1 && s.length > i;
    if (i >= s.length) return false;
    if (tok !== '*' && tok !== s[i]) return false;
  }
  return p.length === s.length;
}

// ---------------------------------------------------------------------------------------------
// A Subscription implementation both buses use: fed by push(), ended by end().

export const DEFAULT_MAX_PENDING = 65_536;

export class PushSubscription<T = unknown> implements Subscription<T> {
  readonly observable: Observable<BusMessage<T>>;
  private readonly live = new Subject<BusMessage<T>>();
  private buffer: BusMessage<T>[] = [];
  private readonly waiting: ((r: IteratorResult<BusMessage<T>>) => void)[] = [];
  private ended = false;
  private droppedCount = 0;

  constructor(
    readonly subject: string,
    private readonly onUnsubscribe: () => void,
    private readonly readyFn: () => Promise<void> = () => Promise.resolve(),
    private readonly maxPending = DEFAULT_MAX_PENDING,
  ) {
    this.observable = this.live.asObservable();
  }

  get closed(): boolean {
    return this.ended;
  }

  get dropped(): number {
    return this.droppedCount;
  }

  ready(): Promise<void> {
    return this.ended ? Promise.resolve() : this.readyFn();
  }

  /** Delivers one message (called by the bus). */
  push(msg: BusMessage<T>): void {
    if (this.ended) return;
    const w = this.waiting.shift();
    if (w) {
      w({ value: msg, done: false });
    } else {
      this.buffer.push(msg);
      if (this.buffer.length > this.maxPending) {
        this.buffer.shift();
        this.droppedCount++;
      }
    }
    this.live.next(msg);
  }

  /** Ends the subscription without calling back into the bus (the bus closing, or the source ending). */
  end(err?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    for (const w of this.waiting.splice(0)) w({ value: undefined, done: true });
    if (err !== undefined) this.live.error(err);
    else this.live.complete();
  }

  unsubscribe(): void {
    if (this.ended) return;
    this.end();
    this.buffer = [];
    this.onUnsubscribe();
  }

  [Symbol.asyncIterator](): AsyncIterator<BusMessage<T>> {
    return {
      next: () => {
        const msg = this.buffer.shift();
        if (msg) return Promise.resolve({ value: msg, done: false });
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this.waiting.push(resolve);
        });
      },
      return: () => {
        this.unsubscribe();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
