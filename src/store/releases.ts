import type { DialectSql, SqlStatement } from './sql.js';
import type { AppSpec } from '../domain/app-spec.js';
import { ConflictError, NotFoundError } from '../domain/errors.js';
import type { Release, ReleaseReason } from '../domain/release.js';
import type { StoreContext } from './context.js';
import type { EventsRepo } from './events.js';
import { canonicalJson, parseJson, textDigest } from './json.js';
import { DEFAULT_RELEASES_LIMIT, clampLimit } from './limits.js';
import type { NewRelease, PageOptions, ReleaseSummary } from './types.js';

export interface SummaryRow {
  app: string;
  revision: number;
  version: string;
  reason: ReleaseReason;
  actor: string;
  created_at: string;
}

export interface ReleaseRow extends SummaryRow {
  spec: string;
}

function toSummary(r: SummaryRow): ReleaseSummary {
  return { app: r.app, revision: r.revision, version: r.version, reason: r.reason, actor: r.actor, createdAt: r.created_at };
}

export function toRelease(r: ReleaseRow): Release {
  return { ...toSummary(r), spec: parseJson<AppSpec>(r.spec, `spec of release ${r.app}@${r.revision}`) };
}

/** A release's columns without its spec (lists read no spec: it may be hundreds of KB). */
const SUMMARY = 'r.app, r.revision, r.version, r.reason, r.actor, r.created_at';
/** A release with its spec, which is stored once per distinct text in `specs` (migrations/0005_specs_once.sql). */
const WITH_SPEC = `SELECT ${SUMMARY}, s.spec FROM releases r JOIN specs s ON s.digest = r.spec_digest`;

/** Releases one retention step removes at most: one short transaction (docs/benchmarks.md, "History"). */
export const PRUNE_BATCH = 100;

export interface PruneOptions {
  /** Releases kept per app, newest first (the app's history_limit). */
  limit: number;
  /** Revisions the caller knows are in use besides those the store knows: containers on the hosts, retained ones included. */
  keep?: Iterable<number>;
  /** At most this many releases removed by this call (default PRUNE_BATCH). */
  batch?: number;
}

export class ReleasesRepo {
  private readonly appSpec: SqlStatement;
  private readonly maxRevision: SqlStatement;
  private readonly insert: SqlStatement;
  private readonly insertSpec: SqlStatement;
  private readonly page: SqlStatement;
  private readonly one: SqlStatement;
  private readonly latest: SqlStatement;
  private readonly latestSummaryStmt: SqlStatement;
  private readonly byVersion: SqlStatement;
  private readonly rollbackTargetStmt: SqlStatement;
  private readonly complete: SqlStatement;
  private readonly rollbackTargetRevision: SqlStatement;
  private readonly pruneBoundary: SqlStatement;
  private readonly pruneCandidates: SqlStatement;
  private readonly inUse: SqlStatement;
  private readonly remove: SqlStatement;

