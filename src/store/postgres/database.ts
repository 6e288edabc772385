import { join } from 'node:path';
import { StoreError } from '../../domain/errors.js';
import { DEFAULT_MIGRATIONS_DIR, loadMigrations, tooNew } from '../migrate.js';
import { sqlFor, type DialectSql, type Durability, type SqlDatabase, type SqlStatement } from '../sql.js';
import { PostgresBridge, PostgresQueryError, redactUrl, type BridgeOptions } from './bridge.js';

/** PostgreSQL's migrations: `migrations/postgres/NNNN_name.sql`, numbered on their own. */
export const POSTGRES_MIGRATIONS_DIR = join(DEFAULT_MIGRATIONS_DIR, 'postgres');

/**
 * The one advisory lock every write transaction takes first: writers serialise as they do
 * on SQLite's BEGIN IMMEDIATE, in every daemon sharing the database, so a revision read
 * and the insert that follows it cannot interleave with another writer's.
 */
export const WRITE_LOCK = 0x62657274; // "bert"

/**
 * `?` and `@name` parameters (as better-sqlite3 takes them) rewritten to `$n`, outside
 * quoted strings and identifiers. `names` lists the named parameters in `$n` order.
 */
export function numberParameters(sql: string): { text: string; names: string[] | null; positional: number } {
  let out = '';
  let positional = 0;
  const names: string[] = [];
  for (let i = 0; i < sql.length; i++) {
    const ch = sql[i]!;
    if (ch === "'" || ch === '"') {
      const end = sql.indexOf(ch, i + 1);
      const stop = end < 0 ? sql.length : end + 1;
      out += sql.slice(i, stop);
      i = stop - 1;
    } else if (ch === '?') {
      out += `$${++positional}`;
    } else if (ch === '@' && /[A-Za-z_]/.test(sql[i + 1] ?? '')) {
      const name = /^[A-Za-z_]\w*/.exec(sql.slice(i + 1))![0];
      let index = names.indexOf(name);
      if (index < 0) index = names.push(name) - 1;
      out += `$${index + 1}`;
      i += name.length;
    } else {
      out += ch;
    }
  }
  if (positional > 0 && names.length > 0) throw new Error(`statement mixes ? and @name parameters: ${sql}`);
  return { text: out, names: names.length > 0 ? names : null, positional };
}

let statementCounter = 0;

class PostgresStatement implements SqlStatement {
  private readonly text: string;
  private readonly names: string[] | null;
  private readonly name = `berth_${++statementCounter}`;
  private plucked = false;

  constructor(
    private readonly bridge: PostgresBridge,
    sql: string,
  ) {
    const numbered = numberParameters(sql);
    this.text = numbered.text;
    this.names = numbered.names;
  }

  private values(params: unknown[]): unknown[] {
    if (!this.names) return params.map(toParameter);
    const named = (params[0] ?? {}) as Record<string, unknown>;
    return this.names.map((n) => toParameter(named[n]));
  }

  private exec(params: unknown[]) {
    return this.bridge.query(this.text, this.values(params), this.options());
  }

  private options() {
    return { name: this.name, ...(this.plucked ? { rowMode: 'array' as const } : {}) };
  }

  private rowsOf(rows: unknown[]): unknown[] {
    return this.plucked ? rows.map((r) => (r as unknown[])[0]) : rows;
  }

  get(...params: unknown[]): unknown {
    const row = this.exec(params).rows[0];
    return this.plucked ? (row as unknown[] | undefined)?.[0] : row;
  }

  all(...params: unknown[]): unknown[] {
    return this.rowsOf(this.exec(params).rows);
  }

  async allAsync(params: unknown[]): Promise<unknown[]> {
    return this.rowsOf((await this.bridge.queryAsync(this.text, this.values(params), this.options())).rows);
  }

  run(...params: unknown[]): { changes: number } {
    return { changes: this.exec(params).rowCount };
  }

  pluck(): SqlStatement {
    this.plucked = true;
    return this;
  }
}

/** better-sqlite3 takes booleans as 0/1 only where berth passes numbers; undefined binds as NULL on both. */
const toParameter = (v: unknown): unknown => (v === undefined ? null : v);

