import { BerthError, type CliErrorCode } from '../domain/errors.js';

/** A mistake on the command line: exit code 2, the message and the help. */
export class UsageError extends BerthError {
  constructor(message: string, help: string) {
    super('USAGE', `${message}\n\n${help}`);
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
  ) {
    super(code, message);
  }
}
