/**
 * Model downloader: fetches a manifest model's files from a Hugging Face hub (or a mirror speaking the same
 * `resolve` URL scheme) into `<MODELS_DIR>/<id>.partial/`, verifies every file, and only then renames the folder
 * to `<MODELS_DIR>/<id>/`. A model folder therefore never exists half-installed.
 *
 * Integrity. Each file's sha256 is computed while it streams to disk and checked against, in this order:
 *  1. the manifest's `sha256`, when not null (authoritative: it must match);
 *  2. otherwise the hub's own checksum: for files stored in Git LFS (all model weights) the hub answers a
 *     `resolve` request with the file's sha256 in `X-Linked-Etag` (and `ETag`) and its size in `X-Linked-Size`;
 *     for small files kept in git itself (config/tokenizer JSON) the `ETag` is the git blob id,
 *     sha1("blob <size>\0" + content), which is checked instead;
 *  3. when neither exists, the download is refused unless `allowUnverified` is set.
 * What was verified, against what, is recorded per file in `<id>/.stt-model.json` (see integrity.ts).
 * Trusting the hub's checksum protects against truncated/corrupted transfers and CDN problems, not against the
 * hub repository itself changing: pin `revision` to a commit and fill in `sha256` in the manifest for that.
 *
 * Resume. Interrupted files are kept as `<path>.part` in the `.partial` folder; the next attempt (automatic retry
 * or a later pull) asks for `Range: bytes=<have>-`. A 206 is appended (after checking Content-Range), a 200 from
 * a server that ignores Range restarts the file, a 416 for a complete file is accepted. Files already finished
 * are recorded in `.partial/.stt-partial.json` and re-hashed instead of downloaded again.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { link, copyFile, mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { dirname, join, relative, sep } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ChecksumMismatchError, DownloadError, PullInProgressError, SizeMismatchError } from './errors.ts';
import { gitBlobSha1File, hashFileInto, LOCK_FILE, readLockFile, sha256File, type LockFile, type VerifiedAgainst } from './integrity.ts';
import { filesForVariant, MODEL_ID_RE, type FileVariant, type ManifestFile, type ManifestModel } from './manifest.ts';

export const DEFAULT_HF_ENDPOINT = 'https://huggingface.co';
const PARTIAL_STATE = '.stt-partial.json';

export interface PullProgress {
  id: string;
  /** 'probe': asking the hub for sizes/checksums; 'download': bytes arriving; 'verify': hashing; 'done': file finished. */
  phase: 'probe' | 'download' | 'verify' | 'done';
  file: string;
  fileIndex: number;
  fileCount: number;
  fileBytes: number;
  /** null while unknown. */
  fileTotal: number | null;
  /** Bytes of all files of this pull that are on disk (downloaded now or earlier). */
  bytes: number;
  /** Sum of all file sizes; null while any size is unknown. */
  total: number | null;
  /** True when this file continues a previous partial download. */
  resumed: boolean;
}

export interface PullOptions {
  modelsDir: string;
  /** Hub base URL; default `process.env.HF_ENDPOINT` or https://huggingface.co. */
  endpoint?: string;
  /** Bearer token; default `process.env.HF_TOKEN`. Sent to the endpoint's origin only, never to redirect targets elsewhere. */
  token?: string;
  /** Default 'fp32'. */
  variant?: FileVariant;
  /** Download everything again even when installed. */
  force?: boolean;
  /** Accept files for which neither the manifest nor the server gives a checksum. */
  allowUnverified?: boolean;
  /** Automatic resumed retries per file after network errors (default 3). */
  retries?: number;
  /** First retry delay, doubled each time (default 1000 ms). */
  retryDelayMs?: number;
  /** Abort a request after this long without data (default 60 s). */
  idleTimeoutMs?: number;
  onProgress?: (p: PullProgress) => void;
  signal?: AbortSignal;
  userAgent?: string;
}

