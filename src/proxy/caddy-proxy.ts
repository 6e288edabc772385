import type { Logger } from 'pino';
import { SEED_DEFAULTS, type HostSpec, type ProxyRouteSpec } from '../domain/app-spec.js';
import { HostNotConfiguredError, ProxyError } from '../domain/errors.js';
import { LABELS, PROXY_CONTAINER_NAME } from '../domain/labels.js';
import type { HostDriver } from '../hosts/host-driver.js';
import {
  ADMIN_DIR_IN_CONTAINER,
  CONFIG_PATH_IN_CONTAINER,
  appRoute,
  bootConfig,
  dialOf,
  handlerId,
  isCatchAll,
  maintenanceHandler,
  maintenanceId,
  routeId,
  server,
  serverName,
  upstreamList,
} from './caddy-config.js';
import type { RouteState, TrafficSwitch, Upstream } from './traffic.js';

/** The proxy's `berth.app` label: not a valid app name, so it never collides with one. */
export const PROXY_APP_LABEL = '_proxy';
const ADMIN_TIMEOUT_MS = 5_000;
const READY_TIMEOUT_MS = 15_000;
/** How often a starting proxy's admin API is asked whether it answers yet. */
const READY_POLL_MS = 100;
const DRAIN_POLL_MS = 100;
const DEFAULT_PORT = 80;

interface AdminResponse {
  status: number;
  json: unknown;
}

/**
 * berth's per-host proxy: one Caddy container (`berth-proxy`) on the host's network,
 * its admin API on a Unix socket in the host's state dir, reached over the host's SSH
 * connection (never the network). Routes are found by `@id`; a switch is one PATCH.
 */
export class CaddyProxy implements TrafficSwitch {
  constructor(
    private readonly o: {
      drivers: Map<string, HostDriver>;
      hosts: Record<string, HostSpec>;
      image: string;
      log: Logger;
    },
  ) {}

  private driver(host: string): HostDriver {
    const d = this.o.drivers.get(host);
    if (!d) throw new HostNotConfiguredError(host);
    return d;
  }

  /** The host's state_dir (the config's default for a host the config does not name). */
  private stateDir(host: string): string {
    return this.o.hosts[host]?.stateDir ?? SEED_DEFAULTS.stateDir;
  }

  adminSocket(host: string): string {
    return `${this.stateDir(host)}/proxy/admin.sock`;
  }

