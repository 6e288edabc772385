/**
 * Which app owns which requests on a host's proxy, and the routes that must be
 * refused because one app would take (some of) another app's traffic.
 *
 * Routing model. A route is (port, host | null, pathPrefix | null):
 * - port: the port the host's proxy listens on; absent (null) means
 *   DEFAULT_ROUTE_PORT (80), so `{host: X}` and `{port: 80, host: X}` are the same route.
 * - host: the Host header, lowercase, without port. Either an exact name
 *   (`app.example.com`) or a leading wildcard label (`*.example.com`), which
 *   matches every subdomain at any depth (`a.example.com`, `a.b.example.com`)
 *   but not `example.com` itself. Any-depth is the broader of the usual readings
 *   (a one-label `*`, as some proxies have), so a proxy that matches fewer names can never
 *   route a request to two apps this check let through. null = any Host header:
 *   a "port-only" route.
 * - pathPrefix: `/api` matches `/api` and `/api/...`, not `/apix` (whole path
 *   segments); null (or `/`) matches every path.
 *
 * Two routes conflict, when their apps share at least one host and the port is
 * the same, if:
 *  a. same host (or both without a host) and the path prefixes overlap (equal, one
 *     inside the other, or either matches every path): the same requests match both;
 *  b. the hosts differ but one covers the other (`*.example.com` covers
 *     `app.example.com` and `*.b.example.com`), whatever the paths;
 *  c. one has a host and the other has none: a route without a host owns its
 *     port against host routes, whatever the paths;
 *  d. one listener is HTTPS and the other plain HTTP: a port is one or the other
 *     (a TLS route also listens on HTTPS_PORT, 443, besides its own port);
 *  e. the same host name with different TLS settings, whatever the paths: one
 *     certificate serves the whole name, and a path of it left on plain HTTP would be
 *     answered over HTTPS by the other app.
 */
import { DEFAULT_ROUTE_PORT, HTTPS_PORT, type RoutedApp, type ProxyRouteSpec, type TlsSpec } from '../domain/app-spec.js';

/** A route as the proxy matches it: default port filled in, `/` read as "every path". */
export interface EffectiveRoute {
  port: number;
  host: string | null;
  pathPrefix: string | null;
  /** The listener is HTTPS (the 443 side of a TLS route). */
  https: boolean;
}

export function effectiveRoute(route: ProxyRouteSpec): EffectiveRoute {
  // Specs stored before path_prefix existed have no pathPrefix at all.
  const prefix = route.pathPrefix ?? null;
  return { port: route.port ?? DEFAULT_ROUTE_PORT, host: route.host, pathPrefix: prefix === '/' ? null : prefix, https: false };
}

/** Every listener a route takes: its port, and HTTPS_PORT too for a TLS route. */
export function effectiveRoutes(route: ProxyRouteSpec): EffectiveRoute[] {
  const plain = effectiveRoute(route);
  return route.tls ? [plain, { ...plain, port: HTTPS_PORT, https: true }] : [plain];
}

/** One key per TLS setting: apps that share a host name must have the same one (rule e). */
export function tlsKey(tls: TlsSpec | null | undefined): string {
  if (!tls) return 'none';
  return tls.source === 'acme' ? 'acme' : `given:${tls.certificate}:${tls.privateKey}`;
}

/** Does the host pattern `a` match every name `b` matches? */
export function hostCovers(a: string, b: string): boolean {
  if (a === b) return true;
  if (!a.startsWith('*.')) return false;
  // `*.example.com` covers `x.example.com`, `x.y.example.com` and `*.y.example.com`, not `example.com`.
  return b.endsWith(a.slice(1));
}

/** Does the path prefix `a` (null: every path) match every path `b` matches? */
export function pathCovers(a: string | null, b: string | null): boolean {
  if (a === null) return true;
  if (b === null) return false;
  return b === a || b.startsWith(`${a}/`);
}

/** How `route` relates to `other`: which one is broader, or neither when no request matches both. */
type Overlap = 'same' | 'covers' | 'covered' | 'port-only' | 'scheme' | null;

function overlap(route: EffectiveRoute, other: EffectiveRoute): Overlap {
  if (route.port !== other.port) return null;
  if (route.https !== other.https) return 'scheme'; // rule d
  const [mine, theirs] = [route.host, other.host];
  if (mine !== theirs) {
    if (mine === null || theirs === null) return 'port-only'; // rule c
    if (hostCovers(mine, theirs)) return 'covers'; // rule b
    if (hostCovers(theirs, mine)) return 'covered';
    return null;
  }
  // Rule a: the same host, or both without one.
  const wide = pathCovers(route.pathPrefix, other.pathPrefix);
  const narrow = pathCovers(other.pathPrefix, route.pathPrefix);
  if (wide && narrow) return 'same';
  if (wide) return 'covers';
  if (narrow) return 'covered';
  return null;
}

/** Messages, one per app in `others` whose route collides with `app`'s on a shared host. */
export function routeConflicts(app: RoutedApp, others: Iterable<RoutedApp>): string[] {
  if (!app.proxy) return [];
  const found: string[] = [];
  for (const other of others) {
    if (other.name === app.name || !other.proxy) continue;
    const shared = app.hosts.filter((h) => other.hosts.includes(h));
    if (shared.length === 0) continue;
    const conflict = pairConflict(app.proxy, other, `on ${shared.length === 1 ? 'host' : 'hosts'} ${shared.join(', ')}`);
    if (conflict) found.push(conflict);
  }
  return found;
}

/** The first conflict between `route` and `other`'s route (rules a-e), or null. */
function pairConflict(route: ProxyRouteSpec, other: RoutedApp, on: string): string | null {
  const otherRoute = other.proxy!;
  for (const mine of effectiveRoutes(route)) {
    for (const theirs of effectiveRoutes(otherRoute)) {
      const kind = overlap(mine, theirs);
      if (kind === null) continue;
      // Where paths decide (rule a) and only one route has a prefix, say that the other takes any path.
      const paths = mine.host === theirs.host && (mine.pathPrefix !== null || theirs.pathPrefix !== null);
      const owner = `app "${other.name}"'s route (${describeRoute(theirs, paths)})`;
      const text = `route ${describeRoute(mine, paths)}`;
      if (kind === 'port-only') return `${text} conflicts with ${owner} ${on}: a route without a host owns its port, no other app may route by host there`;
      if (kind === 'scheme') return `${text} conflicts with ${owner} ${on}: port ${mine.port} cannot serve both HTTPS and plain HTTP`;
      const verb = kind === 'same' ? 'is the same as' : kind === 'covers' ? 'covers' : 'is inside';
      return `${text} ${verb} ${owner} ${on}`;
    }
  }
  if (route.host !== null && route.host === otherRoute.host && tlsKey(route.tls) !== tlsKey(otherRoute.tls)) {
    return `route for host "${route.host}" has other TLS settings than app "${other.name}"'s route for the same host ${on}: one certificate serves a host name, so every app on it needs the same proxy.tls`;
  }
  return null;
}

/** `port 80 host "app.example.com" path "/api"`, `port 8080 any host`; with `anyPath`, a route without a prefix says `any path`. */
export function describeRoute(route: EffectiveRoute, anyPath = false): string {
  const host = route.host === null ? ' any host' : ` host "${route.host}"`;
  const path = route.pathPrefix !== null ? ` path "${route.pathPrefix}"` : anyPath ? ' any path' : '';
  return `port ${route.port}${route.https ? ' (HTTPS)' : ''}${host}${path}`;
}
