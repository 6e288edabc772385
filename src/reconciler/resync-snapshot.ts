import { setImmediate as nextTurn } from 'node:timers/promises';
import type { ProxyRouteSpec } from '../domain/app-spec.js';
import type { HostDriver, ObservedContainer } from '../hosts/host-driver.js';
import { Slots } from '../proxy/slots.js';
import type { RouteState, TrafficSwitch } from '../proxy/traffic.js';

/**
 * One look at each host per resync, shared by every app's pass: the host's berth
 * containers in one listing, and (for a proxy that can read all its routes at once) its
 * routes in one read. Without it a resync costs a listing per app per host, and a
 * full proxy read per app per host: 10,000 apps on 1,000 hosts made ~65,000 calls a
 * resync where 1,000 see the same. controller-runtime's informer cache answers the same
 * need with a watch; here Docker's events only invalidate, never patch, the snapshot, so
 * no event can make it say something a listing would not.
 *
 * Why an app's first pass after the snapshot may use it, and no other:
 * - only an app's own passes act on its containers (the work queue runs one at a time),
 *   so an app whose pass is in flight when the snapshot is taken gets no entry, and each
 *   entry is used once, by the app's next pass, before that pass acts;
 * - anything else that changes the app's containers on a host (a hand, a crash, dockerd)
 *   sends a Docker event, and an event for the app on that host drops its entry; a
 *   re-subscribed event stream, or an event of the proxy container, drops the host's;
 * - another app's pass changes only its own route on a shared proxy: a reload it causes
 *   writes every server as it runs (haproxy-proxy.ts, reconfigure), so a route read stays true;
 * - an entry older than `maxAgeMs` is not used.
 * A dropped or used entry means the pass lists for itself, as it always did.
 */
/**
 * Host reads of a snapshot in flight at once. All at once, 1,000 hosts' listings came back
 * together and their decoding held the event loop for ~300 ms: an API request made just
 * after a resync of 10,000 apps waited that long for its answer (bench/scale-10k.ts). In
 * the order the apps' passes need them, a few at a time, the loop turns between them.
 * How few: the reads in flight answer at about the same time, and the loop decodes all that
 * came in before it turns again; each listing is kept until the passes of its apps have used
 * it, so the scavenges meanwhile copy it too. At 10,000 apps, 32 in flight held the loop 20-35 ms
 * a few times a resync (loop lag p99 22-24 ms); 16: 16 ms; 12: 14 ms; 8: 12 ms, but the
 * resync took 1.2 s rather than 1.0 (docs/benchmarks.md, "Fourth round").
 */
export const SNAPSHOT_READS_IN_FLIGHT = 12;
/** Apps whose hosts one turn of a take goes through: 10,000 in one held the event loop 14-35 ms (bench/scale-10k.ts). */
const APPS_PER_TURN = 2_000;

export interface SnapshotEntry {
  containers: Promise<ObservedContainer[]>;
  /** The app's route on the host's proxy as read with the snapshot; null: the pass reads it itself. */
  route: ((route: ProxyRouteSpec) => Promise<RouteState>) | null;
}

/** An app as the snapshot needs it: where it runs, and whether its pass reads a proxy route. */
export interface SnapshotApp {
  name: string;
  hosts: readonly string[];
  routed: boolean;
}

interface HostSnapshot {
  takenAt: number;
  /** The host's berth containers by app, grouped once (each app's pass takes its own). */
  containers: Promise<Map<string, ObservedContainer[]>>;
  routes: Promise<(app: string, route: ProxyRouteSpec) => RouteState> | null;
  /** How many apps' next passes may still use this snapshot. */
  users: number;
}

export class ResyncSnapshot {
  private readonly hosts = new Map<string, HostSnapshot>();
  /**
   * Per app, the hosts whose listing its next pass may still use. (A list per app, not a set
   * of apps per host: at 10,000 apps that was 65,000 set entries, 30-90 ms of one turn.)
   */
  private readonly unused = new Map<string, string[]>();
  /** Moves at every clear: a take under way when it moved holds nothing. */
  private generation = 0;

  constructor(
    private readonly o: {
      drivers: ReadonlyMap<string, HostDriver>;
      traffic: TrafficSwitch;
      /** The resync interval: the next resync takes a new snapshot anyway. */
      maxAgeMs: number;
      now: () => number;
    },
  ) {}