  private async admin(host: string, method: string, path: string, body?: unknown): Promise<AdminResponse> {
    const res = await this.driver(host).unixRequest(this.adminSocket(host), {
      method,
      path,
      timeoutMs: ADMIN_TIMEOUT_MS,
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } }),
    });
    let json: unknown = null;
    try {
      json = res.body ? JSON.parse(res.body) : null;
    } catch {
      json = res.body;
    }
    return { status: res.status, json };
  }

  private async adminOk(host: string, method: string, path: string, body?: unknown): Promise<unknown> {
    const res = await this.admin(host, method, path, body);
    if (res.status >= 300) {
      const detail = typeof res.json === 'object' && res.json && 'error' in res.json ? String((res.json as { error: unknown }).error) : JSON.stringify(res.json);
      throw new ProxyError('PROXY_ADMIN_ERROR', host, `proxy admin ${method} ${path} -> ${res.status}: ${detail}`);
    }
    return res.json;
  }

  /** Starts the proxy container when it is missing or stopped, and waits until its admin API answers. */
  async ensureRunning(host: string): Promise<void> {
    try {
      await this.adminOk(host, 'GET', '/config/');
      return;
    } catch {
      // Not answering: make sure the container exists and runs, then wait for it.
    }
    const d = this.driver(host);
    const existing = (await d.listContainers({ app: PROXY_APP_LABEL })).find((c) => c.name === PROXY_CONTAINER_NAME);
    if (existing && !existing.running) {
      this.o.log.warn({ host }, 'proxy container stopped: starting it');
      await d.startContainer(existing.id);
    } else if (!existing) {
      this.o.log.warn({ host }, 'no proxy container: creating it');
      if (!(await d.hasImage(this.o.image))) await d.pullImage(this.o.image);
      const stateDir = this.stateDir(host);
      const id = await d.createContainer({
        name: PROXY_CONTAINER_NAME,
        image: this.o.image,
        entrypoint: ['caddy'],
        cmd: ['run', '--config', CONFIG_PATH_IN_CONTAINER, '--resume'],
        env: { XDG_CONFIG_HOME: '/config', XDG_DATA_HOME: '/data' },
        labels: { [LABELS.app]: PROXY_APP_LABEL, [LABELS.role]: 'proxy', [LABELS.revision]: '0', [LABELS.version]: this.o.image },
        network: 'host',
        init: true,
        binds: [`${stateDir}/proxy:${ADMIN_DIR_IN_CONTAINER}`],
        restartPolicy: 'unless-stopped',
        files: [{ path: CONFIG_PATH_IN_CONTAINER, content: JSON.stringify(bootConfig()) }],
      });
      await d.startContainer(id);
    }
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      try {
        await this.adminOk(host, 'GET', '/config/');
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new ProxyError('PROXY_NOT_READY', host, `proxy admin API not answering after ${READY_TIMEOUT_MS} ms: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, READY_POLL_MS));
      }
    }
  }

  async observeRoute(host: string, app: string, _route: ProxyRouteSpec): Promise<RouteState> {
    const res = await this.admin(host, 'GET', `/id/${routeId(app)}`).catch(() => null);
    if (!res || res.status !== 200 || typeof res.json !== 'object' || res.json === null) return { upstream: null, maintenance: null };
    const handle = ((res.json as { handle?: unknown }).handle ?? []) as Array<Record<string, unknown>>;
    const proxy = handle.find((h) => h['@id'] === handlerId(app)) as { upstreams?: Array<{ dial?: unknown }> } | undefined;
    const maintenance = handle.find((h) => h['@id'] === maintenanceId(app)) as { body?: unknown } | undefined;
    const dial = proxy?.upstreams?.[0]?.dial;
    return {
      upstream: typeof dial === 'string' ? dial : null,
      maintenance: maintenance ? String(maintenance.body ?? '').trim() : null,
    };
  }

  async setMaintenance(host: string, app: string, _route: ProxyRouteSpec, message: string | null): Promise<void> {
    await this.ensureRunning(host);
    const existing = await this.admin(host, 'GET', `/id/${maintenanceId(app)}`);
    if (existing.status === 200) await this.adminOk(host, 'DELETE', `/id/${maintenanceId(app)}`);
    if (message !== null) await this.adminOk(host, 'PUT', `/id/${routeId(app)}/handle/0`, maintenanceHandler(app, message));
    this.o.log.info({ host, app, maintenance: message !== null }, message !== null ? 'maintenance on' : 'live');
  }

  async switchTo(host: string, app: string, route: ProxyRouteSpec | null, upstream: Upstream): Promise<void> {
    if (!route) return;
    await this.ensureRunning(host);
    const dial = dialOf(upstream);
    const current = await this.upstreams(host, app);
    if (current === null) return this.addRoute(host, app, route, upstream);
    // Every config change reloads Caddy (and closes idle keep-alive connections): skip no-op switches.
    if (current[0] === dial) return;
    await this.adminOk(host, 'PATCH', `/id/${handlerId(app)}/upstreams`, upstreamList(dial, current[0] ?? null));
  }

  /** The route's upstream dials, serving first; null when the host has no route for the app. */
  private async upstreams(host: string, app: string): Promise<string[] | null> {
    const res = await this.admin(host, 'GET', `/id/${handlerId(app)}/upstreams`);
    if (res.status !== 200 || !Array.isArray(res.json)) return null;
    return (res.json as Array<{ dial?: unknown }>).map((u) => String(u.dial));
  }

  /** First switch of the app on this host: add its route to the server of its port (creating that). */
  private async addRoute(host: string, app: string, route: ProxyRouteSpec, upstream: Upstream): Promise<void> {
    const port = route.port ?? DEFAULT_PORT;
    const srv = `/config/apps/http/servers/${serverName(port)}`;
    const existing = await this.admin(host, 'GET', srv);
    const r = appRoute(app, route, upstream);
    if (existing.status !== 200 || existing.json === null) {
      await this.adminOk(host, 'PUT', srv, server(port, [r]));
    } else if (isCatchAll(route)) {
      await this.adminOk(host, 'POST', `${srv}/routes`, r);
    } else {
      // Host-matched routes go first, ahead of any catch-all on the same port.
      await this.adminOk(host, 'PUT', `${srv}/routes/0`, r);
    }
    this.o.log.info({ host, app, port, routeHost: route.host }, 'proxy route added');
  }

  /** Waits until the old upstream has no request in flight (or the timeout), then drops it from the route. */
  async drain(host: string, app: string, route: ProxyRouteSpec | null, upstream: Upstream, timeoutMs: number): Promise<void> {
    if (!route) return;
    const dial = dialOf(upstream);
    const deadline = Date.now() + timeoutMs;
    let inFlight = 0;
    while (Date.now() < deadline) {
      const res = await this.admin(host, 'GET', '/reverse_proxy/upstreams').catch(() => null);
      if (!res || res.status !== 200 || !Array.isArray(res.json)) break;
      const entry = (res.json as Array<{ address?: string; num_requests?: number }>).find((u) => u.address === dial);
      inFlight = entry?.num_requests ?? 0;
      if (inFlight === 0) break;
      await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
    }
    if (inFlight > 0) this.o.log.warn({ host, app, upstream: dial, inFlight, timeoutMs }, 'drain timeout: stopping with requests in flight');
    const current = await this.upstreams(host, app);
    if (current?.includes(dial) && current[0] !== dial) {
      await this.adminOk(host, 'PATCH', `/id/${handlerId(app)}/upstreams`, current.filter((d) => d !== dial).map((d) => ({ dial: d })));
    }
  }
}
