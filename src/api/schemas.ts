import { APP_NAME_PATTERN, VERSION_PATTERN } from '../domain/naming.js';
import { MAX_LIMIT } from '../store/index.js';

/** JSON schemas shared by the routes (also published in /openapi.json). */
export const appParams = {
  type: 'object',
  required: ['app'],
  additionalProperties: false,
  properties: {
    app: {
      type: 'string',
      pattern: APP_NAME_PATTERN,
      description: 'an app name: lowercase letters, digits and "-", starting with a letter, at most 63 characters',
    },
  },
} as const;

// Descriptions read after "expected" in validation messages: `body.version: expected <description>, got "..."`.
export const version = {
  type: 'string',
  pattern: VERSION_PATTERN,
  maxLength: 135,
  description: 'an image tag (letters, digits, "_", "." and "-", at most 128 characters, not starting with "." or "-") or a digest sha256:<64 hex digits>',
} as const;

/**
 * A whole number in a query string. Queries arrive as strings: the API turns decimal
 * digits into a number before validation (src/api/app.ts, queryIntegers), so the schema,
 * and /openapi.json with it, says integer, and "1e3", "0x10" or "1.5" are refused.
 */
export function queryInteger(description: string, minimum: number, maximum: number) {
  return { type: 'integer', minimum, maximum, description } as const;
}

/** Query page size. */
export const pageSize = queryInteger(`a page size, 1 to ${MAX_LIMIT}`, 1, MAX_LIMIT);

/** A body that may be empty (`{}` or none) and has no fields. */
export const noFields = { type: 'object', additionalProperties: false, properties: {} } as const;

declare module 'fastify' {
  interface FastifySchema {
    /** One line for /openapi.json. */
    summary?: string;
    /** Left out of /openapi.json (the status page's HTML, assets and forms). */
    hide?: boolean;
    /** More for /openapi.json, where one line is not enough. */
    description?: string;
    /** The operation's name in /openapi.json (what a generated client calls it): a camelCase verb phrase. */
    operationId?: string;
  }
}