  /**
   * Starts one listing (and one route read) per host the apps run on; the passes that
   * use it wait for it. `skip`: an app whose pass is in flight, or a host known to be down
   * (its passes answer unreachable without a call, as before).
   *
   * The apps' hosts are gone through APPS_PER_TURN apps a turn of the event loop, and
   * `skip.app` asked in the last turn, just before the listings start: a pass that ran and
   * ended in between acted before any listing, which then shows what it did. A `clear()`
   * meanwhile (the controller stands by) ends the take with nothing held.
   */
  async take(apps: readonly SnapshotApp[], skip: { app(name: string): boolean; host(name: string): boolean }): Promise<void> {
    this.clear();
    const generation = this.generation;
    const takenAt = this.o.now();
    // In the order the apps (and so their passes) first need them; null: a host not looked at.
    const needed = new Map<string, { users: number; routed: boolean } | null>();
    const hostsOf: Array<{ app: string; hosts: string[] }> = [];
    for (let i = 0; i < apps.length; i += APPS_PER_TURN) {
      if (i > 0) await nextTurn();
      if (generation !== this.generation) return;
      for (const app of apps.slice(i, i + APPS_PER_TURN)) {
        const hosts: string[] = [];
        for (const host of app.hosts) {
          let need = needed.get(host);
          if (need === undefined) {
            need = this.o.drivers.has(host) && !skip.host(host) ? { users: 0, routed: false } : null;
            needed.set(host, need);
          }
          if (!need) continue;
          need.users += 1;
          need.routed ||= app.routed;
          hosts.push(host);
        }
        if (hosts.length > 0) hostsOf.push({ app: app.name, hosts });
      }
    }
    for (const { app, hosts } of hostsOf) {
      if (!skip.app(app)) this.unused.set(app, hosts);
      else for (const host of hosts) needed.get(host)!.users -= 1;
    }
    const slots = new Slots(SNAPSHOT_READS_IN_FLIGHT);
    const readRoutes = this.o.traffic.observeRoutes?.bind(this.o.traffic);
    for (const [host, need] of needed) {
      if (!need || need.users === 0) continue;
      const driver = this.o.drivers.get(host)!;
      const containers = slots.run(() => driver.listContainers()).then(byApp);
      const routes = need.routed && readRoutes ? slots.run(() => readRoutes(host)) : null;
      // A failed read is the pass's to report (it awaits the promise); none is left unhandled meanwhile.
      containers.catch(() => {});
      routes?.catch(() => {});
      this.hosts.set(host, { takenAt, containers, routes, users: need.users });
    }
  }

  /** The snapshot's view of `app` on `host`, once; null when the pass must look for itself. */
  use(host: string, app: string): SnapshotEntry | null {
    const h = this.hosts.get(host);
    if (!h || !this.release(host, app)) return null;
    if (this.o.now() - h.takenAt > this.o.maxAgeMs) {
      this.hosts.delete(host);
      return null;
    }
    const routes = h.routes;
    return {
      containers: h.containers.then((apps) => apps.get(app) ?? []),
      route: routes ? (route) => routes.then((read) => read(app, route)) : null,
    };
  }

  /** Something changed `app`'s containers on `host` (a Docker event): its next pass lists them itself. */
  dropApp(host: string, app: string): void {
    this.release(host, app);
  }

  /** Hosts the snapshot still holds a listing of (tests). */
  get heldHosts(): number {
    return this.hosts.size;
  }

  /**
   * Takes the host off `app`'s unused hosts; whether it was on them. The host's listing
   * (at 10,000 apps, 65,000 containers in all) goes once no pass can use it any more,
   * not at the next resync: the passes that need it hold their own promise of it.
   */
  private release(host: string, app: string): boolean {
    const hosts = this.unused.get(app);
    const i = hosts?.indexOf(host) ?? -1;
    if (!hosts || i < 0) return false;
    // (Order does not matter: the last one takes its place.)
    hosts[i] = hosts[hosts.length - 1]!;
    hosts.pop();
    if (hosts.length === 0) this.unused.delete(app);
    this.letGo(host);
    return true;
  }

  private letGo(host: string): void {
    const h = this.hosts.get(host);
    if (h && --h.users === 0) this.hosts.delete(host);
  }

  /**
   * An operator asked for `app` (a deploy): its next pass lists its hosts itself rather than
   * wait behind the snapshot's reads of the hosts before its own (up to 1,000 of them, 32
   * at a time), and sees them as they are now.
   */
  dropAppEverywhere(app: string): void {
    for (const host of this.unused.get(app) ?? []) this.letGo(host);
    this.unused.delete(app);
  }

  /** Forgets every host (the controller stands by: what it saw may be stale when it leads again). */
  clear(): void {
    this.generation += 1;
    this.hosts.clear();
    this.unused.clear();
  }

  /** Events of the host may have been missed, or its proxy changed: every pass lists for itself. */
  dropHost(host: string): void {
    this.hosts.delete(host);
  }
}

/** Containers by app: filtering the host's list for each app was ~130 ms of CPU per resync at 10,000 apps. */
function byApp(containers: readonly ObservedContainer[]): Map<string, ObservedContainer[]> {
  const apps = new Map<string, ObservedContainer[]>();
  for (const c of containers) {
    const mine = apps.get(c.app);
    if (mine) mine.push(c);
    else apps.set(c.app, [c]);
  }
  return apps;
}
