import type { Logger } from 'pino';
import { SEED_DEFAULTS, type HostSpec, type ProxyRouteSpec } from '../domain/app-spec.js';
import { isHostDown, ProxyError } from '../domain/errors.js';
import { LABELS, PROXY_CONTAINER_NAME } from '../domain/labels.js';
import { driverFor, type HostDriver, type ObservedContainer } from '../hosts/host-driver.js';
import {
  ACME_MAP,
  CERT_LIST,
  CONFIG_PATH,
  MAINTENANCE_MAP,
  ROUTES_MAP,
  STATE_DIR_IN_CONTAINER,
  backendName,
  certFile,
  countAnswers,
  countOldWorkers,
  oneLine,
  parseCertList,
  parseCertSerial,
  parseShowMap,
  parseShowStat,
  renderProxy,
  routeKey,
  switchCommands,
  type HostRoute,
  type Slot,
} from './haproxy-config.js';
import { CADDY_ADMIN_SOCKET_NAME, MIGRATION_STATS_SOCKET_NAME, finishLeftovers, migrateFromCaddy, type MigrationContext } from './caddy-migration.js';
import { Slots } from './slots.js';
import type { ProxyStatus, RouteState, TrafficSwitch, Upstream } from './traffic.js';

/** The proxy's `berth.app` label: not a valid app name, so it never collides with one. */
export const PROXY_APP_LABEL = '_proxy';
/** One runtime API exchange: local to the host, answered in well under a millisecond there (docs/design.md). */
const RUNTIME_TIMEOUT_MS = 5_000;
/**
 * Master CLI connections berth holds open at once per host. HAProxy's master CLI serves 10
 * (hard-coded); past them a connection waits for a slot or is refused (EAGAIN: 4 of 15
 * concurrent `@1 show stat` on the test bed), and over SSH such an exchange hung past its
 * 5 s deadline, which marked the host unreachable (the chaos run, seeds 906313 and
 * 20261129). A pass reads 3 answers at once and several apps' passes share a host; 4 keep
 * room for an operator's own `socat` and for another berth taking over.
 */
const MASTER_CLI_SLOTS = 4;
/** A proxy just started or reloaded answers within ~100 ms here; this bounds a slow host. */
const READY_TIMEOUT_MS = 15_000;
const READY_POLL_MS = 100;
/** How long a running proxy that does not answer gets before it is restarted (a reload takes ~100 ms). */
const RUNNING_GRACE_MS = 5_000;
const DRAIN_POLL_MS = 100;
/** How long a proxy status read (GET /v1/hosts) is reused. */
const STATUS_MAX_AGE_MS = 5_000;
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
  /** The certificates the host's HTTPS listener should have now (src/tls). */
  certificatesOn(host: string): ProxyCertificate[];
}

