import type Database from 'better-sqlite3';
import type { AppSpec } from '../domain/app-spec.js';
import { ConflictError, NotFoundError } from '../domain/errors.js';
import type { Release, ReleaseReason } from '../domain/release.js';
import type { StoreContext } from './context.js';
import type { EventsRepo } from './events.js';
import { canonicalJson, parseJson } from './json.js';
import { DEFAULT_RELEASES_LIMIT, clampLimit } from './limits.js';
import type { NewRelease, PageOptions } from './types.js';

interface ReleaseRow {
  app: string;
  revision: number;
  version: string;
  spec: string;
  reason: ReleaseReason;
  actor: string;
  created_at: string;
}

function toRelease(r: ReleaseRow): Release {
  return {
    app: r.app,
    revision: r.revision,
    version: r.version,
    spec: parseJson<AppSpec>(r.spec, `spec of release ${r.app}@${r.revision}`),
    reason: r.reason,
    actor: r.actor,
    createdAt: r.created_at,
  };
}

const COLUMNS = 'app, revision, version, spec, reason, actor, created_at';

export class ReleasesRepo {
  private readonly appSpec: Database.Statement;
  private readonly maxRevision: Database.Statement;
  private readonly insert: Database.Statement;
  private readonly page: Database.Statement;
  private readonly one: Database.Statement;
  private readonly latest: Database.Statement;
  private readonly byVersion: Database.Statement;

  constructor(
    private readonly ctx: StoreContext,
    private readonly events: EventsRepo,
  ) {
    const db = ctx.db;
    this.appSpec = db.prepare('SELECT spec FROM apps WHERE name = ?').pluck();
    this.maxRevision = db.prepare('SELECT coalesce(max(revision), 0) FROM releases WHERE app = ?').pluck();
    this.insert = db.prepare(
      `INSERT INTO releases (${COLUMNS}) VALUES (@app, @revision, @version, @spec, @reason, @actor, @createdAt) RETURNING ${COLUMNS}`,
    );
    this.page = db.prepare(
      `SELECT ${COLUMNS} FROM releases WHERE app = ? AND revision < ? ORDER BY revision DESC LIMIT ?`,
    );
    this.one = db.prepare(`SELECT ${COLUMNS} FROM releases WHERE app = ? AND revision = ?`);
    this.latest = db.prepare(`SELECT ${COLUMNS} FROM releases WHERE app = ? ORDER BY revision DESC LIMIT 1`);
    this.byVersion = db.prepare(
      `SELECT ${COLUMNS} FROM releases WHERE app = ? AND version = ? ORDER BY revision DESC LIMIT 1`,
    );
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

  /** Inserts revision `newest + 1` and its ReleaseCreated event; call inside ctx.write. */
  private insertRelease(input: NewRelease, newest: number, spec: string): Release {
    const row = this.insert.get({
      app: input.app,
      revision: newest + 1,
      version: input.version,
      spec,
      reason: input.reason,
      actor: input.actor,
      createdAt: this.ctx.now(),
    }) as ReleaseRow;
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

  /** Newest first; `before` is exclusive (pass the last revision of the previous page). */
  listReleases(app: string, opts: PageOptions & { before?: number } = {}): Release[] {
    const before = opts.before ?? Number.MAX_SAFE_INTEGER;
    return (this.page.all(app, before, clampLimit(opts.limit, DEFAULT_RELEASES_LIMIT)) as ReleaseRow[]).map(toRelease);
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

  /** The newest release of `version` (a rollback target), or null. */
  findLatestByVersion(app: string, version: string): Release | null {
    const row = this.byVersion.get(app, version) as ReleaseRow | undefined;
    return row ? toRelease(row) : null;
  }
}
