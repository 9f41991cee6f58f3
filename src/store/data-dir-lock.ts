/**
 * Single owner of a DATA_DIR's embedded database. PGlite has no lock of its own: two processes on one
 * data folder each work on their own copy in memory and overwrite each other's files.
 *
 * The lock is a Unix domain socket the owner listens on, DATA_DIR/run/owner.sock (folder 0700, socket
 * 0600). Binding a path is atomic (a second bind gets EADDRINUSE), and the kernel closes the socket
 * when its process dies, kill -9 included: a connect() to a dead owner's file is refused at once, so a
 * restart takes over without waiting for a timeout and without trusting a pid that may have been
 * reused. Taking over a dead owner's file (unlink, then bind) is serialised by a mkdir mutex held
 * for milliseconds. The same socket carries requests to the owner (the admin channel,
 * src/cli/admin-channel.ts): the owner sends a hello line naming itself, then one JSON line each way.
 *
 * Machine-local: a DATA_DIR on a network file system shared by several hosts is not protected (run
 * several servers on PostgreSQL instead).
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';

export interface LockOwner {
  pid: number;
  /** What holds the lock: 'server', 'admin' (the admin CLI working on the database directly) … */
  role: string;
  /** ISO time the lock was taken. */
  since: string;
}

export class DataDirLockedError extends Error {
  constructor(
    readonly dataDir: string,
    readonly owner: LockOwner | null,
  ) {
    const who = owner ? `${owner.role} process pid ${owner.pid} (since ${owner.since})` : 'another process (it did not say its pid)';
    super(
      `DATA_DIR ${dataDir} is in use by ${who}. The embedded database allows one process per DATA_DIR: ` +
        'stop that process, give this one its own DATA_DIR, or run several servers on PostgreSQL (DATABASE_URL).',
    );
    this.name = 'DataDirLockedError';
  }
}

/** The owner went away between two steps (refused connection): the caller may try to take the lock. */
export class OwnerGoneError extends Error {
  constructor(dataDir: string) {
    super(`no process owns DATA_DIR ${dataDir} any more`);
    this.name = 'OwnerGoneError';
  }
}

/** Answers one request from the owner socket; what it returns is sent back as one JSON line. */
export type OwnerRequestHandler = (request: unknown) => Promise<unknown>;

const RUN_DIR = 'run';
const SOCKET_NAME = 'owner.sock';
const MUTEX_NAME = 'takeover.lock';
/** A takeover lasts milliseconds; a mutex this old was left by a process that died during one. */
const MUTEX_STALE_MS = 30_000;
const MUTEX_WAIT_MS = 60_000;
/** How long a live owner may take to say who it is (its event loop may be busy). */
const HELLO_TIMEOUT_MS = 10_000;
const MAX_LINE_BYTES = 64 * 1024;
/** sun_path is 108 bytes on Linux, 104 on macOS (both including the final NUL). */
const MAX_SOCKET_PATH = 103;

/** The address of DATA_DIR's owner socket (relative to the working directory when the absolute one is too long). */
export function ownerSocketPath(dataDir: string): string {
  const abs = path.join(path.resolve(dataDir), RUN_DIR, SOCKET_NAME);
  if (Buffer.byteLength(abs) <= MAX_SOCKET_PATH) return abs;
  const rel = path.relative(process.cwd(), abs);
  if (Buffer.byteLength(rel) <= MAX_SOCKET_PATH) return rel;
  throw new Error(`DATA_DIR ${dataDir} is too long for its lock socket ${abs} (${Buffer.byteLength(abs)} bytes, at most ${MAX_SOCKET_PATH}): use a shorter DATA_DIR path`);
}

const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

export class DataDirLock {
  private handler: OwnerRequestHandler | null = null;
  private unavailable: string;
  private readonly sockets = new Set<net.Socket>();
  private releasing: Promise<void> | null = null;
  private readonly server = net.createServer((s) => this.onConnection(s));

  private constructor(
    readonly dataDir: string,
    readonly owner: LockOwner,
  ) {
    this.unavailable = `the ${owner.role} process pid ${owner.pid} that owns DATA_DIR ${dataDir} is not taking requests yet`;
    // Listen errors are handled by tryListen; a later one must not crash the owner.
    this.server.on('error', () => {});
  }

  /**
   * Takes DATA_DIR for this process, or throws DataDirLockedError naming the live owner.
   * A lock left by a dead process (even one killed with SIGKILL) is taken over at once.
   */
  static async acquire(dataDir: string, role: string): Promise<DataDirLock> {
    const dir = path.resolve(dataDir);
    const runDir = path.join(dir, RUN_DIR);
    try {
      await fs.mkdir(runDir, { recursive: true, mode: 0o700 });
      await fs.chmod(runDir, 0o700);
    } catch (err) {
      throw new Error(`cannot use ${runDir} for DATA_DIR's lock (${(err as Error).message}): run as the user that owns DATA_DIR`);
    }
    const address = ownerSocketPath(dir);
    const lock = new DataDirLock(dir, { pid: process.pid, role, since: new Date().toISOString() });
    let mine = await lock.tryListen(address);
    if (!mine) {
      // The socket file exists: its owner is alive, or it died and left the file behind.
      // Only a holder of the mutex removes a file, and only after a refused connect, so a live owner's is never removed.
      mine = await withMutex(path.join(runDir, MUTEX_NAME), async () => {
        if (await lock.tryListen(address)) return true;
        if (await ownerListening(address)) return false;
        await fs.rm(address, { force: true });
        return lock.tryListen(address);
      });
    }
    if (!mine) throw new DataDirLockedError(dir, await readOwner(address));
    await fs.chmod(address, 0o600);
    return lock;
  }

