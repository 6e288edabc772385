import type { ProxyRouteSpec } from '../domain/app-spec.js';

/**
 * Caddy JSON for berth's per-host proxy (pure). Each app gets one route, found by
 * its `@id`, in the server of its proxy port; the route's reverse_proxy handler has
 * its own `@id` so a switch is a single PATCH of its upstreams.
 */
export const ADMIN_DIR_IN_CONTAINER = '/run/berth-proxy';
export const ADMIN_SOCKET_IN_CONTAINER = `${ADMIN_DIR_IN_CONTAINER}/admin.sock`;
export const CONFIG_PATH_IN_CONTAINER = '/etc/berth-proxy/caddy.json';

export const routeId = (app: string) => `berth-route-${app}`;
export const handlerId = (app: string) => `berth-upstreams-${app}`;
export const maintenanceId = (app: string) => `berth-maintenance-${app}`;
export const serverName = (port: number) => `berth-p${port}`;

/** The proxy's boot config: admin only on a Unix socket, no servers until berth adds routes. */
export function bootConfig(): Record<string, unknown> {
  return {
    admin: { listen: `unix/${ADMIN_SOCKET_IN_CONTAINER}`, config: { persist: true } },
    logging: { logs: { default: { level: 'WARN' } } },
    apps: { http: { servers: {} } },
  };
}

export interface Dial {
  ip: string;
  port: number;
}

export const dialOf = (u: Dial) => `${u.ip}:${u.port}`;

/**
 * How long, and how often, Caddy retries an upstream that refuses a connection (one
 * that is restarting) before the request fails with 502.
 */
const UPSTREAM_TRY_DURATION = '5s';
const UPSTREAM_TRY_INTERVAL = '100ms';
/** The Retry-After of the maintenance page, in seconds: how soon a client should look again. */
const MAINTENANCE_RETRY_AFTER_S = 30;

/**
 * The reverse_proxy handler. Its upstream list is [serving, draining?]: with the
 * `first` policy every new request goes to the first, while the one being drained
 * stays listed so Caddy keeps counting its in-flight requests (the drain waits on
 * that count; an address no longer in the config drops out of /reverse_proxy/upstreams
 * while requests on it are still running). If the upstream refuses a connection,
 * Caddy retries for up to try_duration.
 */
export function proxyHandler(app: string, upstream: Dial): Record<string, unknown> {
  return {
    '@id': handlerId(app),
    handler: 'reverse_proxy',
    upstreams: upstreamList(dialOf(upstream), null),
    load_balancing: { selection_policy: { policy: 'first' }, try_duration: UPSTREAM_TRY_DURATION, try_interval: UPSTREAM_TRY_INTERVAL },
  };
}

export function upstreamList(serving: string, draining: string | null): Array<{ dial: string }> {
  return draining && draining !== serving ? [{ dial: serving }, { dial: draining }] : [{ dial: serving }];
}

/** Put first in the app route's handle list: it answers, so the reverse_proxy after it is not reached. */
export function maintenanceHandler(app: string, message: string): Record<string, unknown> {
  return {
    '@id': maintenanceId(app),
    handler: 'static_response',
    status_code: 503,
    headers: { 'Content-Type': ['text/plain; charset=utf-8'], 'Retry-After': [String(MAINTENANCE_RETRY_AFTER_S)] },
    body: `${message}\n`,
  };
}

export function appRoute(app: string, route: ProxyRouteSpec, upstream: Dial): Record<string, unknown> {
  return {
    '@id': routeId(app),
    ...(route.host ? { match: [{ host: [route.host] }] } : {}),
    handle: [proxyHandler(app, upstream)],
    terminal: true,
  };
}

export function server(port: number, routes: Record<string, unknown>[]): Record<string, unknown> {
  return { listen: [`:${port}`], routes, automatic_https: { disable: true } };
}

/** Host-matched routes go first so a catch-all route on the same port does not shadow them. */
export function isCatchAll(route: ProxyRouteSpec): boolean {
  return route.host === null;
}
