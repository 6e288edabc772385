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

/** Query page size of a list that returns at most `max` rows; arrives as a string. */
function pageSizeUpTo(max: number) {
  return { type: 'string', pattern: '^[1-9][0-9]{0,3}$', description: `a page size (a whole number from 1; at most ${max} are returned)` } as const;
}
export const pageSize = pageSizeUpTo(MAX_LIMIT);

/** The query of a list route: `limit` (at most `max`) and the route's cursor (every list is paged: README.md, "HTTP API"). */
export function pageQuery<C extends Record<string, object>>(cursor: C, max: number = MAX_LIMIT) {
  return { type: 'object', additionalProperties: false, properties: { limit: pageSizeUpTo(max), ...cursor } } as const;
}

/** A body that may be empty (`{}` or none) and has no fields. */
export const noFields = { type: 'object', additionalProperties: false, properties: {} } as const;

/** Query integers arrive as strings; they are checked by pattern and converted in the handler. */
export const integerString = { type: 'string', pattern: '^[0-9]{1,9}$' } as const;

export const errorSchema = {
  type: 'object',
  properties: {
    error: { type: 'string' },
    code: { type: 'string' },
    message: { type: 'string' },
    issues: { type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, message: { type: 'string' } } } },
  },
} as const;

export const releaseSchema = {
  type: 'object',
  properties: {
    app: { type: 'string' },
    revision: { type: 'integer' },
    version: { type: 'string' },
    reason: { type: 'string', enum: ['deploy', 'rollback'] },
    actor: { type: 'string' },
    createdAt: { type: 'string' },
  },
} as const;

declare module 'fastify' {
  interface FastifySchema {
    /** One line for /openapi.json. */
    summary?: string;
  }
}
