/**
 * Several real berth daemons (`berth daemon` child processes) sharing one PostgreSQL
 * database and one config on the test bed's first three hosts: one leads, the others
 * stand by (src/cluster/lease.ts). For the takeover and partition tests.
 *
 *   const cluster = await startBedCluster(3, { web: { proxy: { port: 80 } } }, { url });
 *   const leader = await cluster.leader();
 *   await leader.kill9();
 */
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { HostDriver } from '../../src/hosts/host-driver.js';
import { TOKEN, daemonSandbox, killDaemon, waitReady, type DaemonChild } from './daemon.js';
import { bedConfig } from './bed-daemon.js';
import { clearApp, openBedDrivers } from './fleet.js';
import { requireTestbed, type Testbed } from './testbed.js';
import { waitUntil } from './wait.js';

export interface Readiness {
  status: string;
  role: 'leader' | 'standby';
  daemon: string;
  leader: { daemon: string; epoch: number | null } | null;
}

export interface ClusterDaemon {
  index: number;
  url: string;
  child: DaemonChild;
  /** GET /readyz, or null when it does not answer (killed, stopped). */
  readiness(): Promise<Readiness | null>;
  request<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  kill9(): Promise<void>;
  signal(signal: NodeJS.Signals): void;
  /** Its pino lines so far, parsed (non-JSON lines skipped). */
  logLines(): Array<Record<string, unknown>>;
}

export interface BedCluster {
  bed: Testbed;
  daemons: ClusterDaemon[];
  drivers: Map<string, HostDriver>;
  /** The one daemon that says it leads, once exactly one does (any number may answer). */
  leader(opts?: { timeoutMs?: number; not?: ClusterDaemon }): Promise<ClusterDaemon>;
  close(): Promise<void>;
}

export async function startBedCluster(
  count: number,
  apps: Record<string, Record<string, unknown>>,
  /** `url`: the database; `urlFor`: daemon i's URL for it instead (e.g. through a TcpCut port). */
  o: { url: string; urlFor?: (index: number) => string; controller?: Record<string, unknown>; env?: Record<string, string> },
): Promise<BedCluster> {
  const bed = requireTestbed();
  const names = Object.keys(apps);
  const { drivers, close: closeDrivers } = await openBedDrivers(bed, names[0]!);
  for (const app of names.slice(1)) await clearApp(drivers, app);
  const sandbox = daemonSandbox('berth-cluster-', TOKEN);
  const appsConfig = Object.fromEntries(Object.entries(apps).map(([app, spec]) => [app, { image: bed.images.app, hosts: [...drivers.keys()], ...spec }]));
  const base = bedConfig(bed, appsConfig);
  const config = sandbox.writeConfig('berth.yml', stringify({ ...base, controller: { ...(base.controller as object), ...o.controller } }));
  const daemons: ClusterDaemon[] = [];
  try {
    for (let index = 0; index < count; index++) {
      const child = await sandbox.spawn({ config, db: o.urlFor?.(index) ?? o.url, env: { BERTH_LOG_LEVEL: 'debug', BERTH_DATA_DIR: join(sandbox.path, `d${index}`), ...o.env } });
      daemons.push(clusterDaemon(index, child));
    }
    await Promise.all(daemons.map((d) => waitReady(d.child, { probe: '/readyz' })));
  } catch (e) {
    await sandbox.cleanup();
    await closeDrivers();
    throw e;
  }
  return {
    bed,
    daemons,
    drivers,
    leader: ({ timeoutMs = 20_000, not } = {}) =>
      waitUntil('exactly one daemon leads', async () => {
        const views = await Promise.all(daemons.map(async (d) => ({ d, r: await d.readiness() })));
        const leaders = views.filter((v) => v.r?.role === 'leader' && v.d !== not);
        return leaders.length === 1 ? leaders[0]!.d : null;
      }, { timeoutMs, pollMs: 50 }),
    async close() {
      await sandbox.cleanup();
      for (const app of names.slice(1)) await clearApp(drivers, app).catch(() => undefined);
      await closeDrivers();
    },
  };
}

function clusterDaemon(index: number, child: DaemonChild): ClusterDaemon {
  const request = async <T>(method: string, path: string, body?: unknown) => {
    const res = await fetch(child.url + path, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(5_000),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
  };
  return {
    index,
    url: child.url,
    child,
    async readiness() {
      try {
        const res = await fetch(`${child.url}/readyz`, { signal: AbortSignal.timeout(500) });
        return res.ok ? ((await res.json()) as Readiness) : null;
      } catch {
        return null;
      }
    },
    request,
    kill9: () => killDaemon(child),
    signal: (signal) => void child.proc.kill(signal),
    logLines: () =>
      child
        .output()
        .split('\n')
        .flatMap((line) => {
          try {
            return line.startsWith('{') ? [JSON.parse(line) as Record<string, unknown>] : [];
          } catch {
            return [];
          }
        }),
  };
}
