/**
 * Credit and quota reservations (migrations/0004_credit_reservations.up.sql): the SQL behind
 * "reserve before the work, settle after" (src/auth/credit-ledger.ts decides when to call it).
 *
 * Every call is one transaction that moves amounts between "available" (accounts.credits, the
 * headroom of monthly_minutes under the plan's limit, the anonymous daily counter) and a reservation
 * row, so concurrent requests on any number of servers never spend the same unit twice. A row is
 * deleted by whichever of settle / release / sweep comes first (DELETE … RETURNING locks it), and
 * only the one that deleted it charges or refunds: each reservation ends exactly once. Lease expiry
 * uses the database's clock (clock_timestamp()), never the servers'.
 */
import { randomUUID } from 'node:crypto';
import type { Executor, Queryable } from './database.ts';
import { insertEvent, type UsageKind } from './usage.ts';

type Tx = <T>(fn: (tx: Executor) => Promise<T>) => Promise<T>;

/** What a reservation holds: paid credits, free monthly minutes, or the anonymous daily unit (amount 1). */
export type ReservationUnit = 'credits' | 'minutes' | 'anonymous';

export interface NewReservation {
  accountId: string | null;
  ip: string | null;
  kind: UsageKind;
  unit: ReservationUnit;
  /** 'minutes': the month (YYYY-MM-01) whose minutes are reserved. */
  month?: string;
  /** 'anonymous': the UTC day (YYYY-MM-DD) of the daily unit, already counted by admit. */
  day?: string;
  /** Credits or minutes to take now ('anonymous': 1, the unit itself). */
  amount: number;
  /** Audio seconds the amount covers (for operators). */
  seconds: number;
  /** 'minutes': the plan's monthly limit; used + reserved minutes stay within it. */
  limit?: number;
  /** The server holding the lease. */
  holder: string;
  ttlS: number;
}

export interface Reservation {
  id: string;
  accountId: string | null;
  ip: string | null;
  kind: UsageKind;
  unit: ReservationUnit;
  month: string | null;
  day: string | null;
  amount: number;
  seconds: number;
  holder: string;
}

export interface Settlement {
  /** Credits (paid) or minutes (free) kept; 'anonymous': the minutes delivered (logged, not charged). */
  charged: number;
  /** Credits or minutes given back. */
  refunded: number;
}

const COLUMNS = `id, account_id, ip, kind, unit, to_char(month, 'YYYY-MM-DD') AS month, to_char(day, 'YYYY-MM-DD') AS day, amount, seconds, holder`;

/** A row as the driver returns it: snake_case columns; amount and seconds may come back as strings. */
type Row = Omit<Reservation, 'accountId' | 'amount' | 'seconds'> & { account_id: string | null; amount: number | string; seconds: number | string };

function toReservation(r: Row): Reservation {
  return { id: r.id, accountId: r.account_id, ip: r.ip, kind: r.kind, unit: r.unit, month: r.month, day: r.day, amount: Number(r.amount), seconds: Number(r.seconds), holder: r.holder };
}

/** Takes `amount` of `unit` from what is available; false (nothing changed) when it does not fit. */
async function take(tx: Queryable, r: { unit: ReservationUnit; accountId: string | null; month?: string | null; limit?: number }, amount: number): Promise<boolean> {
  if (amount === 0 || r.unit === 'anonymous') return true;
  if (r.unit === 'credits') {
    const rows = await tx.query(`UPDATE accounts SET credits = credits - $2::int WHERE id = $1 AND credits >= $2::int RETURNING credits`, [r.accountId, amount]);
    return rows.length > 0;
  }
  const rows = await tx.query(
    `INSERT INTO monthly_minutes AS m (account_id, month, minutes) SELECT $1, $2::date, $3::int WHERE $3::int <= $4::int
     ON CONFLICT (account_id, month) DO UPDATE SET minutes = m.minutes + $3::int WHERE m.minutes + $3::int <= $4::int
     RETURNING minutes`,
    [r.accountId, r.month, amount, r.limit ?? 0],
  );
  return rows.length > 0;
}

/** Gives `amount` back to where the reservation took it from ('anonymous': any amount > 0 returns the daily unit). */
async function giveBack(tx: Queryable, r: Reservation, amount: number): Promise<void> {
  if (amount <= 0) return;
  if (r.unit === 'credits') {
    await tx.query(`UPDATE accounts SET credits = credits + $2::int WHERE id = $1`, [r.accountId, amount]);
  } else if (r.unit === 'minutes') {
    await tx.query(`UPDATE monthly_minutes SET minutes = GREATEST(0, minutes - $3::int) WHERE account_id = $1 AND month = $2::date`, [r.accountId, r.month, amount]);
  } else {
    await tx.query(`UPDATE anon_daily_usage SET count = count - 1 WHERE ip = $1 AND day = $2::date AND count > 0`, [r.ip, r.day]);
  }
}

export class CreditReservationStore {
  constructor(private readonly db: Queryable & { transaction: Tx }) {}

