/**
 * berth's error vocabulary: every code any layer raises, the classes shared across
 * layers, and the one classification every caller uses (`isHostDown`). The API and
 * CLI add only their own presentation-layer classes (src/api/errors.ts, src/cli/errors.ts).
 */

/** Codes a host driver raises (SSH, Docker API, HTTP through the host). */
export const HOST_ERROR_CODES = {
  /** The deadline of the call passed (the host, the SSH link or the daemon did not answer in time). */
  timeout: 'HOST_TIMEOUT',
  /** No SSH connection (refused, no route, handshake failed, dropped) or the Docker socket is not answering. */
  unreachable: 'HOST_UNREACHABLE',
  /** The host presented a key other than the pinned / known one. */
  keyMismatch: 'HOST_KEY_MISMATCH',
  /** The host's key is not pinned nor in known_hosts. */
  keyUnknown: 'HOST_KEY_UNKNOWN',
  /** The SSH server refused our key. */
  authFailed: 'HOST_AUTH_FAILED',
  /** The host spec cannot work (no address, unreadable key file, ...). */
  config: 'HOST_CONFIG_INVALID',
  /**
   * SSH is up but the host could not open the forwarded target. Never leaves the hosts
   * layer: the Docker socket's becomes HOST_UNREACHABLE, a container port's HTTP_FAILED.
   */
  channelFailed: 'SSH_CHANNEL_FAILED',
  /** The driver was closed. */
  closed: 'HOST_CLOSED',
  /** The Docker daemon answered with an error. */
  docker: 'DOCKER_ERROR',
  imagePullFailed: 'IMAGE_PULL_FAILED',
  imageNotFound: 'IMAGE_NOT_FOUND',
  /** A container whose start dockerd's restart interrupted: it cannot start again, only be recreated. */
  staleTask: 'CONTAINER_STALE_TASK',
  /** A container of the requested name exists and is not ours to adopt. */
  nameConflict: 'CONTAINER_NAME_CONFLICT',
  /** An HTTP request to a container / Unix socket on the host failed (refused, reset, bad response). */
  httpFailed: 'HTTP_FAILED',
} as const;

export type HostErrorCode = (typeof HOST_ERROR_CODES)[keyof typeof HOST_ERROR_CODES];

export type StoreErrorCode =
  | 'DB_OPEN_FAILED'
  | 'DB_LOCK_FAILED'
  | 'DB_LOCKED'
  | 'DB_TOO_NEW'
  | 'DB_CORRUPT'
  | 'MIGRATIONS_MISSING'
  | 'MIGRATIONS_INVALID'
  | 'MIGRATION_FAILED'
  | 'INVALID_ROLLOUT'
  | 'INVALID_STEP'
  | 'DB_UNAVAILABLE'
  | 'NOT_LEADER';

export type ProxyErrorCode = 'PROXY_ADMIN_ERROR' | 'PROXY_NOT_READY';

/** A step of a rollout or a one-off run that failed for a reason of the release, not of the host. */
export type StepErrorCode =
  | 'HEALTH_CHECK_FAILED'
  | 'HOOK_FAILED'
  | 'HOOK_TIMEOUT'
  | 'CONTAINER_NOT_RUNNING'
  | 'SECRET_MISSING'
  /** The app's secrets file cannot be used: too open, malformed or unreadable (src/secrets/app-secrets.ts). */
  | 'SECRETS_FILE_INVALID'
  | 'HOST_NOT_CONFIGURED'
  | 'ROLLBACK_TARGET_MISSING'
  /** An error that is not a BerthError reached the executor. */
  | 'UNEXPECTED';

/** What the API answers with (src/api/errors.ts) besides the codes of the errors it maps. */
export type RequestErrorCode =
  | 'CONFIG_INVALID'
  | 'NOT_FOUND'
  | 'CONFLICT'
  /** PUT or DELETE of an app the config file declares: the file manages it. */
  | 'APP_MANAGED_BY_FILE'
  /** A write to an app DELETE is tearing down. */
  | 'APP_DELETING'
  | 'UNAUTHORIZED'
  | 'UNPROCESSABLE'
  | 'INVALID_REQUEST'
  | 'BODY_TOO_LARGE'
  | 'URI_TOO_LONG'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'BAD_REQUEST'
  | 'BAD_URL'
  | 'ROUTE_NOT_FOUND'
  | 'REQUEST_ERROR'
  | 'INTERNAL';

