/**
 * One live session, whatever carries it (WebSocket, WebRTC, a future mediasoup ingest): admission
 * and metering, the model and language checks, the RxJS pipeline from audio to results, the
 * saved transcript, the bus, the captions followers' access, its timers, and one lifecycle that
 * ends exactly once.
 *
 *   transport adapter                        LiveSession
 *   ─────────────────                        ───────────
 *   live.reserve() (sync slot)      ──▶      LiveSessions.open(): key, credits, tier (AccessControl)
 *   config from the client          ──▶      configure(): model, language, capacity, pipeline
 *   audio at the client's rate      ──▶      pushAudio():  audio$ ─ meter ─ resample ─ streamEvents(VAD → segmenter → decodes)
 *   {"action":…}                    ──▶      control()          ─ record ─ publish on the bus ─▶ output$
 *   output$ (LiveOutput)            ◀──      ready / partial / final / end / error / pong / share
 *   ended (LiveEnd)                 ◀──      complete | shutdown | policy | error | gone
 *
 * Adapters only translate frames and messages; they never decide anything about a session. How a
 * `LiveEnd` becomes a close code or a peer-connection teardown is theirs.
 */
import type { Logger } from 'pino';
import { Subject, filter, map, tap, type Observable, type Subscription } from 'rxjs';
import { StreamResampler } from '../audio/resampler.ts';
import type { AccessControl, Grant } from '../auth/index.ts';
import { sessionSubject, type Bus } from '../bus/index.ts';
import type { SileroVad } from '../engines/vad/silero-vad.ts';
import { DomainError, type ErrorKind } from '../errors.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { TranscriptStore } from '../store/transcripts.ts';
import { LiveRecorder } from './live-recorder.ts';
import type { LoadedSpeechModel, ModelWaitProgress, SpeechModels } from './speech-models.ts';
import type { StreamAccess } from './stream-access.ts';
import type { StreamAdmission, StreamUse } from './stream-admission.ts';
import { StreamSession, streamEvents, type StreamEvent } from './stream-session.ts';

const SAMPLE_RATE = 16_000;

/** What a client chooses for its session (the fields of the /v1/stream config message). */
export interface LiveConfig {
  model: string;
  /** Two-pass mode: finals and language detection on this model, partials on `model` (undefined: `model` for both). */
  finalModel?: string;
  /** 'auto' or a language code. */
  language: string;
  interimResults: boolean;
  partialIntervalMs: number;
  /** Token budget per decode (undefined: the server's default). */
  maxNewTokens?: number;
  /** Sample rate of the audio the transport delivers (resampled to 16 kHz). */
  sampleRate: number;
}

/** Who is asking (for admission, metering and ownership). */
export interface LiveClient {
  /** The Authorization header (`Bearer <api key>`), if any. */
  authorization?: string;
  /** Client address. */
  ip: string;
}

/** Everything a session emits, in order; the transports turn it into their wire messages. */
/** `ready` names the model serving the stream and how its finals' word times are made (Moonshine: always 'proportional'). */
export type LiveOutput =
  | { type: 'ready'; sessionId: string; model: string; finalModel?: string; wordTimestamps: 'cross-attention-dtw' | 'proportional' }
  /** Before `ready`, while a model is downloaded (AUTO_PULL; progress 0..1, null while the size is unknown) or loaded. */
  | { type: 'loading_model'; model: string; stage: 'downloading' | 'loading'; progress: number | null }
  | StreamEvent
  | { type: 'pong' }
  | { type: 'share'; token: { share_token: string; expires_at: string } };

/** How a session ended (once). */
export type LiveEnd =
  /** Stopped by the client (or DELETE): every final was sent, then `end`. */
  | { reason: 'complete' }
  /** Flushed because the server shuts down. */
  | { reason: 'shutdown' }
  /** Ended by a rule: idle timeout, maximum duration, a refused charge or a revoked key. */
  | { reason: 'policy'; message: string }
  /** Could not start or go on; `kind` says whose fault and what to do. */
  | { reason: 'error'; kind: ErrorKind; message: string }
  /** Closed without a flush: the client went away (or the transport closed it). */
  | { reason: 'gone' };

