/**
 * The deadline every remote call runs under, and the mapping of low-level errors
 * (ssh2, node:net, docker-modem) onto the host codes of src/domain/errors.ts.
 */
import { HOST_ERROR_CODES, HostError } from '../domain/errors.js';

/** docker-modem's error shape: an Error with the HTTP status and the daemon's JSON answer. */
export interface DockerApiError extends Error {
  statusCode: number;
  json?: unknown;
}

export function isDockerApiError(err: unknown): err is DockerApiError {
  return err instanceof Error && typeof (err as Partial<DockerApiError>).statusCode === 'number';
}

export function dockerStatus(err: unknown): number | null {
  return isDockerApiError(err) ? err.statusCode : null;
}

/** A raw (non-JSON) error body is cut here: enough for dockerd's one-line errors, no page of HTML from a proxy. */
const DOCKER_MESSAGE_MAX_CHARS = 500;

/**
 * docker-modem's message for an error answer to a streamed call (a pull), whose body it keeps
 * out of `json`: `(HTTP code 401) HTTP 401 - <the daemon's message> `.
 */
const MODEM_STREAM_ERROR = /^\(HTTP code \d+\) [^-]*- ([\s\S]*)$/;

/** The daemon's own message (`{"message": "..."}`), else the error's. */
export function dockerMessage(err: unknown): string {
  if (isDockerApiError(err)) {
    const j = err.json;
    if (j && typeof j === 'object' && 'message' in j && typeof j.message === 'string') return j.message;
    if (Buffer.isBuffer(j) && j.length > 0) return j.toString('utf8').trim().slice(0, DOCKER_MESSAGE_MAX_CHARS);
    const streamed = MODEM_STREAM_ERROR.exec(err.message);
    if (streamed) return streamed[1]!.trim().slice(0, DOCKER_MESSAGE_MAX_CHARS);
  }
  return err instanceof Error ? err.message.trim() : String(err);
}

const NET_UNREACHABLE = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'ECONNRESET',
  'EPIPE',
  'ENOENT',
  'EACCES',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNABORTED',
]);

export function errnoCode(err: unknown): string | null {
  const c = err instanceof Error ? (err as NodeJS.ErrnoException).code : undefined;
  return typeof c === 'string' ? c : null;
}

/** Maps an error of a Docker API call to a HostError. */
export function toHostError(err: unknown, host: string, op: string): HostError {
  if (err instanceof HostError) return err;
  if (isDockerApiError(err)) {
    return new HostError(HOST_ERROR_CODES.docker, host, `${op}: docker answered ${err.statusCode}: ${dockerMessage(err)}`, {
      cause: err,
    });
  }
  const code = errnoCode(err);
  if (code !== null && NET_UNREACHABLE.has(code)) {
    return new HostError(HOST_ERROR_CODES.unreachable, host, `${op}: docker daemon not reachable (${code}): ${dockerMessage(err)}`, {
      cause: err,
    });
  }
  return new HostError(HOST_ERROR_CODES.docker, host, `${op}: ${dockerMessage(err)}`, { cause: err });
}

/**
 * Runs `fn` under a deadline. On expiry the signal is aborted (so sockets / SSH channels
 * are torn down) and the call rejects with HOST_TIMEOUT, whatever `fn` does afterwards.
 */
export function withDeadline<T>(host: string, op: string, ms: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      const err = new HostError(HOST_ERROR_CODES.timeout, host, `${op} did not finish within ${ms} ms`);
      ac.abort(err);
      reject(err);
    }, ms);
    let p: Promise<T>;
    try {
      p = fn(ac.signal);
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      (v) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/**
 * `withDeadline` whose rejection is always a HostError (`toHostError` of whatever failed,
 * named by `op`): the one bounded-call helper of the Docker driver's operations.
 */
export function boundedCall<T>(host: string, op: string, ms: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  return withDeadline(host, op, ms, fn).catch((e: unknown) => {
    throw toHostError(e, host, op);
  });
}

/** Full jitter exponential backoff: attempt 1 -> ~base, capped at `capMs`. */
export function backoffMs(attempt: number, baseMs: number, capMs: number): number {
  const exp = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + Math.random() * (exp / 2));
}
