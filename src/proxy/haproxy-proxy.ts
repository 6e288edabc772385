import type { Logger } from 'pino';
import { SEED_DEFAULTS, type HostSpec, type ProxyRouteSpec } from '../domain/app-spec.js';
import { isHostDown, ProxyError } from '../domain/errors.js';
import { LABELS, PROXY_CONTAINER_NAME } from '../domain/labels.js';
import { driverFor, type HostDriver, type ObservedContainer } from '../hosts/host-driver.js';
import {
  CONFIG_PATH,
  MAINTENANCE_MAP,
  ROUTES_MAP,
  STATE_DIR_IN_CONTAINER,
  backendName,
  countAnswers,
  countOldWorkers,
  oneLine,
  parseShowMap,
  parseShowStat,
  renderProxy,
  routeKey,
  switchCommands,
  type HostRoute,
  type Slot,
} from './haproxy-config.js';
import type { RouteState, TrafficSwitch, Upstream } from './traffic.js';

/** The proxy's `berth.app` label: not a valid app name, so it never collides with one. */
export const PROXY_APP_LABEL = '_proxy';
/** One runtime API exchange: local to the host, answered in well under a millisecond there (docs/design.md). */
const RUNTIME_TIMEOUT_MS = 5_000;
/** A proxy just started or reloaded answers within ~100 ms here; this bounds a slow host. */
const READY_TIMEOUT_MS = 15_000;
const READY_POLL_MS = 100;
/** How long a running proxy that does not answer gets before it is restarted (a reload takes ~100 ms). */
const RUNNING_GRACE_MS = 5_000;
const DRAIN_POLL_MS = 100;
const ADMIN_SOCKET = `${STATE_DIR_IN_CONTAINER}/admin.sock`;
const MASTER_SOCKET = `${STATE_DIR_IN_CONTAINER}/master.sock`;
/** What the runtime API answers when a command failed (it answers 200-less text, never a status). */
const RUNTIME_ERROR = /^(Unknown command|No such|Require|Invalid|Missing|Can't|Cannot|.*: no such|.*not found|'.*' only supports)/im;

export interface HaproxyOptions {
  drivers: Map<string, HostDriver>;
  hosts: Record<string, HostSpec>;
  image: string;
  log: Logger;
  /** Every app's route on the host as stored (the desired routes); a pass's own route replaces its app's entry. */
  routesOn(host: string): HostRoute[];
}

interface ProxyState {
  slots: Slot[];
  /** App -> routeKey of the route the running config has for it. */
  routes: Map<string, string>;
  /** Backend -> maintenance message. */
  maintenance: Map<string, string>;
}

/**
 * berth's per-host proxy: one HAProxy container (`berth-proxy`) on the host's network,
 * its runtime API on a Unix socket in the host's state dir, reached over the host's SSH
 * connection (never the network). Switch, drain and maintenance are runtime commands
 * that touch no connection; the config is rewritten and reloaded only when the set of
 * routes on the host changes, and a reload leaves idle connections to close after their
 * next response (`option idle-close-on-response`). Calls for one host are serialised, so
 * two apps' passes never race to create or reconfigure the same proxy.
 */
export class HaproxyProxy implements TrafficSwitch {
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(private readonly o: HaproxyOptions) {}

  private driver(host: string): HostDriver {
    return driverFor(this.o.drivers, host);
  }

  private socketDir(host: string): string {
    return `${this.o.hosts[host]?.stateDir ?? SEED_DEFAULTS.stateDir}/proxy`;
  }

  private masterSocket(host: string): string {
    return `${this.socketDir(host)}/master.sock`;
  }

  /** Runs `fn` after every earlier call for the same host has finished. */
  private serial<T>(host: string, fn: () => Promise<T>): Promise<T> {
    const before = this.queues.get(host) ?? Promise.resolve();
    const run = before.then(fn, fn);
    this.queues.set(host, run.catch(() => undefined));
    return run;
  }

  /**
   * Runtime commands, through the master CLI to the current worker (`@1`), one exchange
   * each, in order. Never through the worker's own socket: right after a reload the old
   * worker still accepts on it (the socket is handed over), and what it answers, or is
   * told, is gone with it. One command per exchange: each answer is then one write, which
   * SSH delivers at once; the second answer of a chained line waited ~40 ms behind the
   * first (sshd's small-segment coalescing against our delayed ACK).
   */
  private async runtime(host: string, commands: string[]): Promise<string> {
    let answers = '';
    for (const command of commands) {
      const answer = await this.exchange(host, `@1 ${command}`);
      const failed = RUNTIME_ERROR.exec(answer);
      if (failed) throw new ProxyError('PROXY_ADMIN_ERROR', host, `proxy runtime "${command.slice(0, 80)}": ${failed[0].trim()}`);
      answers += answer;
    }
    return answers;
  }

  /** One command on the master CLI; complete at its answer's blank line, not at the (later) close. */
  private exchange(host: string, line: string): Promise<string> {
    return this.driver(host).unixCommand(this.masterSocket(host), line, RUNTIME_TIMEOUT_MS, { doneWhen: (received) => countAnswers(received) >= 1 });
  }

  /** The proxy as it runs now, or null when its runtime API does not answer. */
  private async readState(host: string): Promise<ProxyState | null> {
    const answers = await this.query(host, [`show map ${ROUTES_MAP}`, `show map ${MAINTENANCE_MAP}`]);
    if (!answers) return null;
    const [stat, routes, maintenance] = answers as [string, string, string];
    return { slots: parseShowStat(stat), routes: parseShowMap(routes), maintenance: parseShowMap(maintenance) };
  }

  /** The servers only (what a drain polls): one command instead of three. */
  private async readSlots(host: string): Promise<Slot[] | null> {
    const answers = await this.query(host, []);
    return answers ? parseShowStat(answers[0]!) : null;
  }

  /**
   * `show stat` and then `more` read-only commands, in parallel; null when the proxy does
   * not answer them. `show stat` comes first because it tells HAProxy from another
   * program on the socket (the Caddy proxy before HAProxy answers HTTP).
   */
  private async query(host: string, more: string[]): Promise<string[] | null> {
    try {
      const answers = await Promise.all(['show stat', ...more].map((c) => this.runtime(host, [c])));
      return answers[0]!.startsWith('# pxname') ? answers : null;
    } catch (err) {
      // A host that does not answer says nothing about its proxy: never restart a proxy for that.
      if (isHostDown(err)) throw err;
      return null;
    }
  }

  /** Whether the proxy runs exactly the `wanted` routes. */
  private static runs(state: ProxyState, wanted: HostRoute[]): boolean {
    return wanted.length === state.routes.size && wanted.every((r) => state.routes.get(r.app) === routeKey(r.route));
  }

  /** The routes the host's proxy should have: every stored app's, with `app`'s own as this pass knows it. */
  private wantedRoutes(host: string, app: string, route: ProxyRouteSpec): HostRoute[] {
    return [...this.o.routesOn(host).filter((r) => r.app !== app), { app, route }];
  }

  /**
   * Makes the host's proxy run with `wanted` routes: starts or replaces the container
   * when needed, reloads when the route set differs. Returns the state it runs with.
   * Call only inside `serial(host, ...)`.
   */
  private async ensureLocked(host: string, wanted: HostRoute[]): Promise<ProxyState> {
    const state = (await this.readState(host)) ?? (await this.start(host, wanted));
    return HaproxyProxy.runs(state, wanted) ? state : this.reconfigure(host, wanted, state);
  }

  private async proxyContainer(host: string): Promise<ObservedContainer | null> {
    return (await this.driver(host).listContainers({ app: PROXY_APP_LABEL })).find((c) => c.name === PROXY_CONTAINER_NAME) ?? null;
  }

  /**
   * The runtime API does not answer: (re)starts the proxy container with a config for
   * `wanted` — creating it when missing, replacing one of another image (the Caddy proxy
   * before HAProxy), rewriting the config of a stopped or crash-looping one.
   */
  private async start(host: string, wanted: HostRoute[]): Promise<ProxyState> {
    const d = this.driver(host);
    const files = proxyFiles(renderProxy(wanted, [], new Map(), ADMIN_SOCKET));
    let existing = await this.proxyContainer(host);
    if (existing && existing.version !== this.o.image) {
      this.o.log.warn({ host, from: existing.version, to: this.o.image }, 'replacing the proxy container with the configured image');
      // Pulled while the old proxy still serves: the gap is only its stop and the new one's start.
      if (!(await d.hasImage(this.o.image))) await d.pullImage(this.o.image);
      await d.stopContainer(existing.id, READY_TIMEOUT_MS);
      await d.removeContainer(existing.id);
      existing = null;
    }
    if (existing?.running) {
      // Running but silent may be a worker starting or reloading: a restart would cut every connection.
      const state = await this.waitReady(host, null, RUNNING_GRACE_MS).catch(() => null);
      if (state) return state;
    }
    if (existing) {
      this.o.log.warn({ host, running: existing.running }, 'proxy not answering: restarting it with a fresh config');
      await d.putFiles(existing.id, files);
      await d.stopContainer(existing.id, READY_TIMEOUT_MS);
      await d.startContainer(existing.id);
    } else {
      this.o.log.warn({ host }, 'no proxy container: creating it');
      if (!(await d.hasImage(this.o.image))) await d.pullImage(this.o.image);
      const id = await d.createContainer({
        name: PROXY_CONTAINER_NAME,
        image: this.o.image,
        entrypoint: ['haproxy'],
        cmd: ['-W', '-db', '-S', `${MASTER_SOCKET},mode,600`, '-f', CONFIG_PATH],
        env: {},
        labels: { [LABELS.app]: PROXY_APP_LABEL, [LABELS.role]: 'proxy', [LABELS.revision]: '0', [LABELS.version]: this.o.image },
        network: 'host',
        init: true,
        user: 'root',
        binds: [`${this.socketDir(host)}:${STATE_DIR_IN_CONTAINER}`],
        restartPolicy: 'unless-stopped',
        files,
      });
      await d.startContainer(id);
    }
    return this.waitReady(host, null);
  }

  /** Polls the runtime API until it answers (with `routes` when given: a reload has taken effect). */
  private async waitReady(host: string, routes: HostRoute[] | null, timeoutMs = READY_TIMEOUT_MS): Promise<ProxyState> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const state = await this.readState(host);
      if (state && (!routes || HaproxyProxy.runs(state, routes))) return state;
      if (Date.now() > deadline) throw new ProxyError('PROXY_NOT_READY', host, `proxy runtime API ${routes ? 'did not take the new routes' : 'not answering'} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, READY_POLL_MS));
    }
  }

  /** Writes the config for `wanted` (keeping every server and maintenance message as they run) and reloads. */
  private async reconfigure(host: string, wanted: HostRoute[], state: ProxyState): Promise<ProxyState> {
    const container = await this.proxyContainer(host);
    if (!container) throw new ProxyError('PROXY_NOT_READY', host, 'proxy container vanished during a reconfiguration');
    const maintenance = new Map<string, string>();
    for (const r of wanted) {
      const message = state.maintenance.get(backendName(r.app));
      if (message !== undefined) maintenance.set(r.app, message);
    }
    await this.driver(host).putFiles(container.id, proxyFiles(renderProxy(wanted, state.slots, maintenance, ADMIN_SOCKET)));
    // The master re-executes itself: the answer is the socket closing.
    await this.driver(host).unixCommand(this.masterSocket(host), 'reload', RUNTIME_TIMEOUT_MS);
    this.o.log.info({ host, routes: wanted.map((r) => `${r.app} ${routeKey(r.route)}`) }, 'proxy routes changed: reloaded');
    return this.waitReady(host, wanted);
  }

  /**
   * Every change to the proxy — a reload, a switch, the end of a drain, maintenance — runs
   * in the host's serial section: a reload writes the servers as they run at that moment,
   * so a switch made beside it would be lost in the new worker.
   */
  async switchTo(host: string, app: string, route: ProxyRouteSpec | null, upstream: Upstream): Promise<void> {
    if (!route) return;
    const wanted = this.wantedRoutes(host, app, route);
    await this.serial(host, async () => {
      const state = await this.ensureLocked(host, wanted);
      const commands = switchCommands(app, state.slots, `${upstream.ip}:${upstream.port}`);
      if (commands === null) throw new ProxyError('PROXY_ADMIN_ERROR', host, `no free server slot in ${backendName(app)}: three containers are still draining`);
      if (commands.length > 0) await this.runtime(host, commands);
    });
  }

  /**
   * Waits until the old container has no request in flight — in the current worker and in
   * any worker a reload left behind (whose requests the current one cannot see) — or the
   * timeout, then takes it out of the backend.
   */
  async drain(host: string, app: string, route: ProxyRouteSpec | null, upstream: Upstream, timeoutMs: number): Promise<void> {
    if (!route) return;
    const addr = `${upstream.ip}:${upstream.port}`;
    const slotOf = async () => (await this.readSlots(host))?.find((s) => s.backend === backendName(app) && s.addr === addr);
    const deadline = Date.now() + timeoutMs;
    let inFlight = 0;
    let oldWorkers = 0;
    for (;;) {
      const slot = await slotOf();
      // Gone, or serving again (a rollback switched back to it): nothing to drain.
      if (!slot || slot.state === 'ready') return;
      inFlight = slot.inFlight;
      oldWorkers = inFlight === 0 ? await this.oldWorkers(host) : oldWorkers;
      if ((inFlight === 0 && oldWorkers === 0) || Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
    }
    if (inFlight > 0 || oldWorkers > 0) this.o.log.warn({ host, app, upstream: addr, inFlight, oldWorkers, timeoutMs }, 'drain timeout: stopping with requests in flight');
    await this.serial(host, async () => {
      const slot = await slotOf();
      if (slot && slot.state === 'drain') await this.runtime(host, [`set server ${slot.backend}/${slot.server} state maint`]);
    });
  }

  /** Workers a reload left behind, still finishing their connections (`show proc` on the master). */
  private async oldWorkers(host: string): Promise<number> {
    return countOldWorkers(await this.exchange(host, 'show proc'));
  }

  async observeRoute(host: string, app: string, route: ProxyRouteSpec): Promise<RouteState> {
    const state = await this.readState(host);
    if (!state || state.routes.get(app) !== routeKey(route)) return { upstream: null, maintenance: null };
    const serving = state.slots.find((s) => s.backend === backendName(app) && s.state === 'ready' && s.addr !== null);
    return { upstream: serving?.addr ?? null, maintenance: state.maintenance.get(backendName(app)) ?? null };
  }

  async setMaintenance(host: string, app: string, route: ProxyRouteSpec, message: string | null): Promise<void> {
    const wanted = this.wantedRoutes(host, app, route);
    await this.serial(host, async () => {
      const state = await this.ensureLocked(host, wanted);
      const key = backendName(app);
      if (state.maintenance.has(key)) await this.runtime(host, [`del map ${MAINTENANCE_MAP} ${key}`]);
      // The payload form keeps the message whole (a one-line `add map` keeps its first word only).
      if (message !== null) await this.runtime(host, [`add map ${MAINTENANCE_MAP} <<\n${key} ${oneLine(message)}\n`]);
    });
    this.o.log.info({ host, app, maintenance: message !== null }, message !== null ? 'maintenance on' : 'live');
  }
}

function proxyFiles(f: ReturnType<typeof renderProxy>): Array<{ path: string; content: string }> {
  return [
    { path: CONFIG_PATH, content: f.config },
    { path: MAINTENANCE_MAP, content: f.maintenanceMap },
    { path: ROUTES_MAP, content: f.routesMap },
  ];
}
