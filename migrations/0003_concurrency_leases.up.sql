-- Concurrency slots shared by every server on one database (src/store/concurrency-leases.ts).
-- A request holds one row while it runs; its server renews `expires_at` by a heartbeat, so the
-- slots of a server that crashed free themselves once their leases expire. Live leases of a key
-- are counted and a new one inserted under pg_advisory_xact_lock(namespace, hashtext(key)).
-- Times are the database's clock (clock_timestamp()), never the servers', so skew does not matter.
-- Runs unchanged on PostgreSQL 15+ and PGlite.

CREATE TABLE concurrency_leases (
  id          uuid PRIMARY KEY,
  -- 'account:<uuid>' or 'ip:<address>'
  key         text NOT NULL,
  -- the server holding it (host:pid:instance), for operators
  holder      text NOT NULL,
  acquired_at timestamptz NOT NULL,
  expires_at  timestamptz NOT NULL
);
CREATE INDEX concurrency_leases_key_idx ON concurrency_leases (key, expires_at);
CREATE INDEX concurrency_leases_expires_idx ON concurrency_leases (expires_at);
