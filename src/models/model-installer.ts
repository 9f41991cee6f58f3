/**
 * First-use model installation (AUTO_PULL): a request that names a manifest model which is not installed waits
 * while this server pulls it, instead of failing with 503. One download per model, shared by every request that
 * needs it meanwhile (each sees its progress); resumable (the downloader keeps `<id>.partial/` and continues with
 * Range requests — across retries, requests and restarts) and checksummed (downloader.ts). A client that goes away
 * stops waiting, not the download: the next request would need it anyway.
 *
 * With AUTO_PULL off, or for ids that are not manifest models, `ensure` is `registry.resolve`: 400 for an unknown
 * id, 503 with the pull command for a model that is not installed.
 */
import { statfs } from 'node:fs/promises';
import type { Logger } from 'pino';
import { DomainError } from '../errors.ts';
import { pullModel, type PullOptions, type PullProgress } from './downloader.ts';
import { pullCommand, PullInProgressError } from './errors.ts';
import type { FileVariant, ModelKind } from './manifest.ts';
import type { ModelEntry, ModelRegistry } from './registry.ts';

/** How far a model's download is; `fraction` is null while the total size is not known yet. */
export interface InstallProgress {
  id: string;
  bytes: number;
  total: number | null;
  fraction: number | null;
}

export interface EnsureOptions {
  /** Called while this request waits for a download (the shared one's progress). */
  onProgress?: (p: InstallProgress) => void;
  /** Stop waiting (the download goes on for whoever needs it next). */
  signal?: AbortSignal;
}

/** A model the configuration names, and what its first use will do. */
export interface ConfiguredModel {
  /** What the configuration uses it for: 'default' (DEFAULT_MODEL), 'embedding', 'llm', 'translation', … */
  role: string;
  id: string;
  kind: ModelKind;
}

export interface ConfiguredModelStatus extends ConfiguredModel {
  installed: boolean;
  /**
   * What happens on first use: 'ready' (installed), 'pull' (AUTO_PULL will download it), 'downloading' (now),
   * 'manual' (not installed and AUTO_PULL off: `npm run models:pull`), 'unknown' (neither manifest id nor folder).
   */
  firstUse: 'ready' | 'pull' | 'downloading' | 'manual' | 'unknown';
  /** While downloading. */
  progress?: InstallProgress;
}

export interface ModelInstallerOptions {
  registry: ModelRegistry;
  /** Pull a missing manifest model on first use (AUTO_PULL, default on). */
  autoPull: boolean;
  /** Hub base URL (HF_ENDPOINT); the downloader's default when unset. */
  endpoint?: string;
  /** Hub token (HF_TOKEN). */
  token?: string;
  /** Which file variant to fetch for a kind (the server's precision); default 'fp32'. */
  variantFor?: (kind: ModelKind) => FileVariant;
  logger?: Logger;
  /**
   * Disk space to leave free in MODELS_DIR after a download (default 1 GiB): a download that would not leave it is
   * refused once the hub has told the sizes, so that no request can fill the disk.
   */
  minFreeBytes?: number;
  /** Downloader knobs (tests): automatic resumed retries per file and their first delay. */
  retries?: number;
  retryDelayMs?: number;
}

interface Download {
  done: Promise<void>;
  progress: InstallProgress;
  listeners: Set<(p: InstallProgress) => void>;
}

export class ModelInstaller {
  private readonly downloads = new Map<string, Download>();
  private readonly stop = new AbortController();

  constructor(private readonly opts: ModelInstallerOptions) {}

  get autoPull(): boolean {
    return this.opts.autoPull;
  }

  /**
   * The installed model for a request, pulled first when it is a manifest model that is missing and AUTO_PULL is
   * on. Throws as `registry.resolve` (400 unknown / other kind, 503 not installed) and 503 when the download fails
   * (saying that the next request resumes it).
   */
  async ensure(idOrFolder: string, kind: ModelKind, o: EnsureOptions = {}): Promise<ModelEntry> {
    const entry = this.missing(idOrFolder, kind);
    if (!entry) return this.opts.registry.resolve(idOrFolder, kind);
    await this.wait(this.download(entry.id, kind), o);
    return this.opts.registry.resolve(entry.id, kind);
  }

  /**
   * Fails now as `ensure` would before any download (unknown id, another kind, or not installed with AUTO_PULL
   * off): for routes that answer a bad request before they start a job.
   */
  check(idOrFolder: string, kind: ModelKind): void {
    if (!this.missing(idOrFolder, kind)) this.opts.registry.resolve(idOrFolder, kind);
  }

  /** The entry when it is a missing manifest model of this kind that AUTO_PULL will download; else undefined. */
  private missing(idOrFolder: string, kind: ModelKind): ModelEntry | undefined {
    const entry = this.opts.registry.get(idOrFolder);
    return entry && entry.kind === kind && this.pullable(entry) ? entry : undefined;
  }

  /** Downloads under way. */
  downloading(): InstallProgress[] {
    return [...this.downloads.values()].map((d) => ({ ...d.progress }));
  }

  /** What each configured model is and what its first use will do (start-up log, /health, the web page). */
  status(models: ConfiguredModel[]): ConfiguredModelStatus[] {
    return models.map((m) => {
      const entry = this.opts.registry.get(m.id);
      const dl = entry ? this.downloads.get(entry.id) : undefined;
      if (!entry) return { ...m, installed: false, firstUse: 'unknown' };
      if (entry.installed) return { ...m, installed: true, firstUse: 'ready' };
      if (dl) return { ...m, installed: false, firstUse: 'downloading', progress: { ...dl.progress } };
      return { ...m, installed: false, firstUse: this.pullable(entry) ? 'pull' : 'manual' };
    });
  }