  constructor(
    private readonly ctx: StoreContext,
    private readonly events: EventsRepo,
  ) {
    const db = ctx.sql;
    this.appSpec = db.prepare('SELECT spec FROM apps WHERE name = ?').pluck();
    this.maxRevision = db.prepare('SELECT coalesce(max(revision), 0) FROM releases WHERE app = ?').pluck();
    this.insertSpec = db.prepare('INSERT INTO specs (digest, spec) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING');
    this.insert = db.prepare(
      `INSERT INTO releases (app, revision, version, spec_digest, reason, actor, created_at)
       VALUES (@app, @revision, @version, @digest, @reason, @actor, @createdAt)`,
    );
    this.page = db.prepare(`SELECT ${SUMMARY} FROM releases r WHERE r.app = ? AND r.revision < ? ORDER BY r.revision DESC LIMIT ?`);
    this.one = db.prepare(`${WITH_SPEC} WHERE r.app = ? AND r.revision = ?`);
    this.latest = db.prepare(`${WITH_SPEC} WHERE r.app = ? ORDER BY r.revision DESC LIMIT 1`);
    this.latestSummaryStmt = db.prepare(`SELECT ${SUMMARY} FROM releases r WHERE r.app = ? ORDER BY r.revision DESC LIMIT 1`);
    this.byVersion = db.prepare(`${WITH_SPEC} WHERE r.app = ? AND r.version = ? ORDER BY r.revision DESC LIMIT 1`);
    // Walks the primary key from the newest revision down (NOT INDEXED keeps the planner off
    // releases_app_version, which would read every release of the app and sort them) and
    // stops at the first completed release of another version: the rows it passes are at
    // most the app's history_limit. One spec is read.
    const rollbackTarget = (hint: string) => `FROM releases r${hint}
       WHERE r.app = @app AND r.completed_at IS NOT NULL
         AND r.version <> (SELECT version FROM releases WHERE app = @app ORDER BY revision DESC LIMIT 1)
       ORDER BY r.revision DESC LIMIT 1`;
    const rollbackTargetSql = (select: string): DialectSql => ({ sqlite: `${select} ${rollbackTarget(' NOT INDEXED')}`, postgres: `${select} ${rollbackTarget('')}` });
    this.complete = db.prepare('UPDATE releases SET completed_at = ? WHERE app = ? AND revision = ? AND completed_at IS NULL');
    this.rollbackTargetStmt = db.prepare(rollbackTargetSql(`SELECT ${SUMMARY}, (SELECT spec FROM specs WHERE digest = r.spec_digest) AS spec`));
    this.rollbackTargetRevision = db.prepare(rollbackTargetSql('SELECT r.revision')).pluck();
    this.pruneBoundary = db.prepare('SELECT revision FROM releases WHERE app = ? ORDER BY revision DESC LIMIT 1 OFFSET ?').pluck();
    this.pruneCandidates = db.prepare('SELECT revision FROM releases WHERE app = ? AND revision <= ? ORDER BY revision ASC LIMIT ?').pluck();
    // What the controller recorded the fleet runs: the converged (stable) revision, each
    // host's serving revision, and the revision being rolled out.
    this.inUse = db
      .prepare({
        sqlite: `SELECT observed_revision FROM status WHERE app = @app
       UNION SELECT json_extract(h.value, '$.revision') FROM status, json_each(status.hosts) h WHERE status.app = @app
       UNION SELECT revision FROM rollouts WHERE app = @app`,
        postgres: `SELECT observed_revision FROM status WHERE app = @app
       UNION SELECT (h.value ->> 'revision')::bigint FROM status, jsonb_array_elements(status.hosts::jsonb) h WHERE status.app = @app
       UNION SELECT revision FROM rollouts WHERE app = @app`,
      })
      .pluck();
    this.remove = db.prepare('DELETE FROM releases WHERE app = ? AND revision = ?');
  }

  /**
   * Appends the next revision of `app` (newest + 1) and a ReleaseCreated event.
   * The newest revision is read inside the same IMMEDIATE transaction, so
   * concurrent writers (threads or processes) get distinct, contiguous revisions.
   * NotFoundError when the app does not exist; ConflictError when
   * `expectedRevision` is given and is not the newest revision.
   */
  createRelease(input: NewRelease): Release {
    return this.ctx.write(() => {
      const { storedSpec, newest } = this.checkCreate(input);
      return this.insertRelease(input, newest, input.spec ? canonicalJson(input.spec) : storedSpec);
    });
  }

  /**
   * Like createRelease, except when the release it would create is already the desired
   * one: the newest release has the same version and the same spec snapshot (canonical
   * JSON). Then nothing is written (no revision, no event) and that release comes back
   * with `unchanged: true`. `expectedRevision` is checked first, as in createRelease.
   */
  createReleaseUnlessCurrent(input: NewRelease): { release: Release; unchanged: boolean } {
    return this.ctx.write(() => {
      const { storedSpec, newest } = this.checkCreate(input);
      const spec = input.spec ? canonicalJson(input.spec) : storedSpec;
      const latestRow = this.latest.get(input.app) as ReleaseRow | undefined;
      if (latestRow && latestRow.version === input.version) {
        const latest = toRelease(latestRow);
        // A restart's mark is not a change the caller asked for: deploying the restarted version again is unchanged.
        const { restartedAt: mark, ...latestSpec } = latest.spec;
        const { restartedAt: asked, ...askedSpec } = parseJson<AppSpec>(spec, `spec of app ${input.app}`);
        if ((asked === undefined || asked === mark) && canonicalJson(latestSpec) === canonicalJson(askedSpec)) {
          return { release: latest, unchanged: true };
        }
      }
      return { release: this.insertRelease(input, newest, spec), unchanged: false };
    });
  }

  /** The app's stored spec and newest revision; NotFoundError / ConflictError (expectedRevision). */
  private checkCreate(input: NewRelease): { storedSpec: string; newest: number } {
    const storedSpec = this.appSpec.get(input.app) as string | undefined;
    if (storedSpec === undefined) throw new NotFoundError(`app ${input.app}`);
    const newest = this.maxRevision.get(input.app) as number;
    if (input.expectedRevision !== undefined && input.expectedRevision !== newest) {
      throw new ConflictError(
        newest === 0
          ? `expected revision ${input.expectedRevision} but app ${input.app} has no releases yet`
          : `expected revision ${input.expectedRevision} but the newest is ${newest}`,
      );
    }
    return { storedSpec, newest };
  }

