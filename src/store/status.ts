import type { SqlStatement } from './sql.js';
import { NotFoundError, StoreError } from '../domain/errors.js';
import type { AppPhase, AppStatus, Condition, HostStatus } from '../domain/release.js';
import { rolloutRecordProblem, type RolloutRecord } from '../domain/rollout.js';
import type { StoreContext } from './context.js';
import type { EventsRepo } from './events.js';
import { parseJson } from './json.js';
import type { RecordStep, RecordStepResult, StoredRollout } from './types.js';

/** Told about a stored rollout record that `getRollout` treats as absent, and why. */
export type InvalidRolloutReporter = (app: string, problem: string) => void;

function defaultInvalidRollout(app: string, problem: string): void {
  process.emitWarning(`berth store: the rollout record of app ${app} is invalid (${problem}); treated as absent`);
}

export interface StatusRow {
  app: string;
  phase: AppPhase | null;
  observed_revision: number | null;
  conditions: string;
  hosts: string;
  updated_at: string;
}

export interface RolloutRow {
  app: string;
  revision: number;
  state: string;
  updated_at: string;
}

export function toStatus(r: StatusRow): AppStatus {
  return {
    app: r.app,
    phase: r.phase,
    observedRevision: r.observed_revision,
    conditions: parseJson<Condition[]>(r.conditions, `conditions of app ${r.app}`),
    // A status written before lastLogs existed has none.
    hosts: parseJson<HostStatus[]>(r.hosts, `host status of app ${r.app}`).map((h) => ({ ...h, lastLogs: h.lastLogs ?? null })),
    updatedAt: r.updated_at,
  };
}

function revisionProblem(rowRevision: number, record: RolloutRecord): string | null {
  return record.revision === rowRevision ? null : `revision: ${record.revision}, but the row is revision ${rowRevision}`;
}

/** A foreign key violation, as SQLite (`code`) or PostgreSQL (SQLSTATE 23503, `sqlState`) reports it. */
function isForeignKeyError(err: unknown): boolean {
  const e = err as { code?: unknown; sqlState?: unknown } | null;
  return e?.code === 'SQLITE_CONSTRAINT_FOREIGNKEY' || e?.sqlState === '23503';
}

/** Status and rollout record: written only by the controller. */
export class StatusRepo {
  private readonly upsertStatus: SqlStatement;
  private readonly oneStatus: SqlStatement;
  private readonly allStatus: SqlStatement;
  private readonly oneRollout: SqlStatement;
  private readonly upsertRollout: SqlStatement;
  private readonly removeRollout: SqlStatement;

  constructor(
    private readonly ctx: StoreContext,
    private readonly events: EventsRepo,
    private readonly onInvalidRollout: InvalidRolloutReporter = defaultInvalidRollout,
  ) {
    const db = ctx.sql;
    const cols = 'app, phase, observed_revision, conditions, hosts, updated_at';
    this.upsertStatus = db.prepare(
      `INSERT INTO status (${cols}) VALUES (@app, @phase, @observedRevision, @conditions, @hosts, @updatedAt)
       ON CONFLICT (app) DO UPDATE SET phase = excluded.phase, observed_revision = excluded.observed_revision,
         conditions = excluded.conditions, hosts = excluded.hosts, updated_at = excluded.updated_at`,
    );
    this.oneStatus = db.prepare(`SELECT ${cols} FROM status WHERE app = ?`);
    this.allStatus = db.prepare(`SELECT ${cols} FROM status ORDER BY app`);
    this.oneRollout = db.prepare('SELECT app, revision, state, updated_at FROM rollouts WHERE app = ?');
    this.upsertRollout = db.prepare(
      `INSERT INTO rollouts (app, revision, state, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (app) DO UPDATE SET revision = excluded.revision, state = excluded.state, updated_at = excluded.updated_at`,
    );
    this.removeRollout = db.prepare('DELETE FROM rollouts WHERE app = ?');
  }