  /** Stops downloads (their partial files stay for a resume) and refuses new ones. */
  async close(): Promise<void> {
    this.stop.abort(new DomainError('unavailable', 'the server is shutting down'));
    await Promise.allSettled([...this.downloads.values()].map((d) => d.done));
  }

  private pullable(entry: ModelEntry): boolean {
    return this.opts.autoPull && entry.source === 'manifest' && !entry.installed;
  }

  /** The one download of a model: started by the first request that needs it, joined by the others. */
  private download(id: string, kind: ModelKind): Download {
    const running = this.downloads.get(id);
    if (running) return running;
    if (this.stop.signal.aborted) throw new DomainError('unavailable', 'the server is shutting down');
    const model = this.opts.registry.manifestModel(id)!;
    const dl: Download = { done: Promise.resolve(), progress: { id, bytes: 0, total: null, fraction: null }, listeners: new Set() };
    const log = this.opts.logger;
    const endpoint = this.opts.endpoint;
    log?.info({ model: id, endpoint: endpoint ?? '(HF_ENDPOINT or huggingface.co)' }, `model ${id} is not installed: downloading it (AUTO_PULL)`);
    const t0 = performance.now();
    // Stopped by close() or by the disk check; `refused` is what the waiters are told then.
    const abort = new AbortController();
    const onStop = () => abort.abort(this.stop.signal.reason);
    this.stop.signal.addEventListener('abort', onStop, { once: true });
    let refused: DomainError | null = null;
    let diskChecked = false;
    const checkDisk = (p: PullProgress) => {
      if (diskChecked || p.total === null) return;
      diskChecked = true;
      const dir = this.opts.registry.modelsDir;
      const needed = p.total - p.bytes + (this.opts.minFreeBytes ?? 1024 ** 3);
      void statfs(dir).then(
        (st) => {
          const free = st.bavail * st.bsize;
          if (free >= needed) return;
          const gb = (n: number) => (n / 1024 ** 3).toFixed(1);
          refused = new DomainError(
            'unavailable',
            `Model '${id}' needs ${gb(p.total! - p.bytes)} GB more in MODELS_DIR (${dir}), which has ${gb(free)} GB free (and ${gb(this.opts.minFreeBytes ?? 1024 ** 3)} GB must stay free): free some space, or install it elsewhere and point MODELS_DIR there.`,
            { expected: false },
          );
          abort.abort(refused);
        },
        () => {},
      );
    };
    const pullOpts: PullOptions = {
      modelsDir: this.opts.registry.modelsDir,
      endpoint,
      token: this.opts.token,
      variant: this.opts.variantFor?.(kind) ?? 'fp32',
      signal: abort.signal,
      ...(this.opts.retries !== undefined ? { retries: this.opts.retries } : {}),
      ...(this.opts.retryDelayMs !== undefined ? { retryDelayMs: this.opts.retryDelayMs } : {}),
      onProgress: (p: PullProgress) => {
        checkDisk(p);
        dl.progress = { id, bytes: p.bytes, total: p.total, fraction: p.total ? Math.min(1, p.bytes / p.total) : null };
        for (const l of dl.listeners) l(dl.progress);
      },
    };
    dl.done = pullModel(id, model, pullOpts).then(
      (r) => {
        this.stop.signal.removeEventListener('abort', onStop);
        this.downloads.delete(id);
        const resumed = r.resumedFiles.length ? `, resumed ${r.resumedFiles.length} file(s)` : '';
        log?.info({ model: id, path: r.path, bytes: r.bytesDownloaded, ms: Math.round(performance.now() - t0) }, `model ${id} installed${resumed}`);
      },
      (err: Error) => {
        this.stop.signal.removeEventListener('abort', onStop);
        this.downloads.delete(id);
        throw refused ?? this.failure(id, err);
      },
    );
    // Nobody may be waiting when it fails (every client gone): the failure is logged here, not unhandled.
    dl.done.catch((err: Error) => log?.warn({ model: id, err: err.message }, 'model download failed'));
    this.downloads.set(id, dl);
    return dl;
  }

  private failure(id: string, err: Error): DomainError {
    if (err instanceof DomainError) return err;
    if (err instanceof PullInProgressError) {
      return new DomainError('unavailable', `Model '${id}' is being installed by another process (models:pull or another server); retry in a minute.`, { retryAfterS: 30 });
    }
    const where = this.opts.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co';
    return new DomainError(
      'unavailable',
      `Model '${id}' is not installed and downloading it from ${where} failed: ${err.message}. ` +
        `Retry the request to resume the download, install it with: ${pullCommand(id)}, or point MODELS_DIR at a folder that has it.`,
      { retryAfterS: 10, cause: err },
    );
  }

  /** Waits for a download with this request's listener; leaving early (signal) detaches only the listener. */
  private async wait(dl: Download, o: EnsureOptions): Promise<void> {
    const listener = o.onProgress;
    if (listener) {
      dl.listeners.add(listener);
      listener({ ...dl.progress });
    }
    try {
      if (!o.signal) return await dl.done;
      o.signal.throwIfAborted();
      let onAbort: () => void = () => {};
      const aborted = new Promise<never>((_, reject) => {
        onAbort = () => reject(o.signal!.reason ?? new DomainError('cancelled', 'the client went away'));
        o.signal!.addEventListener('abort', onAbort, { once: true });
      });
      try {
        await Promise.race([dl.done, aborted]);
      } finally {
        o.signal.removeEventListener('abort', onAbort);
      }
    } finally {
      if (listener) dl.listeners.delete(listener);
    }
  }
}
