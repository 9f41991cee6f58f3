/**
 * Account administration on the server's database (DATABASE_URL, or the embedded one in DATA_DIR).
 *
 *   npm run admin -- create-account --email a@b.c [--plan free|paid] [--credits N] [--name NAME] [--no-key]
 *   npm run admin -- set-plan     (--email E | --account ID) --plan free|paid
 *   npm run admin -- add-credits  (--email E | --account ID) --credits N      (negative: --credits=-N; never below 0)
 *   npm run admin -- issue-key    (--email E | --account ID) [--name NAME]
 *   npm run admin -- revoke-key   (--email E | --account ID) --key KEY_ID
 *   npm run admin -- list-accounts [--json]
 *
 * A new API key is printed once and cannot be shown again (only its hash is stored).
 * PostgreSQL: the command runs on the database, servers may be running. Embedded database (one
 * process per DATA_DIR): when a server owns DATA_DIR the command goes to it over the admin channel
 * (src/cli/admin-channel.ts); otherwise the CLI takes DATA_DIR's lock and works on the database.
 */
import { pathToFileURL } from 'node:url';
import { loadConfig, type Config } from '../../config/config.ts';
import { DataDirLockedError, OwnerGoneError } from '../store/data-dir-lock.ts';
import { Database } from '../store/database.ts';
import { createStores } from '../store/index.ts';
import { sendAdminCommand } from './admin-channel.ts';
import { ADMIN_USAGE, executeAdmin, type AdminResult } from './admin-commands.ts';

export { ADMIN_USAGE, UsageError, runAdmin, executeAdmin, type AdminIo, type AdminResult } from './admin-commands.ts';

/** The database itself (PostgreSQL, or an embedded one this process now owns), else the process that owns it. */
async function runCommand(config: Config, argv: string[]): Promise<AdminResult> {
  // An owner may stop between our refused lock and our request: then try the lock again (bounded).
  for (let attempt = 1; ; attempt++) {
    const db = new Database({ ...config.database, owner: { dir: config.paths.dataDir, role: 'admin' } });
    try {
      await db.start();
      return await executeAdmin(argv, createStores(db));
    } catch (err) {
      if (!(err instanceof DataDirLockedError)) throw err;
      try {
        return await sendAdminCommand(config.paths.dataDir, argv);
      } catch (sendErr) {
        if (!(sendErr instanceof OwnerGoneError) || attempt >= 5) throw sendErr;
      }
    } finally {
      await db.close();
    }
  }
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    console.log(ADMIN_USAGE);
    return argv.length === 0 ? 2 : 0;
  }
  try {
    const result = await runCommand(loadConfig(), argv);
    result.stdout.forEach((l) => console.log(l));
    result.stderr.forEach((l) => console.error(l));
    return result.code;
  } catch (err) {
    console.error(`error: ${(err as Error).message}`);
    return 1;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().then((code) => process.exit(code));
}
