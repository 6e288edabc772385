/** Readers for the scalar kinds berth's config uses: durations, paths, images, addresses. */
import { isIP } from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import { isImageRepository, isVersion } from '../domain/naming.js';
import { formatDuration, parseDuration } from './duration.js';
import { check, describe, type Read } from './reader.js';

/**
 * A duration string (see duration.ts) within [minMs, maxMs]. A bare number gets
 * a hint, since `interval: 5` is the mistake people actually make.
 */
export function readDuration(minMs: number, maxMs: number): Read<number> {
  return (value, path, issues) => {
    const ms = typeof value === 'string' ? parseDuration(value) : null;
    if (ms === null) {
      const hint = typeof value === 'number' ? ' (durations need a unit: ms, s, m or h)' : '';
      issues.add(path, `expected a duration like "5s", got ${describe(value)}${hint}`);
      return undefined;
    }
    if (ms < minMs || ms > maxMs) {
      const range = minMs === 0 ? `of at most ${formatDuration(maxMs)}` : `from ${formatDuration(minMs)} to ${formatDuration(maxMs)}`;
      issues.add(path, `expected a duration ${range}, got ${describe(value)}`);
      return undefined;
    }
    return ms;
  };
}

export const readNonEmptyString: Read<string> = check('a non-empty string', (v) =>
  typeof v === 'string' && v.trim() !== '' ? v : undefined,
);

// No control characters anywhere: these strings end up in API calls and logs.
const hasControl = (s: string): boolean => /[\u0000-\u001f\u007f]/.test(s);

/** A path on a remote host (docker socket, state dir): must be absolute, nothing is expanded there. */
export const readAbsolutePath: Read<string> = check('an absolute path', (v) =>
  typeof v === 'string' && v.startsWith('/') && !hasControl(v) ? v : undefined,
);

/**
 * A path on the machine running berth (ssh key, known_hosts): `~` and `~/...`
 * expand to `homeDir`; a relative path is taken from `baseDir` (the config
 * file's directory), not from wherever the daemon happened to be started.
 */
export function readLocalPath(homeDir: string, baseDir: string): Read<string> {
  return (value, path, issues) => {
    if (typeof value !== 'string' || value.trim() === '' || hasControl(value)) {
      issues.add(path, `expected a file path, got ${describe(value)}`);
      return undefined;
    }
    if (value === '~') return homeDir;
    if (value.startsWith('~/')) return resolve(homeDir, value.slice(2));
    if (value.startsWith('~')) {
      issues.add(path, `expected a file path, got ${describe(value)} (only "~/" is expanded)`);
      return undefined;
    }
    return isAbsolute(value) ? value : resolve(baseDir, value);
  };
}

export const readImageRepository: Read<string> = check(
  'an image repository without tag or digest, like "10.77.0.1:5000/web"',
  (v) => (typeof v === 'string' && isImageRepository(v) ? v : undefined),
);

/** `repo`, `repo:tag` or `repo@sha256:...` — the proxy image is pinned by the operator. */
export function isImageReference(s: string): boolean {
  const at = s.indexOf('@');
  if (at >= 0) return isImageRepository(s.slice(0, at)) && /^sha256:[a-f0-9]{64}$/.test(s.slice(at + 1));
  const colon = s.lastIndexOf(':');
  // A colon before the last `/` is a registry port, not a tag.
  if (colon > s.lastIndexOf('/')) return isImageRepository(s.slice(0, colon)) && isVersion(s.slice(colon + 1));
  return isImageRepository(s);
}

export const readImageReference: Read<string> = check('an image reference like "haproxy:2.6"', (v) =>
  typeof v === 'string' && isImageReference(v) ? v : undefined,
);

const DNS_LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const DNS_NAME = new RegExp(`^${DNS_LABEL}(?:\\.${DNS_LABEL})*$`);

export function isDnsName(s: string): boolean {
  return s.length <= 253 && DNS_NAME.test(s);
}

export const readHostAddress: Read<string> = check('an IP address or DNS name', (v) =>
  typeof v === 'string' && (isIP(v) !== 0 || isDnsName(v)) ? v : undefined,
);

/**
 * The Host header an app's proxy route matches, lowercased: an exact name or a
 * leading wildcard label (`*.example.com`: every subdomain, see src/config/routes.ts).
 * A scheme, port, path or misplaced `*` gets a hint saying where it belongs.
 */
