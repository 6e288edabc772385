/**
 * A real berth daemon (a `berth daemon` child process, daemon.ts) on the test bed's
 * first three hosts, plus the test's own SSH drivers to the same hosts for looking at
 * what the daemon did: for tests that kill it, restart it or talk to it over HTTP.
 *
 *   const daemon = await startBedDaemon('crash', { port: 3000, rollout: { parallelism: 1 } });
 *   await daemon.request('POST', '/v1/apps/crash/releases', { version: 'v1' });
 *   // several apps (e.g. sharing the hosts' proxies):
 *   const daemon = await startBedDaemonApps({ web: { proxy: { port: 80, host: 'a.test' } }, solo: { proxy: { port: 8081 } } });
 *   await daemon.kill9(); await daemon.restart();
 *   after: await daemon?.close();
 */
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { HostDriver } from '../../src/hosts/host-driver.js';
import { registriesFilePath, secretsDirPath } from '../../src/defaults.js';
import { TOKEN, daemonSandbox, freePort, killDaemon, waitReady, type DaemonChild } from './daemon.js';
import { clearApp, openBedDrivers } from './fleet.js';
import { writeAppSecrets, writeSecretsFile } from './secrets.js';
import { requireTestbed, type Testbed } from './testbed.js';

export interface BedDaemon {
  bed: Testbed;
  url: string;
  /** The test's SSH drivers to the bed's first three hosts (the apps' leftovers were removed before the daemon started). */
  drivers: Map<string, HostDriver>;
  /** stdout + stderr of every daemon process so far, restarts included. */
  output(): string;
  /** An API call with the bearer token; the body parsed as JSON (null when empty). */
  request<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  /** SIGKILLs the daemon and waits until it is gone. */
  kill9(): Promise<void>;
  /** (Re)writes `app`'s secrets file in the daemon's data directory, as an operator rotating a secret. */
  writeSecrets(app: string, values: Record<string, string>): void;
  /** (Re)writes the registries file (registry passwords, `registries:`) in the daemon's data directory. */
  writeRegistryPasswords(values: Record<string, string>): void;
  /**
   * Starts a new daemon process on the same database and port (the old one must be gone:
   * kill9 or stop first, or it is SIGTERMed here); with `config`, top-level config keys
   * replace the ones it had (an operator editing berth.yml). Resolves when it is ready.
   */
  restart(opts?: { config?: Record<string, unknown> }): Promise<void>;
  /**
   * Rewrites the daemon's config file with `apps` (as startBedDaemonApps takes them) and the
   * top-level keys of `config`, as an operator editing berth.yml; the daemon sees it at a
   * reload (signal SIGHUP, or POST /v1/reload) or restart. Returns the file's path.
   */
  rewriteConfig(apps: Record<string, Record<string, unknown>>, config?: Record<string, unknown>): string;
  /** Sends `signal` to the running daemon process. */
  signal(signal: NodeJS.Signals): void;
  /** Kills the daemon and removes its directory, then removes the apps' containers and closes the drivers. */
  close(): Promise<void>;
}

export interface BedDaemonOptions {
  /** The bed (default: requireTestbed()). */
  bed?: Testbed;
  /** More environment for the daemon (BERTH_LOG_LEVEL, info unless given). */
  env?: Record<string, string>;
  /** Apps' secret values (app -> name -> value), written to their secrets files before the daemon starts. */
  secrets?: Record<string, Record<string, string>>;
  /** The registries file's values (name -> password), written before the daemon starts. */
  registryPasswords?: Record<string, string>;
  /** Top-level config keys besides hosts, proxy, controller and apps (e.g. `acme`). */
  config?: Record<string, unknown>;
}

