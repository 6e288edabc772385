import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { UnauthorizedError } from './errors.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Bearer token check in constant time: both sides are hashed first so neither the
 * comparison nor its length reveals anything about the token.
 */
export function makeAuthCheck(token: string | null) {
  const expected = token ? digest(token) : null;
  return async function requireToken(request: FastifyRequest): Promise<void> {
    if (!expected) throw new UnauthorizedError('this berth has no API token configured; set BERTH_TOKEN or api.token');
    const header = request.headers.authorization;
    if (!header) throw new UnauthorizedError('missing Authorization: Bearer <token> header');
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match || !timingSafeEqual(digest(match[1]!), expected)) throw new UnauthorizedError('invalid bearer token');
  };
}