export const readRouteHost: Read<string> = (value, path, issues) => {
  if (typeof value === 'string') {
    const base = value.startsWith('*.') ? value.slice(2) : value;
    if (isDnsName(base)) return value.toLowerCase();
  }
  issues.add(path, `expected a host name like "app.example.com" or "*.example.com", got ${describe(value)}${routeHostHint(value)}`);
  return undefined;
};

function routeHostHint(value: unknown): string {
  if (typeof value !== 'string') return '';
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return ' (no scheme: the host name only)';
  if (value.includes('/')) return ' (no path: paths go in proxy.path_prefix)';
  if (value.includes(':')) return ' (no port: the proxy port is proxy.port)';
  if (value.includes('*')) return ' (a wildcard is only allowed as the whole first label)';
  if (value.endsWith('.')) return ' (no trailing dot)';
  return '';
}

/** A path segment of a route's path prefix: RFC 3986 pchar without percent-encoding or `*` (no globs). */
const PREFIX_SEGMENT = /^[A-Za-z0-9\-._~!$&'()+,;=:@]+$/;

/**
 * A proxy route's path prefix: starts with `/`, whole segments (no `//`, `.` or
 * `..`), no query, fragment, spaces or percent-encoding (proxies disagree on
 * matching those). Normalised without trailing `/`, except `/` itself.
 */
export const readPathPrefix: Read<string> = (value, path, issues) => {
  const bad = (hint = ''): undefined => {
    issues.add(path, `expected a path prefix like "/api", got ${describe(value)}${hint}`);
    return undefined;
  };
  if (typeof value !== 'string' || value.length > 1024) return bad();
  if (!value.startsWith('/')) return bad(' (it must start with "/")');
  if (/[?#]/.test(value)) return bad(' (no query string or fragment)');
  const trimmed = value.replace(/\/+$/, '');
  if (trimmed === '') return '/';
  const segments = trimmed.slice(1).split('/');
  if (segments.some((seg) => seg === '')) return bad(' (no empty segments: "//")');
  if (segments.some((seg) => seg === '.' || seg === '..')) return bad(' (no "." or ".." segments)');
  if (!segments.every((seg) => PREFIX_SEGMENT.test(seg))) return bad(' (letters, digits and -._~!$&\'()+,;=:@ only: no spaces, "%" or "*")');
  return trimmed;
};

/** An HTTP request path for health checks: starts with `/`, no spaces or control characters. */
export const readHttpPath: Read<string> = check('an HTTP path starting with "/"', (v) =>
  typeof v === 'string' && /^\/[\x21-\x7e]*$/.test(v) && v.length <= 1024 ? v : undefined,
);

/** `host:port` with an IPv4 address, a name, or a bracketed IPv6 address. */
export function parseListen(s: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(s);
  if (!m) return null;
  const host = m[1] ?? m[2] ?? '';
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  if (m[1] !== undefined ? isIP(host) !== 6 : isIP(host) === 0 && !isDnsName(host)) return null;
  return { host, port };
}

export const readListen: Read<string> = check('host:port like "127.0.0.1:7373"', (v) =>
  typeof v === 'string' && parseListen(v) ? v : undefined,
);

/**
 * Shortest API bearer token accepted: 32 bytes, what `openssl rand -base64 32` (44
 * characters) comfortably exceeds. A short token is guessable over a network, and a
 * token in a config file or an environment variable is easy to set to "changeme".
 */
export const MIN_TOKEN_BYTES = 32;

/**
 * API bearer token: printable ASCII without spaces, at least MIN_TOKEN_BYTES long.
 * `path` says where it came from (`api.token`, `BERTH_TOKEN`, the token file).
 * Its value is never echoed into a message.
 */
export const readToken: Read<string> = (value, path, issues) => {
  if (typeof value !== 'string' || !/^[\x21-\x7e]+$/.test(value)) {
    issues.add(path, 'expected a non-empty string of printable characters without spaces (value not shown)');
    return undefined;
  }
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes < MIN_TOKEN_BYTES) {
    issues.add(path, `too short: ${bytes} bytes, at least ${MIN_TOKEN_BYTES} are needed (value not shown); make one with: openssl rand -base64 32`);
    return undefined;
  }
  return value;
};
