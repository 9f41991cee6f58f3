/**
 * The one place that decides whether a request may run and what it costs. Refusals are
 * DomainErrors (the transports map the kind to HTTP 401/413/429/402 or a close code):
 *
 *   unauthenticated   malformed, unknown or revoked key (anonymous requests carry no Authorization header)
 *   too_large         declared upload larger than the tier allows
 *   rate_limited      concurrency slot taken, anonymous daily limit or free monthly minutes used up (retryAfterS)
 *   payment_required  paid account without credits
 *
 * `admit()` runs before the upload is read; the Grant it returns holds a concurrency slot until
 * `release()`. Audio costs 1 credit / free minute per started minute. Files reserve before the work
 * and settle after (`reserve(seconds)`, `settle(deliveredSeconds)`; see ./credit-ledger.ts): a job
 * that fails, is cancelled or dies with its server is refunded. Streams pay as they go (`charge`).
 *
 * Concurrency slots come from a `ConcurrencySlots` (./concurrency-slots.ts): in-process counters by
 * default (one server, PGlite), or leases in the shared database (`createConcurrencySlots`, chosen
 * for PostgreSQL) so that several servers behind a load balancer share the limits. If the slot store
 * fails, admit() refuses as 'unavailable' (never a crash, never a request let through unlimited). Quotas and
 * credits are atomic in SQL and safe across servers.
 */
import type { Logger } from 'pino';
import { DomainError } from '../errors.ts';
import { UnauthenticatedError } from './errors.ts';
import { formatBytes } from '../formats/bytes.ts';
import type { Account, AccountStore, Plan } from '../store/accounts.ts';
import type { Settlement } from '../store/credit-reservations.ts';
import { utcDay, utcMonth, type UsageKind, type UsageStore } from '../store/usage.ts';
import { InProcessConcurrencySlots, type ConcurrencySlots, type SlotLease } from './concurrency-slots.ts';
import { CreditLedger } from './credit-ledger.ts';
import { DEFAULT_AUTH_CONFIG, type AuthConfig } from '../../config/auth.ts';
import { DEFAULT_TIER_LIMITS, type Tier, type TierLimits } from './tiers.ts';
import { bearerToken, verifyKey } from './keys.ts';

export interface AdmitRequest {
  /** The Authorization header, if any. */
  authorization?: string;
  /** Client address (HttpContext.remoteAddress). */
  ip: string;
  kind: UsageKind;
  /** Content-Length of the upload when known: checked against the tier's file limit before reading. */
  declaredBytes?: number;
}

export interface Grant {
  account: { id: string; email: string; plan: Plan } | null;
  /** The API key that was admitted (null: anonymous); stillValid() checks it is still live. */
  keyId?: string | null;
  tier: Tier;
  maxFileBytes: number;
  /**
   * Meters `audioSeconds` more audio of this request. Seconds add up over calls (a stream may call it
   * every few seconds); the request pays ceil(total seconds / 60) minutes overall. Atomic in SQL.
   * Throws a DomainError: payment_required (paid: not enough credits) or rate_limited (free: monthly minutes used up); nothing is
   * charged then. Call charge(0) for requests with no audio (AI calls) so that they are counted.
   */
  charge(audioSeconds: number): Promise<void>;
  /**
   * Reserves what `audioSeconds` more audio may cost (files: before the model work; call again to
   * top up when the audio turns out longer). Reservations add up like charges: ceil(total / 60)
   * minutes. Throws payment_required (paid) or rate_limited (free) with charge()'s messages and reserves nothing
   * more then. Do not mix with charge() on one grant.
   */
  reserve(audioSeconds: number): Promise<void>;
  /**
   * The job finished having delivered `deliveredSeconds` of audio: charges billableMinutes of it (at
   * most what was reserved), refunds the rest and logs the usage, once (later calls do nothing).
   * Resolves null when nothing was reserved, the lease had expired (refunded by the sweeper) or the
   * database failed (logged; release() then refunds).
   */
  settle(deliveredSeconds: number): Promise<Settlement | null>;
  /**
   * Frees the concurrency slot (idempotent). A reservation not settled is refunded in full (failed,
   * cancelled or refused job); an anonymous request released before any charge gets its daily unit back.
   */
  release(): void;
}

