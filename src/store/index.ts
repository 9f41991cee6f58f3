/** The storage layer: one Database and the repositories over it. All SQL of the server lives in src/store. */
import { AccountStore } from './accounts.ts';
import { Database, type DatabaseOptions } from './database.ts';
import { TranscriptChatStore } from './transcript-chat.ts';
import { TranscriptStore } from './transcripts.ts';
import { UsageStore } from './usage.ts';

export * from './accounts.ts';
export * from './concurrency-leases.ts';
export * from './credit-reservations.ts';
export * from './database.ts';
export * from './transcript-chat.ts';
export * from './transcripts.ts';
export * from './usage.ts';
export { MIGRATIONS_DIR, migrate } from './migrate.ts';

export interface Stores {
  db: Database;
  accounts: AccountStore;
  usage: UsageStore;
  transcripts: TranscriptStore;
  transcriptChat: TranscriptChatStore;
}

/** The repositories over a Database (started or not: they only query once used). */
export function createStores(db: Database, now: () => Date = () => new Date()): Stores {
  return { db, accounts: new AccountStore(db, now), usage: new UsageStore(db), transcripts: new TranscriptStore(db, now), transcriptChat: new TranscriptChatStore(db, now) };
}

export function createDatabase(opts: DatabaseOptions): Database {
  return new Database(opts);
}
