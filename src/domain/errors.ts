/** Base of every error berth raises on purpose: a stable machine-readable `code`. */
export class BerthError extends Error {
  constructor(
    readonly code: string,
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
  constructor(message: string) {
    super('CONFLICT', message);
  }
}

export class StoreError extends BerthError {}

export class HostError extends BerthError {
  constructor(
    code: string,
    readonly host: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, `${host}: ${message}`, options);
  }
}
