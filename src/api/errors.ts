import type { FastifyError, FastifyInstance } from 'fastify';
import { BerthError, ConfigError, ConflictError, NotFoundError } from '../domain/errors.js';

export class UnauthorizedError extends BerthError {
  constructor(message: string) {
    super('UNAUTHORIZED', message);
  }
}

export class UnprocessableError extends BerthError {
  constructor(message: string) {
    super('UNPROCESSABLE', message);
  }
}

/** Body of every 4xx/5xx: a stable code and a message a person can act on. */
export interface ErrorBody {
  error: string;
  code: string;
  message: string;
  issues?: Array<{ path: string; message: string }>;
}

function statusOf(err: unknown): number {
  if (err instanceof ConfigError || err instanceof UnprocessableError) return 422;
  if (err instanceof NotFoundError) return 404;
  if (err instanceof ConflictError) return 409;
  if (err instanceof UnauthorizedError) return 401;
  const status = (err as FastifyError).statusCode;
  return typeof status === 'number' && status >= 400 && status < 600 ? status : 500;
}

const PHRASES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export function errorBody(status: number, code: string, message: string, extra: Partial<ErrorBody> = {}): ErrorBody {
  return { error: PHRASES[status] ?? 'Error', code, message, ...extra };
}

function codeOf(err: unknown, status: number): string {
  if (err instanceof BerthError) return err.code;
  const fe = err as FastifyError;
  if (fe.validation) return 'INVALID_REQUEST';
  if (status === 413) return 'BODY_TOO_LARGE';
  if (status === 415) return 'UNSUPPORTED_MEDIA_TYPE';
  if (status === 400) return 'BAD_REQUEST';
  return status >= 500 ? 'INTERNAL' : 'REQUEST_ERROR';
}

/** Maps every error to a JSON body; 5xx are logged and never echo internals. */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const status = statusOf(err);
    const code = codeOf(err, status);
    if (status >= 500) {
      request.log.error({ err }, 'request failed');
      return reply.status(status).send(errorBody(status, code, 'internal error; see the daemon log'));
    }
    const message = err instanceof Error ? err.message : String(err);
    const issues = err instanceof ConfigError ? err.issues : undefined;
    return reply.status(status).send(errorBody(status, code, message, issues ? { issues } : {}));
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send(errorBody(404, 'ROUTE_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`)),
  );
}