  /** Replaces the status of `s.app` (`updatedAt` defaults to now). NotFoundError if the app does not exist. */
  writeStatus(s: AppStatus): void {
    this.ctx.write(() => {
      try {
        this.upsertStatus.run({
          app: s.app,
          phase: s.phase,
          observedRevision: s.observedRevision,
          conditions: JSON.stringify(s.conditions),
          hosts: JSON.stringify(s.hosts),
          updatedAt: s.updatedAt || this.ctx.now(),
        });
      } catch (err) {
        if (isForeignKeyError(err)) throw new NotFoundError(`app ${s.app}`);
        throw err;
      }
    });
  }

  readStatus(app: string): AppStatus | null {
    const row = this.oneStatus.get(app) as StatusRow | undefined;
    return row ? toStatus(row) : null;
  }

  listStatus(): AppStatus[] {
    return (this.allStatus.all() as StatusRow[]).map(toStatus);
  }

  /**
   * The rollout record of `app`, or null when there is none OR the stored one is not a
   * valid record (not JSON, not the shape of `RolloutRecord`, or another revision than
   * its row): that one is reported to `onInvalidRollout` and treated as absent, never
   * thrown. Losing a record is safe (the planner starts a new one, re-probes and
   * re-switches; see src/domain/rollout.ts), and the controller's next record step
   * replaces the bad row, where a throw would fail every pass of the app.
   */
  getRollout(app: string): StoredRollout | null {
    const row = this.oneRollout.get(app) as RolloutRow | undefined;
    return row ? this.rolloutFromRow(row) : null;
  }

  /** A rollouts row as `getRollout` returns it: null, reported, when it is not a valid record. */
  rolloutFromRow(row: RolloutRow): StoredRollout | null {
    const { app } = row;
    let state: unknown;
    try {
      state = JSON.parse(row.state);
    } catch (err) {
      this.onInvalidRollout(app, `not JSON: ${(err as Error).message}`);
      return null;
    }
    const problem = rolloutRecordProblem(state) ?? revisionProblem(row.revision, state as RolloutRecord);
    if (problem) {
      this.onInvalidRollout(app, problem);
      return null;
    }
    return { app: row.app, revision: row.revision, state: state as RolloutRecord, updatedAt: row.updated_at };
  }

  putRollout(app: string, revision: number, state: RolloutRecord): void {
    this.ctx.write(() => {
      const json = JSON.stringify(state);
      if (json === undefined) throw new StoreError('INVALID_ROLLOUT', `rollout record of app ${app} is not JSON-serialisable`);
      try {
        this.upsertRollout.run(app, revision, json, this.ctx.now());
      } catch (err) {
        if (isForeignKeyError(err)) throw new NotFoundError(`app ${app}`);
        throw err;
      }
    });
  }

  /** Returns whether there was a record. */
  deleteRollout(app: string): boolean {
    return this.ctx.write(() => this.removeRollout.run(app).changes > 0);
  }

  /**
   * The reconciler's "record" step: status, rollout record and events of one
   * pass in ONE synchronous transaction, so a crash leaves all or none of them.
   * Observed state: committed without an fsync unless the caller's transaction holds a
   * decision too (StoreContext.writeObserved). Subscribers see the events after the commit.
   */
  recordStep(app: string, step: RecordStep): RecordStepResult {
    if (step.status && step.status.app !== app) {
      throw new StoreError('INVALID_STEP', `recordStep for app ${app} got the status of app ${step.status.app}`);
    }
    return this.ctx.writeObserved(() => {
      if (step.status) this.writeStatus(step.status);
      if (step.rollout === null) this.deleteRollout(app);
      else if (step.rollout) this.putRollout(app, step.rollout.revision, step.rollout.state);
      const events = (step.events ?? []).map((e) => this.events.appendEvent({ ...e, app: e.app === undefined ? app : e.app }));
      return { events };
    });
  }
}
