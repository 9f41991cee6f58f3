/**
 * Metering: anonymous daily counters, free-plan monthly minutes, paid credits and the usage log.
 * Every check-and-spend is one atomic SQL statement (a conditional UPDATE or an upsert whose
 * DO UPDATE has a WHERE), so concurrent requests on any number of servers never spend the same
 * credit or quota unit twice. Windows (day, month) are computed by the caller from its clock and
 * passed in, so tests can move time.
 */
import type { Queryable } from './database.ts';
import type { Executor } from './database.ts';
import { CreditReservationStore } from './credit-reservations.ts';

export type UsageKind = 'transcribe' | 'stream' | 'ai';

export interface UsageEvent {
  accountId: string | null;
  ip: string | null;
  kind: UsageKind;
  seconds: number;
  minutes: number;
  credits: number;
  /** 1 for the first charge of a request, 0 for further increments of the same request (streams). */
  requests: number;
  at: Date;
}

export interface DailyUsage {
  /** UTC day, YYYY-MM-DD. */
  date: string;
  minutes: number;
  requests: number;
  credits: number;
}

/** Per-address daily counters of anonymous use (fixed table names, never from input). */
type DailyCounter = 'anon_daily_usage' | 'anon_daily_ai_usage';

type Tx = <T>(fn: (tx: Executor) => Promise<T>) => Promise<T>;

/** YYYY-MM-DD of the UTC day of `d`. */
export function utcDay(d: Date): string {
  return d.toISOString().slice(0, 10);
}

/** YYYY-MM-01 of the UTC month of `d`. */
export function utcMonth(d: Date): string {
  return d.toISOString().slice(0, 8) + '01';
}

export class UsageStore {
  /** Reserve-then-settle of file transcriptions (credits, monthly minutes, anonymous units). */
  readonly reservations: CreditReservationStore;

  constructor(private readonly db: Queryable & { transaction: Tx }) {
    this.reservations = new CreditReservationStore(db);
  }

  /** Takes one of `limit` anonymous transcriptions of `ip` on `day`; false when none is left. */
  async reserveAnonymous(ip: string, day: string, limit: number): Promise<boolean> {
    return this.takeDaily('anon_daily_usage', ip, day, limit);
  }

  /** Gives back a reservation whose transcription never ran. */
  async refundAnonymous(ip: string, day: string): Promise<void> {
    await this.db.query(`UPDATE anon_daily_usage SET count = count - 1 WHERE ip = $1 AND day = $2::date AND count > 0`, [ip, day]);
  }

  async anonymousCount(ip: string, day: string): Promise<number> {
    return this.dailyCount('anon_daily_usage', ip, day);
  }

  /** Takes one of `limit` anonymous AI calls of `ip` on `day` (own counter, apart from transcriptions); false when none is left. */
  async reserveAnonymousAi(ip: string, day: string, limit: number): Promise<boolean> {
    return this.takeDaily('anon_daily_ai_usage', ip, day, limit);
  }

  async anonymousAiCount(ip: string, day: string): Promise<number> {
    return this.dailyCount('anon_daily_ai_usage', ip, day);
  }

  async monthlyMinutes(accountId: string, month: string): Promise<number> {
    const rows = await this.db.query<{ minutes: number }>(`SELECT minutes FROM monthly_minutes WHERE account_id = $1 AND month = $2::date`, [accountId, month]);
    return rows[0] ? Number(rows[0].minutes) : 0;
  }

  /**
   * Adds `event.minutes` to the account's minutes of `month` if the total stays within `limit`,
   * and logs the event, in one transaction. Returns the new total, or null (nothing changed).
   */
  async spendMonthlyMinutes(accountId: string, month: string, limit: number, event: UsageEvent): Promise<number | null> {
    return this.db.transaction(async (tx) => {
      const rows = await tx.query<{ minutes: number }>(
        `INSERT INTO monthly_minutes AS m (account_id, month, minutes) SELECT $1, $2::date, $3::int WHERE $3::int <= $4::int
         ON CONFLICT (account_id, month) DO UPDATE SET minutes = m.minutes + $3::int WHERE m.minutes + $3::int <= $4::int
         RETURNING minutes`,
        [accountId, month, event.minutes, limit],
      );
      if (!rows[0]) return null;
      await insertEvent(tx, event);
      return Number(rows[0].minutes);
    });
  }

  /**
   * Takes `event.credits` credits from the account if it has that many, and logs the event, in one
   * transaction. Returns the remaining balance, or null (nothing changed).
   */
  async spendCredits(accountId: string, event: UsageEvent): Promise<number | null> {
    return this.db.transaction(async (tx) => {
      const rows = await tx.query<{ credits: number }>(`UPDATE accounts SET credits = credits - $2::int WHERE id = $1 AND credits >= $2::int RETURNING credits`, [accountId, event.credits]);
      if (!rows[0]) return null;
      await insertEvent(tx, event);
      return Number(rows[0].credits);
    });
  }

  /** Logs a request that costs nothing (anonymous transcriptions, AI calls). */
  async record(event: UsageEvent): Promise<void> {
    await insertEvent(this.db, event);
  }

  /** Per-UTC-day totals of the account from `from` (inclusive) to `to` (exclusive); days without use are absent. */
  async daily(accountId: string, from: Date, to: Date): Promise<DailyUsage[]> {
    const rows = await this.db.query<{ date: string; minutes: number; requests: number; credits: number }>(
      `SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS date,
              COALESCE(sum(minutes), 0)::int AS minutes, COALESCE(sum(requests), 0)::int AS requests, COALESCE(sum(credits), 0)::int AS credits
         FROM usage_events WHERE account_id = $1 AND created_at >= $2 AND created_at < $3
        GROUP BY 1 ORDER BY 1`,
      [accountId, from, to],
    );
    return rows.map((r) => ({ date: r.date, minutes: Number(r.minutes), requests: Number(r.requests), credits: Number(r.credits) }));
  }

  /** One unit of a per-address daily counter, atomically: false when `limit` are used. */
  private async takeDaily(table: DailyCounter, ip: string, day: string, limit: number): Promise<boolean> {
    const rows = await this.db.query(
      `INSERT INTO ${table} AS u (ip, day, count) SELECT $1, $2::date, 1 WHERE $3::int >= 1
       ON CONFLICT (ip, day) DO UPDATE SET count = u.count + 1 WHERE u.count < $3::int
       RETURNING count`,
      [ip, day, limit],
    );
    return rows.length > 0;
  }

  private async dailyCount(table: DailyCounter, ip: string, day: string): Promise<number> {
    const rows = await this.db.query<{ count: number }>(`SELECT count FROM ${table} WHERE ip = $1 AND day = $2::date`, [ip, day]);
    return rows[0] ? Number(rows[0].count) : 0;
  }
}

/** Appends one row to the usage log (also used by settled reservations, src/store/credit-reservations.ts). */
export async function insertEvent(db: Queryable, e: UsageEvent): Promise<void> {
  await db.query(`INSERT INTO usage_events (account_id, ip, kind, seconds, minutes, credits, requests, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, [
    e.accountId,
    e.ip,
    e.kind,
    e.seconds,
    e.minutes,
    e.credits,
    e.requests,
    e.at,
  ]);
}
