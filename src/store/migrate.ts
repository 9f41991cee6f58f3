/**
 * Schema migrations: plain SQL files in migrations/ (`NNNN_name.up.sql`, applied in name order),
 * run by umzug.
 *
 * Why umzug: it is a mature, maintained runner (the one behind Sequelize) that is storage- and
 * driver-agnostic — a migration is just an `up` function and the "which ran" log is a small storage
 * object — so the same runner drives `pg` and PGlite through our own `Session` (query/exec/transaction)
 * without an adapter that pretends PGlite is a `pg.Client`. Tools tied to the `pg` client
 * (node-pg-migrate, postgres-migrations) or to a query builder (knex, kysely, drizzle-kit) would
 * need exactly such a shim or a second dependency stack.
 *
 * Each migration runs in one transaction together with its log row (PostgreSQL DDL is
 * transactional), so a crash never leaves a half-applied migration. On PostgreSQL a session-level
 * advisory lock serialises servers that start at the same time.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Umzug, type UmzugStorage } from 'umzug';
import type { Session } from './database.ts';

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../migrations');
const LOG_TABLE = 'schema_migrations';
/** Arbitrary constant: pg_advisory_lock key of the migration runner. */
const LOCK_KEY = 640_611_006;

export type MigrationLog = (message: string) => void;

function storage(db: Session): UmzugStorage {
  return {
    async executed() {
      const rows = await db.query<{ name: string }>(`SELECT name FROM ${LOG_TABLE} ORDER BY name`);
      return rows.map((r) => r.name);
    },
    // The log row is written inside the migration's own transaction (see up below); this is a no-op
    // in practice but keeps umzug's contract.
    async logMigration({ name }) {
      await db.query(`INSERT INTO ${LOG_TABLE} (name, applied_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, [name, new Date()]);
    },
    async unlogMigration({ name }) {
      await db.query(`DELETE FROM ${LOG_TABLE} WHERE name = $1`, [name]);
    },
  };
}

/** Applies every pending migration; returns the names applied. */
export async function migrate(db: Session, opts: { lock: boolean; log?: MigrationLog; dir?: string }): Promise<string[]> {
  const dir = opts.dir ?? MIGRATIONS_DIR;
  if (opts.lock) await db.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
  try {
    await db.exec(`CREATE TABLE IF NOT EXISTS ${LOG_TABLE} (name text PRIMARY KEY, applied_at timestamptz NOT NULL)`);
    const files = fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.up.sql'))
      .sort();
    const umzug = new Umzug({
      migrations: files.map((file) => {
        const name = file.replace(/\.up\.sql$/, '');
        return {
          name,
          path: path.join(dir, file),
          up: async () => {
            const sql = fs.readFileSync(path.join(dir, file), 'utf8');
            await db.transaction(async (tx) => {
              await tx.exec(sql);
              await tx.query(`INSERT INTO ${LOG_TABLE} (name, applied_at) VALUES ($1, $2)`, [name, new Date()]);
            });
          },
        };
      }),
      storage: storage(db),
      logger: opts.log ? { info: (m) => opts.log!(describe(m)), warn: (m) => opts.log!(describe(m)), error: (m) => opts.log!(describe(m)), debug: () => {} } : undefined,
    });
    const applied = await umzug.up();
    return applied.map((m) => m.name);
  } finally {
    if (opts.lock) await db.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]);
  }
}

function describe(m: Record<string, unknown>): string {
  return `migration ${String(m.event ?? '')} ${String(m.name ?? '')}`.trim();
}
