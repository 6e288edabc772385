import { routedApp } from '../domain/processes.js';
import type { AppStamp, StoredApp } from '../store/index.js';
import type { SnapshotApp } from './resync-snapshot.js';

/** What the placements read of the store: the apps' change stamps, and one app when its stamp moved. */
export interface PlacementSource {
  readAppStamps(): Promise<AppStamp[]>;
  getApp(name: string): StoredApp | null;
}

/**
 * Where each app runs and whether it is routed, as the resync snapshot needs it, with
 * each app's spec parsed once per change of its record rather than at every resync:
 * reading and parsing all 10,000 specs held the event loop ~100 ms per resync
 * (bench/scale-10k.ts), and built 10,000 whole specs for three fields.
 *
 * A change is seen through the record's `updated_at` (every write of an app sets it),
 * to the millisecond: two writes of one app within the same millisecond, with a look in
 * between, leave the older placement here until the app's next write. That costs only
 * efficiency, never a wrong observation: the snapshot is a hint that each pass checks
 * against its own spec (a host the snapshot did not list for the app is listed by the
 * pass; an unrouted placement means the pass reads its route itself).
 */
export class AppPlacements {
  private readonly known = new Map<string, { updatedAt: string; app: SnapshotApp }>();

  constructor(private readonly apps: PlacementSource) {}

  /**
   * Every stored app's placement, in name order; a spec is parsed only for an app new or
   * changed since the last call. The stamps are read without holding the event loop (at
   * 10,000 apps 20-30 ms on PostgreSQL).
   */
  async read(): Promise<SnapshotApp[]> {
    const stamps = await this.apps.readAppStamps();
    const out: SnapshotApp[] = [];
    const seen = new Set<string>();
    for (const { name, updatedAt } of stamps) {
      seen.add(name);
      const cached = this.known.get(name);
      if (cached?.updatedAt === updatedAt) {
        out.push(cached.app);
        continue;
      }
      const stored = this.apps.getApp(name);
      // Deleted between the two reads: the resync has nothing to look at for it.
      if (!stored) continue;
      const app: SnapshotApp = { name, hosts: stored.spec.hosts, routed: routedApp(stored.spec).proxy !== null };
      this.known.set(name, { updatedAt: stored.updatedAt, app });
      out.push(app);
    }
    for (const name of this.known.keys()) if (!seen.has(name)) this.known.delete(name);
    return out;
  }
}
