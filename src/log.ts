import { pino, type Logger } from 'pino';

/**
 * Structured JSON logs; pretty when stdout is a terminal. Secret-bearing fields are
 * redacted by path as a second line of defence: secrets are never passed to the logger.
 */
export function createLogger(opts: { level?: string; pretty?: boolean } = {}): Logger {
  const pretty = opts.pretty ?? process.stdout.isTTY === true;
  return pino({
    level: opts.level ?? process.env.BERTH_LOG_LEVEL ?? 'info',
    base: { service: 'berth' },
    redact: {
      paths: ['token', '*.token', 'authorization', '*.authorization', 'req.headers.authorization', 'env', '*.env', 'secrets', '*.secrets'],
      censor: '[redacted]',
    },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: true } } } : {}),
  });
}

export type { Logger };