export interface PullResult {
  id: string;
  path: string;
  variant: FileVariant;
  /** Nothing to do: every file was already installed. */
  alreadyInstalled: boolean;
  /** Bytes transferred over the network by this call. */
  bytesDownloaded: number;
  /** Files that continued an earlier partial download. */
  resumedFiles: string[];
  lock: LockFile;
}

/** Metadata the hub sends about a file (first response of a resolve request, before any redirect). */
export interface HubFileInfo {
  sha256: string | null;
  gitSha1: string | null;
  size: number | null;
  commit: string | null;
}

export function fileUrl(endpoint: string, repo: string, revision: string, path: string): string {
  const base = endpoint.replace(/\/+$/, '');
  const rev = encodeURIComponent(revision);
  const p = path.split('/').map(encodeURIComponent).join('/');
  return `${base}/${repo}/resolve/${rev}/${p}`;
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP

interface RequestOpts {
  method: 'GET' | 'HEAD';
  headers: Record<string, string>;
  token?: string;
  tokenOrigin: string;
  followRedirects: boolean;
  idleTimeoutMs: number;
  signal?: AbortSignal;
}

interface Response {
  status: number;
  headers: IncomingHttpHeaders;
  /** Headers of the first response in the redirect chain (the hub's own). */
  firstHeaders: IncomingHttpHeaders;
  body: IncomingMessage;
  url: string;
}

function requestOnce(url: URL, o: RequestOpts): Promise<IncomingMessage> {
  const headers: Record<string, string> = { ...o.headers };
  if (o.token && url.origin === o.tokenOrigin) headers.authorization = `Bearer ${o.token}`;
  const mod = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : null;
  if (!mod) return Promise.reject(new DownloadError(`Unsupported URL protocol: ${url.href}`, url.href));
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method: o.method, headers, signal: o.signal }, (res) => resolve(res));
    req.setTimeout(o.idleTimeoutMs, () => {
      req.destroy(new DownloadError(`No data for ${o.idleTimeoutMs} ms from ${url.href}`, url.href, undefined, true));
    });
    req.on('error', (e) => {
      if (e instanceof DownloadError) reject(e);
      else if ((e as Error).name === 'AbortError') reject(e);
      else reject(new DownloadError(`Request to ${url.href} failed: ${(e as Error).message}`, url.href, undefined, true, { cause: e }));
    });
    req.end();
  });
}

async function request(urlStr: string, o: RequestOpts): Promise<Response> {
  let url = new URL(urlStr);
  let first: IncomingHttpHeaders | null = null;
  for (let hop = 0; hop <= 10; hop++) {
    const res = await requestOnce(url, o);
    first ??= res.headers;
    const status = res.statusCode ?? 0;
    if (o.followRedirects && status >= 300 && status < 400 && status !== 304 && res.headers.location) {
      res.resume();
      url = new URL(res.headers.location, url);
      continue;
    }
    return { status, headers: res.headers, firstHeaders: first, body: res, url: url.href };
  }
  throw new DownloadError(`Too many redirects for ${urlStr}`, urlStr);
}

function header(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

function etagValue(v: string | undefined): string | null {
  if (!v) return null;
  const m = /^(?:W\/)?"?([^"]*)"?$/.exec(v.trim());
  return m ? m[1].toLowerCase() : null;
}

/** Reads the hub's checksum/size headers. Only the first (hub) response is trusted, never a CDN's. */
export function hubInfoFromHeaders(h: IncomingHttpHeaders, status: number): HubFileInfo {
  const linked = etagValue(header(h, 'x-linked-etag'));
  const etag = etagValue(header(h, 'etag'));
  const isSha256 = (s: string | null): s is string => s !== null && /^[0-9a-f]{64}$/.test(s);
  const isSha1 = (s: string | null): s is string => s !== null && /^[0-9a-f]{40}$/.test(s);
  const sha256 = isSha256(linked) ? linked : isSha256(etag) ? etag : null;
  const gitSha1 = sha256 ? null : isSha1(etag) ? etag : null;
  const linkedSize = header(h, 'x-linked-size');
  const contentLength = status === 200 ? header(h, 'content-length') : undefined;
  const sizeStr = linkedSize ?? contentLength;
  const size = sizeStr !== undefined && /^\d+$/.test(sizeStr) ? Number(sizeStr) : null;
  return { sha256, gitSha1, size, commit: header(h, 'x-repo-commit') ?? null };
}

