import type { ProxyRouteSpec } from '../domain/app-spec.js';
import { HostNotConfiguredError } from '../domain/errors.js';
import type { HostDriver } from '../hosts/host-driver.js';
import type { TrafficSwitch } from '../proxy/traffic.js';
import type { ResyncSnapshot } from './resync-snapshot.js';
import type { HostObservation } from './types.js';

/**
 * Lists the app's containers on each of its hosts, all at once, and for a proxied app
 * where each host's proxy sends its traffic. A host that does not answer becomes an
 * unreachable observation; it never fails the pass. The app's first pass after a resync
 * reads what the resync's snapshot saw instead, when the snapshot still holds for it.
 */
export async function observeFleet(
  drivers: Map<string, HostDriver>,
  hosts: string[],
  app: string,
  /** The app's route and the hosts it is on (an app with processes: the serving process's, domain/processes.ts). */
  proxy: { traffic: TrafficSwitch; route: ProxyRouteSpec | null; routeHosts: readonly string[] },
  reachability: {
    /** A host known to be down is not called again until the resync's ping finds it back. */
    downSince(host: string): { since: number; error: string } | null;
    report(host: string, up: boolean, error: string | null): void;
  },
  snapshot: ResyncSnapshot | null,
): Promise<HostObservation[]> {
  return Promise.all(
    hosts.map(async (host): Promise<HostObservation> => {
      const driver = drivers.get(host);
      if (!driver) return { host, reachable: false, error: new HostNotConfiguredError(host).message };
      const down = reachability.downSince(host);
      if (down) return { host, reachable: false, error: `${down.error} (down since ${new Date(down.since).toISOString()}; rechecked every resync)` };
      try {
        const route = proxy.routeHosts.includes(host) ? proxy.route : null;
        const seen = snapshot?.use(host, app) ?? null;
        const listed = seen?.containers ?? driver.listContainers({ app });
        // Without a route (most hosts of a resync), one promise to wait for, not an array of two.
        const [containers, routeState] = route ? await Promise.all([listed, seen?.route?.(route) ?? proxy.traffic.observeRoute(host, app, route)]) : [await listed, null];
        reachability.report(host, true, null);
        return { host, reachable: true, containers, route: routeState };
      } catch (err) {
        const error = err instanceof Error ? err.message : String(err);
        reachability.report(host, false, error);
        return { host, reachable: false, error };
      }
    }),
  );
}
