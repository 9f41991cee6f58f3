/** JSON logs with pino; one logger built by the composition root and passed down (children per component). */
import { pino, type Logger } from 'pino';

export function createLogger(level: string, opts: { name?: string } = {}): Logger {
  return pino({
    name: opts.name ?? 'stt',
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: ['req.headers.authorization', 'headers.authorization'], censor: '[redacted]' },
  });
}

export type { Logger };
