/**
 * What re-reading the config file (SIGHUP, `berth reload`, POST /v1/reload) may change
 * in a running daemon, decided before anything is applied. Pure: the caller loads and
 * validates the new file and passes what the store holds.
 *
 * Apps are the file's live part: their specs are upserted, new ones created. So are
 * registries (read at every pull), so an app and the registry it pulls from can come in one
 * reload. The other sections (hosts, api, proxy, controller, acme) are wired into
 * connections, listeners and loops at start: a change there is reported as needing a
 * restart, never half applied.
 */
import type { AppSpec, BerthConfig } from '../domain/app-spec.js';
import { ConfigError, type ConfigIssue } from '../domain/errors.js';
import { canonicalJson } from '../store/json.js';
import { routeConflicts } from './routes.js';
import { routedApp } from '../domain/processes.js';

/** Top-level sections read only at start. */
const START_ONLY_SECTIONS = ['hosts', 'api', 'proxy', 'controller', 'acme'] as const;

/** An app the store holds, as reload sees it. */
export interface StoredAppFacts {
  spec: AppSpec;
  /** DELETE /v1/apps/:app is tearing it down. */
  deleting: boolean;
}

export interface ReloadPlan {
  /** Every app the new file declares: upserted in one transaction. */
  apps: AppSpec[];
  /** Apps the running file declared and the new one does not: they keep running, managed through the API from now on. */
  undeclared: string[];
  /** Start-only sections that differ: applied at the next start. */
  restartRequired: string[];
}

/**
 * The plan for applying `next` over `running`, or a ConfigError listing every reason it
 * cannot be applied as a whole (the daemon then keeps its running config):
 * - an app on a host the running daemon does not have (hosts change only at a restart);
 * - an app whose route conflicts with an app the file does not declare (created through the API);
 * - an app being deleted (DELETE): declare it again once it is gone.
 */
export function planReload(running: BerthConfig, next: BerthConfig, stored: ReadonlyMap<string, StoredAppFacts>): ReloadPlan {
  const issues: ConfigIssue[] = [];
  const apiApps = [...stored.entries()].filter(([name]) => !Object.hasOwn(next.apps, name)).map(([, facts]) => facts.spec);
  for (const spec of Object.values(next.apps)) {
    spec.hosts.forEach((host, i) => {
      if (!Object.hasOwn(running.hosts, host)) {
        issues.push({ path: `apps.${spec.name}.hosts[${i}]`, message: `host "${host}" is not one the running daemon has: hosts change at a restart of berth, then reload or restart to use it` });
      }
    });
    for (const message of routeConflicts(routedApp(spec), apiApps.map(routedApp))) issues.push({ path: `apps.${spec.name}.proxy`, message: `${message} (an app created through the API)` });
    if (stored.get(spec.name)?.deleting) {
      issues.push({ path: `apps.${spec.name}`, message: `app "${spec.name}" is being deleted: declare it again once the deletion has finished` });
    }
  }
  if (issues.length > 0) throw new ConfigError(issues);
  return {
    apps: Object.values(next.apps),
    undeclared: Object.keys(running.apps).filter((name) => !Object.hasOwn(next.apps, name) && stored.has(name)),
    restartRequired: START_ONLY_SECTIONS.filter((key) => canonicalJson(running[key]) !== canonicalJson(next[key])),
  };
}