export type LivePhase = 'config' | 'loading' | 'streaming' | 'stopping' | 'closed';

export interface LiveSessionsOptions {
  /** Admission and metering (1 credit per started minute); null = none (private deployments, tests). */
  access: AccessControl | null;
  /** Where finished sessions are saved (their finals as segments). */
  transcripts?: TranscriptStore;
  models: SpeechModels;
  vad: SileroVad;
  bus: Bus;
  /** Who may follow a session's captions (owner's key or share token). */
  followers: StreamAccess;
  logger: Logger;
  metrics: Metrics;
  /** Load-based admission (refused when live results are late); none = always admit. */
  admission?: StreamAdmission;
  /** Live sessions at once, all transports together. */
  maxStreams: number;
  /** Wall clock in ms (default Date.now) of admission: when streams started (their ages for the load forecast). */
  clock?: () => number;
  /** A session without audio this long is ended. */
  idleTimeoutS: number;
  maxDurationS: number;
  /** Token budget per decode when the client names none (undefined: the engine default). */
  maxNewTokens?: number;
  /** Token budget of a partial beyond its committed words (PARTIAL_MAX_NEW_TOKENS; capped by the decode's budget). */
  partialMaxNewTokens?: number;
  /** Encoder of live finals (FINAL_ENCODER); partials always use the trimmed one. */
  finalEncoder?: 'full' | 'trimmed';
}

/** A place under `maxStreams`, taken synchronously before any asynchronous admission. */
export interface LiveSlot {
  release(): void;
}

/** How long an ended stream is kept for admission: longer than the schedulers' 30 s busy windows. */
const ENDED_KEPT_MS = 60_000;

/** The live sessions of this server: the one limit, admission, shutdown. */
export class LiveSessions {
  private readonly sessions = new Map<string, LiveSession>();
  private pending = 0;
  private closing = false;
  /** Streams that ended lately: their load is still in the models' busy windows (admission counts them there). */
  private recentlyEnded: { partial: LoadedSpeechModel; final: LoadedSpeechModel; since: number; endedAt: number }[] = [];

  constructor(readonly o: LiveSessionsOptions) {}

  get followers(): StreamAccess {
    return this.o.followers;
  }

  /** Live sessions now (on one transport, or all). */
  active(transport?: string): number {
    if (!transport) return this.sessions.size;
    let n = 0;
    for (const s of this.sessions.values()) if (s.transport === transport) n++;
    return n;
  }

  get isClosing(): boolean {
    return this.closing;
  }

  /**
   * The models each streaming session uses and how long (ms) it has been running, and the streams that ended within
   * the last minute (longer than the models' 30 s busy windows): what admission weighs a new one against.
   */
  streamUses(now: number): StreamUse<LoadedSpeechModel>[] {
    const uses: StreamUse<LoadedSpeechModel>[] = [];
    for (const s of this.sessions.values()) {
      const a = s.attached;
      if (a) uses.push({ partial: a.partial, final: a.final, ageMs: now - a.since });
    }
    this.recentlyEnded = this.recentlyEnded.filter((e) => now - e.endedAt < ENDED_KEPT_MS);
    for (const e of this.recentlyEnded) uses.push({ partial: e.partial, final: e.final, ageMs: now - e.since, endedMsAgo: Math.max(now - e.endedAt, 1) });
    return uses;
  }

  /** A stream left its models at `now`: kept for streamUses, and admission learns what the streams cost. */
  streamEnded(a: { partial: LoadedSpeechModel; final: LoadedSpeechModel; since: number }, now: number): void {
    this.recentlyEnded.push({ ...a, endedAt: now });
    this.o.admission?.remember(this.streamUses(now));
  }

  get(id: string): LiveSession | undefined {
    return this.sessions.get(id);
  }

  /** Takes a slot now, synchronously, so that a burst of clients cannot all pass before any starts. */
  reserve(): LiveSlot {
    if (this.closing) throw new DomainError('unavailable', 'Server is shutting down; reconnect to another instance.');
    if (this.sessions.size + this.pending >= this.o.maxStreams) {
      throw new DomainError('unavailable', `Too many live streams (limit ${this.o.maxStreams}); retry later.`);
    }
    this.pending++;
    let held = true;
    return {
      release: () => {
        if (held) this.pending--;
        held = false;
      },
    };
  }

