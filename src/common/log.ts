import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured JSON logs on stdout; secrets never go through here (callers pass identifiers, not credentials). */
export function createLogger(level: string = 'info', name = 'opendrim'): Logger {
  return pino({
    name,
    level,
    redact: { paths: ['password', '*.password', 'secret', '*.secret', 'authorization', '*.authorization'], censor: '[redacted]' },
  });
}
