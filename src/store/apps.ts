import type { SqlStatement } from './sql.js';
import type { AppSpec, ProxyRouteSpec, RoutedApp } from '../domain/app-spec.js';
import { NotFoundError } from '../domain/errors.js';
import type { StoreContext } from './context.js';
import type { EventsRepo } from './events.js';
import { canonicalJson, parseJson } from './json.js';
import { DEFAULT_APPS_LIMIT, MAX_APPS_LIMIT, PAGE_SPEC_BYTES, clampLimit } from './limits.js';
import type { PageOptions, StoredApp, UpsertAppResult } from './types.js';

interface AppRow {
  name: string;
  spec: string;
  paused: number;
  maintenance: string | null;
  deleting_since: string | null;
  created_at: string;
  updated_at: string;
}

function toApp(r: AppRow): StoredApp {
  return {
    name: r.name,
    spec: parseJson<AppSpec>(r.spec, `spec of app ${r.name}`),
    paused: r.paused === 1,
    maintenance: r.maintenance,
    deletingSince: r.deleting_since,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

export class AppsRepo {
  /** Apps' stamps read at a time (readAppStamps). */
  static readonly STAMPS_PAGE = 2_000;
  private readonly get: SqlStatement;
  private readonly all: SqlStatement;
  private readonly stamps: SqlStatement;
  private readonly page: SqlStatement;
  private readonly routed: SqlStatement;
  private readonly insert: SqlStatement;
  private readonly updateSpec: SqlStatement;
  private readonly updatePaused: SqlStatement;
  private readonly updateMaintenance: SqlStatement;
  private readonly updateDeleting: SqlStatement;
  private readonly remove: SqlStatement;

  constructor(
    private readonly ctx: StoreContext,
    private readonly events: EventsRepo,
  ) {
    const db = ctx.sql;
    const cols = 'name, spec, paused, maintenance, deleting_since, created_at, updated_at';
    this.get = db.prepare(`SELECT ${cols} FROM apps WHERE name = ?`);
    this.all = db.prepare(`SELECT ${cols} FROM apps ORDER BY name`);
    this.stamps = db.prepare(`SELECT name, updated_at FROM apps WHERE name > ? ORDER BY name LIMIT ${AppsRepo.STAMPS_PAGE}`);
    this.page = db.prepare(`SELECT ${cols} FROM apps WHERE name > ? ORDER BY name LIMIT ?`);
    // SQLite reads the two fields out of each spec: parsing every whole spec (some are hundreds
    // of KB) in JavaScript made a PUT at 1,000 apps cost 15-60 ms (docs/benchmarks.md, "History").
    // An app with processes routes through the one process that has a proxy, on that process's hosts (domain/processes.ts, routedApp).
    const serving = `(SELECT p.value FROM json_each(spec, '$.processes') p WHERE json_extract(p.value, '$.proxy') IS NOT NULL LIMIT 1)`;
    // (PostgreSQL: a JSON null is not SQL NULL; at most one process has a proxy, so jsonb's key order does not matter.)
    const pgServing = `(SELECT p.value FROM jsonb_each(spec::jsonb -> 'processes') p WHERE NULLIF(p.value -> 'proxy', 'null') IS NOT NULL LIMIT 1)`;
    this.routed = db.prepare({
      sqlite: `SELECT name, COALESCE(json_extract(${serving}, '$.hosts'), json_extract(spec, '$.hosts')) AS hosts,
              COALESCE(json_extract(spec, '$.proxy'), json_extract(${serving}, '$.proxy')) AS proxy, deleting_since
       FROM apps WHERE proxy IS NOT NULL ORDER BY name`,
      postgres: `SELECT name, hosts, proxy, deleting_since FROM (
         SELECT name, COALESCE(${pgServing} -> 'hosts', spec::jsonb -> 'hosts')::text AS hosts,
                COALESCE(NULLIF(spec::jsonb -> 'proxy', 'null'), NULLIF(${pgServing} -> 'proxy', 'null'))::text AS proxy, deleting_since
         FROM apps) AS routed
       WHERE proxy IS NOT NULL ORDER BY name`,
    });
    this.insert = db.prepare(
      `INSERT INTO apps (name, spec, paused, created_at, updated_at) VALUES (?, ?, 0, ?, ?) RETURNING ${cols}`,
    );
    this.updateSpec = db.prepare(`UPDATE apps SET spec = ?, updated_at = ? WHERE name = ? RETURNING ${cols}`);
    this.updatePaused = db.prepare(`UPDATE apps SET paused = ?, updated_at = ? WHERE name = ? RETURNING ${cols}`);
    this.updateMaintenance = db.prepare(`UPDATE apps SET maintenance = ?, updated_at = ? WHERE name = ? RETURNING ${cols}`);
    this.updateDeleting = db.prepare(`UPDATE apps SET deleting_since = ?, updated_at = ? WHERE name = ? RETURNING ${cols}`);
    this.remove = db.prepare('DELETE FROM apps WHERE name = ?');
  }

  /**
   * Creates or replaces the desired spec of `spec.name`, recording an event
   * (AppCreated / AppUpdated). An equal spec writes nothing (`change: 'unchanged'`),
   * so reloading the config at every start does not flood the audit log.
   */
  upsertApp(spec: AppSpec, actor: string): UpsertAppResult {
    const json = canonicalJson(spec);
    return this.ctx.write(() => {
      const now = this.ctx.now();
      const existing = this.get.get(spec.name) as AppRow | undefined;
      if (!existing) {
        const row = this.insert.get(spec.name, json, now, now) as AppRow;
        this.events.appendEvent({
          app: spec.name,
          type: 'AppCreated',
          message: `app ${spec.name} created (image ${spec.image}, hosts ${spec.hosts.join(', ')})`,
          actor,
        });
        return { app: toApp(row), change: 'created' };
      }
      if (canonicalJson(JSON.parse(existing.spec)) === json) return { app: toApp(existing), change: 'unchanged' };
      const row = this.updateSpec.get(json, now, spec.name) as AppRow;
      this.events.appendEvent({
        app: spec.name,
        type: 'AppUpdated',
        message: `app ${spec.name} spec updated (image ${spec.image}, hosts ${spec.hosts.join(', ')})`,
        actor,
      });
      return { app: toApp(row), change: 'updated' };
    });
  }

  getApp(name: string): StoredApp | null {
    const row = this.get.get(name) as AppRow | undefined;
    return row ? toApp(row) : null;
  }

  listApps(): StoredApp[] {
    return (this.all.all() as AppRow[]).map(toApp);
  }

  /**
   * Every app's name and when its record last changed, without its spec: what changed since a
   * look (the controller's). Read a page at a time without holding the event loop: one read of
   * 10,000 held it 20-30 ms on PostgreSQL, and on SQLite, read at once, 10-15 ms (bench/scale-10k.ts).
   * The pages are read one after the other, not in one transaction: an app written meanwhile
   * may show either stamp, which a look at what changed allows (the write's event says so too).
   */
  async readAppStamps(): Promise<AppStamp[]> {
    const out: AppStamp[] = [];
    for (let after = ''; ; ) {
      const page = (await this.ctx.sql.allAsync(this.stamps, after)) as Array<{ name: string; updated_at: string }>;
      for (const r of page) out.push({ name: r.name, updatedAt: r.updated_at });
      if (page.length < AppsRepo.STAMPS_PAGE) return out;
      after = page[page.length - 1]!.name;
    }
  }

  /**
   * Apps by name after `after` (exclusive), at most `limit` (default DEFAULT_APPS_LIMIT,
   * at most MAX_APPS_LIMIT), fewer once their specs reach PAGE_SPEC_BYTES (at least one).
   * `next`: the name to pass as `after` for the rest, null when there is no more.
   */
  pageApps(opts: PageOptions & { after?: string } = {}): { apps: StoredApp[]; next: string | null } {
    const limit = clampLimit(opts.limit, DEFAULT_APPS_LIMIT, MAX_APPS_LIMIT);
    const apps: StoredApp[] = [];
    let bytes = 0;
    let more = false;
    for (const row of this.page.all(opts.after ?? '', limit + 1) as AppRow[]) {
      if (apps.length === limit || bytes >= PAGE_SPEC_BYTES) {
        more = true;
        break;
      }
      apps.push(toApp(row));
      bytes += row.spec.length;
    }
    return { apps, next: more ? apps[apps.length - 1]!.name : null };
  }

  /** Every stored app with a proxy route: its name, hosts and route (route checks), without the rest of its spec. */
  listRoutes(): Array<RoutedApp & { deleting: boolean }> {
    return (this.routed.all() as Array<{ name: string; hosts: string; proxy: string; deleting_since: string | null }>).map((r) => ({
      name: r.name,
      deleting: r.deleting_since !== null,
      hosts: parseJson<string[]>(r.hosts, `hosts of app ${r.name}`),
      proxy: parseJson<ProxyRouteSpec>(r.proxy, `proxy route of app ${r.name}`),
    }));
  }

  /** Every stored app's proxy route on `host` (what the host's proxy should route); an app being deleted has none. */
  proxyRoutesOn(host: string): Array<{ app: string; route: ProxyRouteSpec }> {
    return this.listRoutes().flatMap((a) => (a.proxy && a.hosts.includes(host) && !a.deleting ? [{ app: a.name, route: a.proxy }] : []));
  }

  /** Pause/resume an app's rollouts; records AppPaused/AppResumed when it changes. NotFoundError if no such app. */
  setPaused(name: string, paused: boolean, actor: string): StoredApp {
    return this.ctx.write(() => {
      const existing = this.get.get(name) as AppRow | undefined;
      if (!existing) throw new NotFoundError(`app ${name}`);
      if ((existing.paused === 1) === paused) return toApp(existing);
      const row = this.updatePaused.get(paused ? 1 : 0, this.ctx.now(), name) as AppRow;
      this.events.appendEvent({
        app: name,
        type: paused ? 'AppPaused' : 'AppResumed',
        message: `app ${name} ${paused ? 'paused' : 'resumed'}`,
        actor,
      });
      return toApp(row);
    });
  }

  /**
   * Maintenance mode (a message: the proxies answer 503 with it) or live (null);
   * records AppMaintenance/AppLive when it changes. NotFoundError if no such app.
   */
  setMaintenance(name: string, message: string | null, actor: string): StoredApp {
    return this.ctx.write(() => {
      const existing = this.get.get(name) as AppRow | undefined;
      if (!existing) throw new NotFoundError(`app ${name}`);
      if (existing.maintenance === message) return toApp(existing);
      const row = this.updateMaintenance.get(message, this.ctx.now(), name) as AppRow;
      this.events.appendEvent({
        app: name,
        type: message === null ? 'AppLive' : 'AppMaintenance',
        message: message === null ? `app ${name} is live again` : `app ${name} in maintenance: ${message}`,
        actor,
      });
      return toApp(row);
    });
  }

  /**
   * Marks the app for deletion (AppDeleting event): the controller then takes its routes
   * off the proxies, removes its containers and finally deletes the record (deleteApp).
   * Asking again changes nothing. NotFoundError if no such app.
   */
  markDeleting(name: string, actor: string): StoredApp {
    return this.ctx.write(() => {
      const existing = this.get.get(name) as AppRow | undefined;
      if (!existing) throw new NotFoundError(`app ${name}`);
      if (existing.deleting_since) return toApp(existing);
      const now = this.ctx.now();
      const row = this.updateDeleting.get(now, now, name) as AppRow;
      this.events.appendEvent({
        app: name,
        type: 'AppDeleting',
        message: `app ${name} is being deleted: its routes are drained and its containers removed on ${parseJson<AppSpec>(existing.spec, `spec of app ${name}`).hosts.join(', ')}`,
        actor,
      });
      return toApp(row);
    });
  }

  /**
   * Deletes an app with its releases, status and rollout record (ON DELETE
   * CASCADE); its events stay (audit) and an AppDeleted event is added.
   * Returns false when there was no such app.
   */
  deleteApp(name: string, actor: string): boolean {
    return this.ctx.write(() => {
      if (this.remove.run(name).changes === 0) return false;
      this.events.appendEvent({ app: name, type: 'AppDeleted', message: `app ${name} deleted`, actor });
      return true;
    });
  }
}

/** An app's name and when its record last changed (placements.ts). */
export interface AppStamp {
  name: string;
  updatedAt: string;
}

