/**
 * The one database handle: PostgreSQL through `pg` when a URL is configured, otherwise an embedded
 * PGlite (PostgreSQL compiled to WASM, in-process, data in DATA_DIR/db). Both run the same SQL and
 * the same migrations. All SQL lives in src/store; everything else talks to the repositories.
 * An embedded database on disk is opened by one process only (DataDirLock, taken in start()).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import type { PGlite, Transaction as PGliteTransaction } from '@electric-sql/pglite';
import { DataDirLock } from './data-dir-lock.ts';
import { migrate, type MigrationLog } from './migrate.ts';

export interface DatabaseOptions {
  /** postgres:// URL; null = embedded PGlite in `embeddedDir`. */
  url: string | null;
  /** PGlite data folder (created if missing); `memory://` keeps everything in memory (tests). */
  embeddedDir: string;
  /** Use (and create) this schema instead of `public`: lets test suites share one PostgreSQL database. */
  schema?: string;
  /** Connection pool size for PostgreSQL (default 10). */
  poolSize?: number;
  /** Where migration progress is reported (default: nowhere). */
  log?: MigrationLog;
  /**
   * Single-owner lock of an embedded database on disk (src/store/data-dir-lock.ts), taken before it
   * opens and released after it closes: the folder that holds it (default: the parent of
   * `embeddedDir`, i.e. DATA_DIR) and what this process is, for the refusal message (default 'process').
   */
  owner?: { dir?: string; role?: string };
}

/** Something that runs parameterised SQL ($1, $2 …) and returns rows. */
export interface Queryable {
  query<R = Record<string, unknown>>(text: string, params?: unknown[]): Promise<R[]>;
}

/** Queryable that can also run a multi-statement script (no parameters). */
export interface Executor extends Queryable {
  exec(script: string): Promise<void>;
}

/** A connection that can also run transactions (migrations use it). */
export interface Session extends Executor {
  transaction<T>(fn: (tx: Executor) => Promise<T>): Promise<T>;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export class Database implements Queryable {
  private pool: pg.Pool | null = null;
  private lite: PGlite | null = null;
  private ownerLock: DataDirLock | null = null;
  private started = false;

  constructor(private readonly opts: DatabaseOptions) {
    if (opts.schema !== undefined && !SCHEMA_NAME.test(opts.schema)) {
      throw new Error(`Invalid schema name '${opts.schema}': use lower-case letters, digits and '_'.`);
    }
  }

  get kind(): 'postgres' | 'pglite' {
    return this.opts.url ? 'postgres' : 'pglite';
  }

  /** The data-dir lock this process holds for an embedded database on disk (null otherwise, or before start). */
  get lock(): DataDirLock | null {
    return this.ownerLock;
  }

  /** Connects (or opens the embedded database) and applies pending migrations. */
  async start(): Promise<void> {
    if (this.started) return;
    const schema = this.opts.schema;
    if (this.opts.url) {
      if (schema) {
        const admin = new pg.Client({ connectionString: this.opts.url });
        await admin.connect();
        try {
          await admin.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
        } finally {
          await admin.end();
        }
      }
      this.pool = new pg.Pool({
        connectionString: this.opts.url,
        max: this.opts.poolSize ?? 10,
        ...(schema ? { options: `-c search_path=${schema}` } : {}),
      });
      // An idle client that loses its connection must not crash the process; the next query reconnects.
      this.pool.on('error', () => {});
      const client = await this.pool.connect();
      try {
        await migrate(pgSession(client), { lock: true, log: this.opts.log });
      } finally {
        client.release();
      }
    } else {
      const { PGlite } = await import('@electric-sql/pglite');
      const dir = this.opts.embeddedDir;
      if (!dir.includes('://')) {
        // PGlite has no lock of its own: a second process would work on its own copy and overwrite ours.
        // Throws DataDirLockedError before anything is opened when a live process owns the folder.
        this.ownerLock = await DataDirLock.acquire(this.opts.owner?.dir ?? path.dirname(path.resolve(dir)), this.opts.owner?.role ?? 'process');
        await fs.mkdir(dir, { recursive: true });
      }
      try {
        this.lite = await PGlite.create(dir);
        if (schema) await this.lite.exec(`CREATE SCHEMA IF NOT EXISTS ${schema}; SET search_path TO ${schema};`);
        await migrate(liteSession(this.lite), { lock: false, log: this.opts.log });
      } catch (err) {
        await this.close();
        throw err;
      }
    }
    this.started = true;
  }

  async close(): Promise<void> {
    this.started = false;
    const pool = this.pool;
    const lite = this.lite;
    const lock = this.ownerLock;
    this.pool = null;
    this.lite = null;
    this.ownerLock = null;
    try {
      await pool?.end();
      await lite?.close();
    } finally {
      // Only once the files are closed may another process open them.
      await lock?.release();
    }
  }

  async query<R = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<R[]> {
    if (this.pool) return (await this.pool.query(text, params)).rows as R[];
    if (this.lite) return (await this.lite.query<R>(text, params)).rows;
    throw new Error('Database is not started (call start() first) or already closed.');
  }

  /** Runs `fn` in one transaction (committed when it resolves, rolled back when it throws). */
  async transaction<T>(fn: (tx: Executor) => Promise<T>): Promise<T> {
    if (this.pool) {
      const client = await this.pool.connect();
      try {
        return await pgSession(client).transaction(fn);
      } finally {
        client.release();
      }
    }
    if (this.lite) return this.lite.transaction((tx) => fn(liteTx(tx)));
    throw new Error('Database is not started (call start() first) or already closed.');
  }
}

function pgSession(client: pg.PoolClient): Session {
  const q: Executor = {
    query: async <R>(text: string, params: unknown[] = []) => (await client.query(text, params)).rows as R[],
    exec: async (script) => {
      await client.query(script);
    },
  };
  return {
    ...q,
    transaction: async (fn) => {
      await client.query('BEGIN');
      try {
        const result = await fn(q);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      }
    },
  };
}

function liteTx(tx: PGliteTransaction): Executor {
  return {
    query: async <R>(text: string, params: unknown[] = []) => (await tx.query<R>(text, params)).rows,
    exec: async (script) => {
      await tx.exec(script);
    },
  };
}

function liteSession(db: PGlite): Session {
  return {
    query: async <R>(text: string, params: unknown[] = []) => (await db.query<R>(text, params)).rows,
    exec: async (script) => {
      await db.exec(script);
    },
    transaction: (fn) => db.transaction((tx) => fn(liteTx(tx))),
  };
}
