import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify';
import { describe } from '../config/reader.js';
import { BerthError, ConfigError, ConflictError, describeError, HOST_ERROR_CODES, HostError, NotFoundError, OnHostError, SecretMissingError, SecretsFileError, StoreError } from '../domain/errors.js';

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

/** A request its schema lets through whose value still means nothing (a `since` that is no duration or date): 400. */
export class InvalidRequestError extends BerthError {
  constructor(message: string) {
    super('INVALID_REQUEST', message);
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
  if (err instanceof InvalidRequestError) return 400;
  if (err instanceof NotFoundError) return 404;
  // `berth exec` of an app whose secrets file lacks a value (or cannot be used): the app's state, said with the file.
  if (err instanceof ConflictError || err instanceof SecretMissingError || err instanceof SecretsFileError) return 409;
  if (err instanceof UnauthorizedError) return 401;
  // The database does not answer (PostgreSQL down or cut off): nothing was written; try again.
  if (err instanceof StoreError && err.code === 'DB_UNAVAILABLE') return 503;
  // A host that cannot be reached or answers with an error (exec): berth is the gateway to it.
  if (err instanceof HostError) return err.code === HOST_ERROR_CODES.timeout ? 504 : 502;
  if (err instanceof OnHostError) return 502;
  const status = (err as FastifyError).statusCode;
  return typeof status === 'number' && status >= 400 && status < 600 ? status : 500;
}

const PHRASES: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Payload Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** The reason phrase of a status berth answers with (the `error` of an error body). */
export function statusPhrase(status: number): string {
  return PHRASES[status] ?? 'Error';
}

export function errorBody(status: number, code: string, message: string, extra: Partial<ErrorBody> = {}): ErrorBody {
  return { error: statusPhrase(status), code, message, ...extra };
}

function codeOf(err: unknown, status: number): string {
  if (err instanceof BerthError) return err.code;
  const fe = err as FastifyError;
  if (fe.validation) return 'INVALID_REQUEST';
  if (status === 413) return 'BODY_TOO_LARGE';
  if (status === 414) return 'URI_TOO_LONG';
  if (status === 415) return 'UNSUPPORTED_MEDIA_TYPE';
  if (status === 400) return 'BAD_REQUEST';
  return status >= 500 ? 'INTERNAL' : 'REQUEST_ERROR';
}

/** Maps every error to a JSON body; 5xx are logged and never echo internals. */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const status = statusOf(err);
    const code = codeOf(err, status);
    if (err instanceof OnHostError) {
      // Not berth's fault and worth saying which host and why (the message names no secret).
      request.log.warn({ err, host: err.host }, 'host operation failed');
      return reply.status(status).send(errorBody(status, err.code, describeError(err)));
    }
    if (err instanceof StoreError && err.code === 'DB_UNAVAILABLE') {
      request.log.warn({ err: err.message }, 'request failed: the database does not answer');
      return reply.status(status).send(errorBody(status, err.code, `${err.message}; nothing was changed, try again`));
    }
    if (status >= 500) {
      request.log.error({ err }, 'request failed');
      return reply.status(status).send(errorBody(status, code, 'internal error; see the daemon log'));
    }
    const message =
      status === 415
        ? `unsupported Content-Type ${JSON.stringify(request.headers['content-type'] ?? '')}; send application/json`
        : err instanceof Error
          ? err.message
          : String(err);
    const issues = err instanceof ConfigError ? err.issues : undefined;
    return reply.status(status).send(errorBody(status, code, message, issues ? { issues } : {}));
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send(errorBody(404, 'ROUTE_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`)),
  );
}

/**
 * Router-level errors (before any route or hook runs) in the same JSON shape:
 * a malformed percent-encoding, or a path parameter over maxParamLength.
 */
export function frameworkError(maxParamLength: number) {
  return (err: FastifyError, _request: FastifyRequest, reply: FastifyReply) => {
    if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') {
      return reply.status(414).send(errorBody(414, 'URI_TOO_LONG', `path parameter longer than ${maxParamLength} characters (app names have at most 63)`));
    }
    const status = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 400;
    return reply.status(status).send(errorBody(status, err.code === 'FST_ERR_BAD_URL' ? 'BAD_URL' : 'BAD_REQUEST', err.message));
  };
}

/** What ajv (with `verbose`) adds to an error: the offending value and the schema holding the failed keyword. */
type VerboseError = FastifySchemaValidationError & { data?: unknown; parentSchema?: { description?: string; properties?: Record<string, unknown> } };

/** `/hosts/0/name` -> `.hosts[0].name`, to read like the config issue paths (`body.healthcheck.interval`). */
function dottedPath(pointer: string): string {
  return pointer
    .split('/')
    .slice(1)
    .map((seg) => (/^\d+$/.test(seg) ? `[${seg}]` : `.${seg.replace(/~1/g, '/').replace(/~0/g, '~')}`))
    .join('');
}

const shown = (v: unknown) => (v === undefined ? 'nothing' : describe(v));

/**
 * Schema validation errors as one message that names the field, what was
 * expected and what came: `body.version: expected an image tag ..., got "v1;rm"`,
 * `body: unknown property "force" (allowed: version, expectedRevision)`.
 */
export function formatSchemaErrors(errors: FastifySchemaValidationError[], dataVar: string): Error {
  const text = errors
    .map((raw) => {
      const e = raw as VerboseError;
      const where = `${dataVar}${dottedPath(e.instancePath)}`;
      const p = e.params;
      switch (e.keyword) {
        case 'required':
          return `${where}: missing required property "${String(p.missingProperty)}"`;
        case 'additionalProperties': {
          const allowed = Object.keys(e.parentSchema?.properties ?? {});
          return `${where}: unknown property "${String(p.additionalProperty)}" (allowed: ${allowed.length ? allowed.join(', ') : 'none'})`;
        }
        case 'type':
          return `${where}: expected ${String(p.type)}, got ${shown(e.data)}`;
        case 'pattern':
          return `${where}: expected ${e.parentSchema?.description ?? `a string matching ${String(p.pattern)}`}, got ${shown(e.data)}`;
        default:
          return `${where}: ${e.message ?? e.keyword}, got ${shown(e.data)}`;
      }
    })
    .join('; ');
  return new Error(text);
}
