import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from 'pino';
import { NotLeaderError } from '../cluster/fence.js';
import type { HostDriver } from './host-driver.js';

/** The host status rows this module keeps (src/store/hosts-status.ts), seen from here. */
export interface HostStatusRows {
  get(host: string): { up: boolean; lastError: string | null; dockerVersion: string | null } | null;
  upsert(row: HostStatusRow): unknown;
  /** Many rows in one write (the resync's pings). */
  refresh(rows: readonly HostStatusRow[]): void;
}

interface HostStatusRow {
  host: string;
  up: boolean;
  lastError: string | null;
  dockerVersion: string | null;
}

/** Host rows the resync's pings write in one statement. */
const REFRESH_SLICE = 100;

export interface ReachabilityOptions {
  drivers: Map<string, HostDriver>;
  rows: HostStatusRows;
  /** `berth_host_up{host}`. */
  setUp(host: string, up: boolean): void;
  /** A host answered again after being down: its apps should converge now, not at the next resync. */
  onBack(host: string): void;
  /** The host's reachability changed (or was first seen down): say so where operators look. */
  onChange(host: string, up: boolean, error: string | null): void;
  log: Logger;
  now?: () => number;
}

export interface DownHost {
  since: number;
  error: string;
}

/**
 * Which hosts answer. A host whose call fails is down: passes skip it (no pass waits
 * on it again) until the resync's ping finds it back. Every change is mirrored in the
 * host status row (GET /v1/hosts) and the `berth_host_up` gauge.
 */
export class HostReachability {
  private readonly down = new Map<string, DownHost>();
  /**
   * The row as this daemon last read or wrote it: the leader is the rows' only writer, so
   * every observation of a host (three or more per pass) need not read it again.
   */
  private readonly rows = new Map<string, ReturnType<HostStatusRows['get']>>();
  /** What `setUp` was last told per host: a pass reports each of its hosts, and a gauge's set costs ~200 bytes of labels. */
  private readonly gauged = new Map<string, boolean>();
  private readonly now: () => number;

  constructor(private readonly o: ReachabilityOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Drops the rows it remembers (a new term as leader: another daemon may have written them since). */
  forgetRows(): void {
    this.rows.clear();
  }

  /** When and why the host went down, or null while it answers. */
  downSince(host: string): DownHost | null {
    return this.down.get(host) ?? null;
  }

  /** Pings every host (the resync's check): refreshes versions, finds hosts that came back. */
  async pingAll(): Promise<void> {
    // A ping that changes nothing but the check time is written with the others, in one write once all have answered.
    const refreshed: HostStatusRow[] = [];
    await Promise.all(
      [...this.o.drivers].map(async ([host, driver]) => {
        try {
          const info = await driver.ping();
          this.report(host, true, null, info.dockerVersion, refreshed);
        } catch (err) {
          // A leader whose lease lapsed stops here; the host is not down for it.
          if (err instanceof NotLeaderError) return;
          this.report(host, false, err instanceof Error ? err.message : String(err));
        }
      }),
    );
    // A slice at a time, a turn of the loop between two: 1,000 rows in one statement held the
    // loop 40 ms on PostgreSQL. (A row some call changed since its ping is already written, and newer.)
    for (let i = 0; i < refreshed.length; i += REFRESH_SLICE) {
      if (i > 0) await nextTurn();
      this.o.rows.refresh(refreshed.slice(i, i + REFRESH_SLICE).filter((row) => this.rows.get(row.host) === row));
    }
  }

  /**
   * What a call to the host just showed. `dockerVersion` comes only with a ping; `refreshed`:
   * where a ping's row goes when nothing but its check time changed (pingAll writes them together).
   */
  report(host: string, up: boolean, error: string | null, dockerVersion?: string, refreshed?: HostStatusRow[]): void {
    if (this.gauged.get(host) !== up) {
      this.o.setUp(host, up);
      this.gauged.set(host, up);
    }
    const wasDown = this.down.has(host);
    if (!up && !wasDown) this.down.set(host, { since: this.now(), error: error ?? 'unreachable' });
    if (up && wasDown) {
      this.down.delete(host);
      this.o.onBack(host);
    }
    if (!this.rows.has(host)) this.rows.set(host, this.o.rows.get(host));
    const before = this.rows.get(host) ?? null;
    // A pass's observation only writes a change; the resync's ping (with a version) refreshes checkedAt.
    if (before && before.up === up && before.lastError === error && dockerVersion === undefined) return;
    const row = { host, up, lastError: error, dockerVersion: dockerVersion ?? before?.dockerVersion ?? null };
    const changed = !before || before.up !== up || before.lastError !== error || before.dockerVersion !== row.dockerVersion;
    if (refreshed && !changed) refreshed.push(row);
    else this.o.rows.upsert(row);
    this.rows.set(host, row);
    // A change, or a host found down at its first check (a daemon whose only host is gone says so at once).
    if (before ? before.up !== up : !up) {
      this.o.log.warn({ host, up, err: error }, up ? 'host is back' : 'host is down');
      this.o.onChange(host, up, error);
    }
  }
}
