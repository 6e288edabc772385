/**
 * Zero-downtime migration of a host from the Caddy proxy of earlier berth versions to
 * HAProxy (docs/design.md, "The proxy"). Both bind their ports with SO_REUSEPORT and
 * run as root on the host network, so HAProxy starts beside the running Caddy:
 *
 * 1. Caddy's live config is read from its admin API (the Unix socket `admin.sock` in the
 *    host's `state_dir/proxy`, where the old berth put it): which container each app's
 *    route sends to, and its maintenance message.
 * 2. HAProxy starts under a temporary name (`berth-proxy-next`) with those servers
 *    already in its backends. Once it listens, the kernel gives it the new connections
 *    (every IPv4 one: its `0.0.0.0` socket is more specific than Caddy's dual-stack `[::]`).
 *    Its stats socket is `admin-next.sock` meanwhile: Caddy unlinks `admin.sock` when it
 *    exits, whoever's socket the path names by then.
 * 3. Once HAProxy answers with those servers, Caddy is stopped gracefully (SIGTERM: it
 *    closes its listeners, finishes its requests in flight; Go closes its idle
 *    keep-alive connections), removed, HAProxy is renamed `berth-proxy` and reloaded with
 *    its usual config (stats socket `admin.sock`; a reload touches no connection).
 *
 * Every step leaves a state the next pass recognises from the proxy containers alone
 * (`planLeftovers`): a temporary HAProxy that answers is kept and the migration finished
 * from step 3; one that does not is removed and the migration starts over.
 *
 * The pure parts (Caddy's answer and config, the seed of HAProxy's servers, the plan)
 * are exported for unit tests.
 */
import type { Logger } from 'pino';
import { ProxyError } from '../domain/errors.js';
import { PROXY_CONTAINER_NAME } from '../domain/labels.js';
import type { HostDriver, ObservedContainer } from '../hosts/host-driver.js';
import { backendName, type HostRoute, type Slot } from './haproxy-config.js';

/** HAProxy's name while it runs beside the old proxy; renamed `berth-proxy` once that is gone. */
export const MIGRATION_CONTAINER_NAME = 'berth-proxy-next';
/** The old berth's Caddy admin socket, in the host's `state_dir/proxy` (caddy-config.ts before HAProxy). */
export const CADDY_ADMIN_SOCKET_NAME = 'admin.sock';
/** HAProxy's stats socket while Caddy runs beside it (the file stays behind, unused, after the reload). */
export const MIGRATION_STATS_SOCKET_NAME = 'admin-next.sock';
/** One admin API read, local to the host. */
const CADDY_ADMIN_TIMEOUT_MS = 5_000;
/** How long Caddy may take to finish its requests in flight when no route says (the routes' largest drain timeout otherwise). */
const DEFAULT_STOP_GRACE_MS = 30_000;
/** A temporary HAProxy found running at the first pass gets this long to answer before it is replaced. */
const LEFTOVER_GRACE_MS = 5_000;
/** The old berth's ids in Caddy's config (caddy-config.ts before HAProxy). */
const ROUTE_ID = /^berth-route-(.+)$/;
const maintenanceId = (app: string) => `berth-maintenance-${app}`;
const IPV4_DIAL = /^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/;

/**
 * `GET path` to Caddy's admin API as one `unixCommand` line: HTTP/1.0, so Caddy closes
 * the connection after its answer (the end `unixCommand` reads to), and an empty Host
 * (what Caddy's admin API on a Unix socket accepts). `unixCommand` appends the `\n` that
 * ends the header block.
 */
export function caddyAdminGet(path: string): string {
  return `GET ${path} HTTP/1.0\r\nHost: \r\n\r`;
}

