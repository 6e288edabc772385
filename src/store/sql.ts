/**
 * The seam between the repositories and a database engine. The repositories hold
 * their SQL and call these; SQLite (better-sqlite3, sqlite.ts) and PostgreSQL
 * (postgres/database.ts) implement them. Every call is synchronous on both engines,
 * so a transaction's function can never span an await (docs/design.md, "The store"),
 * but for `allAsync`: a bulk read outside any transaction.
 *
 * Parameters are written `?` (positional) or `@name` (one object argument), as
 * better-sqlite3 takes them; the PostgreSQL side rewrites them to `$n` once per statement.
 */
export type Engine = 'sqlite' | 'postgres';

export interface SqlStatement {
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  run(...params: unknown[]): { changes: number };
  /** From now on `get`/`all` return each row's first column only. */
  pluck(): SqlStatement;
}

/** SQL that differs between the engines (JSON functions, planner hints). */
export interface DialectSql {
  sqlite: string;
  postgres: string;
}

/**
 * How much a write transaction's commit waits for. `durable`: on disk before the call
 * returns (the user's requests). `observed`: what the controller saw and would see again
 * (status, records, step events): atomic, but may be lost to a power cut (SQLite
 * `synchronous=NORMAL`, PostgreSQL `synchronous_commit=off`).
 */
export type Durability = 'durable' | 'observed';

export interface SqlDatabase {
  readonly engine: Engine;
  prepare(sql: string | DialectSql): SqlStatement;
  /**
   * Runs `fn` in ONE write transaction, serialised with every other writer of the
   * database, in this process or another, before it reads what it is about to change
   * (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory lock).
   * `fn` must be synchronous. A throw rolls it back.
   */
  writeTransaction<T>(fn: () => T, durability: Durability): T;
  /**
   * `statement.all(...params)` outside any transaction, without holding the event loop for
   * the round trip where a statement is one (PostgreSQL, on a connection of its own, so that
   * no synchronous statement waits behind it); SQLite reads in the next turn of the loop. For bulk reads whose
   * rows may be a moment old (a resync's).
   */
  allAsync(statement: SqlStatement, ...params: unknown[]): Promise<unknown[]>;
  /** The schema version the migrations brought the database to. */
  schemaVersion(): number;
  /** The database answers a query (readiness). */
  ping(): boolean;
  readonly isOpen: boolean;
  close(): void;
}

/** The statement's SQL for `engine`. */
export function sqlFor(sql: string | DialectSql, engine: Engine): string {
  return typeof sql === 'string' ? sql : sql[engine];
}