export interface AccessControlOptions {
  accounts: AccountStore;
  usage: UsageStore;
  config?: Partial<AuthConfig>;
  /** Overrides of the reference tiers (tests, private deployments). */
  tiers?: Partial<Record<Tier, Partial<TierLimits>>>;
  now?: () => Date;
  logger?: Logger;
  /**
   * Where concurrency slots are counted (default: in this process). Servers sharing a PostgreSQL
   * database pass `createConcurrencySlots(db, …)`. AccessControl owns it: close() closes it.
   */
  slots?: ConcurrencySlots;
  /**
   * Credit reservations of file transcriptions (default: on `usage`'s database, leases of
   * config.concurrencyLeaseTtlS). AccessControl owns it: start() sweeps, close() closes it.
   */
  ledger?: CreditLedger;
}

function secondsUntil(from: Date, to: Date): number {
  return Math.max(1, Math.ceil((to.getTime() - from.getTime()) / 1000));
}

function nextUtcDay(d: Date): Date {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1));
}

function nextUtcMonth(d: Date): Date {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1));
}

/** Minutes to pay for `seconds` of audio: every started minute counts (to the millisecond). */
export function billableMinutes(seconds: number): number {
  return Math.ceil(Math.round(Math.max(0, seconds) * 1000) / 60_000);
}

export class AccessControl {
  readonly config: AuthConfig;
  readonly tiers: Record<Tier, TierLimits>;
  readonly slots: ConcurrencySlots;
  readonly ledger: CreditLedger;
  private readonly now: () => Date;
  private readonly background = new Set<Promise<unknown>>();
  private closing: Promise<void> | null = null;

  constructor(private readonly opts: AccessControlOptions) {
    this.config = { ...DEFAULT_AUTH_CONFIG, ...opts.config };
    this.tiers = {
      anonymous: { ...DEFAULT_TIER_LIMITS.anonymous, ...opts.tiers?.anonymous },
      free: { ...DEFAULT_TIER_LIMITS.free, ...opts.tiers?.free },
      paid: { ...DEFAULT_TIER_LIMITS.paid, ...opts.tiers?.paid },
    };
    this.now = opts.now ?? (() => new Date());
    this.slots = opts.slots ?? new InProcessConcurrencySlots();
    this.ledger = opts.ledger ?? new CreditLedger(opts.usage.reservations, { ttlS: this.config.concurrencyLeaseTtlS, logger: opts.logger });
  }

  /** Refunds the reservations of jobs that died with their server and starts the sweeper. */
  async start(): Promise<void> {
    await this.ledger.start();
  }

  /**
   * The account of the request's key; null without an Authorization header.
   * Throws 401 for a malformed header or an unknown or revoked key.
   */
  async authenticate(authorization: string | undefined): Promise<Account | null> {
    return (await this.authenticateKey(authorization))?.account ?? null;
  }

  /** authenticate(), with the id of the key. */
  private async authenticateKey(authorization: string | undefined): Promise<{ account: Account; keyId: string } | null> {
    const token = bearerToken(authorization);
    if (token === undefined) return null;
    if (token === null) throw new UnauthenticatedError("Invalid Authorization header: send 'Authorization: Bearer YOUR_API_KEY'.");
    const found = await verifyKey(this.opts.accounts, token);
    if (!found) throw new UnauthenticatedError('Invalid or revoked API key.', 'Bearer error="invalid_token"');
    await this.opts.accounts.touchKey(found.keyId).catch((err) => this.opts.logger?.warn({ err }, 'could not record key use'));
    return found;
  }

  /** Like authenticate, but a key is required (the account REST API): 401 without one. */
  async requireAccount(authorization: string | undefined): Promise<Account> {
    const account = await this.authenticate(authorization);
    if (!account) throw new UnauthenticatedError("API key required: send 'Authorization: Bearer YOUR_API_KEY'.");
    return account;
  }

