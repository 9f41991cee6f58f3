/**
 * What every live session (WebSocket or WebRTC) owes the account layer: metering as audio arrives
 * (charged every `meterEveryS` seconds; a refused charge ends the session), a re-check at each of
 * those ticks that the key is still live and the account can still pay (a revoked key or an empty
 * account ends the session too, not only at its next paid minute), and, at the end, its finals saved
 * as a `stream` transcript — also after a disconnect, so nothing said is lost.
 */
import type { Logger } from 'pino';
import { DomainError } from '../errors.ts';
import { billableMinutes, type AccessControl, type Grant } from '../auth/index.ts';
import type { Segment } from '../formats/transcript.ts';
import type { StreamEvent } from './stream-session.ts';
import type { TranscriptStore } from '../store/transcripts.ts';

export interface LiveRecorderOptions {
  sessionId: string;
  grant: Grant | null;
  transcripts?: TranscriptStore;
  logger: Logger;
  /** Re-checks the grant at each metering tick (stillValid); none = charges only. */
  access?: Pick<AccessControl, 'stillValid'> | null;
  /** Called when the session may not go on: the account cannot pay for more audio (402/429 message), or the key was revoked. */
  onRefused: (message: string) => void;
  meterEveryS?: number;
}

export class LiveRecorder {
  model: string | null = null;
  language: string | null = null;
  /** Audio seconds received, and the part already charged. */
  receivedS = 0;
  private chargedS = 0;
  private finals: Segment[] = [];
  private finished = false;
  private checking = false;

  constructor(private readonly o: LiveRecorderOptions) {}

  /** Counts received audio; charges each `meterEveryS` seconds. */
  addAudio(seconds: number): void {
    this.receivedS += seconds;
    if (this.receivedS - this.chargedS >= (this.o.meterEveryS ?? 10)) this.meter();
  }

  /** Keeps the finals of the session's events for the saved transcript. */
  record(e: StreamEvent): void {
    if (e.type === 'final') {
      // The decode's own segments, as a file's transcript has them (one mapping: formats/transcript.ts).
      this.finals.push(...e.segments);
    }
  }

  /** End of the session (however it ended): charge the rest, save, free the concurrency slot. Idempotent. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.meter();
    this.save();
    this.o.grant?.release();
  }

  private meter(): void {
    const seconds = this.receivedS - this.chargedS;
    if (seconds <= 0 || !this.o.grant) return;
    this.chargedS = this.receivedS;
    this.o.grant.charge(seconds).then(
      () => this.recheck(),
      (err: unknown) => {
        if (err instanceof DomainError && err.kind !== 'internal') this.o.onRefused(err.message);
        else this.o.logger.error({ err, session: this.o.sessionId }, 'live session metering failed');
      },
    );
  }

  /** Key still live, account still able to pay for the audio to come (past the minutes already paid)? */
  private recheck(): void {
    const grant = this.o.grant;
    if (!grant || !this.o.access || this.finished || this.checking) return;
    this.checking = true;
    // The next tick's audio needs a new minute when it crosses the end of the minutes paid so far.
    const needsCredit = this.receivedS + (this.o.meterEveryS ?? 10) > billableMinutes(this.chargedS) * 60;
    this.o.access
      .stillValid(grant, { needsCredit })
      .then((reason) => {
        if (reason && !this.finished) this.o.onRefused(reason);
      })
      .catch((err) => this.o.logger.warn({ err, session: this.o.sessionId }, 'could not re-check the key of a live session'))
      .finally(() => {
        this.checking = false;
      });
  }

  private save(): void {
    const store = this.o.transcripts;
    if (!store || !this.finals.length || !this.model) return;
    const finals = this.finals;
    this.finals = [];
    store
      .save({
        ownerId: this.o.grant?.account?.id ?? null,
        model: this.model,
        language: this.language ?? 'auto',
        duration: Math.round(this.receivedS * 1000) / 1000,
        source: 'stream',
        segments: finals,
        text: finals.map((f) => f.text).join(' '),
      })
      .catch((err) => this.o.logger.error({ err, session: this.o.sessionId }, 'saving the live transcript failed'));
  }
}
