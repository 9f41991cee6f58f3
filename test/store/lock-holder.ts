/**
 * A process that tries DATA_DIR's lock (argv[2]) and prints one JSON line: {"won":true} and then holds it
 * until killed, or {"won":false,"ownerPid":N,"message":…} and exits. Used by data-dir-lock.test.ts.
 */
import { DataDirLock, DataDirLockedError } from '../../src/store/data-dir-lock.ts';

try {
  await DataDirLock.acquire(process.argv[2], 'holder');
  console.log(JSON.stringify({ won: true, pid: process.pid }));
  setInterval(() => {}, 60_000);
} catch (err) {
  if (!(err instanceof DataDirLockedError)) throw err;
  console.log(JSON.stringify({ won: false, pid: process.pid, ownerPid: err.owner?.pid ?? null, message: err.message }));
}