function mergeInfo(a: HubFileInfo | null, b: HubFileInfo): HubFileInfo {
  if (!a) return b;
  return {
    sha256: a.sha256 ?? b.sha256,
    gitSha1: a.gitSha1 ?? b.gitSha1,
    size: a.size ?? b.size,
    commit: a.commit ?? b.commit,
  };
}

function httpError(status: number, url: string, token: string | undefined): DownloadError {
  if (status === 401 || status === 403) {
    return new DownloadError(
      `HTTP ${status} for ${url}: access denied${token ? ' (HF_TOKEN was sent: does it have access to this repository?)' : ' (gated or private repository? set HF_TOKEN)'}`,
      url,
      status,
    );
  }
  if (status === 404) return new DownloadError(`HTTP 404 for ${url}: no such file at this revision`, url, status);
  const retryable = status === 408 || status === 429 || status >= 500;
  return new DownloadError(`HTTP ${status} for ${url}`, url, status, retryable);
}

// ---------------------------------------------------------------------------------------------------------------
// One file

interface FileContext {
  url: string;
  req: Omit<RequestOpts, 'method' | 'followRedirects' | 'headers'> & { headers: Record<string, string> };
  onBytes: (fileBytes: number, fileTotal: number | null, resumed: boolean) => void;
}

interface FetchOutcome {
  sha256: string;
  size: number;
  info: HubFileInfo;
  resumed: boolean;
  transferred: number;
}

/** One attempt: continues `part` from its current length. Throws DownloadError (retryable ones keep `part`). */
async function fetchToPart(part: string, ctx: FileContext): Promise<FetchOutcome> {
  let have = 0;
  try {
    have = (await stat(part)).size;
  } catch {
    /* new file */
  }
  const headers: Record<string, string> = { ...ctx.req.headers };
  if (have > 0) headers.range = `bytes=${have}-`;
  const res = await request(ctx.url, { ...ctx.req, headers, method: 'GET', followRedirects: true });
  const info = hubInfoFromHeaders(res.firstHeaders, res.status);
  const h = createHash('sha256');

  if (res.status === 416 && have > 0) {
    res.body.resume();
    const m = /^bytes \*\/(\d+)$/.exec(header(res.headers, 'content-range') ?? '');
    if (m && Number(m[1]) === have) {
      await hashFileInto(h, part);
      return { sha256: h.digest('hex'), size: have, info, resumed: true, transferred: 0 };
    }
    await rm(part, { force: true });
    throw new DownloadError(`Server refused to resume ${ctx.url} (HTTP 416); restarting the file`, ctx.url, 416, true);
  }
  if (res.status !== 200 && res.status !== 206) {
    res.body.resume();
    throw httpError(res.status, res.url, ctx.req.token);
  }
  if (header(res.headers, 'content-encoding') && header(res.headers, 'content-encoding') !== 'identity') {
    res.body.resume();
    throw new DownloadError(`Server sent a content-encoded body for ${ctx.url} despite Accept-Encoding: identity`, ctx.url);
  }

  let start = 0;
  let total: number | null = null;
  if (res.status === 206) {
    const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header(res.headers, 'content-range') ?? '');
    if (!m || Number(m[1]) !== have) {
      res.body.resume();
      await rm(part, { force: true });
      throw new DownloadError(`Bad Content-Range in resume of ${ctx.url}; restarting the file`, ctx.url, 206, true);
    }
    start = have;
    total = m[3] === '*' ? null : Number(m[3]);
  } else {
    const cl = header(res.headers, 'content-length');
    total = cl !== undefined && /^\d+$/.test(cl) ? Number(cl) : null;
  }
  total ??= info.size;
  const resumed = start > 0;
  if (resumed) await hashFileInto(h, part, start);

  await mkdir(dirname(part), { recursive: true });
  let bytes = start;
  ctx.onBytes(bytes, total, resumed);
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      bytes += chunk.length;
      ctx.onBytes(bytes, total, resumed);
      cb(null, chunk);
    },
  });
  try {
    // 'r+' keeps the verified prefix; 'w' truncates (fresh file or a server that ignored Range).
    await pipeline(res.body, counter, createWriteStream(part, resumed ? { flags: 'r+', start } : { flags: 'w' }));
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new DownloadError(`Connection lost while downloading ${ctx.url} after ${bytes} bytes: ${(e as Error).message}`, ctx.url, undefined, true, { cause: e });
  }
  if (total !== null && bytes < total) {
    throw new DownloadError(`Download of ${ctx.url} ended early: ${bytes} of ${total} bytes`, ctx.url, undefined, true);
  }
  return { sha256: h.digest('hex'), size: bytes, info, resumed, transferred: bytes - start };
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(signal.reason);
    });
  });