  /** Inserts revision `newest + 1` (its spec once per distinct text) and its ReleaseCreated event; call inside ctx.write. */
  private insertRelease(input: NewRelease, newest: number, spec: string): Release {
    const digest = textDigest(spec);
    this.insertSpec.run(digest, spec);
    const row: ReleaseRow = {
      app: input.app,
      revision: newest + 1,
      version: input.version,
      spec,
      reason: input.reason,
      actor: input.actor,
      created_at: this.ctx.now(),
    };
    this.insert.run({ app: row.app, revision: row.revision, version: row.version, digest, reason: row.reason, actor: row.actor, createdAt: row.created_at });
    const release = toRelease(row);
    this.events.appendEvent({
      app: input.app,
      revision: release.revision,
      type: 'ReleaseCreated',
      message:
        input.reason === 'rollback'
          ? `revision ${release.revision}: rollback to version ${release.version}`
          : `revision ${release.revision}: deploy version ${release.version}`,
      actor: input.actor,
    });
    return release;
  }

  /** Newest first, without specs; `before` is exclusive (pass the last revision of the previous page). */
  listReleases(app: string, opts: PageOptions & { before?: number } = {}): ReleaseSummary[] {
    const before = opts.before ?? Number.MAX_SAFE_INTEGER;
    return (this.page.all(app, before, clampLimit(opts.limit, DEFAULT_RELEASES_LIMIT)) as SummaryRow[]).map(toSummary);
  }

  getRelease(app: string, revision: number): Release | null {
    const row = this.one.get(app, revision) as ReleaseRow | undefined;
    return row ? toRelease(row) : null;
  }

  /** The desired release: the newest revision, or null when the app has none. */
  latestRelease(app: string): Release | null {
    const row = this.latest.get(app) as ReleaseRow | undefined;
    return row ? toRelease(row) : null;
  }

  /** The desired release without its spec (app views). */
  latestSummary(app: string): ReleaseSummary | null {
    const row = this.latestSummaryStmt.get(app) as SummaryRow | undefined;
    return row ? toSummary(row) : null;
  }

  /** The newest release of `version` (a rollback target), or null. */
  findLatestByVersion(app: string, version: string): Release | null {
    const row = this.byVersion.get(app, version) as ReleaseRow | undefined;
    return row ? toRelease(row) : null;
  }

  /** Records that the rollout of the release completed (the first time only): a `rollback {}` may go back to it. */
  markCompleted(app: string, revision: number, at: Date): void {
    this.complete.run(at.toISOString(), app, revision);
  }

  /**
   * Where `rollback {}` goes: the newest release of another version than the newest
   * release's whose rollout completed, or null. A version that never served the fleet (its
   * rollout failed) is not the previous release.
   */
  rollbackTarget(app: string): Release | null {
    const row = this.rollbackTargetStmt.get({ app }) as ReleaseRow | undefined;
    return row ? toRelease(row) : null;
  }

  /**
   * History retention: removes the oldest releases of `app` beyond the newest `limit`,
   * at most `batch` of them in one transaction, and (trigger releases_spec_gc) every
   * spec no release names any more. Never removes, whatever their age: the newest
   * release (desired), the rollback target (rollbackTarget), the revisions the status
   * records (the converged one an automatic rollback returns to, each host's serving
   * one), the rollout record's, and `keep`. Returns how many it removed: `batch` means
   * there may be more to remove.
   */
  pruneReleases(app: string, opts: PruneOptions): number {
    const batch = Math.max(1, Math.trunc(opts.batch ?? PRUNE_BATCH));
    const limit = Math.max(1, Math.trunc(opts.limit));
    // Every pass asks; an app within its limit (nearly all, nearly always) takes no write lock.
    if (this.pruneBoundary.get(app, limit) === undefined) return 0;
    return this.ctx.write(() => {
      const boundary = this.pruneBoundary.get(app, limit) as number | undefined;
      if (boundary === undefined) return 0;
      const kept = new Set<unknown>(this.inUse.all({ app }));
      for (const r of opts.keep ?? []) kept.add(r);
      kept.add(this.rollbackTargetRevision.get({ app }));
      const candidates = this.pruneCandidates.all(app, boundary, batch + kept.size) as number[];
      const doomed = candidates.filter((r) => !kept.has(r)).slice(0, batch);
      for (const r of doomed) this.remove.run(app, r);
      return doomed.length;
    });
  }
}
