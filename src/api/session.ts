import { createHash, randomBytes } from 'node:crypto';

/** The status page's session cookie (docs/design.md, "API and security"). */
export const SESSION_COOKIE = 'berth_session';
/** A session ends this long after the login, whatever happens in between: a forgotten tab does not stay logged in for days. */
export const SESSION_TTL_MS = 12 * 60 * 60 * 1000;
/**
 * Sessions held at once; the oldest goes first beyond it. Only a token holder can
 * create one, so this bounds memory against a script logging in a loop, not against
 * strangers.
 */
export const MAX_SESSIONS = 1_000;

/** Session ids are looked up by their digest, so the Map's string comparison times nothing secret. */
const key = (id: string) => createHash('sha256').update(id).digest('base64url');

/**
 * Status page sessions, in memory: a restart of the daemon logs everyone out (the page
 * shows the login form again), and a logout ends the session on the server, not only
 * in the browser. A session grants reads only; writes always need the token itself.
 */
export class SessionStore {
  /** digest of the id -> expiry (ms since the epoch); Map order is creation order. */
  private readonly sessions = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  /** A new session; returns its id (the cookie value: 32 random bytes, base64url) and how long it lasts. */
  create(): { id: string; maxAgeS: number } {
    this.prune();
    while (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    const id = randomBytes(32).toString('base64url');
    this.sessions.set(key(id), this.now() + SESSION_TTL_MS);
    return { id, maxAgeS: SESSION_TTL_MS / 1000 };
  }

  valid(id: string | undefined): boolean {
    if (!id) return false;
    const expires = this.sessions.get(key(id));
    if (expires === undefined) return false;
    if (expires > this.now()) return true;
    this.sessions.delete(key(id));
    return false;
  }

  revoke(id: string | undefined): void {
    if (id) this.sessions.delete(key(id));
  }

  get size(): number {
    return this.sessions.size;
  }

  private prune(): void {
    const now = this.now();
    for (const [k, expires] of this.sessions) if (expires <= now) this.sessions.delete(k);
  }
}

/** One cookie's value from a Cookie header (`a=1; berth_session=...`), or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

/**
 * The Set-Cookie value of a session: HttpOnly (the page's script never sees it),
 * SameSite=Strict, Path=/, and Secure when the request came over TLS.
 * `maxAgeS` 0 clears it.
 */
export function sessionCookie(id: string, maxAgeS: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${id}; Path=/; Max-Age=${maxAgeS}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}