  /** Takes the amount and records the reservation, in one transaction; its id, or null (nothing taken) when it does not fit. */
  async reserve(r: NewReservation): Promise<string | null> {
    if (!Number.isInteger(r.amount) || r.amount < 0) throw new Error(`reserve: amount must be an integer >= 0 (got ${r.amount})`);
    return this.db.transaction(async (tx) => {
      if (!(await take(tx, r, r.amount))) return null;
      const id = randomUUID();
      await tx.query(
        `INSERT INTO credit_reservations (id, account_id, ip, kind, unit, month, day, amount, seconds, holder, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6::date, $7::date, $8, $9, $10, clock_timestamp(), clock_timestamp() + $11::double precision * interval '1 second')`,
        [id, r.accountId, r.ip, r.kind, r.unit, r.month ?? null, r.day ?? null, r.amount, r.seconds, r.holder, r.ttlS],
      );
      return id;
    });
  }

  /**
   * Adds `amount` (covering `seconds` more audio) to a live reservation. 'ok'; 'short' when the
   * account cannot cover it (nothing changed); 'gone' when the reservation no longer exists
   * (settled, released or expired).
   */
  async topUp(id: string, amount: number, seconds: number, limit?: number): Promise<'ok' | 'short' | 'gone'> {
    if (!Number.isInteger(amount) || amount < 0) throw new Error(`topUp: amount must be an integer >= 0 (got ${amount})`);
    return this.db.transaction(async (tx) => {
      const [row] = await tx.query<Row>(`SELECT ${COLUMNS} FROM credit_reservations WHERE id = $1 FOR UPDATE`, [id]);
      if (!row) return 'gone';
      const r = toReservation(row);
      if (!(await take(tx, { ...r, limit }, amount))) return 'short';
      await tx.query(`UPDATE credit_reservations SET amount = amount + $2::int, seconds = seconds + $3 WHERE id = $1`, [id, amount, seconds]);
      return 'ok';
    });
  }

  /**
   * The job delivered `seconds` of audio, worth `minutes`: keeps min(minutes, reserved) credits or
   * minutes (an anonymous reservation keeps its daily unit), gives the rest back and logs the usage
   * event, in one transaction. A lease that lapsed but was not swept yet still settles (its holder
   * is alive: only its renewals were late). Null when the reservation no longer exists (settled,
   * released, or swept and refunded): then nothing is charged here.
   */
  async settle(id: string, delivered: { seconds: number; minutes: number; at: Date }): Promise<Settlement | null> {
    return this.db.transaction(async (tx) => {
      const [row] = await tx.query<Row>(`DELETE FROM credit_reservations WHERE id = $1 RETURNING ${COLUMNS}`, [id]);
      if (!row) return null;
      const r = toReservation(row);
      const charged = r.unit === 'anonymous' ? delivered.minutes : Math.min(Math.max(0, delivered.minutes), r.amount);
      const refunded = r.unit === 'anonymous' ? 0 : r.amount - charged;
      await giveBack(tx, r, refunded);
      await insertEvent(tx, {
        accountId: r.accountId,
        ip: r.ip,
        kind: r.kind,
        seconds: delivered.seconds,
        minutes: charged,
        credits: r.unit === 'credits' ? charged : 0,
        requests: 1,
        at: delivered.at,
      });
      return { charged, refunded };
    });
  }

  /** Gives the whole reservation back (nothing delivered). The amount refunded, or null when it no longer existed. */
  async release(id: string): Promise<number | null> {
    return this.db.transaction(async (tx) => {
      const [row] = await tx.query<Row>(`DELETE FROM credit_reservations WHERE id = $1 RETURNING ${COLUMNS}`, [id]);
      if (!row) return null;
      const r = toReservation(row);
      await giveBack(tx, r, r.amount);
      return r.amount;
    });
  }

  /** Extends the given reservations to `ttlS` seconds from now (also one whose lease lapsed but was not swept yet); returns the ids that still existed. */
  async renew(ids: string[], ttlS: number): Promise<string[]> {
    if (ids.length === 0) return [];
    const rows = await this.db.query<{ id: string }>(
      `UPDATE credit_reservations SET expires_at = clock_timestamp() + $2::double precision * interval '1 second'
       WHERE id = ANY($1::uuid[]) RETURNING id`,
      [ids, ttlS],
    );
    return rows.map((r) => r.id);
  }

  /**
   * Refunds in full every reservation whose lease expired (a dead server's), or every reservation
   * (`all`: the embedded database at start-up, whose only other user was this server before it
   * died). Returns what was refunded.
   */
  async sweep(opts: { all?: boolean } = {}): Promise<Reservation[]> {
    return this.db.transaction(async (tx) => {
      const rows = await tx.query<Row>(`DELETE FROM credit_reservations ${opts.all ? '' : 'WHERE expires_at <= clock_timestamp()'} RETURNING ${COLUMNS}`);
      const swept = rows.map(toReservation);
      for (const r of swept) await giveBack(tx, r, r.amount);
      return swept;
    });
  }

  /** Open reservations (of one account when given), oldest first. */
  async list(accountId?: string): Promise<Reservation[]> {
    const rows = await this.db.query<Row>(`SELECT ${COLUMNS} FROM credit_reservations ${accountId ? 'WHERE account_id = $1' : ''} ORDER BY created_at`, accountId ? [accountId] : []);
    return rows.map(toReservation);
  }
}
