import { BerthError, type CliErrorCode } from '../domain/errors.js';

/** A mistake on the command line: exit code 2, one line: the message and where to read more. */
export class UsageError extends BerthError {
  constructor(message: string, seeAlso: string) {
    super('USAGE', `${message}; see ${seeAlso}`);
  }
}

/**
 * The daemon could not be reached or answered with an error. `status` is 0 when no
 * answer came; `serverCode` is the code of berth's error body (src/api/errors.ts).
 */
export class ApiError extends BerthError {
  constructor(
    readonly status: number,
    code: Exclude<CliErrorCode, 'USAGE'>,
    message: string,
    readonly serverCode: string | null = null,
    /** Printed after the status: e.g. where the CLI looked for the token on a 401. */
    readonly hint: string | null = null,
  ) {
    super(code, message);
  }
}