  /**
   * Admits the client (key, credits, tier limits) into the slot and creates its session, waiting
   * for its config. Throws a DomainError (unauthenticated, payment_required, rate_limited…).
   */
  async open(slot: LiveSlot, client: LiveClient, transport: string): Promise<LiveSession> {
    try {
      const grant = this.o.access ? await this.o.access.admit({ authorization: client.authorization, ip: client.ip, kind: 'stream' }) : null;
      if (this.closing) {
        grant?.release();
        throw new DomainError('unavailable', 'Server is shutting down; reconnect to another instance.');
      }
      const session = new LiveSession(this, grant, client, transport, (s) => {
        if (this.sessions.delete(s.id)) this.o.metrics.activeStreams.dec({ transport: s.transport });
      });
      this.sessions.set(session.id, session);
      this.o.metrics.activeStreams.inc({ transport });
      return session;
    } finally {
      slot.release();
    }
  }

  /**
   * Whether `client` owns the session: the same account's key, or for an anonymous session the
   * same client address. A bad key throws 'unauthenticated'.
   */
  async isOwner(session: LiveSession | null, client: LiveClient): Promise<boolean> {
    // The key is checked first: a bad key is refused whether or not the session exists.
    const account = this.o.access ? await this.o.access.authenticate(client.authorization) : null;
    if (!session) return false;
    if (!this.o.access) return true;
    return session.owner.account !== null ? account?.id === session.owner.account : !account && client.ip === session.owner.ip;
  }

  /** Shutdown: new sessions are refused, and every live one is flushed (last finals, then `end`). */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all([...this.sessions.values()].map((s) => s.stop()));
  }
}

export class LiveSession {
  readonly id: string = crypto.randomUUID();
  /** Who may end it and follow it: the account of its key, or (anonymous) the client address. */
  readonly owner: { account: string | null; ip: string };
  private readonly out = new Subject<LiveOutput>();
  /** What the client gets, in order; completes when the session has ended. */
  readonly output$: Observable<LiveOutput> = this.out.asObservable();
  /** Resolves once, when the session has ended, with how. */
  readonly ended: Promise<LiveEnd>;
  private resolveEnded!: (end: LiveEnd) => void;
  private state: LivePhase = 'config';
  private readonly recorder: LiveRecorder;
  private readonly audio$ = new Subject<Float32Array>();
  private pipeline: Subscription | null = null;
  private resampler: StreamResampler | null = null;
  private idle: NodeJS.Timeout | null = null;
  private readonly maxDuration: NodeJS.Timeout;
  private readonly log: Logger;
  private attachedTo: { partial: LoadedSpeechModel; final: LoadedSpeechModel; since: number } | null = null;

  constructor(
    private readonly live: LiveSessions,
    grant: Grant | null,
    client: LiveClient,
    readonly transport: string,
    private readonly onClosed: (s: LiveSession) => void,
  ) {
    const o = live.o;
    this.owner = { account: grant?.account?.id ?? null, ip: client.ip };
    this.ended = new Promise((r) => (this.resolveEnded = r));
    this.log = o.logger.child({ session: this.id, transport });
    this.recorder = new LiveRecorder({
      sessionId: this.id,
      grant,
      access: o.access,
      transcripts: o.transcripts,
      logger: o.logger,
      onRefused: (message) => this.end({ reason: 'policy', message }),
    });
    this.maxDuration = setTimeout(() => this.end({ reason: 'policy', message: `stream exceeded the maximum duration of ${Math.round(o.maxDurationS / 60)} minutes` }), o.maxDurationS * 1000);
  }

  /** The models of this session's partials and finals, and when it was admitted (null before, and once ended). */
  get attached(): { partial: LoadedSpeechModel; final: LoadedSpeechModel; since: number } | null {
    return this.attachedTo;
  }

  get phase(): LivePhase {
    return this.state;
  }

  /** Seconds of audio received (gaps the transport filled in included). */
  get receivedS(): number {
    return this.recorder.receivedS;
  }

