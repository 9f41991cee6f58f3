/**
 * Who a model call is made for (the LLM's fairness key): request-scoped context set by the HTTP
 * admission (`account:<id>` or `ip:<address>`) and read by the backend's queue. It travels with the
 * async context so that every call a request fans out into — summarize's map steps, each text of a
 * batch translation, a transcript chat — queues as that tenant without each service threading it.
 * An explicit `ChatOptions.tenant` wins over the context.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

const storage = new AsyncLocalStorage<string>();

/** Tenant of calls made outside any request (startup checks, tests). */
export const DEFAULT_TENANT = 'default';

/** Runs `fn` with `tenant` as the fairness key of the model calls it makes. */
export function withLlmTenant<T>(tenant: string, fn: () => T): T {
  return storage.run(tenant, fn);
}

/** The tenant of the current request, if any. */
export function currentLlmTenant(): string | undefined {
  return storage.getStore();
}