/** The YAML config for `apps` on the bed's first three hosts, as an operator would write it. */
export function bedConfig(bed: Testbed, apps: Record<string, unknown>): Record<string, unknown> {
  return {
    hosts: Object.fromEntries(
      bed.hosts.slice(0, 3).map((h) => [
        h.name,
        { address: h.address, port: h.sshPort, user: h.user, ssh_key: bed.clientKey, host_key: h.hostKey, docker_socket: h.dockerSocket, state_dir: h.stateDir },
      ]),
    ),
    proxy: { image: bed.images.haproxy },
    controller: { resync_interval: '2s' },
    apps,
  };
}

/**
 * Opens drivers to the bed's first three hosts (removing `app`'s leftovers), then starts a
 * daemon whose config has the one app `app`: the bed's test image on those three hosts,
 * with `spec` (the app's YAML keys) on top. Resolves when the daemon's /readyz answers.
 */
export function startBedDaemon(app: string, spec: Record<string, unknown>, opts: BedDaemonOptions = {}): Promise<BedDaemon> {
  return startBedDaemonApps({ [app]: spec }, opts);
}

/** startBedDaemon with several apps: `apps` maps each app's name to its YAML keys (image and hosts default as there). */
export async function startBedDaemonApps(apps: Record<string, Record<string, unknown>>, opts: BedDaemonOptions = {}): Promise<BedDaemon> {
  const bed = opts.bed ?? requireTestbed();
  const names = Object.keys(apps);
  if (names.length === 0) throw new Error('startBedDaemonApps: no app');
  const { drivers, close: closeDrivers } = await openBedDrivers(bed, names[0]!);
  try {
    for (const app of names.slice(1)) await clearApp(drivers, app);
  } catch (e) {
    await closeDrivers().catch(() => undefined);
    throw e;
  }
  const sandbox = daemonSandbox('berth-daemon-', TOKEN);
  const close = async () => {
    await sandbox.cleanup();
    for (const app of names.slice(1)) await clearApp(drivers, app).catch(() => undefined);
    await closeDrivers();
  };
  const appsConfig = (given: Record<string, Record<string, unknown>>) =>
    Object.fromEntries(Object.entries(given).map(([app, spec]) => [app, { image: bed.images.app, hosts: [...drivers.keys()], ...spec }]));
  let currentApps = apps;
  const writeConfig = (extra: Record<string, unknown> | undefined) => sandbox.writeConfig('berth.yml', stringify({ ...bedConfig(bed, appsConfig(currentApps)), ...extra }));
  const config = writeConfig(opts.config);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const db = join(sandbox.path, 'berth.db');
  const writeSecrets = (app: string, values: Record<string, string>) => void writeAppSecrets(secretsDirPath(db), app, values);
  for (const [app, values] of Object.entries(opts.secrets ?? {})) writeSecrets(app, values);
  const writeRegistryPasswords = (values: Record<string, string>) => void writeSecretsFile(registriesFilePath(db), values);
  if (opts.registryPasswords) writeRegistryPasswords(opts.registryPasswords);
  let current: DaemonChild | undefined;
  const launch = async () => {
    current = await sandbox.spawn({ config, db, port, env: { BERTH_LOG_LEVEL: 'info', ...opts.env } });
    await waitReady(current, { probe: '/readyz' });
  };
  try {
    await launch();
  } catch (e) {
    await close();
    throw e;
  }
  return {
    bed,
    url,
    drivers,
    output: () => sandbox.daemons.map((d) => d.output()).join(''),
    async request<T>(method: string, path: string, body?: unknown) {
      const res = await fetch(url + path, {
        method,
        headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
    },
    kill9: () => killDaemon(current!),
    writeSecrets,
    writeRegistryPasswords,
    async restart(again = {}) {
      if (current && current.proc.exitCode === null && current.proc.signalCode === null) {
        current.proc.kill('SIGTERM');
        await current.exit(30_000);
      }
      if (again.config) writeConfig({ ...opts.config, ...again.config });
      await launch();
    },
    rewriteConfig(newApps, extra) {
      currentApps = newApps;
      return writeConfig(extra);
    },
    signal: (signal) => void current!.proc.kill(signal),
    close,
  };
}