/** The CLI's own failures (src/cli/errors.ts). */
export type CliErrorCode = 'USAGE' | 'DAEMON_UNREACHABLE' | 'HTTP_ERROR' | 'NOT_BERTH' | 'API_ERROR';

/** Certificates (src/tls): an ACME order that failed, a given certificate that cannot be used. */
export type TlsErrorCode = 'ACME_ORDER_FAILED' | 'CERTIFICATE_INVALID';

/** `berth import-kamal` (src/kamal): a Kamal file that cannot be read, or is not YAML of the shape Kamal reads. */
export type KamalErrorCode = 'KAMAL_CONFIG_UNREADABLE' | 'KAMAL_CONFIG_INVALID';

export type ErrorCode = HostErrorCode | StoreErrorCode | ProxyErrorCode | StepErrorCode | RequestErrorCode | CliErrorCode | TlsErrorCode | KamalErrorCode;

/** Base of every error berth raises on purpose: a stable machine-readable `code`. */
export class BerthError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** One problem in a config document or API body, located by its key path. */
export interface ConfigIssue {
  path: string;
  message: string;
}

export class ConfigError extends BerthError {
  constructor(readonly issues: ConfigIssue[]) {
    super('CONFIG_INVALID', issues.map((i) => `${i.path}: ${i.message}`).join('\n'));
  }
}

export class NotFoundError extends BerthError {
  constructor(what: string) {
    super('NOT_FOUND', `${what} not found`);
  }
}

export class ConflictError extends BerthError {
  constructor(message: string, code: 'CONFLICT' | 'APP_MANAGED_BY_FILE' | 'APP_DELETING' = 'CONFLICT') {
    super(code, message);
  }
}

export class StoreError extends BerthError {
  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** An error on one host. The host is a field; the message says what failed, not where. */
export abstract class OnHostError<C extends ErrorCode = ErrorCode> extends BerthError {
  constructor(
    override readonly code: C,
    readonly host: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** A call to a host failed (SSH, Docker API, HTTP through the host). */
export class HostError extends OnHostError<HostErrorCode> {}

/** The host's proxy refused or did not answer a change. */
export class ProxyError extends OnHostError<ProxyErrorCode> {}

/** A secret an app names is not in its secrets file (the message names the file, never a value). */
export class SecretMissingError extends BerthError {
  constructor(
    readonly secret: string,
    readonly file: string,
    fileExists: boolean,
  ) {
    super('SECRET_MISSING', missingSecretMessage(secret, file, fileExists));
  }
}

/** Said at config load, at PUT and when a step needs the value. */
export function missingSecretMessage(secret: string, file: string, fileExists: boolean): string {
  return `secret ${secret} is not in ${file}${fileExists ? '' : ' (no such file)'}: add a line ${secret}=<value> to it (mode 0600)`;
}

/** The app's secrets file cannot be used; the message says why and how to fix it, and never holds a value. */
export class SecretsFileError extends BerthError {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super('SECRETS_FILE_INVALID', message);
  }
}

/** A certificate could not be had or used for a host name; the message never holds key material. */
export class TlsError extends BerthError {
  constructor(
    code: TlsErrorCode,
    readonly hostName: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** A Kamal config `berth import-kamal` cannot read at all (what it can read but not map is a note, not an error). */
export class KamalImportError extends BerthError {
  constructor(
    code: KamalErrorCode,
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

export class HostNotConfiguredError extends BerthError {
  constructor(readonly host: string) {
    super('HOST_NOT_CONFIGURED', `host "${host}" is not in berth's config`);
  }
}

/**
 * Codes that mean "the host did not answer" rather than "the release is bad": the
 * host is marked down and skipped until it answers a ping, and the step is not
 * counted against the release.
 */
const HOST_DOWN_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  HOST_ERROR_CODES.timeout,
  HOST_ERROR_CODES.unreachable,
  HOST_ERROR_CODES.keyMismatch,
  HOST_ERROR_CODES.keyUnknown,
  HOST_ERROR_CODES.authFailed,
  HOST_ERROR_CODES.config,
  HOST_ERROR_CODES.closed,
]);

/** Whether `err` (or an error it wraps, via `cause`) says its host is down. */
export function isHostDown(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof HostError && HOST_DOWN_CODES.has(e.code)) return true;
  }
  return false;
}

/** A host error's message with its host, for where the host is not otherwise said (API bodies, CLI). */
export function describeError(err: unknown): string {
  if (err instanceof OnHostError) return `${err.host}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}
