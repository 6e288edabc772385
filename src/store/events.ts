import type { SqlStatement } from './sql.js';
import type { BerthEvent } from '../domain/release.js';
import type { EventListener, StoreContext } from './context.js';
import { clampLimit } from './limits.js';
import type { NewEvent, PageOptions } from './types.js';

interface EventRow {
  id: number;
  app: string | null;
  host: string | null;
  revision: number | null;
  type: string;
  message: string;
  actor: string | null;
  created_at: string;
}

const COLUMNS = 'id, app, host, revision, type, message, actor, created_at';

function toEvent(r: EventRow): BerthEvent {
  return {
    id: r.id,
    app: r.app,
    host: r.host,
    revision: r.revision,
    type: r.type,
    message: r.message,
    actor: r.actor,
    createdAt: r.created_at,
  };
}

/**
 * Append-only audit log. `app = null` in the list functions means "every app"
 * (the global stream), not "events without an app".
 */
export class EventsRepo {
  private readonly insert: SqlStatement;
  private readonly ascAll: SqlStatement;
  private readonly ascApp: SqlStatement;
  private readonly descAll: SqlStatement;
  private readonly descApp: SqlStatement;
  private readonly maxAll: SqlStatement;
  private readonly maxApp: SqlStatement;
  private readonly newestTyped: SqlStatement;
  private readonly typedOfRevision: SqlStatement;

  constructor(private readonly ctx: StoreContext) {
    const db = ctx.sql;
    this.insert = db.prepare(
      `INSERT INTO events (app, host, revision, type, message, actor, created_at)
       VALUES (@app, @host, @revision, @type, @message, @actor, @createdAt) RETURNING ${COLUMNS}`,
    );
    this.ascAll = db.prepare(`SELECT ${COLUMNS} FROM events WHERE id > ? ORDER BY id ASC LIMIT ?`);
    this.ascApp = db.prepare(`SELECT ${COLUMNS} FROM events WHERE app = ? AND id > ? ORDER BY id ASC LIMIT ?`);
    this.descAll = db.prepare(`SELECT ${COLUMNS} FROM events WHERE id < ? ORDER BY id DESC LIMIT ?`);
    this.descApp = db.prepare(`SELECT ${COLUMNS} FROM events WHERE app = ? AND id < ? ORDER BY id DESC LIMIT ?`);
    this.maxAll = db.prepare('SELECT coalesce(max(id), 0) AS id FROM events').pluck();
    this.maxApp = db.prepare('SELECT coalesce(max(id), 0) AS id FROM events WHERE app = ?').pluck();
    const recent = `SELECT ${COLUMNS} FROM (SELECT ${COLUMNS} FROM events WHERE app = ? ORDER BY id DESC LIMIT ?) AS recent`;
    this.newestTyped = db.prepare({
      sqlite: `${recent} WHERE type IN (SELECT value FROM json_each(?)) ORDER BY id DESC LIMIT 1`,
      postgres: `${recent} WHERE type IN (SELECT jsonb_array_elements_text(?::jsonb)) ORDER BY id DESC LIMIT 1`,
    });
    this.typedOfRevision = db.prepare(`${recent} WHERE type = ? AND revision = ? ORDER BY id ASC`);
  }

  /** Appends one event (its own transaction, or the caller's when inside one). */
  appendEvent(e: NewEvent): BerthEvent {
    return this.ctx.write(() => {
      const row = this.insert.get({
        app: e.app ?? null,
        host: e.host ?? null,
        revision: e.revision ?? null,
        type: e.type,
        message: e.message,
        actor: e.actor ?? null,
        createdAt: this.ctx.now(),
      }) as EventRow;
      const ev = toEvent(row);
      this.ctx.afterCommit(ev);
      return ev;
    });
  }

  /** Oldest first, strictly after `afterId` (SSE resume with Last-Event-ID). */
  listEvents(app: string | null, opts: PageOptions & { afterId?: number } = {}): BerthEvent[] {
    const after = opts.afterId ?? 0;
    const limit = clampLimit(opts.limit);
    const rows = (app === null ? this.ascAll.all(after, limit) : this.ascApp.all(app, after, limit)) as EventRow[];
    return rows.map(toEvent);
  }

  /** Newest first, strictly before `beforeId` (history pages: pass the last id of the previous page). */
  pageEvents(app: string | null, opts: PageOptions & { beforeId?: number } = {}): BerthEvent[] {
    const before = opts.beforeId ?? Number.MAX_SAFE_INTEGER;
    const limit = clampLimit(opts.limit);
    const rows = (app === null ? this.descAll.all(before, limit) : this.descApp.all(app, before, limit)) as EventRow[];
    return rows.map(toEvent);
  }

  /**
   * The newest event of `app` of one of `types`, among the app's newest `lookback` events
   * (null if none). SQLite looks through them, so a list of apps does not build
   * `lookback` event objects per app (docs/benchmarks.md, "History").
   */
  newestOfTypes(app: string, types: readonly string[], lookback: number): BerthEvent | null {
    const row = this.newestTyped.get(app, clampLimit(lookback), JSON.stringify(types)) as EventRow | undefined;
    return row ? toEvent(row) : null;
  }

  /** The app's events of `type` about `revision`, oldest first, among its newest `lookback` events. */
  ofTypeAndRevision(app: string, type: string, revision: number, lookback: number): BerthEvent[] {
    return (this.typedOfRevision.all(app, clampLimit(lookback), type, revision) as EventRow[]).map(toEvent);
  }

  /** The newest event id (0 when none): where a live stream that wants no backlog starts. */
  latestEventId(app: string | null = null): number {
    return (app === null ? this.maxAll.get() : this.maxApp.get(app)) as number;
  }

  /**
   * Live events of this process, delivered synchronously right after their
   * transaction commits. Returns the unsubscribe function. To stream without a
   * gap: subscribe first, then read the backlog with listEvents, then drop live
   * events whose id is not above the last backlog id.
   */
  subscribe(listener: EventListener): () => void {
    return this.ctx.subscribe(listener);
  }
}
