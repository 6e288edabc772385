import type { ReleaseReason } from '../domain/release.js';
import type { AppPassInputs } from './types.js';
import { toRelease } from './releases.js';
import { toStatus, type RolloutRow, type StatusRepo, type StatusRow } from './status.js';
import type { StoreContext } from './context.js';
import type { SqlStatement } from './sql.js';

interface PassInputsRow {
  name: string;
  paused: number;
  maintenance: string | null;
  deleting_since: string | null;
  history_limit: number | null;
  r_revision: number | null;
  r_version: string;
  r_reason: ReleaseReason;
  r_actor: string;
  r_created_at: string;
  r_spec: string;
  s_app: string | null;
  s_phase: StatusRow['phase'];
  s_observed_revision: number | null;
  s_conditions: string;
  s_hosts: string;
  s_updated_at: string;
  stable_version: string | null;
  ro_app: string | null;
  ro_revision: number;
  ro_state: string;
  ro_updated_at: string;
  release_count: number;
}

/**
 * Everything a reconcile pass reads of the store for an app, one row per app: on
 * PostgreSQL each statement is a round trip that holds the event loop, and a pass read
 * its inputs in six. `one` serves a pass; `page` serves a resync, whose passes would
 * otherwise make 60,000 round trips at 10,000 apps (docs/benchmarks.md). A page's rows
 * are parsed only when a pass takes them (`rows()`), so reading one holds the loop for
 * the query, not for a hundred specs' parsing.
 */
export class PassInputsRepo {
  /**
   * Apps a page brings. A resync's passes start in name order, so one page serves the next
   * ~100 passes; bounded because a page is one answer held in memory (some specs are hundreds of KB).
   */
  static readonly PAGE_APPS = 128;

  private readonly oneStmt: SqlStatement;
  private readonly pageStmt: SqlStatement;

  constructor(
    private readonly ctx: StoreContext,
    private readonly status: StatusRepo,
  ) {
    // The app's history_limit is read out of its spec here: the pass needs nothing else of it.
    // `statusFrom`: a page names where it starts in the status join too, or PostgreSQL merges
    // the status index from its first row (9,000 rows read for a page at app 9,000).
    const select = (historyLimit: string, statusFrom: string, where: string) => `SELECT a.name, a.paused, a.maintenance, a.deleting_since, ${historyLimit} AS history_limit,
         r.revision AS r_revision, r.version AS r_version, r.reason AS r_reason, r.actor AS r_actor, r.created_at AS r_created_at, s.spec AS r_spec,
         st.app AS s_app, st.phase AS s_phase, st.observed_revision AS s_observed_revision, st.conditions AS s_conditions, st.hosts AS s_hosts, st.updated_at AS s_updated_at,
         sr.version AS stable_version,
         ro.app AS ro_app, ro.revision AS ro_revision, ro.state AS ro_state, ro.updated_at AS ro_updated_at,
         (SELECT count(*) FROM releases c WHERE c.app = a.name) AS release_count
       FROM apps a
       LEFT JOIN releases r ON r.app = a.name AND r.revision = (SELECT max(m.revision) FROM releases m WHERE m.app = a.name)
       LEFT JOIN specs s ON s.digest = r.spec_digest
       LEFT JOIN status st ON st.app = a.name${statusFrom}
       LEFT JOIN releases sr ON sr.app = a.name AND sr.revision = st.observed_revision
       LEFT JOIN rollouts ro ON ro.app = a.name
       ${where}`;
    const dialect = (statusFrom: string, where: string) => ({
      sqlite: select(`json_extract(a.spec, '$.historyLimit')`, statusFrom, where),
      postgres: select(`(a.spec::jsonb ->> 'historyLimit')::bigint`, statusFrom, where),
    });
    this.oneStmt = ctx.sql.prepare(dialect('', 'WHERE a.name = @app'));
    // The page's size is in the text, not a parameter: with LIMIT unknown, the generic plan
    // PostgreSQL settles on for a prepared statement hashed every release (15 ms a page; 3.3 with it).
    this.pageStmt = ctx.sql.prepare(dialect(' AND st.app >= @from', `WHERE a.name >= @from ORDER BY a.name LIMIT ${PassInputsRepo.PAGE_APPS}`));
  }

  /** The pass inputs of `app`, or null when there is no such app. */
  one(app: string): AppPassInputs | null {
    const row = this.oneStmt.get({ app }) as PassInputsRow | undefined;
    return row ? this.toInputs(row) : null;
  }

  /**
   * Up to PAGE_APPS apps from `from` (inclusive) in name order, each parsed when `rows()` is
   * called. Read without holding the event loop while PostgreSQL works (3-30 ms a page).
   */
  async page(from: string): Promise<Array<{ name: string; rows: () => AppPassInputs }>> {
    return ((await this.ctx.sql.allAsync(this.pageStmt, { from })) as PassInputsRow[]).map((row) => ({ name: row.name, rows: () => this.toInputs(row) }));
  }

  private toInputs(r: PassInputsRow): AppPassInputs {
    const latest =
      r.r_revision === null
        ? null
        : toRelease({ app: r.name, revision: r.r_revision, version: r.r_version, reason: r.r_reason, actor: r.r_actor, created_at: r.r_created_at, spec: r.r_spec });
    const status =
      r.s_app === null
        ? null
        : toStatus({ app: r.s_app, phase: r.s_phase, observed_revision: r.s_observed_revision, conditions: r.s_conditions, hosts: r.s_hosts, updated_at: r.s_updated_at });
    const rolloutRow: RolloutRow | null = r.ro_app === null ? null : { app: r.ro_app, revision: r.ro_revision, state: r.ro_state, updated_at: r.ro_updated_at };
    return {
      name: r.name,
      paused: r.paused === 1,
      maintenance: r.maintenance,
      deletingSince: r.deleting_since,
      historyLimit: r.history_limit,
      latest,
      status,
      stable: r.stable_version !== null && r.s_observed_revision !== null ? { revision: r.s_observed_revision, version: r.stable_version } : null,
      rollout: rolloutRow ? this.status.rolloutFromRow(rolloutRow) : null,
      releaseCount: r.release_count,
    };
  }
}
