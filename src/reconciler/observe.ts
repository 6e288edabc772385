import type { HostDriver } from '../hosts/host-driver.js';
import type { HostObservation } from './types.js';

/**
 * Lists the app's containers on each of its hosts, all at once. A host that does not
 * answer becomes an unreachable observation; it never fails the pass.
 */
export async function observeFleet(
  drivers: Map<string, HostDriver>,
  hosts: string[],
  app: string,
  onReachability: (host: string, up: boolean, error: string | null) => void,
): Promise<HostObservation[]> {
  return Promise.all(
    hosts.map(async (host): Promise<HostObservation> => {
      const driver = drivers.get(host);
      if (!driver) return { host, reachable: false, error: `host "${host}" is not in berth's config` };
      try {
        const containers = await driver.listContainers({ app });
        onReachability(host, true, null);
        return { host, reachable: true, containers };
      } catch (err) {
        const error = err instanceof Error ? err.message : String(err);
        onReachability(host, false, error);
        return { host, reachable: false, error };
      }
    }),
  );
}
