/**
 * File transcription jobs: id, status, progress, cancellation. The HTTP request that created a job
 * waits for its result (as the API reference says), while GET /v1/jobs/:id shows its progress to
 * its owner (the CLI's progress bar, a web page). Finished jobs are kept for `retainMs` so that a
 * last poll still finds them.
 *
 * Jobs belong to an owner (the account of the key, or the client address of an anonymous request)
 * and public ids are scoped per owner: another tenant can neither see nor cancel a job, nor learn
 * that an id it chose is in use by someone else (its job simply gets that id in its own scope).
 * Internally each job has a handle of its own, which the pipeline uses for progress and results.
 */
import { randomUUID } from 'node:crypto';
import { DomainError } from '../errors.ts';

export type JobStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

export interface JobProgress {
  /** decoding → vad → transcribing → diarizing → done */
  stage: string;
  /** 0..1 */
  fraction: number;
  /** Seconds of audio processed so far / in total (when known). */
  processedSeconds?: number;
  totalSeconds?: number;
}

export interface JobView {
  id: string;
  status: JobStatus;
  progress: JobProgress;
  created_at: string;
  updated_at: string;
  error?: string;
  /** Filled for completed jobs while retained. */
  result?: unknown;
}

interface Job extends JobView {
  controller: AbortController;
  owner: string;
  handle: string;
}

/** Who owns a job: `account:<id>` for a key's account, `ip:<address>` for anonymous clients. */
export function jobOwner(accountId: string | null | undefined, ip: string): string {
  return accountId ? `account:${accountId}` : `ip:${ip}`;
}

const scoped = (owner: string, id: string) => `${owner}\n${id}`;

export class JobRegistry {
  /** By internal handle. */
  private readonly jobs = new Map<string, Job>();
  /** owner + public id → handle. */
  private readonly byOwner = new Map<string, string>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly opts: { retainMs?: number; maxJobs?: number } = {}) {
    this.sweeper = setInterval(() => this.sweep(), 30_000);
    this.sweeper.unref();
  }

  /**
   * `id`: a client-chosen id (so it can poll progress while its request runs); must be unused by
   * this owner (409 otherwise; other owners' ids are invisible). Returns the internal handle (`id`,
   * for progress/complete/fail/cancel) and the id the client sees (`publicId`).
   */
  create(id?: string, owner = ''): { id: string; publicId: string; signal: AbortSignal } {
    if (this.jobs.size >= (this.opts.maxJobs ?? 10_000)) this.sweep(true);
    if (id !== undefined && this.byOwner.has(scoped(owner, id))) {
      throw new DomainError('conflict', `Job id '${id}' is already in use; choose another (a UUID).`);
    }
    const now = new Date().toISOString();
    const handle = randomUUID();
    const job: Job = {
      id: id ?? handle,
      status: 'queued',
      progress: { stage: 'queued', fraction: 0 },
      created_at: now,
      updated_at: now,
      controller: new AbortController(),
      owner,
      handle,
    };
    this.jobs.set(handle, job);
    this.byOwner.set(scoped(owner, job.id), handle);
    return { id: handle, publicId: job.id, signal: job.controller.signal };
  }

  /** The job `publicId` of `owner`; undefined for an unknown id and for another owner's job alike. */
  find(owner: string, publicId: string): JobView | undefined {
    const handle = this.byOwner.get(scoped(owner, publicId));
    return handle === undefined ? undefined : this.get(handle);
  }

  /** Cancels `owner`'s job `publicId`; undefined when there is no such job of this owner. */
  cancelOwned(owner: string, publicId: string, reason: string): boolean | undefined {
    const handle = this.byOwner.get(scoped(owner, publicId));
    return handle === undefined ? undefined : this.cancel(handle, reason);
  }

  progress(id: string, p: JobProgress): void {
    const job = this.jobs.get(id);
    if (!job || isFinal(job.status)) return;
    job.status = 'running';
    job.progress = { ...p, fraction: Math.min(1, Math.max(0, p.fraction)) };
    job.updated_at = new Date().toISOString();
  }

  complete(id: string, result?: unknown): void {
    this.finish(id, 'completed', { result, progress: { stage: 'done', fraction: 1 } });
  }

  fail(id: string, message: string): void {
    this.finish(id, 'failed', { error: message });
  }

  /** Cancels a running job (client went away, or DELETE): its work stops at the next step. */
  cancel(id: string, reason = 'cancelled'): boolean {
    const job = this.jobs.get(id);
    if (!job || isFinal(job.status)) return false;
    job.controller.abort(new Error(reason));
    this.finish(id, 'cancelled', { error: reason });
    return true;
  }

  get(id: string): JobView | undefined {
    const job = this.jobs.get(id);
    if (!job) return undefined;
    const { controller: _c, owner: _o, handle: _h, ...view } = job;
    return view;
  }

  get active(): number {
    let n = 0;
    for (const j of this.jobs.values()) if (!isFinal(j.status)) n++;
    return n;
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const id of this.jobs.keys()) this.cancel(id, 'server shutting down');
  }

  private finish(id: string, status: JobStatus, extra: Partial<JobView>): void {
    const job = this.jobs.get(id);
    if (!job || isFinal(job.status)) return;
    Object.assign(job, extra, { status, updated_at: new Date().toISOString() });
  }

  private sweep(force = false): void {
    const cutoff = Date.now() - (force ? 0 : (this.opts.retainMs ?? 10 * 60_000));
    for (const [id, j] of this.jobs) {
      if (isFinal(j.status) && Date.parse(j.updated_at) <= cutoff) {
        this.jobs.delete(id);
        this.byOwner.delete(scoped(j.owner, j.id));
      }
    }
  }
}

function isFinal(s: JobStatus): boolean {
  return s === 'completed' || s === 'failed' || s === 'cancelled';
}
