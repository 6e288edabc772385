import type { SqlStatement } from './sql.js';
import type { StoreContext } from './context.js';
import type { HostReachability, HostReachabilityInput } from './types.js';

interface HostRow {
  host: string;
  up: number;
  docker_version: string | null;
  last_error: string | null;
  checked_at: string;
}

function toHost(r: HostRow): HostReachability {
  return {
    host: r.host,
    up: r.up === 1,
    dockerVersion: r.docker_version,
    lastError: r.last_error,
    checkedAt: r.checked_at,
  };
}

/** Last reachability check per host (GET /v1/hosts). */
export class HostsStatusRepo {
  private readonly upsertStmt: SqlStatement;
  private readonly refreshStmt: SqlStatement;
  private readonly one: SqlStatement;
  private readonly all: SqlStatement;
  private readonly remove: SqlStatement;

  constructor(private readonly ctx: StoreContext) {
    const db = ctx.sql;
    const cols = 'host, up, docker_version, last_error, checked_at';
    this.upsertStmt = db.prepare(
      `INSERT INTO hosts_status (${cols}) VALUES (@host, @up, @dockerVersion, @lastError, @checkedAt)
       ON CONFLICT (host) DO UPDATE SET up = excluded.up, docker_version = excluded.docker_version,
         last_error = excluded.last_error, checked_at = excluded.checked_at
       RETURNING ${cols}`,
    );
    // Every host's row in one statement (a JSON array of rows): a resync pings every host, and
    // a transaction per host cost PostgreSQL three round trips each, 1,000 hosts held the loop for seconds.
    const set = `ON CONFLICT (host) DO UPDATE SET up = excluded.up, docker_version = excluded.docker_version,
         last_error = excluded.last_error, checked_at = excluded.checked_at`;
    this.refreshStmt = db.prepare({
      // (WHERE true: SQLite's parser needs it between a SELECT and ON CONFLICT.)
      sqlite: `INSERT INTO hosts_status (${cols})
       SELECT json_extract(value, '$.host'), json_extract(value, '$.up'), json_extract(value, '$.docker_version'),
              json_extract(value, '$.last_error'), json_extract(value, '$.checked_at')
       FROM json_each(?) WHERE true ${set}`,
      postgres: `INSERT INTO hosts_status (${cols})
       SELECT r.host, r.up, r.docker_version, r.last_error, r.checked_at
       FROM json_to_recordset(?::json) AS r(host text, up bigint, docker_version text, last_error text, checked_at text) ${set}`,
    });
    this.one = db.prepare(`SELECT ${cols} FROM hosts_status WHERE host = ?`);
    this.all = db.prepare(`SELECT ${cols} FROM hosts_status ORDER BY host`);
    this.remove = db.prepare('DELETE FROM hosts_status WHERE host = ?');
  }

  /**
   * Records a check. `dockerVersion` omitted keeps the last known version (a down
   * host still shows what it ran); pass null to clear it.
   */
  upsert(h: HostReachabilityInput): HostReachability {
    return this.ctx.writeObserved(() => {
      const previous = this.one.get(h.host) as HostRow | undefined;
      const row = this.upsertStmt.get({
        host: h.host,
        up: h.up ? 1 : 0,
        dockerVersion: h.dockerVersion === undefined ? (previous?.docker_version ?? null) : h.dockerVersion,
        lastError: h.lastError ?? null,
        checkedAt: h.checkedAt ?? this.ctx.now(),
      }) as HostRow;
      return toHost(row);
    });
  }

  /** Records checks of many hosts at once, each with its docker version as given, checked now: one statement. */
  refresh(hosts: ReadonlyArray<Omit<HostReachabilityInput, 'checkedAt' | 'dockerVersion'> & { dockerVersion: string | null }>): void {
    if (hosts.length === 0) return;
    const checkedAt = this.ctx.now();
    const rows = hosts.map((h) => ({ host: h.host, up: h.up ? 1 : 0, docker_version: h.dockerVersion, last_error: h.lastError ?? null, checked_at: checkedAt }));
    this.ctx.writeObserved(() => this.refreshStmt.run(JSON.stringify(rows)));
  }

  get(host: string): HostReachability | null {
    const row = this.one.get(host) as HostRow | undefined;
    return row ? toHost(row) : null;
  }

  list(): HostReachability[] {
    return (this.all.all() as HostRow[]).map(toHost);
  }

  /** Forget a host that left the config. Returns whether it was known. */
  delete(host: string): boolean {
    return this.ctx.write(() => this.remove.run(host).changes > 0);
  }
}
