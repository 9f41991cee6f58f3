/**
 * What a chat backend reports about its requests. Observability owns the shape (engines report to
 * it, Metrics implements it), so that metrics need not know the engines.
 */

/** How a chat request ended (metrics): `rejected` = queue full (local) or 429 from the external server. */
export type LlmOutcome = 'ok' | 'error' | 'aborted' | 'rejected';

/** One finished request, as a backend reports it to its observer. */
export interface LlmRequestRecord {
  outcome: LlmOutcome;
  /** From the call to its end, queue wait included. */
  seconds: number;
  /** Prompt tokens evaluated (locally: once the request got a sequence; remotely: the server's usage, when it reports one). */
  promptTokens?: number;
  /** Tokens generated, also those of a cancelled generation where known (local backend). */
  completionTokens?: number;
}

/** What a chat backend reports (Metrics.llmObserver turns it into Prometheus metrics). */
export interface LlmObserver {
  request?(r: LlmRequestRecord): void;
  /** Local backend: requests waiting for a sequence and sequences generating, after every change. */
  queue?(s: { waiting: number; busy: number }): void;
}