  /** Tells the client while its model is downloaded or loaded: once per stage and per whole percent, not per chunk. */
  private loadingProgress(model: string): (p: ModelWaitProgress) => void {
    let last = '';
    return (p) => {
      const progress = p.fraction === null ? null : Math.floor(p.fraction * 100) / 100;
      const key = `${p.stage}:${progress}`;
      if (key === last || this.state !== 'loading') return;
      last = key;
      this.out.next({ type: 'loading_model', model, stage: p.stage, progress });
    };
  }

  /**
   * Loads the model (downloading it first when AUTO_PULL is on and it is missing) and builds the pipeline; emits `ready`. Throws a DomainError the transport
   * reports as it can (the session stays open: the transport fails or closes it).
   */
  async configure(config: LiveConfig): Promise<void> {
    const o = this.live.o;
    if (this.state !== 'config') throw new DomainError('invalid', 'the stream is already configured');
    this.state = 'loading';
    // Loading the model (seconds for a large one, on first use) is the server's time, not the client's silence.
    this.clearIdle();
    const resampling = StreamResampler.create(config.sampleRate, SAMPLE_RATE);
    // Followers need the owner's key or a share token; recorded before the client can learn the id.
    const following = o.followers.open(this.id, this.owner.account);
    let model: LoadedSpeechModel;
    let finalModel: LoadedSpeechModel;
    try {
      // two-pass: both models loaded (concurrently) before the stream is ready
      const get = (id: string) => o.models.get(id, { onProgress: this.loadingProgress(id) });
      [model, finalModel] = await Promise.all([get(config.model), config.finalModel ? get(config.finalModel) : null]).then(([m, f]) => [m, f ?? m]);
    } catch (err) {
      void resampling.then(
        (r) => r.close(),
        () => undefined,
      );
      throw err;
    }
    const [resampler] = await Promise.all([resampling, following]);
    if (this.state !== 'loading') {
      // Ended while loading (client gone): what was acquired meanwhile is given back.
      resampler.close();
      o.followers.close(this.id);
      return;
    }
    for (const m of new Set([model, finalModel])) {
      if (config.language === 'auto' || m.engine.info.languages.includes(config.language)) continue;
      resampler.close();
      // A model with few languages (Moonshine: English) says which, as the file routes do.
      const langs = m.engine.info.languages;
      const which = langs.length <= 5 ? `; use "auto" or one of: ${langs.join(', ')}` : '';
      throw new DomainError('invalid', `language: model '${m.id}' does not support '${config.language}'${which}`);
    }
    // Admission weighs the models this stream adds to against the streams already running (all models share the inference thread).
    const now = (o.clock ?? Date.now)();
    const capacity = o.admission?.admit({ partial: model, final: finalModel }, this.transport as 'websocket' | 'webrtc', now, this.live.streamUses(now)) ?? { ok: true as const };
    if (!capacity.ok) {
      resampler.close();
      throw new DomainError('unavailable', capacity.message, { retryAfterS: capacity.retryAfterS });
    }
    this.attachedTo = { partial: model, final: finalModel, since: now };
    this.resampler = resampler;
    this.recorder.model = finalModel.id;
    this.recorder.language = config.language;
    const recorder = this.recorder;
    // The live graph: metered as it arrives (gaps included), resampled, then VAD → segmenter →
    // decodes in the model's scheduler; every result is recorded for the transcript and published
    // for captions followers before it goes to the client.
    this.pipeline = this.audio$
      .pipe(
        tap((pcm) => recorder.addAudio(pcm.length / config.sampleRate)),
        map((pcm) => resampler.process(pcm)),
        filter((pcm) => pcm.length > 0),
        streamEvents(
          () =>
            new StreamSession({
              id: this.id,
              model,
              finalModel,
              vad: o.vad,
              language: config.language,
              interimResults: config.interimResults,
              partialIntervalMs: config.partialIntervalMs,
              maxNewTokens: config.maxNewTokens ?? o.maxNewTokens,
              partialMaxNewTokens: o.partialMaxNewTokens,
              finalEncoder: o.finalEncoder,
            }),
        ),
        tap((e) => recorder.record(e)),
        tap((e) => void o.bus.publish(sessionSubject(this.id), e).catch((err) => this.log.warn({ err }, 'bus publish failed'))),
      )
      .subscribe({ next: (e) => this.onResult(e) });
    this.state = 'streaming';
    const wordTimestamps = finalModel.engine.info.crossAttentions ? 'cross-attention-dtw' : 'proportional';
    this.out.next({ type: 'ready', sessionId: this.id, model: model.id, ...(finalModel !== model ? { finalModel: finalModel.id } : {}), wordTimestamps });
    this.log.info({ model: model.id, finalModel: finalModel.id, language: config.language }, 'live session started');
  }

