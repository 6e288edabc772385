/**
 * A real berth daemon (a `berth daemon` child process, daemon.ts) on the test bed's
 * first three hosts, plus the test's own SSH drivers to the same hosts for looking at
 * what the daemon did: for tests that kill it, restart it or talk to it over HTTP.
 *
 *   const daemon = await startBedDaemon('crash', { port: 3000, rollout: { parallelism: 1 } });
 *   await daemon.request('POST', '/v1/apps/crash/releases', { version: 'v1' });
 *   await daemon.kill9(); await daemon.restart();
 *   after: await daemon?.close();
 */
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { HostDriver } from '../../src/hosts/host-driver.js';
import { TOKEN, daemonSandbox, freePort, killDaemon, waitReady, type DaemonChild } from './daemon.js';
import { openBedDrivers } from './fleet.js';
import { requireTestbed, type Testbed } from './testbed.js';

export interface BedDaemon {
  bed: Testbed;
  url: string;
  /** The test's SSH drivers to the bed's first three hosts (the app's leftovers were removed before the daemon started). */
  drivers: Map<string, HostDriver>;
  /** stdout + stderr of every daemon process so far, restarts included. */
  output(): string;
  /** An API call with the bearer token; the body parsed as JSON (null when empty). */
  request<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  /** SIGKILLs the daemon and waits until it is gone. */
  kill9(): Promise<void>;
  /** Starts a new daemon process on the same config, database and port; resolves when it is ready. */
  restart(): Promise<void>;
  /** Kills the daemon and removes its directory, then removes the app's containers and closes the drivers. */
  close(): Promise<void>;
}

export interface BedDaemonOptions {
  /** The bed (default: requireTestbed()). */
  bed?: Testbed;
  /** More environment for the daemon (secrets, BERTH_LOG_LEVEL; the log level is info unless given). */
  env?: Record<string, string>;
}

/** The YAML config for `apps` on the bed's first three hosts, as an operator would write it. */
function bedConfig(bed: Testbed, apps: Record<string, unknown>): Record<string, unknown> {
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
export async function startBedDaemon(app: string, spec: Record<string, unknown>, opts: BedDaemonOptions = {}): Promise<BedDaemon> {
  const bed = opts.bed ?? requireTestbed();
  const { drivers, close: closeDrivers } = await openBedDrivers(bed, app);
  const sandbox = daemonSandbox('berth-daemon-', TOKEN);
  const close = async () => {
    await sandbox.cleanup();
    await closeDrivers();
  };
  const config = sandbox.writeConfig(
    'berth.yml',
    stringify(bedConfig(bed, { [app]: { image: bed.images.app, hosts: [...drivers.keys()], ...spec } })),
  );
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let current: DaemonChild | undefined;
  const launch = async () => {
    current = await sandbox.spawn({ config, db: join(sandbox.path, 'berth.db'), port, env: { BERTH_LOG_LEVEL: 'info', ...opts.env } });
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
    restart: launch,
    close,
  };
}
