/**
 * The storage suites run against both databases: real PostgreSQL (TEST_DATABASE_URL, or the local
 * default when it answers) and embedded PGlite. Each PostgreSQL instance gets its own schema, so
 * suites and colleagues' runs sharing the database never see each other's rows.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Database } from '../../src/store/database.ts';

const LOCAL_DEFAULT = 'postgres://stt:stt@127.0.0.1:5432/stt_test';

async function postgresUrl(): Promise<{ url: string | null; reason: string | null }> {
  const url = process.env.TEST_DATABASE_URL || LOCAL_DEFAULT;
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return { url, reason: null };
  } catch (err) {
    if (process.env.TEST_DATABASE_URL) throw new Error(`TEST_DATABASE_URL is set but PostgreSQL does not answer: ${(err as Error).message}`);
    return { url: null, reason: `no PostgreSQL at ${LOCAL_DEFAULT} (${(err as Error).message}); set TEST_DATABASE_URL` };
  } finally {
    await client.end().catch(() => {});
  }
}

const pgProbe = await postgresUrl();
if (pgProbe.reason) console.warn(`[storage tests] PostgreSQL variant skipped: ${pgProbe.reason}`);

export interface DbVariant {
  name: 'postgres' | 'pglite';
  /** Why this variant is skipped, or null. */
  skip: string | null;
  open(): Promise<TestDatabase>;
}

export interface TestDatabase {
  db: Database;
  /** Deletes every row (between tests). */
  truncate(): Promise<void>;
  /** Drops the test schema (PostgreSQL) and closes. */
  dispose(): Promise<void>;
}

const TABLES = 'usage_events, monthly_minutes, anon_daily_usage, transcripts, api_keys, accounts';

export const DB_VARIANTS: DbVariant[] = [
  {
    name: 'postgres',
    skip: pgProbe.reason,
    async open() {
      const schema = `stt_t_${randomBytes(6).toString('hex')}`;
      const db = new Database({ url: pgProbe.url, embeddedDir: 'unused', schema, poolSize: 12 });
      await db.start();
      return {
        db,
        truncate: async () => {
          await db.query(`TRUNCATE ${TABLES}`);
        },
        dispose: async () => {
          await db.query(`DROP SCHEMA ${schema} CASCADE`).catch(() => {});
          await db.close();
        },
      };
    },
  },
  {
    name: 'pglite',
    skip: null,
    async open() {
      const db = new Database({ url: null, embeddedDir: 'memory://' });
      await db.start();
      return {
        db,
        truncate: async () => {
          await db.query(`TRUNCATE ${TABLES}`);
        },
        dispose: () => db.close(),
      };
    },
  },
];

/** describe() title of a variant, with the skip reason visible in the report. */
export function variantTitle(v: DbVariant): string {
  return v.skip ? `${v.name} (skipped: ${v.skip})` : v.name;
}