/** Status and body of a raw HTTP/1.x answer (close-delimited, Content-Length or chunked); null if it is not one. */
export function parseHttpAnswer(raw: string): { status: number; body: string } | null {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const head = raw.slice(0, end).split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '');
  if (!status) return null;
  let body = raw.slice(end + 4);
  if (head.some((h) => /^transfer-encoding:\s*chunked\s*$/i.test(h))) {
    const out: Buffer[] = [];
    let rest = Buffer.from(body, 'utf8');
    for (;;) {
      const eol = rest.indexOf('\r\n');
      if (eol < 0) return null;
      const size = Number.parseInt(rest.subarray(0, eol).toString('latin1'), 16);
      if (!Number.isFinite(size)) return null;
      if (size === 0) break;
      out.push(rest.subarray(eol + 2, eol + 2 + size));
      rest = rest.subarray(eol + 2 + size + 2);
    }
    // Decoded once: a chunk may end inside a character.
    body = Buffer.concat(out).toString('utf8');
  }
  return { status: Number(status[1]), body };
}

/** What the old berth's Caddy config routes for one app. */
export interface CaddyRoute {
  /** `ip:port` its requests go to (the first upstream: the serving one), or null. */
  upstream: string | null;
  /** The maintenance page's text when the app is in maintenance. */
  maintenance: string | null;
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The apps the old berth routed through Caddy, by app name: every route of every server
 * whose `@id` is `berth-route-APP`, its reverse_proxy's first upstream and its
 * maintenance response. Anything else in the config is not berth's and is ignored.
 */
export function parseCaddyRoutes(config: unknown): Map<string, CaddyRoute> {
  const out = new Map<string, CaddyRoute>();
  const servers = isObject(config) && isObject(config.apps) && isObject(config.apps.http) && isObject(config.apps.http.servers) ? config.apps.http.servers : {};
  for (const server of Object.values(servers)) {
    const routes = isObject(server) && Array.isArray(server.routes) ? server.routes : [];
    for (const route of routes) {
      if (!isObject(route) || typeof route['@id'] !== 'string') continue;
      const app = ROUTE_ID.exec(route['@id'])?.[1];
      if (!app) continue;
      const handlers = Array.isArray(route.handle) ? route.handle.filter(isObject) : [];
      const proxy = handlers.find((h) => h.handler === 'reverse_proxy');
      const first = proxy && Array.isArray(proxy.upstreams) ? proxy.upstreams[0] : undefined;
      const dial = isObject(first) && typeof first.dial === 'string' ? first.dial : null;
      const page = handlers.find((h) => h['@id'] === maintenanceId(app));
      const maintenance = page ? String(page.body ?? '').replace(/\n$/, '') : null;
      out.set(app, { upstream: dial, maintenance });
    }
  }
  return out;
}

/**
 * HAProxy's first servers and maintenance messages (renderProxy's inputs): each wanted
 * app's Caddy upstream in its first slot, ready. `unrouted`: wanted apps Caddy has no
 * usable upstream for (they answer 503 until their pass switches them, as on a new host).
 */
export function seedFromCaddy(wanted: HostRoute[], caddy: Map<string, CaddyRoute>): { slots: Slot[]; maintenance: Map<string, string>; unrouted: string[] } {
  const slots: Slot[] = [];
  const maintenance = new Map<string, string>();
  const unrouted: string[] = [];
  for (const { app } of wanted) {
    const route = caddy.get(app);
    if (route?.maintenance != null) maintenance.set(app, route.maintenance);
    if (route?.upstream && IPV4_DIAL.test(route.upstream)) slots.push({ backend: backendName(app), server: 's1', addr: route.upstream, state: 'ready', inFlight: 0 });
    else unrouted.push(app);
  }
  return { slots, maintenance, unrouted };
}

/** Seeded servers the running HAProxy does not serve (it answers, but not with them). */
export function missingServers(seeded: Slot[], running: Slot[]): Slot[] {
  return seeded.filter((s) => !running.some((r) => r.backend === s.backend && r.addr === s.addr && r.state === 'ready'));
}

/**
 * What the proxy containers of a host (`berth.app=_proxy`) say about a migration:
 * - `none`: no temporary HAProxy; a `berth-proxy` of another image is migrated when its
 *   runtime API does not answer (HaproxyProxy.start).
 * - `finish`: a temporary HAProxy (a migration was interrupted): if it answers, the old
 *   proxy (if any) is retired and it is renamed; if not, it is removed and the old one
 *   migrated again.
 * - `drop`: `berth-proxy` already runs the configured image; the temporary one is a leftover.
 */
export type LeftoverPlan = { kind: 'none' } | { kind: 'finish'; next: ObservedContainer; old: ObservedContainer | null } | { kind: 'drop'; next: ObservedContainer };

export function planLeftovers(containers: ObservedContainer[], image: string): LeftoverPlan {
  const proxy = containers.find((c) => c.name === PROXY_CONTAINER_NAME) ?? null;
  const next = containers.find((c) => c.name === MIGRATION_CONTAINER_NAME);
  if (!next) return { kind: 'none' };
  if (proxy && proxy.version === image) return { kind: 'drop', next };
  return { kind: 'finish', next, old: proxy };
}

/** Caddy's grace to finish its requests in flight: the longest drain timeout of the host's routes. */
export function stopGraceMs(wanted: HostRoute[]): number {
  return wanted.length === 0 ? DEFAULT_STOP_GRACE_MS : Math.max(...wanted.map((r) => r.route.drainTimeoutMs));
}

/** What the migration needs of HaproxyProxy for one host. */
export interface MigrationContext<S extends { slots: Slot[] }> {
  host: string;
  driver: HostDriver;
  log: Logger;
  image: string;
  /** The routes HAProxy should run. */
  wanted: HostRoute[];
  /** Caddy's admin socket on the host. */
  caddyAdminSocket: string;
  /** Creates (does not start) an HAProxy container named `name` whose config serves `wanted` with these servers. */
  createProxy(name: string, slots: Slot[], maintenance: Map<string, string>): Promise<string>;
  /** The runtime API's state once it answers (with the `wanted` routes when `routes`); a ProxyError after `timeoutMs`. */
  waitReady(routes: boolean, timeoutMs?: number): Promise<S>;
  /** Rewrites `berth-proxy`'s config for `wanted` with everything as it runs (`state`), its usual stats socket, and reloads. */
  reload(state: S): Promise<S>;
}

/** Caddy's routes from its admin API; null when nothing there answers like Caddy. */
export async function readCaddyRoutes(ctx: Pick<MigrationContext<never>, 'driver' | 'caddyAdminSocket' | 'host' | 'log'>): Promise<Map<string, CaddyRoute> | null> {
  let raw: string;
  try {
    raw = await ctx.driver.unixCommand(ctx.caddyAdminSocket, caddyAdminGet('/config/'), CADDY_ADMIN_TIMEOUT_MS);
  } catch (err) {
    ctx.log.warn({ host: ctx.host, err: (err as Error).message }, 'old proxy: admin API not answering');
    return null;
  }
  const answer = parseHttpAnswer(raw);
  if (!answer || answer.status !== 200) {
    ctx.log.warn({ host: ctx.host, answer: raw.slice(0, 120) }, 'old proxy: admin API answered something else than its config');
    return null;
  }
  try {
    return parseCaddyRoutes(JSON.parse(answer.body) as unknown);
  } catch {
    ctx.log.warn({ host: ctx.host }, 'old proxy: admin API config is not JSON');
    return null;
  }
}

/**
 * Migrates from the running old proxy `old` with no outage. Null when that cannot be
 * done — the driver cannot rename, or nothing answers like Caddy on the admin socket —
 * and nothing was changed: the caller replaces the old proxy the old way (stop, start).
 */
export async function migrateFromCaddy<S extends { slots: Slot[] }>(ctx: MigrationContext<S>, old: ObservedContainer): Promise<S | null> {
  const d = ctx.driver;
  if (!d.renameContainer) return null;
  // Pulled while the old proxy still serves.
  if (!(await d.hasImage(ctx.image))) await d.pullImage(ctx.image);
  const caddy = await readCaddyRoutes(ctx);
  if (!caddy) return null;
  const seed = seedFromCaddy(ctx.wanted, caddy);
  ctx.log.info({ host: ctx.host, from: old.version, to: ctx.image, servers: seed.slots.map((s) => `${s.backend} ${s.addr}`), unrouted: seed.unrouted }, 'migrating the proxy: starting HAProxy beside the old proxy');
  const id = await ctx.createProxy(MIGRATION_CONTAINER_NAME, seed.slots, seed.maintenance);
  const started = Date.now();
  let state: S;
  try {
    await d.startContainer(id);
    state = await ctx.waitReady(true);
    const missing = missingServers(seed.slots, state.slots);
    if (missing.length > 0) throw new ProxyError('PROXY_NOT_READY', ctx.host, `new proxy answers without the old proxy's servers: ${missing.map((s) => `${s.backend} ${s.addr}`).join(', ')}`);
  } catch (err) {
    // The old proxy still serves: take the new one away (its requests in flight finish) and let the next pass try again.
    await d.stopContainer(id, stopGraceMs(ctx.wanted)).then(() => d.removeContainer(id)).catch(() => undefined);
    throw err;
  }
  return retire(ctx, old, id, started, state);
}

/**
 * At the first pass on a host: finishes a migration an earlier berth left half done.
 * Returns the proxy's state when a temporary HAProxy answered and is `berth-proxy` now,
 * null when the normal path (HaproxyProxy.start) should run.
 */
export async function finishLeftovers<S extends { slots: Slot[] }>(ctx: MigrationContext<S>, containers: ObservedContainer[]): Promise<S | null> {
  const d = ctx.driver;
  const plan = planLeftovers(containers, ctx.image);
  if (plan.kind === 'none') return null;
  if (plan.kind === 'drop') {
    ctx.log.warn({ host: ctx.host }, 'removing a leftover temporary proxy container');
    await d.stopContainer(plan.next.id, stopGraceMs(ctx.wanted));
    await d.removeContainer(plan.next.id);
    return null;
  }
  // Its routes may be older than `wanted`: any answer will do (retire's reload writes `wanted`).
  const state = plan.next.running ? await ctx.waitReady(false, LEFTOVER_GRACE_MS).catch(() => null) : null;
  if (state && d.renameContainer) {
    ctx.log.warn({ host: ctx.host, old: plan.old?.version ?? null }, 'finishing an interrupted proxy migration');
    return retire(ctx, plan.old, plan.next.id, null, state);
  }
  ctx.log.warn({ host: ctx.host, state: plan.next.state }, 'removing a temporary proxy container that does not answer');
  await d.stopContainer(plan.next.id, stopGraceMs(ctx.wanted));
  await d.removeContainer(plan.next.id);
  return plan.old?.running ? migrateFromCaddy(ctx, plan.old) : null;
}

/** The new proxy serves: the old one finishes its requests and goes, the new one takes the name. */
async function retire<S extends { slots: Slot[] }>(ctx: MigrationContext<S>, old: ObservedContainer | null, id: string, started: number | null, state: S): Promise<S> {
  const d = ctx.driver;
  const ready = Date.now();
  if (old) {
    await d.stopContainer(old.id, stopGraceMs(ctx.wanted));
    await d.removeContainer(old.id);
  }
  const stopped = Date.now();
  await d.renameContainer!(id, PROXY_CONTAINER_NAME);
  ctx.log.info(
    { host: ctx.host, startMs: started === null ? null : ready - started, oldProxyStopMs: stopped - ready, overlapMs: started === null ? null : stopped - started },
    'proxy migrated: HAProxy serves as berth-proxy',
  );
  // Its stats socket back at `admin.sock`: a reload binds the new path (the old one's fd is not reused for it).
  return ctx.reload(state);
}
