import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { buildApp } from './api/app.js';
import { apiExposure } from './config/api.js';
import type { ConfigFileHandle, ReloadResult } from './api/context.js';
import { applyEnv, FILE_PATH, loadConfig } from './config/load.js';
import { planReload } from './config/reload.js';
import { Issues, keyPath } from './config/reader.js';
import { parseListen, readToken } from './config/values.js';
import type { AppSpec, BerthConfig } from './domain/app-spec.js';
import { ConfigError } from './domain/errors.js';
import { createHostDriver } from './hosts/docker/driver.js';
import type { HostDriver } from './hosts/host-driver.js';
import { createLogger, type Logger } from './log.js';
import { BerthMetrics } from './metrics/registry.js';
import { HaproxyProxy, type ProxyCertificate } from './proxy/haproxy-proxy.js';
import { Controller } from './reconciler/controller.js';
import { AcmeIssuer } from './tls/acme-issuer.js';
import { CertificateManager } from './tls/manager.js';
import { openStore, type Store, type UpsertChange } from './store/index.js';
import { EventFollower } from './store/follow.js';
import { PostgresLease, SoleLeader, type Leadership } from './cluster/lease.js';
import { runFenced } from './cluster/fence.js';
import { BERTH_VERSION } from './version.js';
import { DEFAULTS, localStatePath, registriesFilePath, secretsDirPath, tokenFilePath } from './defaults.js';
import { AppSecretFiles, missingSecretIssues } from './secrets/app-secrets.js';
import { RegistryCredentials } from './secrets/registry-credentials.js';
import { ensurePrivateDir, octal } from './store/files.js';

const SHUTDOWN_DEADLINE_MS = 25_000;
/** How often a daemon on PostgreSQL reads the events other daemons committed (store/follow.ts). */
const FOLLOW_INTERVAL_MS = 200;

/**
 * With no token configured, berth makes one on first start and keeps it next to the
 * database (mode 0600), so a fresh `npm start` has a working, non-guessable API.
 * The CLI reads the same file. The value itself is never logged.
 * A token file that is there already is held to the rules of a configured token
 * (at least 32 bytes): one written by hand may be anything.
 */
function ensureToken(config: BerthConfig, dbPath: string, log: Logger): string {
  if (config.api.token) return config.api.token;
  const file = tokenFilePath(dbPath);
  if (existsSync(file)) {
    const issues = new Issues();
    const token = readToken(readFileSync(file, 'utf8').trim(), file, issues);
    if (token === undefined) {
      throw new ConfigError(issues.list.map((i) => ({ ...i, message: `${i.message}, or delete the file to have berth generate a new one` })));
    }
    return token;
  }
  mkdirSync(dirname(file), { recursive: true });
  // 32 random bytes: 43 characters, above the 32-byte minimum of a configured token.
  const token = randomBytes(32).toString('base64url');
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  log.info({ file }, 'no API token configured: generated one (BERTH_TOKEN or api.token overrides it)');
  return token;
}

/**
 * The apps' secrets directory, made 0700 when it does not exist (a looser one that
 * exists is left as it is, with a warning).
 */
function openSecrets(dbPath: string, log: Logger): AppSecretFiles {
  const dir = secretsDirPath(dbPath);
  const loose = ensurePrivateDir(dir);
  if (loose !== null) log.warn({ dir, mode: octal(loose) }, `the secrets directory is ${octal(loose)}: others can list it; chmod 700 ${dir}`);
  return new AppSecretFiles(dir);
}

/**
 * Every secret the file's apps name is in its app's file, and every registry password in the
 * registries file (at start and at a reload): a missing one is a config error, naming the file.
 */
function checkSecrets(apps: Iterable<AppSpec>, registrySpecs: BerthConfig['registries'], secrets: AppSecretFiles, registries: RegistryCredentials): void {
  const issues = [...apps].flatMap((spec) => missingSecretIssues(spec, secrets, keyPath('apps', spec.name)));
  issues.push(...registries.missingPasswordIssues(registrySpecs));
  if (issues.length > 0) throw new ConfigError(issues);
}