/** PostgreSQL behind the store's seam (sql.ts), over the synchronous bridge. */
export class PostgresDatabase implements SqlDatabase {
  readonly engine = 'postgres' as const;
  private open = true;

  constructor(
    readonly bridge: PostgresBridge,
    readonly url: string,
  ) {}

  static connect(url: string, opts: BridgeOptions): PostgresDatabase {
    return new PostgresDatabase(PostgresBridge.open(url, opts), url);
  }

  prepare(sql: string | DialectSql): SqlStatement {
    return new PostgresStatement(this.bridge, sqlFor(sql, 'postgres'));
  }

  writeTransaction<T>(fn: () => T, durability: Durability): T {
    const sync = durability === 'observed' ? 'SET LOCAL synchronous_commit = off; ' : '';
    let result: T;
    try {
      // One round trip opens it: BEGIN, the commit's durability, the write lock. When the lock
      // is not granted in time (lock_timeout) the transaction is open, and aborted: the ROLLBACK
      // below ends it, else every later statement of the connection would fail.
      this.bridge.query(`BEGIN; ${sync}SELECT pg_advisory_xact_lock(${WRITE_LOCK})`, undefined, { begin: true });
      result = fn();
      // As better-sqlite3 refuses it: what `fn` does after its first await would run outside the transaction.
      if (typeof (result as { then?: unknown } | null)?.then === 'function') throw new TypeError('Transaction function cannot return a promise');
    } catch (err) {
      try {
        this.bridge.query('ROLLBACK');
      } catch {
        // (The connection is gone: PostgreSQL rolled the transaction back itself.)
      }
      throw err;
    }
    this.bridge.query('COMMIT');
    return result;
  }

  allAsync(statement: SqlStatement, ...params: unknown[]): Promise<unknown[]> {
    // (Every statement of this database is one of its own: prepare() made it.)
    return (statement as PostgresStatement).allAsync(params);
  }

  schemaVersion(): number {
    return Number(this.bridge.query('SELECT coalesce(max(version), 0) AS v FROM berth_schema').rows.map((r) => (r as { v: number }).v)[0] ?? 0);
  }

  ping(): boolean {
    if (!this.open) return false;
    try {
      return this.bridge.query('SELECT 1 AS one', undefined, { timeoutMs: 2_000 }).rowCount === 1;
    } catch {
      return false;
    }
  }

  get isOpen(): boolean {
    return this.open;
  }

  close(): void {
    if (!this.open) return;
    this.open = false;
    this.bridge.close();
  }

  toString(): string {
    return redactUrl(this.url);
  }
}

/**
 * Brings the database up to the newest file in `dir`, each file in one transaction with
 * its version row, under the write lock (two daemons starting together migrate once).
 * Refuses (DB_TOO_NEW) a schema newer than this berth.
 */
export function migratePostgres(db: PostgresDatabase, dir: string = POSTGRES_MIGRATIONS_DIR): { from: number; to: number; applied: string[] } {
  const migrations = loadMigrations(dir);
  const bridge = db.bridge;
  db.writeTransaction(() => {
    bridge.query('CREATE TABLE IF NOT EXISTS berth_schema (version BIGINT NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())');
  }, 'durable');
  const from = db.schemaVersion();
  if (from > migrations.length) throw tooNew(from, migrations.length);
  const applied: string[] = [];
  for (const mig of migrations) {
    if (mig.version <= from) continue;
    db.writeTransaction(() => {
      const current = db.schemaVersion();
      if (current >= mig.version) return; // another daemon got here first
      try {
        bridge.query(mig.sql);
      } catch (err) {
        throw new StoreError('MIGRATION_FAILED', `migration postgres/${mig.file} failed: ${(err as Error).message}`, { cause: err });
      }
      bridge.query('INSERT INTO berth_schema (version, name) VALUES ($1, $2)', [mig.version, mig.file]);
      applied.push(mig.file);
    }, 'durable');
  }
  return { from, to: db.schemaVersion(), applied };
}

export { PostgresQueryError };