  /** Who answers requests from now on (null: answer that the owner is not taking requests, with `unavailable`). */
  serve(handler: OwnerRequestHandler | null, unavailable?: string): void {
    this.handler = handler;
    if (unavailable) this.unavailable = unavailable;
  }

  /** Stops listening (the socket file is removed) and drops open connections. Idempotent. */
  release(): Promise<void> {
    this.releasing ??= new Promise<void>((resolve) => {
      this.handler = null;
      this.server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
    return this.releasing;
  }

  /** listen() on the path: true when bound, false when the path is taken (EADDRINUSE). */
  private tryListen(address: string): Promise<boolean> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        this.server.off('listening', onListening);
        if (err.code === 'EADDRINUSE') resolve(false);
        else reject(err);
      };
      const onListening = () => {
        this.server.off('error', onError);
        resolve(true);
      };
      this.server.once('error', onError);
      this.server.once('listening', onListening);
      this.server.listen(address);
    });
  }

  private onConnection(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {}); // a client that goes away is not the owner's problem
    socket.write(JSON.stringify({ hello: this.owner }) + '\n');
    readLine(socket, 0)
      .then(async (line) => {
        if (line === null) return socket.end();
        let reply: unknown;
        const handler = this.handler;
        if (!handler) reply = { ok: false, retry: true, error: this.unavailable };
        else {
          try {
            reply = await handler(JSON.parse(line));
          } catch (err) {
            reply = { ok: false, error: (err as Error).message };
          }
        }
        socket.end(JSON.stringify(reply) + '\n');
      })
      .catch((err: Error) => socket.end(JSON.stringify({ ok: false, error: err.message }) + '\n'));
  }
}

/** Reads one '\n'-terminated line (null when the peer closes first); timeoutMs 0 waits as long as the peer stays. */
function readLine(socket: net.Socket, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = timeoutMs ? setTimeout(() => done(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs) : null;
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const nl = buf.indexOf(0x0a);
      if (nl >= 0) done(null, buf.subarray(0, nl).toString('utf8'));
      else if (buf.length > MAX_LINE_BYTES) done(new Error(`line longer than ${MAX_LINE_BYTES} bytes`));
    };
    const onEnd = () => done(null, null);
    const onError = (err: Error) => done(err);
    function done(err: Error | null, line?: string | null) {
      if (timer) clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      if (err) reject(err);
      else resolve(line ?? null);
    }
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
  });
}

/**
 * connect() to the path: the socket, or null when nothing listens there (refused, or no file). A process binds the
 * path a moment before it listens, and a connect() in between is refused as for a dead owner: a refusal is
 * asked again a few times before it counts (a dead owner's file stays refused).
 */
async function connect(address: string): Promise<net.Socket | null> {
  for (let attempt = 0; ; attempt++) {
    const socket = await connectOnce(address);
    if (socket || attempt >= REFUSED_RETRIES) return socket;
    await sleep(REFUSED_RETRY_MS);
  }
}

const REFUSED_RETRIES = 3;
const REFUSED_RETRY_MS = 50;

function connectOnce(address: string): Promise<net.Socket | null> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(address);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
    const onError = (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(null);
      else reject(err);
    };
    socket.once('error', onError);
  });
}

/** Whether a live process listens on the path. Anything but a refusal counts as alive (the safe side). */
async function ownerListening(address: string): Promise<boolean> {
  const socket = await connect(address).catch(() => 'unknown' as const);
  if (socket === null) return false;
  if (socket !== 'unknown') socket.destroy();
  return true;
}

/** The owner's hello, or null when it does not say within HELLO_TIMEOUT_MS. */
async function readOwner(address: string): Promise<LockOwner | null> {
  const socket = await connect(address).catch(() => null);
  if (!socket) return null;
  try {
    const line = await readLine(socket, HELLO_TIMEOUT_MS);
    return line ? ((JSON.parse(line) as { hello?: LockOwner }).hello ?? null) : null;
  } catch {
    return null;
  } finally {
    socket.destroy();
  }
}

/**
 * Sends one request to the process that owns DATA_DIR and returns its owner and reply.
 * Throws OwnerGoneError when no process listens (the caller may then take the lock itself).
 */
export async function requestOwner(dataDir: string, request: unknown, timeoutMs: number): Promise<{ owner: LockOwner | null; reply: unknown }> {
  const socket = await connect(ownerSocketPath(dataDir));
  if (!socket) throw new OwnerGoneError(path.resolve(dataDir));
  try {
    const hello = await readLine(socket, HELLO_TIMEOUT_MS);
    if (hello === null) throw new OwnerGoneError(path.resolve(dataDir));
    const owner = (JSON.parse(hello) as { hello?: LockOwner }).hello ?? null;
    socket.write(JSON.stringify(request) + '\n');
    const line = await readLine(socket, timeoutMs);
    if (line === null) throw new Error(`the ${owner?.role ?? 'owner'} process pid ${owner?.pid ?? '?'} closed the connection without an answer`);
    return { owner, reply: JSON.parse(line) };
  } finally {
    socket.destroy();
  }
}

/** Runs fn while holding a mkdir mutex; a mutex older than MUTEX_STALE_MS is a dead process's and is removed. */
async function withMutex<T>(mutex: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + MUTEX_WAIT_MS;
  for (;;) {
    try {
      await fs.mkdir(mutex);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const stat = await fs.stat(mutex).catch(() => null);
    if (stat && Date.now() - stat.mtimeMs > MUTEX_STALE_MS) {
      await fs.rm(mutex, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`could not take ${mutex} within ${MUTEX_WAIT_MS / 1000} s; remove it if no process is starting on this DATA_DIR`);
    await sleep(20 + Math.random() * 30);
  }
  try {
    return await fn();
  } finally {
    await fs.rm(mutex, { recursive: true, force: true });
  }
}