  async admit(req: AdmitRequest): Promise<Grant> {
    const found = await this.authenticateKey(req.authorization);
    const account = found?.account ?? null;
    const tier: Tier = account ? account.plan : 'anonymous';
    const limits = this.tiers[tier];
    if (req.declaredBytes !== undefined && Number.isFinite(req.declaredBytes) && req.declaredBytes > limits.maxFileBytes) {
      throw new DomainError('too_large', `File is larger than the ${tier} tier's limit of ${formatBytes(limits.maxFileBytes)}.`);
    }
    if (!account && req.kind !== 'ai' && this.config.anonDailyLimit === 0) {
      throw new UnauthenticatedError("API key required: send 'Authorization: Bearer YOUR_API_KEY'.");
    }

    const slotKey = account ? `account:${account.id}` : `ip:${req.ip}`;
    let lease: SlotLease | null;
    try {
      lease = await this.slots.acquire(slotKey, limits.concurrent);
    } catch (err) {
      // Fail closed: without a slot store the limits cannot be enforced, so nothing is admitted.
      this.opts.logger?.error({ err, key: slotKey }, 'could not reserve a concurrency slot');
      throw new DomainError('unavailable', 'Could not reserve a concurrency slot: the account database is unavailable. Retry shortly.', {
        retryAfterS: this.config.concurrencyRetryAfterS,
      });
    }
    if (!lease) {
      throw new DomainError('rate_limited', `Too many concurrent requests: the ${tier} tier allows ${limits.concurrent} at a time. Retry when one has finished.`, {
        retryAfterS: this.config.concurrencyRetryAfterS,
      });
    }
    let released = false;
    let anonReservation: { ip: string; day: string } | null = null;
    try {
      const now = this.now();
      if (req.kind !== 'ai') {
        if (!account) {
          const day = utcDay(now);
          if (!(await this.opts.usage.reserveAnonymous(req.ip, day, this.config.anonDailyLimit))) {
            throw new DomainError(
              'rate_limited',
              `Anonymous limit of ${this.config.anonDailyLimit} transcriptions per day reached. Sign up for an API key (600 free minutes per month) or retry tomorrow (UTC).`,
              { retryAfterS: secondsUntil(now, nextUtcDay(now)) },
            );
          }
          anonReservation = { ip: req.ip, day };
        } else if (account.plan === 'free') {
          const used = await this.opts.usage.monthlyMinutes(account.id, utcMonth(now));
          if (used >= this.config.freeMonthlyMinutes) throw this.freeQuotaError(now);
        } else if (account.credits < 1) {
          throw new DomainError('payment_required', 'No credits remaining. Upgrade your plan.');
        }
      }
      if (req.kind === 'ai' && !account) await this.reserveAnonymousAi(req.ip, now);
    } catch (err) {
      this.releaseSlot(lease);
      throw err;
    }
    const slot: SlotLease = lease;

    let totalSeconds = 0;
    let chargedMinutes = 0;
    let charges = 0;
    let chain: Promise<void> = Promise.resolve();
    const usage = this.opts.usage;
    const config = this.config;
    const self = this;

    const chargeOnce = async (audioSeconds: number): Promise<void> => {
      if (!Number.isFinite(audioSeconds) || audioSeconds < 0) throw new Error(`charge: audioSeconds must be a finite number >= 0 (got ${audioSeconds})`);
      const at = self.now();
      const newTotal = totalSeconds + audioSeconds;
      const minutes = billableMinutes(newTotal) - chargedMinutes;
      const event = {
        accountId: account?.id ?? null,
        ip: account ? null : req.ip,
        kind: req.kind,
        seconds: audioSeconds,
        minutes,
        credits: 0,
        requests: charges === 0 ? 1 : 0,
        at,
      };
      if (!account) {
        await usage.record(event);
      } else if (account.plan === 'free') {
        const total = await usage.spendMonthlyMinutes(account.id, utcMonth(at), config.freeMonthlyMinutes, event);
        if (total === null) throw self.freeQuotaError(at);
      } else {
        const left = await usage.spendCredits(account.id, { ...event, credits: minutes });
        if (left === null) {
          throw new DomainError('payment_required', `Not enough credits: this audio needs ${minutes} more credit${minutes === 1 ? '' : 's'} (1 credit = 1 minute, rounded up). Upgrade your plan.`);
        }
      }
      totalSeconds = newTotal;
      chargedMinutes += minutes;
      charges++;
      anonReservation = null; // the daily unit is used for good
    };

    let reservationId: string | null = null;
    let reservedSeconds = 0;
    let settled = false;
    const ledger = this.ledger;

    const reserveOnce = async (audioSeconds: number): Promise<void> => {
      if (!Number.isFinite(audioSeconds) || audioSeconds < 0) throw new Error(`reserve: audioSeconds must be a finite number >= 0 (got ${audioSeconds})`);
      if (settled) throw new Error('reserve: this request is already settled');
      if (charges > 0) throw new Error('reserve: this request is metered by charge()');
      const at = self.now();
      const newTotal = reservedSeconds + audioSeconds;
      const minutes = billableMinutes(newTotal) - billableMinutes(reservedSeconds);
      const refused = () =>
        account?.plan === 'free'
          ? self.freeQuotaError(at)
          : new DomainError('payment_required', `Not enough credits: this audio needs ${minutes} more credit${minutes === 1 ? '' : 's'} (1 credit = 1 minute, rounded up). Upgrade your plan.`);
      // Anonymous: the reservation holds the daily unit admit counted (amount 1, no minutes).
      const amount = account ? minutes : 0;
      if (reservationId === null) {
        if (!account && !anonReservation) throw new Error('reserve: no anonymous daily unit to hold');
        const id = await ledger.reserve({
          accountId: account?.id ?? null,
          ip: account ? null : req.ip,
          kind: req.kind,
          unit: !account ? 'anonymous' : account.plan === 'free' ? 'minutes' : 'credits',
          month: utcMonth(at),
          day: anonReservation?.day,
          amount: account ? amount : 1,
          seconds: audioSeconds,
          limit: config.freeMonthlyMinutes,
        });
        if (id === null) throw refused();
        reservationId = id;
        anonReservation = null; // the ledger refunds the daily unit now
      } else {
        const r = await ledger.topUp(reservationId, amount, audioSeconds, config.freeMonthlyMinutes);
        if (r === 'short') throw refused();
        if (r === 'gone') throw new DomainError('unavailable', 'The credit reservation of this request expired (the account database was unreachable). Retry the request.');
      }
      reservedSeconds = newTotal;
    };

    const settleOnce = async (deliveredSeconds: number): Promise<Settlement | null> => {
      if (!Number.isFinite(deliveredSeconds) || deliveredSeconds < 0) throw new Error(`settle: deliveredSeconds must be a finite number >= 0 (got ${deliveredSeconds})`);
      if (settled || reservationId === null) return null;
      const seconds = Math.min(deliveredSeconds, reservedSeconds);
      try {
        const result = await ledger.settle(reservationId, { seconds, minutes: billableMinutes(seconds), at: self.now() });
        settled = true;
        if (result) return result;
        // The reservation is gone: its renewals were late for a whole lease (stalled event loop or
        // database) and a sweeper refunded it. The audio was delivered all the same: charge it now,
        // as a stream is charged; if the account can no longer pay, the work stays delivered.
        const minutes = billableMinutes(seconds);
        try {
          await chargeOnce(seconds);
          self.opts.logger?.warn({ reservation: reservationId, minutes }, 'credit reservation was swept before it settled: charged the delivered audio directly');
          return { charged: minutes, refunded: 0 };
        } catch (err) {
          self.opts.logger?.warn({ err, reservation: reservationId, minutes }, 'credit reservation was swept before it settled and the account cannot pay now: delivered without charge');
          return null;
        }
      } catch (err) {
        self.opts.logger?.error({ err, reservation: reservationId }, 'could not settle a credit reservation; it is refunded');
        return null;
      }
    };

    return {
      account: account ? { id: account.id, email: account.email, plan: account.plan } : null,
      keyId: found?.keyId ?? null,
      tier,
      maxFileBytes: limits.maxFileBytes,
      charge(audioSeconds: number): Promise<void> {
        // Charges of one request run one after the other, so that the running total stays exact.
        const next = chain.then(() => chargeOnce(audioSeconds));
        chain = next.catch(() => {});
        return next;
      },
      reserve(audioSeconds: number): Promise<void> {
        const next = chain.then(() => reserveOnce(audioSeconds));
        chain = next.catch(() => {});
        return next;
      },
      settle(deliveredSeconds: number): Promise<Settlement | null> {
        const next = chain.then(() => settleOnce(deliveredSeconds));
        chain = next.then(
          () => {},
          () => {},
        );
        return next;
      },
      release(): void {
        if (released) return;
        released = true;
        self.releaseSlot(slot);
        // Wait for a reserve or settle in flight; a reservation never settled is refunded in full.
        self.track(
          chain
            .then(() => (reservationId !== null && !settled ? ledger.release(reservationId) : null))
            .catch((err) => self.opts.logger?.warn({ err, reservation: reservationId }, `could not refund a credit reservation; the sweeper refunds it within ${config.concurrencyLeaseTtlS} s`)),
        );
        const reservation = anonReservation;
        if (reservation) {
          // Wait for charges in flight: a charge that lands clears the reservation.
          self.track(
            chain
              .then(() => (anonReservation ? usage.refundAnonymous(reservation.ip, reservation.day) : undefined))
              .catch((err) => self.opts.logger?.warn({ err }, 'could not refund anonymous reservation')),
          );
        }
      },
    };
  }

