import { isHostDown } from '../domain/errors.js';
import { routedApp } from '../domain/processes.js';
import { driverFor } from '../hosts/host-driver.js';
import type { StoredApp } from '../store/index.js';
import type { PassDeps } from './pass.js';

/**
 * When to look again while a host cannot be cleaned (unreachable, a Docker error). Cheap:
 * a pass for a down host fails fast, and a host that comes back enqueues its apps at once.
 */
const RETRY_MS = 5_000;

export interface HostTeardown {
  host: string;
  /** Containers of the app removed on this pass. */
  removed: number;
  /** Why the host is not clean yet; null when it is. */
  error: string | null;
}

/**
 * The pass of an app being deleted (DELETE /v1/apps/:app): on every host it ran on, its
 * route comes off the proxy (the proxy answers what it had in flight, up to the drain
 * timeout), then every container of the app (serving, retained, hooks) is stopped and
 * removed. Once every host is clean the record goes (events stay, for audit) and its
 * metrics series with it; a host that cannot be cleaned now (unreachable) is retried with
 * backoff, and the record stays until it is — a host that comes back still gets cleaned.
 * Each step is idempotent, so a crash anywhere resumes from observation.
 */
export async function tearDownApp(deps: PassDeps, app: StoredApp): Promise<{ results: HostTeardown[]; againMs: number | null }> {
  const latest = deps.store.releases.latestRelease(app.name);
  const hosts = [...new Set([...app.spec.hosts, ...(latest?.spec.hosts ?? [])])];
  const results = await Promise.all(hosts.map((host) => tearDownOn(deps, app, host)));
  const waiting = results.filter((r) => r.error !== null);
  if (waiting.length > 0) {
    for (const r of waiting) deps.log.warn({ app: app.name, host: r.host, error: r.error }, 'deleting app: host not cleaned yet, will retry');
    return { results, againMs: RETRY_MS };
  }
  deps.store.apps.deleteApp(app.name, 'controller');
  await deps.metrics.forgetApp(app.name);
  deps.log.info({ app: app.name, hosts }, 'app deleted: routes drained, containers removed on every host');
  return { results, againMs: null };
}

async function tearDownOn(deps: PassDeps, app: StoredApp, host: string): Promise<HostTeardown> {
  const proxy = routedApp(app.spec).proxy;
  let removed = 0;
  try {
    if (!deps.drivers.has(host)) return { host, removed, error: null };
    const driver = driverFor(deps.drivers, host);
    if (proxy) await deps.traffic.removeRoute(host, app.name, proxy.drainTimeoutMs);
    for (const c of await driver.listContainers({ app: app.name })) {
      if (c.running) await driver.stopContainer(c.id, app.spec.stopTimeoutMs);
      await driver.removeContainer(c.id);
      removed++;
    }
    return { host, removed, error: null };
  } catch (err) {
    const message = (err as Error).message;
    if (isHostDown(err)) deps.reachability.report(host, false, message);
    return { host, removed, error: message };
  }
}