/** Config apps are the operator's declared desired specs: loaded into the store on start and at every reload. */
function syncConfigApps(store: Store, apps: Iterable<AppSpec>, log: Logger): Record<string, UpsertChange> {
  const changes: Record<string, UpsertChange> = {};
  store.transaction(() => {
    for (const spec of apps) {
      const { change } = store.apps.upsertApp(spec, 'config');
      changes[spec.name] = change;
      if (change !== 'unchanged') log.info({ app: spec.name, change }, 'app spec loaded from config');
    }
  });
  return changes;
}

export interface Daemon {
  url: string;
  /** Re-reads the config file (SIGHUP); ConfigError when it cannot be applied (the running config stays). */
  reload(): ReloadResult;
  stop(): Promise<void>;
}

/** Wiring only: config, store, drivers, controller, API. */
export async function startDaemon(env: Record<string, string | undefined> = process.env, log: Logger = createLogger()): Promise<Daemon> {
  const configPath = env.BERTH_CONFIG || DEFAULTS.config;
  const db = env.BERTH_DB || DEFAULTS.db;
  // Where the token, secrets and registry files are: next to the SQLite file, or in BERTH_DATA_DIR.
  const dbPath = localStatePath(env);
  const config = applyEnv(loadConfig(configPath), env);
  // Apps the file declares are managed there (PUT and DELETE answer 409); a reload replaces them.
  let running = config;
  const store = openStore(db, {
    onInvalidRollout: (app, problem) => log.warn({ app, problem }, 'stored rollout record is invalid: treated as absent, the planner starts a new one'),
  });
  try {
    const secrets = openSecrets(dbPath, log);
    // The running config's registries, read at every pull: a reload applies them to the next one.
    const registries = new RegistryCredentials(registriesFilePath(dbPath), () => running.registries);
    checkSecrets(Object.values(config.apps), config.registries, secrets, registries);
    syncConfigApps(store, Object.values(config.apps), log);
    const token = ensureToken(config, dbPath, log);
    // Plain HTTP off loopback, and open_reads only on loopback (src/config/api.ts).
    const exposure = apiExposure(config.api);
    for (const warning of exposure.warnings) log.warn({ listen: config.api.listen }, warning);
    const metrics = new BerthMetrics(BERTH_VERSION);
    const drivers = new Map<string, HostDriver>(
      Object.values(config.hosts).map((spec) => [
        spec.name,
        createHostDriver(spec, log, { onOperation: metrics.hostOperationObserver(spec.name), registryAuth: (ref) => registries.authFor(ref) }),
      ]),
    );
    const traffic = new HaproxyProxy({
      drivers,
      hosts: config.hosts,
      image: config.proxy.image,
      log,
      routesOn: (host) => store.apps.proxyRoutesOn(host),
      certificatesOn: (host): ProxyCertificate[] => certificates.certificatesOn(host),
    });
    // SQLite: this daemon is the only one (the file lock). PostgreSQL: one daemon leads by a lease; any serves the API.
    const shared = store.engine === 'postgres';
    const leadership: Leadership = shared ? new PostgresLease({ sql: store.sql, leaseMs: config.controller.leaseMs, log }) : new SoleLeader();
    const follower = shared ? new EventFollower(store, { intervalMs: FOLLOW_INTERVAL_MS, log }) : null;
    const controller = new Controller({ store, drivers, traffic, metrics, log, resyncIntervalMs: config.controller.resyncIntervalMs, secrets, leadership });
    const certificates: CertificateManager = new CertificateManager({
      store,
      proxy: traffic,
      issuer: new AcmeIssuer(config.acme, store.certificates, log),
      renewBeforeMs: config.acme.renewBeforeMs,
      metrics,
      log,
      intervalMs: config.controller.resyncIntervalMs,
      secrets,
    });
    const reload = (): ReloadResult => {
      const next = applyEnv(loadConfig(configPath), env);
      const stored = new Map(store.apps.listApps().map((a) => [a.name, { spec: a.spec, deleting: a.deletingSince !== null }]));
      const plan = planReload(running, next, stored);
      checkSecrets(plan.apps, next.registries, secrets, registries);
      const apps = syncConfigApps(store, plan.apps, log);
      running = { ...running, apps: next.apps, allowHostAccess: next.allowHostAccess, registries: next.registries };
      for (const [name, change] of Object.entries(apps)) if (change !== 'unchanged') controller.enqueue(name);
      for (const name of plan.undeclared) log.warn({ app: name }, 'app no longer declared in the config file: it keeps running, managed through the API (berth remove deletes it)');
      for (const section of plan.restartRequired) log.warn({ section }, 'config section changed: it applies at the next start of berth');
      log.info({ config: configPath, apps, registries: Object.keys(next.registries) }, 'config reloaded');
      return { apps, undeclared: plan.undeclared, restartRequired: plan.restartRequired };
    };
    const configFile: ConfigFileHandle = { path: resolve(configPath), declares: (name) => Object.hasOwn(running.apps, name), reload };
    const app = buildApp({
      store,
      metrics,
      log,
      controller,
      leadership,
      secrets,
      auth: { token, openReads: exposure.openReads },
      hostNames: () => Object.keys(config.hosts),
      configFile,
      appPolicy: () => ({ allowHostAccess: running.allowHostAccess }),
      proxyStatus: (host) => traffic.status(host),
      version: BERTH_VERSION,
      eventStreams: { maxStreams: config.api.maxEventStreams },
    });
    const listen = parseListen(config.api.listen)!;
    await app.listen({ host: listen.host, port: listen.port });
    leadership.on('change', (leading) => {
      metrics.leader.set(leading ? 1 : 0);
      if (leading) {
        // Everything the leader's work starts (passes, resyncs, certificate ticks, their timers) runs fenced.
        const fence = leadership.fence();
        const lead = () => {
          controller.start();
          certificates.start();
        };
        if (fence) runFenced(fence, lead);
        else lead();
      } else {
        void controller.standBy();
        void certificates.stop();
      }
    });
    follower?.start();
    leadership.start();
    log.info({ listen: config.api.listen, config: configPath, db: store.path, daemon: leadership.daemonId, leading: leadership.isLeading(), hosts: drivers.size, apps: Object.keys(config.apps).length }, 'berth is running');

    let stopping: Promise<void> | null = null;
    const stop = () =>
      (stopping ??= (async () => {
        log.info('shutting down: no new requests, finishing the step in flight');
        await app.close();
        follower?.stop();
        // Still leading: the step in flight finishes under the lease; then the lease is handed over.
        await certificates.stop();
        await controller.stop();
        leadership.stop();
        store.close();
        log.info('stopped');
      })());
    return { url: `http://${config.api.listen}`, reload, stop };
  } catch (err) {
    store.close();
    throw err;
  }
}

/** `berth daemon`: runs until SIGTERM/SIGINT, then shuts down gracefully. */
export async function runDaemon(): Promise<void> {
  const log = createLogger();
  let daemon: Daemon;
  try {
    daemon = await startDaemon(process.env, log);
  } catch (err) {
    const e = err as Error & { code?: string };
    log.fatal({ code: e.code }, e.message);
    process.exitCode = 1;
    return;
  }
  const onSignal = (signal: string) => {
    log.info({ signal }, 'signal received');
    const force = setTimeout(() => {
      log.error('shutdown took too long; exiting');
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS);
    force.unref();
    daemon.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  // SIGHUP re-reads the config file; what is wrong with it is logged and the running config stays.
  process.on('SIGHUP', () => {
    log.info({ signal: 'SIGHUP' }, 'signal received: reloading the config file');
    try {
      daemon.reload();
    } catch (err) {
      const issues = err instanceof ConfigError ? err.issues : [{ path: FILE_PATH, message: (err as Error).message }];
      for (const issue of issues) log.error({ path: issue.path }, `config not reloaded: ${issue.path}: ${issue.message}`);
    }
  });
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
}
