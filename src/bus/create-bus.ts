/** Composition-root helper: NatsBus when NATS_URL is configured, InProcessBus otherwise. */
import type { Logger } from 'pino';
import type { Bus } from './bus.ts';
import { InProcessBus } from './in-process-bus.ts';
import { NatsBus, type NatsBusOptions } from './nats-bus.ts';

export interface CreateBusOptions {
  natsUrl: string | null;
  logger: Logger;
  /** Replay retention (JetStream max age / in-process history), default 24 h. */
  retentionMs?: number;
  /** Extra NatsBus options (connection name, timeouts, stream byte cap…). */
  nats?: Omit<NatsBusOptions, 'url' | 'logger' | 'streamMaxAgeMs'>;
}

/** The bus is returned unstarted: call `await bus.start()` (and `bus.close()` on shutdown). */
export function createBus(opts: CreateBusOptions): Bus {
  const logger = opts.logger.child({ component: 'bus' });
  if (opts.natsUrl) {
    return new NatsBus({ ...opts.nats, url: opts.natsUrl, logger, streamMaxAgeMs: opts.retentionMs });
  }
  return new InProcessBus({ logger, historyMaxAgeMs: opts.retentionMs });
}
