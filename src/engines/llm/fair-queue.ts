/**
 * The wait queue in front of the LLM's sequences, fair between tenants (accounts, anonymous client
 * addresses): a free sequence goes to the waiting tenant served least recently, not to the oldest
 * request. A tenant whose one request fans out into many model calls (a chunked summarize) gets one
 * turn in the rotation like everybody else, so a short request of another tenant waits for at most
 * one call per other waiting tenant, never for the whole backlog. Within a tenant: first come, first
 * served. Tenants are forgotten when they have nothing waiting or running.
 */
export class FairQueue<T> {
  private readonly queues = new Map<string, T[]>();
  /** Tick of the tenant's last start; absent = nothing running or waiting (first in line). */
  private readonly lastServed = new Map<string, number>();
  private readonly running = new Map<string, number>();
  private tick = 0;
  private total = 0;

  /** Items waiting, all tenants. */
  get size(): number {
    return this.total;
  }

  /** Items `tenant` has waiting. */
  sizeOf(tenant: string): number {
    return this.queues.get(tenant)?.length ?? 0;
  }

  push(tenant: string, item: T): void {
    const q = this.queues.get(tenant);
    if (q) q.push(item);
    else this.queues.set(tenant, [item]);
    this.total++;
  }

  /** Takes a waiting item out (cancelled); false when it was not waiting. */
  remove(tenant: string, item: T): boolean {
    const q = this.queues.get(tenant);
    const i = q ? q.indexOf(item) : -1;
    if (i < 0) return false;
    q!.splice(i, 1);
    this.total--;
    if (!q!.length) this.queues.delete(tenant);
    this.forgetIfIdle(tenant);
    return true;
  }

  /** The next item to run (the least recently served tenant's oldest), counted as started; undefined when none waits. */
  shift(): { tenant: string; item: T } | undefined {
    let best: string | undefined;
    let bestTick = Infinity;
    for (const tenant of this.queues.keys()) {
      const t = this.lastServed.get(tenant) ?? -1;
      if (t < bestTick) {
        best = tenant;
        bestTick = t;
      }
    }
    if (best === undefined) return undefined;
    const q = this.queues.get(best)!;
    const item = q.shift()!;
    this.total--;
    if (!q.length) this.queues.delete(best);
    this.started(best);
    return { tenant: best, item };
  }

  /** A request of `tenant` starts running (also one that never waited): its turn is used. */
  started(tenant: string): void {
    this.lastServed.set(tenant, ++this.tick);
    this.running.set(tenant, (this.running.get(tenant) ?? 0) + 1);
  }

  /** A running request of `tenant` ended. */
  finished(tenant: string): void {
    const n = (this.running.get(tenant) ?? 0) - 1;
    if (n > 0) this.running.set(tenant, n);
    else this.running.delete(tenant);
    this.forgetIfIdle(tenant);
  }

  /** Removes and returns every waiting item (shutdown). */
  drain(): T[] {
    const all = [...this.queues.values()].flat();
    this.queues.clear();
    this.total = 0;
    for (const tenant of [...this.lastServed.keys()]) this.forgetIfIdle(tenant);
    return all;
  }

  private forgetIfIdle(tenant: string): void {
    if (!this.queues.has(tenant) && !this.running.has(tenant)) this.lastServed.delete(tenant);
  }
}