  /**
   * For requests that run long (live streams), at each metering tick: null while `grant` may go on,
   * otherwise why not — its key was revoked or deleted, its account is gone, or (`needsCredit`: the
   * audio is past what was already paid for) the account can no longer pay. Anonymous grants have
   * nothing to re-check.
   */
  async stillValid(grant: Grant, o: { needsCredit?: boolean } = {}): Promise<string | null> {
    if (!grant.account) return null;
    if (grant.keyId) {
      const key = await this.opts.accounts.getKey(grant.keyId);
      if (!key || key.revokedAt) return 'The API key of this stream was revoked.';
    }
    const account = await this.opts.accounts.get(grant.account.id);
    if (!account) return 'The account of this stream no longer exists.';
    if (o.needsCredit) {
      const now = this.now();
      if (account.plan === 'paid' && account.credits < 1) return 'No credits remaining. Upgrade your plan.';
      if (account.plan === 'free' && (await this.opts.usage.monthlyMinutes(account.id, utcMonth(now))) >= this.config.freeMonthlyMinutes) {
        return this.freeQuotaError(now).message;
      }
    }
    return null;
  }

  /** Resolves when background bookkeeping (refunds of released anonymous requests) is done: call before closing the database. */
  async settle(): Promise<void> {
    while (this.background.size) await Promise.allSettled([...this.background]);
  }

