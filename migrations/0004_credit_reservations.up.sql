-- Credit and quota reservations (src/store/credit-reservations.ts): a file transcription takes what
-- its audio may cost before the model work (paid: credits from accounts.credits; free: minutes added
-- to monthly_minutes; anonymous: the daily unit admit already counted) and settles when the job
-- ends: what was delivered is charged, the rest goes back. A row exists only while a job holds a
-- reservation; settling, releasing or expiring deletes it (DELETE … RETURNING), so each reservation
-- is refunded or charged exactly once. The holding server renews `expires_at` by a heartbeat; a
-- sweeper on any server refunds the rows of a server that died. Times are the database's clock.
-- Runs unchanged on PostgreSQL 15+ and PGlite.

CREATE TABLE credit_reservations (
  id          uuid PRIMARY KEY,
  -- no foreign key: TRUNCATE accounts must keep working; refunds to a deleted account change nothing
  account_id  uuid,
  ip          text,
  kind        text NOT NULL CHECK (kind IN ('transcribe', 'stream', 'ai')),
  -- what `amount` counts: credits of a paid account, minutes of a free account's `month`, or the
  -- anonymous daily unit of (ip, day)
  unit        text NOT NULL CHECK (unit IN ('credits', 'minutes', 'anonymous')),
  month       date,
  day         date,
  amount      integer NOT NULL CHECK (amount >= 0),
  seconds     double precision NOT NULL DEFAULT 0,
  -- the server holding it (host:pid:instance), for operators
  holder      text NOT NULL,
  created_at  timestamptz NOT NULL,
  expires_at  timestamptz NOT NULL
);
CREATE INDEX credit_reservations_expires_idx ON credit_reservations (expires_at);