/** One host name's certificate as the proxy loads it. */
export interface ProxyCertificate {
  hostName: string;
  /** Certificate chain and private key, PEM, no blank line. */
  pem: string;
  /** Normalised serial (haproxy-config.ts normaliseSerial): what tells an installed certificate from a newer one. */
  serial: string;
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
  private readonly cliSlots = new Map<string, Slots>();
  /** Hosts whose proxy containers were checked for a migration an earlier berth left half done (caddy-migration.ts). */
  private readonly settled = new Set<string>();
  /** The last `status` read per host: GET /v1/hosts (polled by `deploy --wait`) must not cost runtime calls each time. */
  private readonly statusCache = new Map<string, { at: number; value: Promise<ProxyStatus> }>();

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
    return this.masterCli(host, line, { doneWhen: (received) => countAnswers(received) >= 1 });
  }

  /** Every connection to a host's master CLI goes through here: at most MASTER_CLI_SLOTS at once. */
  private masterCli(host: string, line: string, opts: { doneWhen?: (received: string) => boolean } = {}): Promise<string> {
    let slots = this.cliSlots.get(host);
    if (!slots) this.cliSlots.set(host, (slots = new Slots(MASTER_CLI_SLOTS)));
    return slots.run(() => this.driver(host).unixCommand(this.masterSocket(host), line, RUNTIME_TIMEOUT_MS, opts));
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
    const finished = this.settled.has(host) ? null : await this.finishMigration(host, wanted);
    const state = finished ?? (await this.readState(host)) ?? (await this.start(host, wanted));
    return HaproxyProxy.runs(state, wanted) ? state : this.reconfigure(host, wanted, state);
  }

  private async proxyContainer(host: string): Promise<ObservedContainer | null> {
    return (await this.driver(host).listContainers({ app: PROXY_APP_LABEL })).find((c) => c.name === PROXY_CONTAINER_NAME) ?? null;
  }

  /**
   * The runtime API does not answer: (re)starts the proxy container with a config for
   * `wanted` — creating it when missing, migrating from a running one of another image
   * (the Caddy proxy before HAProxy: caddy-migration.ts, no outage), replacing one of
   * another image that cannot be migrated, rewriting the config of a stopped or
   * crash-looping one.
   */
  private async start(host: string, wanted: HostRoute[]): Promise<ProxyState> {
    const d = this.driver(host);
    const files = this.files(host, (names) => renderProxy(wanted, [], new Map(), ADMIN_SOCKET, names));
    let existing = await this.proxyContainer(host);
    if (existing && existing.version !== this.o.image) {
      const migrated = existing.running ? await this.migrate(host, wanted, existing) : null;
      if (migrated) return migrated;
      this.o.log.warn({ host, from: existing.version, to: this.o.image }, 'replacing the proxy container with the configured image (an outage on this host)');
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
      await d.startContainer(await this.createProxy(host, PROXY_CONTAINER_NAME, files));
    }
    return this.waitReady(host, null);
  }

  /** Creates (does not start) an HAProxy container; the migration makes one under a temporary name. */
  private createProxy(host: string, name: string, files: ReturnType<HaproxyProxy['files']>): Promise<string> {
    return this.driver(host).createContainer({
      name,
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
  }

  /** What caddy-migration.ts needs for one host. */
  private migrationContext(host: string, wanted: HostRoute[]): MigrationContext<ProxyState> {
    return {
      host,
      driver: this.driver(host),
      log: this.o.log,
      image: this.o.image,
      wanted,
      caddyAdminSocket: `${this.socketDir(host)}/${CADDY_ADMIN_SOCKET_NAME}`,
      createProxy: (name, slots, maintenance) =>
        this.createProxy(host, name, this.files(host, (names) => renderProxy(wanted, slots, maintenance, `${STATE_DIR_IN_CONTAINER}/${MIGRATION_STATS_SOCKET_NAME}`, names))),
      waitReady: (routes, timeoutMs) => this.waitReady(host, routes ? wanted : null, timeoutMs),
      reload: (state) => this.reconfigure(host, wanted, state),
    };
  }

  /** The old proxy runs: HAProxy starts beside it and takes over (null: it cannot be done that way). */
  private async migrate(host: string, wanted: HostRoute[], old: ObservedContainer): Promise<ProxyState | null> {
    try {
      return await migrateFromCaddy(this.migrationContext(host, wanted), old);
    } catch (err) {
      // A temporary HAProxy may be left running beside the old proxy: the next call looks again.
      this.settled.delete(host);
      throw err;
    }
  }

  /**
   * Once per host and berth process, before the runtime API is trusted: a migration an
   * earlier berth left half done (a temporary HAProxy answering on the same sockets
   * beside the old proxy) is finished first.
   */
  private async finishMigration(host: string, wanted: HostRoute[]): Promise<ProxyState | null> {
    const containers = await this.driver(host).listContainers({ app: PROXY_APP_LABEL });
    const state = await finishLeftovers(this.migrationContext(host, wanted), containers);
    this.settled.add(host);
    return state;
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
    await this.driver(host).putFiles(container.id, this.files(host, (names) => renderProxy(wanted, state.slots, maintenance, ADMIN_SOCKET, names)));
    // The master re-executes itself: the answer is the socket closing.
    await this.masterCli(host, 'reload');
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
    const slotOf = () => this.slotOf(host, app, addr);
    const deadline = Date.now() + timeoutMs;
    let inFlight = 0;
    let oldWorkers = 0;
    for (;;) {
      // Both in parallel: the usual drain (nothing in flight, no reload) is then one round trip, not two.
      const [slot, workers] = await Promise.all([slotOf(), this.oldWorkers(host)]);
      // Gone, or serving again (a rollback switched back to it): nothing to drain.
      if (!slot || slot.state === 'ready') return;
      inFlight = slot.inFlight;
      oldWorkers = workers;
      if ((inFlight === 0 && oldWorkers === 0) || Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
    }
    if (inFlight > 0 || oldWorkers > 0) this.o.log.warn({ host, app, upstream: addr, inFlight, oldWorkers, timeoutMs }, 'drain timeout: stopping with requests in flight');
    await this.serial(host, async () => {
      const slot = await slotOf();
      if (slot && slot.state === 'drain') await this.runtime(host, [`set server ${slot.backend}/${slot.server} state maint`]);
    });
  }

  /**
   * rollout.strategy: recreate. `upstream` may be the server the app's traffic is on, and
   * nothing takes its place: it goes to drain first (new requests get HAProxy's 503 "no server
   * is available" until the new container is switched in), then it is drained as above.
   */
  async withdraw(host: string, app: string, route: ProxyRouteSpec | null, upstream: Upstream, timeoutMs: number): Promise<void> {
    if (!route) return;
    await this.serial(host, async () => {
      const slot = await this.slotOf(host, app, `${upstream.ip}:${upstream.port}`);
      if (slot?.state === 'ready') await this.runtime(host, [`set server ${slot.backend}/${slot.server} state drain`]);
    });
    await this.drain(host, app, route, upstream, timeoutMs);
  }

  /** The app's server slot holding `addr` (`ip:port`), if any. */
  private async slotOf(host: string, app: string, addr: string): Promise<Slot | undefined> {
    return (await this.readSlots(host))?.find((s) => s.backend === backendName(app) && s.addr === addr);
  }

  /**
   * A reload without the app's route: the new worker no longer routes it, and the old
   * worker finishes the requests it holds (a reload is graceful), so the wait is for the
   * workers a reload left behind — bounded, as a drain is, by `timeoutMs`.
   */
  async removeRoute(host: string, app: string, timeoutMs: number): Promise<void> {
    const removed = await this.serial(host, async () => {
      const state = await this.readState(host);
      if (!state?.routes.has(app)) return false;
      await this.reconfigure(host, this.o.routesOn(host).filter((r) => r.app !== app), state);
      return true;
    });
    if (!removed) return;
    const deadline = Date.now() + timeoutMs;
    let workers = await this.oldWorkers(host);
    while (workers > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
      workers = await this.oldWorkers(host);
    }
    if (workers > 0) this.o.log.warn({ host, app, oldWorkers: workers, timeoutMs }, 'route removed: drain timeout with requests in flight');
  }

  /**
   * The host's proxy now (`berth hosts`): its container, and whether its runtime API
   * answers with how many routes. Read-only, outside the host's serial section; a read
   * younger than STATUS_MAX_AGE_MS is reused. A host that does not answer rejects.
   */
  status(host: string): Promise<ProxyStatus> {
    const cached = this.statusCache.get(host);
    if (cached && Date.now() - cached.at < STATUS_MAX_AGE_MS) return cached.value;
    const value = this.readStatus(host);
    this.statusCache.set(host, { at: Date.now(), value });
    value.catch(() => this.statusCache.delete(host));
    return value;
  }

  private async readStatus(host: string): Promise<ProxyStatus> {
    const checkedAt = new Date().toISOString();
    const container = await this.proxyContainer(host);
    if (!container) return { state: 'missing', image: null, routes: 0, checkedAt };
    if (!container.running) return { state: 'stopped', image: container.version, routes: 0, checkedAt };
    const state = await this.readState(host);
    return { state: state ? 'running' : 'not answering', image: container.version, routes: state?.routes.size ?? 0, checkedAt };
  }

  /** Workers a reload left behind, still finishing their connections (`show proc` on the master). */
  private async oldWorkers(host: string): Promise<number> {
    return countOldWorkers(await this.exchange(host, 'show proc'));
  }

  async observeRoute(host: string, app: string, route: ProxyRouteSpec): Promise<RouteState> {
    return routeStateOf(await this.readState(host), app, route);
  }

  async observeRoutes(host: string): Promise<(app: string, route: ProxyRouteSpec) => RouteState> {
    const state = await this.readState(host);
    return (app, route) => routeStateOf(state, app, route);
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

  /**
   * Makes the host's HTTPS listener serve `certificatesOn(host)`: a certificate the proxy
   * does not have is added, one with another serial replaced — at runtime, touching no
   * connection (a handshake in progress keeps the certificate it began with). The files
   * are written too, so a reload or restart loads the same set. Returns the host names
   * installed or replaced.
   */
  async syncCertificates(host: string): Promise<string[]> {
    const wanted = this.o.certificatesOn(host);
    if (wanted.length === 0) return [];
    return this.serial(host, async () => {
      await this.ensureLocked(host, this.o.routesOn(host));
      const loaded = new Set(parseCertList(await this.runtime(host, ['show ssl cert'])));
      const changed: ProxyCertificate[] = [];
      for (const cert of wanted) {
        const file = certFile(cert.hostName);
        const serial = loaded.has(file) ? parseCertSerial(await this.runtime(host, [`show ssl cert ${file}`])) : null;
        if (serial !== cert.serial) changed.push(cert);
      }
      if (changed.length === 0) return [];
      const container = await this.proxyContainer(host);
      if (!container) throw new ProxyError('PROXY_NOT_READY', host, 'proxy container vanished while installing certificates');
      await this.driver(host).putFiles(container.id, [...changed.map(certificateFile), certListFile(wanted.map((c) => c.hostName))]);
      for (const cert of changed) await this.loadCertificate(host, cert, loaded.has(certFile(cert.hostName)));
      this.o.log.info({ host, hostNames: changed.map((c) => c.hostName) }, 'certificates installed');
      return changed.map((c) => c.hostName);
    });
  }

  /** One certificate into the running worker: a transaction on its store, committed, then listed for the HTTPS listener. */
  private async loadCertificate(host: string, cert: ProxyCertificate, loaded: boolean): Promise<void> {
    const file = certFile(cert.hostName);
    if (!loaded) await this.runtime(host, [`new ssl cert ${file}`]);
    await this.runtime(host, [`set ssl cert ${file} <<\n${cert.pem}\n`]);
    const committed = await this.runtime(host, [`commit ssl cert ${file}`]);
    if (!committed.includes('Success!')) {
      await this.runtime(host, [`abort ssl cert ${file}`]).catch(() => undefined);
      throw new ProxyError('PROXY_ADMIN_ERROR', host, `proxy refused the certificate for ${cert.hostName}: ${oneLine(committed).slice(0, 200)}`);
    }
    if (!loaded) await this.runtime(host, [`add ssl crt-list ${CERT_LIST} ${file}`]);
  }

  /**
   * Sets (or with null, removes) the answer to an ACME HTTP-01 challenge on the host's
   * port 80, for every host name. The proxy is made to run the host's routes first, so a
   * host whose first TLS app has not switched yet answers too.
   */
  async setChallenge(host: string, token: string, keyAuthorization: string | null): Promise<void> {
    await this.serial(host, async () => {
      await this.ensureLocked(host, this.o.routesOn(host));
      await this.runtime(host, [`del map ${ACME_MAP} ${token}`]).catch(() => undefined);
      if (keyAuthorization !== null) await this.runtime(host, [`add map ${ACME_MAP} ${token} ${keyAuthorization}`]);
    });
  }

  /**
   * Every file of a (re)started or reloaded proxy: config and maps rendered for the host
   * names of the certificates it should serve, and those certificates (read once, so the
   * config and the files it names always agree).
   */
  private files(host: string, render: (certificateNames: string[]) => ReturnType<typeof renderProxy>): Array<{ path: string; content: string; mode?: number }> {
    const certificates = this.o.certificatesOn(host);
    const f = render(certificates.map((c) => c.hostName));
    return [
      { path: CONFIG_PATH, content: f.config },
      { path: MAINTENANCE_MAP, content: f.maintenanceMap },
      { path: ROUTES_MAP, content: f.routesMap },
      { path: ACME_MAP, content: '' },
      { path: CERT_LIST, content: f.certList },
      ...certificates.map(certificateFile),
    ];
  }
}

/** A certificate with its private key: readable by root only, on the host as in berth's store. */
function certificateFile(cert: ProxyCertificate): { path: string; content: string; mode: number } {
  return { path: certFile(cert.hostName), content: `${cert.pem}\n`, mode: 0o600 };
}

function certListFile(hostNames: string[]): { path: string; content: string } {
  return { path: CERT_LIST, content: [...new Set(hostNames)].sort().map((n) => `${certFile(n)}\n`).join('') };
}

/** Where the proxy as read (null: not answering) sends the app's traffic, when it routes the app as `route` says. */
function routeStateOf(state: ProxyState | null, app: string, route: ProxyRouteSpec): RouteState {
  if (!state || state.routes.get(app) !== routeKey(route)) return { upstream: null, maintenance: null };
  const serving = state.slots.find((s) => s.backend === backendName(app) && s.state === 'ready' && s.addr !== null);
  return { upstream: serving?.addr ?? null, maintenance: state.maintenance.get(backendName(app)) ?? null };
}
