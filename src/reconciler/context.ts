import type { Logger } from 'pino';
import { containerConfigHash } from '../domain/config-hash.js';
import { HostNotConfiguredError, SecretMissingError } from '../domain/errors.js';
import type { HostDriver } from '../hosts/host-driver.js';
import type { BerthMetrics } from '../metrics/registry.js';
import type { TrafficSwitch } from '../proxy/traffic.js';
import type { Store } from '../store/index.js';
import type { ExecContext } from './execute.js';
import type { DesiredRelease, StableRelease } from './types.js';

/** What a reconcile pass and a one-off run use of the daemon. */
export interface ReconcilerDeps {
  store: Store;
  drivers: Map<string, HostDriver>;
  traffic: TrafficSwitch;
  metrics: BerthMetrics;
  log: Logger;
  /** Where secret values come from (the daemon's environment). */
  env: Record<string, string | undefined>;
  now: () => number;
}

export interface Wanted {
  desired: DesiredRelease | null;
  /** The last release the fleet converged on: what an automatic rollback returns to. */
  stable: StableRelease | null;
  paused: boolean;
  maintenance: string | null;
}

/** The app's desired release and switches as stored, or null for an app that does not exist. */
export function readWanted(store: Store, app: string): Wanted | null {
  const stored = store.apps.getApp(app);
  if (!stored) return null;
  const latest = store.releases.latestRelease(app);
  const status = store.status.readStatus(app);
  const stableRelease = status?.observedRevision ? store.releases.getRelease(app, status.observedRevision) : null;
  return {
    paused: stored.paused,
    maintenance: stored.maintenance,
    desired: latest
      ? { revision: latest.revision, version: latest.version, spec: latest.spec, reason: latest.reason, configHash: containerConfigHash(latest.spec) }
      : null,
    stable: stableRelease ? { revision: stableRelease.revision, version: stableRelease.version } : null,
  };
}

/** The executor's view of one app's desired release: drivers, secrets, live step events, health metric. */
export function execContext(deps: ReconcilerDeps, app: string, desired: DesiredRelease): ExecContext {
  const { store, metrics, log, env } = deps;
  return {
    app,
    desired,
    traffic: deps.traffic,
    log,
    driver: (host) => {
      const d = deps.drivers.get(host);
      if (!d) throw new HostNotConfiguredError(host);
      return d;
    },
    secretValues: (names) =>
      Object.fromEntries(
        names.map((n) => {
          const v = env[n];
          if (v === undefined) throw new SecretMissingError(n);
          return [n, v];
        }),
      ),
    // Step events are written as they happen, so `events --follow` shows a rollout live.
    emit: (e) => {
      store.events.appendEvent({ app, type: e.type, message: e.message, host: e.host ?? null, revision: desired.revision, actor: 'controller' });
      log.info({ app, host: e.host, revision: desired.revision, event: e.type }, e.message);
    },
    onHealthAttempt: (host, ok) => metrics.healthChecksTotal.inc({ app, host, result: ok ? 'pass' : 'fail' }),
  };
}