  /** Audio at the configured sample rate (mono float). Audio is what keeps a session from its idle timeout. */
  pushAudio(pcm: Float32Array): void {
    if (this.state !== 'streaming') return;
    this.touch();
    this.audio$.next(pcm);
  }

  /** Activity of the transport that counts against the idle timeout (the socket opened, ICE connected). */
  touch(): void {
    this.clearIdle();
    if (this.state !== 'config' && this.state !== 'streaming') return;
    const s = this.live.o.idleTimeoutS;
    this.idle = setTimeout(() => this.end({ reason: 'policy', message: `no audio for ${s} s; closing the stream` }), s * 1000);
  }

  /** A control message: `ping` → `pong`, `share` → a share token, `stop` → flush and end. */
  control(action: 'stop' | 'ping' | 'share'): void {
    if (this.state === 'closed') return;
    if (action === 'ping') return this.out.next({ type: 'pong' });
    if (action === 'share') {
      this.live.followers
        .share(this.id)
        .then((token) => this.out.next({ type: 'share', token }))
        .catch((err) => {
          this.log.error({ err }, 'could not create a share token');
          this.out.next({ type: 'error', message: 'could not create a share token; try again' });
        });
      return;
    }
    void this.stop();
  }

  /** Flushes: the open utterance is decoded, every final sent, then `end`. Resolves when ended (idempotent). */
  stop(): Promise<LiveEnd> {
    if (this.state === 'streaming') {
      // Flushing is the server's work, not the client's silence: no idle timeout from here on.
      this.state = 'stopping';
      this.clearIdle();
      this.audio$.complete();
    } else if (this.state === 'config' || this.state === 'loading') {
      this.out.next({ type: 'end' });
      this.end(this.live.isClosing ? { reason: 'shutdown' } : { reason: 'complete' });
    }
    return this.ended;
  }

  /** Ends the session with an error the client is told about (`{"error"}`), classified by kind. */
  fail(err: unknown): void {
    if (err instanceof DomainError) return this.end({ reason: 'error', kind: err.kind, message: err.message });
    this.log.error({ err }, 'live session failed');
    this.end({ reason: 'error', kind: 'internal', message: 'internal error: could not start the stream' });
  }

  /** Frees everything at once, no flush (the client went away). Idempotent. */
  close(): void {
    this.end({ reason: 'gone' });
  }

  private onResult(e: StreamEvent): void {
    this.out.next(e);
    if (e.type === 'end') this.end(this.live.isClosing ? { reason: 'shutdown' } : { reason: 'complete' }, false);
    else if (e.type === 'error') this.end({ reason: 'error', kind: 'internal', message: e.message }, false);
  }

  /** The one way a session ends: tells the client why (unless it already knows), frees everything, resolves `ended`. */
  private end(how: LiveEnd, tell = true): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    // What this stream and the others cost is best known now that it has run: admission keeps it for a burst to come.
    const attached = this.attachedTo;
    this.attachedTo = null;
    if (attached) this.live.streamEnded(attached, (this.live.o.clock ?? Date.now)());
    if (tell && (how.reason === 'policy' || how.reason === 'error')) this.out.next({ type: 'error', message: how.message });
    if (how.reason === 'policy' || how.reason === 'error') this.log.info({ reason: how.reason, error: how.message }, 'live session ended');
    this.clearIdle();
    clearTimeout(this.maxDuration);
    this.pipeline?.unsubscribe();
    this.pipeline = null;
    this.resampler?.close();
    this.resampler = null;
    this.recorder.finish();
    this.live.followers.close(this.id);
    this.onClosed(this);
    this.out.complete();
    this.resolveEnded(how);
  }

  private clearIdle(): void {
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
  }
}