  /** Settles, then closes the slot store (stops lease heartbeats, frees leases still held). Idempotent; call before closing the database. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.settle();
      await this.slots.close();
      await this.ledger.close();
      await this.settle();
    })();
    return this.closing;
  }

  private releaseSlot(lease: SlotLease): void {
    // In-process slots are freed synchronously here; database leases are deleted in the background (settle() waits).
    this.track(this.slots.release(lease).catch((err) => this.opts.logger?.warn({ err }, 'could not release concurrency slot')));
  }

  private track(p: Promise<unknown>): void {
    this.background.add(p);
    void p.finally(() => this.background.delete(p));
  }

  // ───────────── anonymous AI allowance ─────────────

  /**
   * Takes one of the anonymous client's daily AI calls (ANON_DAILY_AI_LIMIT, its own counter apart
   * from transcriptions). The unit is spent at admission: an AI call costs model time from its
   * first token, whatever its outcome. 401 when the limit is 0 (keys required), 429 when used up.
   */
  private async reserveAnonymousAi(ip: string, now: Date): Promise<void> {
    const limit = this.config.anonDailyAiLimit;
    if (limit === 0) throw new UnauthenticatedError("API key required for the AI endpoints: send 'Authorization: Bearer YOUR_API_KEY'.");
    if (!(await this.opts.usage.reserveAnonymousAi(ip, utcDay(now), limit))) {
      throw new DomainError('rate_limited', `Anonymous limit of ${limit} AI requests per day reached. Sign up for an API key or retry tomorrow (UTC).`, {
        retryAfterS: secondsUntil(now, nextUtcDay(now)),
      });
    }
  }

  private freeQuotaError(now: Date): DomainError {
    return new DomainError('rate_limited', `Free plan limit of ${this.config.freeMonthlyMinutes} minutes per month reached. Upgrade your plan or retry next month (UTC).`, {
      retryAfterS: secondsUntil(now, nextUtcMonth(now)),
    });
  }
}
