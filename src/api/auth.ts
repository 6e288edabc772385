import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { UnauthorizedError } from './errors.js';
import { cookieValue, SESSION_COOKIE, type SessionStore } from './session.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

export interface AuthChecks {
  /** Writes (and reads without a session): `Authorization: Bearer <token>`, nothing else. */
  requireToken(request: FastifyRequest): Promise<void>;
  /** Reads: the bearer token, or the status page's session cookie. */
  requireReader(request: FastifyRequest): Promise<void>;
  /** The status page's login form: is this the token? */
  tokenMatches(given: string): boolean;
  /** False when berth has no token at all: nobody can log in (or write). */
  hasToken: boolean;
}

/**
 * Token checks in constant time: both sides are hashed first so neither the comparison
 * nor its length reveals anything about the token. A session cookie only ever stands in
 * for the token on reads: the browser attaches it to any request to this host and port
 * from a page on the same site (another port of the same host is the same site), so a
 * write accepting it would be open to cross-site request forgery; a page cannot make a
 * browser attach an Authorization header (docs/design.md, "API and security").
 */
export function makeAuthChecks(token: string | null, sessions: SessionStore): AuthChecks {
  const expected = token ? digest(token) : null;
  const tokenMatches = (given: string) => !!expected && timingSafeEqual(digest(given), expected);
  const requireToken = async (request: FastifyRequest): Promise<void> => {
    if (!expected) throw new UnauthorizedError('this berth has no API token configured; set BERTH_TOKEN or api.token');
    const header = request.headers.authorization;
    if (!header) throw new UnauthorizedError('missing Authorization: Bearer <token> header');
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match || !tokenMatches(match[1]!)) throw new UnauthorizedError('invalid bearer token');
  };
  const requireReader = async (request: FastifyRequest): Promise<void> => {
    // A request that names a token is judged by it alone: a wrong one is a 401 whatever cookie comes along.
    if (!request.headers.authorization && sessions.valid(cookieValue(request.headers.cookie, SESSION_COOKIE))) return;
    await requireToken(request);
  };
  return { requireToken, requireReader, tokenMatches, hasToken: !!expected };
}