interface VerifiedFile {
  size: number;
  sha256: string;
  verifiedAgainst: VerifiedAgainst;
}

// ---------------------------------------------------------------------------------------------------------------
// Whole model

interface PartialState {
  version: 1;
  repo: string;
  revision: string;
  files: Record<string, VerifiedFile>;
  commit: string | null;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function acquirePullLock(lockPath: string, id: string): Promise<() => Promise<void>> {
  for (let i = 0; i < 2; i++) {
    try {
      const fh = await open(lockPath, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      return () => rm(lockPath, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number((await readFile(lockPath, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) {
        throw new PullInProgressError(`Model '${id}' is being pulled by another process (pid ${pid}); lock ${lockPath}`);
      }
      if (pid === process.pid) throw new PullInProgressError(`Model '${id}' is already being pulled by this process`);
      await rm(lockPath, { force: true }); // stale
    }
  }
  throw new PullInProgressError(`Could not lock ${lockPath}`);
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

async function readState(path: string): Promise<PartialState | null> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as PartialState;
  } catch {
    return null;
  }
}

/**
 * Downloads, verifies and installs one manifest model as `<modelsDir>/<id>/`.
 * Throws ChecksumMismatchError / SizeMismatchError (partial folder removed), DownloadError (partial folder kept
 * for a resume when the error was a network one), PullInProgressError.
 */
export async function pullModel(id: string, model: ManifestModel, opts: PullOptions): Promise<PullResult> {
  if (!MODEL_ID_RE.test(id)) throw new Error(`Invalid model id '${id}'`);
  const endpoint = (opts.endpoint || process.env.HF_ENDPOINT || DEFAULT_HF_ENDPOINT).replace(/\/+$/, '');
  if (!URL.canParse(endpoint) || !/^https?:$/.test(new URL(endpoint).protocol)) {
    throw new DownloadError(`Invalid hub endpoint '${endpoint}' (HF_ENDPOINT): expected an http(s) URL`, endpoint);
  }
  const token = opts.token ?? (process.env.HF_TOKEN || undefined);
  const variant = opts.variant ?? 'fp32';
  const retries = opts.retries ?? 3;
  const retryDelayMs = opts.retryDelayMs ?? 1000;
  const idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
  const finalDir = join(opts.modelsDir, id);
  const partialDir = `${finalDir}.partial`;
  const statePath = join(partialDir, PARTIAL_STATE);
  const files = filesForVariant(model, variant);
  const baseHeaders: Record<string, string> = {
    'accept-encoding': 'identity',
    'user-agent': opts.userAgent ?? 'open-stt-server-model-pull/0.1',
  };
  const reqBase = { token, tokenOrigin: new URL(endpoint).origin, idleTimeoutMs, signal: opts.signal, headers: baseHeaders };

  await mkdir(opts.modelsDir, { recursive: true });
  const release = await acquirePullLock(`${finalDir}.lock`, id);
  try {
    // What is already installed and can be kept (e.g. fp32 files when adding --quantized).
    const oldLock = opts.force ? null : await readLockFile(finalDir);
    const installed = new Map<string, VerifiedFile | null>();
    if (!opts.force && (await exists(finalDir))) {
      for (const f of files) {
        if (await exists(join(finalDir, f.path))) installed.set(f.path, oldLock?.files[f.path] ?? null);
      }
      const absent = new Set(oldLock?.absent ?? []);
      if (files.every((f) => installed.has(f.path) || (f.optional && absent.has(f.path)))) {
        const lock: LockFile = oldLock ?? (await lockFromFolder(id, model, endpoint, variant, finalDir, files));
        return { id, path: finalDir, variant, alreadyInstalled: true, bytesDownloaded: 0, resumedFiles: [], lock };
      }
    }

    await mkdir(partialDir, { recursive: true });
    let state = await readState(statePath);
    if (!state || state.repo !== model.repo || state.revision !== model.revision) {
      if (state) {
        await rm(partialDir, { recursive: true, force: true });
        await mkdir(partialDir, { recursive: true });
      }
      state = { version: 1, repo: model.repo, revision: model.revision, files: {}, commit: null };
    }
    const saveState = () => writeFile(statePath, JSON.stringify(state, null, 1));

    // Sizes for the overall progress: manifest, else a HEAD probe of the hub (cheap, and it catches 401/404 early).
    const sizes = new Map<string, number | null>();
    const probed = new Map<string, HubFileInfo>();
    const absent: string[] = [];
    const todo: ManifestFile[] = [];
    for (const [i, f] of files.entries()) {
      const known = installed.get(f.path)?.size ?? state.files[f.path]?.size ?? f.size;
      if (installed.has(f.path)) {
        sizes.set(f.path, known ?? (await stat(join(finalDir, f.path))).size);
        continue;
      }
      if (known !== null && known !== undefined && !f.optional) {
        sizes.set(f.path, known);
        todo.push(f);
        continue;
      }
      opts.onProgress?.({ id, phase: 'probe', file: f.path, fileIndex: i, fileCount: files.length, fileBytes: 0, fileTotal: null, bytes: 0, total: null, resumed: false });
      const url = fileUrl(endpoint, model.repo, model.revision, f.path);
      let res: Response | null = null;
      try {
        res = await request(url, { ...reqBase, method: 'HEAD', followRedirects: false });
        res.body.resume();
      } catch (e) {
        if ((e as Error).name === 'AbortError') throw e;
        /* the GET will report it */
      }
      if (res && res.status === 404 && f.optional) {
        absent.push(f.path);
        continue;
      }
      if (res && (res.status === 401 || res.status === 403 || res.status === 404)) throw httpError(res.status, url, token);
      const info = res && res.status < 400 ? hubInfoFromHeaders(res.firstHeaders, res.status) : null;
      if (info) probed.set(f.path, info);
      sizes.set(f.path, f.size ?? info?.size ?? null);
      todo.push(f);
    }

    const sizeOf = (p: string) => sizes.get(p) ?? null;
    const overallTotal = () => {
      let t = 0;
      for (const f of files) {
        if (absent.includes(f.path)) continue;
        const s = sizeOf(f.path);
        if (s === null) return null;
        t += s;
      }
      return t;
    };
    const doneBytes = new Map<string, number>();
    for (const f of files) if (installed.has(f.path)) doneBytes.set(f.path, sizeOf(f.path) ?? 0);
    const sumDone = () => [...doneBytes.values()].reduce((a, b) => a + b, 0);

    let bytesDownloaded = 0;
    const resumedFiles: string[] = [];
    const verified: Record<string, VerifiedFile> = {};

    for (const [i, f] of files.entries()) {
      if (installed.has(f.path) || absent.includes(f.path)) continue;
      const dest = join(partialDir, f.path);
      const part = `${dest}.part`;
      const url = fileUrl(endpoint, model.repo, model.revision, f.path);
      const progress = (phase: PullProgress['phase'], fileBytes: number, fileTotal: number | null, resumed: boolean) => {
        doneBytes.set(f.path, fileBytes);
        opts.onProgress?.({ id, phase, file: f.path, fileIndex: i, fileCount: files.length, fileBytes, fileTotal, bytes: sumDone(), total: overallTotal(), resumed });
      };

      // Finished in an earlier attempt: re-hash against what was verified then.
      const prev = state.files[f.path];
      if (prev && (await exists(dest))) {
        progress('verify', 0, prev.size, true);
        const [st, sha] = [await stat(dest), await sha256File(dest)];
        if (st.size === prev.size && sha === prev.sha256 && (f.sha256 === null || f.sha256 === sha)) {
          verified[f.path] = prev;
          progress('done', prev.size, prev.size, true);
          continue;
        }
        await rm(dest, { force: true });
      }
      delete state.files[f.path];

      const ctx: FileContext = {
        url,
        req: reqBase,
        onBytes: (b, t, r) => {
          if (t !== null && sizeOf(f.path) === null) sizes.set(f.path, t);
          progress('download', b, t ?? sizeOf(f.path), r);
        },
      };
      let outcome: FetchOutcome | null = null;
      for (let attempt = 0; ; attempt++) {
        try {
          outcome = await fetchToPart(part, ctx);
          break;
        } catch (e) {
          if (e instanceof DownloadError && e.httpStatus === 404 && f.optional) break;
          if (!(e instanceof DownloadError) || !e.retryable || attempt >= retries || opts.signal?.aborted) throw e;
          await sleep(retryDelayMs * 2 ** attempt, opts.signal);
        }
      }
      if (!outcome) {
        absent.push(f.path);
        await rm(part, { force: true });
        progress('done', 0, 0, false);
        continue;
      }
      bytesDownloaded += outcome.transferred;
      if (outcome.resumed) resumedFiles.push(f.path);
      const info = mergeInfo(probed.get(f.path) ?? null, outcome.info);
      state.commit ??= info.commit;

      progress('verify', outcome.size, outcome.size, outcome.resumed);
      const fail = async (err: Error): Promise<never> => {
        await rm(part, { force: true });
        await rm(partialDir, { recursive: true, force: true });
        throw err;
      };
      const expectedSize = f.size ?? info.size;
      if (expectedSize !== null && outcome.size !== expectedSize) {
        await fail(new SizeMismatchError(f.path, expectedSize, outcome.size, f.size !== null ? 'manifest' : 'hub'));
      }
      let against: VerifiedAgainst;
      if (f.sha256 !== null) {
        if (outcome.sha256 !== f.sha256) await fail(new ChecksumMismatchError(f.path, f.sha256, outcome.sha256, 'manifest'));
        against = 'manifest';
      } else if (info.sha256 !== null) {
        if (outcome.sha256 !== info.sha256) await fail(new ChecksumMismatchError(f.path, info.sha256, outcome.sha256, 'hub'));
        against = 'hub-sha256';
      } else if (info.gitSha1 !== null) {
        const sha1 = await gitBlobSha1File(part);
        if (sha1 !== info.gitSha1) await fail(new ChecksumMismatchError(f.path, info.gitSha1, sha1, 'hub', 'git-sha1'));
        against = 'hub-git-sha1';
      } else if (opts.allowUnverified) {
        against = 'unverified';
      } else {
        throw new DownloadError(
          `No checksum for '${f.path}': the manifest has none and ${endpoint} sent none (X-Linked-Etag/ETag). ` +
            `Refusing to install it unverified; pass --allow-unverified to accept it (recorded as 'unverified').`,
          url,
        );
      }
      await rename(part, dest);
      verified[f.path] = { size: outcome.size, sha256: outcome.sha256, verifiedAgainst: against };
      state.files[f.path] = verified[f.path];
      await saveState();
      progress('done', outcome.size, outcome.size, outcome.resumed);
    }

    // Keep everything of the installed folder that this pull did not download (e.g. the fp32 files when
    // adding --quantized, or files the user put there).
    if (installed.size > 0 || (await exists(finalDir))) {
      for (const e of await readdir(finalDir, { withFileTypes: true, recursive: true }).catch(() => [])) {
        if (!e.isFile()) continue;
        const p = relative(finalDir, join(e.parentPath, e.name)).split(sep).join('/');
        if (p === LOCK_FILE || installed.has(p) || verified[p] || (await exists(join(partialDir, p)))) continue;
        const dest = join(partialDir, p);
        await mkdir(dirname(dest), { recursive: true });
        await link(join(finalDir, p), dest).catch(() => copyFile(join(finalDir, p), dest));
      }
    }
    for (const [p, rec] of installed) {
      const src = join(finalDir, p);
      const dest = join(partialDir, p);
      await mkdir(dirname(dest), { recursive: true });
      await rm(dest, { force: true });
      await link(src, dest).catch(() => copyFile(src, dest));
      if (rec) {
        verified[p] = rec;
      } else {
        const f = files.find((x) => x.path === p)!;
        const sha = await sha256File(dest);
        if (f.sha256 !== null && f.sha256 !== sha) {
          await rm(partialDir, { recursive: true, force: true });
          throw new ChecksumMismatchError(p, f.sha256, sha, `manifest (installed file ${src})`);
        }
        verified[p] = { size: (await stat(dest)).size, sha256: sha, verifiedAgainst: f.sha256 !== null ? 'manifest' : 'unverified' };
      }
    }

    const lock: LockFile = {
      version: 1,
      id,
      repo: model.repo,
      revision: model.revision,
      commit: state.commit ?? oldLock?.commit ?? null,
      endpoint,
      variant: oldLock && oldLock.variant !== variant && installed.size > 0 ? `${oldLock.variant}+${variant}` : variant,
      installedAt: new Date().toISOString(),
      files: { ...(oldLock?.files ?? {}), ...verified },
      absent: [...new Set([...(oldLock?.absent ?? []), ...absent])].filter((p) => !verified[p]),
    };
    // Carry over lock entries only for files that are really in the new folder.
    for (const p of Object.keys(lock.files)) if (!(await exists(join(partialDir, p)))) delete lock.files[p];
    await writeFile(join(partialDir, LOCK_FILE), JSON.stringify(lock, null, 2) + '\n');
    await unlink(statePath).catch(() => undefined);

    if (await exists(finalDir)) {
      const old = `${finalDir}.old-${process.pid}-${Date.now()}`;
      await rename(finalDir, old);
      await rename(partialDir, finalDir);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(partialDir, finalDir);
    }
    return { id, path: finalDir, variant, alreadyInstalled: false, bytesDownloaded, resumedFiles, lock };
  } catch (e) {
    // Keep a partial folder only if it holds bytes worth resuming.
    if (!(await hasData(partialDir))) await rm(partialDir, { recursive: true, force: true });
    throw e;
  } finally {
    await release();
  }
}

async function hasData(dir: string): Promise<boolean> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true, recursive: true });
  } catch {
    return false;
  }
  for (const e of entries) {
    if (!e.isFile() || e.name === PARTIAL_STATE) continue;
    if ((await stat(join(e.parentPath, e.name))).size > 0) return true;
  }
  return false;
}

/** Lock data for a folder that was installed by hand (no .stt-model.json): hashes what is there. */
async function lockFromFolder(id: string, model: ManifestModel, endpoint: string, variant: FileVariant, dir: string, files: ManifestFile[]): Promise<LockFile> {
  const out: LockFile['files'] = {};
  for (const f of files) {
    const p = join(dir, f.path);
    if (!(await exists(p))) continue;
    const sha = await sha256File(p);
    out[f.path] = { size: (await stat(p)).size, sha256: sha, verifiedAgainst: f.sha256 === sha ? 'manifest' : 'unverified' };
  }
  return {
    version: 1,
    id,
    repo: model.repo,
    revision: model.revision,
    commit: null,
    endpoint,
    variant,
    installedAt: new Date().toISOString(),
    files: out,
    absent: [],
  };
}
