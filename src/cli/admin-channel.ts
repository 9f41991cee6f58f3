/**
 * The admin CLI's way into a running server that owns an embedded database: PGlite allows one process
 * per DATA_DIR, so `npm run admin` sends its command over the owner socket (DATA_DIR/run/owner.sock,
 * 0600 in a 0700 folder: only the operator's user can reach it, and nothing is exposed on the network)
 * and the server runs it with the same executeAdmin as a CLI working on the database itself.
 */
import { z } from 'zod';
import type { DataDirLock } from '../store/data-dir-lock.ts';
import { OwnerGoneError, requestOwner } from '../store/data-dir-lock.ts';
import type { Stores } from '../store/index.ts';
import { executeAdmin, type AdminResult } from './admin-commands.ts';

const AdminRequest = z.object({ op: z.literal('admin'), argv: z.array(z.string()).max(64) });
const AdminReply = z.union([
  z.object({ ok: z.literal(true), result: z.object({ code: z.number().int(), stdout: z.array(z.string()), stderr: z.array(z.string()) }) }),
  z.object({ ok: z.literal(false), error: z.string(), retry: z.boolean().optional() }),
]);

/** How long the CLI waits for a server that is still starting (migrations) or for another admin command. */
const BUSY_WAIT_MS = 120_000;
/** How long one command may run on the server. */
const COMMAND_TIMEOUT_MS = 120_000;

export interface AdminChannel {
  /** Stops taking admin commands (before the database closes); the lock itself stays until released. */
  close(): void;
}

/** Answers admin commands on the lock's socket, against these stores. */
export function serveAdminChannel(lock: DataDirLock, stores: Stores): AdminChannel {
  lock.serve(async (request) => {
    const parsed = AdminRequest.safeParse(request);
    if (!parsed.success) return { ok: false, error: `not an admin request: ${parsed.error.issues[0]?.message ?? 'invalid'}` };
    return { ok: true, result: await executeAdmin(parsed.data.argv, stores) };
  });
  return {
    close: () => lock.serve(null, `the ${lock.owner.role} process pid ${lock.owner.pid} is shutting down; run the command again once it has stopped`),
  };
}

/**
 * Runs an admin command on the process that owns DATA_DIR. Waits (bounded) while the owner is not
 * taking commands yet; throws OwnerGoneError when no process owns DATA_DIR (any more).
 */
export async function sendAdminCommand(dataDir: string, argv: string[]): Promise<AdminResult> {
  const deadline = Date.now() + BUSY_WAIT_MS;
  for (;;) {
    const { owner, reply } = await requestOwner(dataDir, { op: 'admin', argv }, COMMAND_TIMEOUT_MS);
    const r = AdminReply.parse(reply);
    if (r.ok) return r.result;
    if (!r.retry || Date.now() > deadline) {
      const who = owner ? `${owner.role} process pid ${owner.pid}` : 'owner process';
      return { code: 1, stdout: [], stderr: [`error: DATA_DIR ${dataDir} is owned by the ${who}, which did not run the command: ${r.error}`] };
    }
    await new Promise((res) => setTimeout(res, 250));
  }
}

export { OwnerGoneError };
