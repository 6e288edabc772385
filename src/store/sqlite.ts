import { setImmediate as nextTurn } from 'node:timers/promises';
import type Database from 'better-sqlite3';
import { schemaVersion } from './migrate.js';
import { sqlFor, type DialectSql, type Durability, type SqlDatabase, type SqlStatement } from './sql.js';

/** better-sqlite3 behind the store's seam (sql.ts): its statements are used as they are. */
export class SqliteDatabase implements SqlDatabase {
  readonly engine = 'sqlite' as const;
  private readonly runInTx: Database.Transaction<(fn: () => unknown) => unknown>;
  private readonly pingStmt: Database.Statement;

  constructor(readonly raw: Database.Database) {
    this.runInTx = raw.transaction((fn: () => unknown) => fn());
    this.pingStmt = raw.prepare('SELECT 1').pluck();
  }

  prepare(sql: string | DialectSql): SqlStatement {
    return this.raw.prepare(sqlFor(sql, 'sqlite'));
  }

  writeTransaction<T>(fn: () => T, durability: Durability): T {
    // In WAL mode a NORMAL commit is atomic and survives a crash of berth; the next FULL commit's fsync makes it durable too.
    if (durability === 'durable') return this.runInTx.immediate(fn) as T;
    this.raw.pragma('synchronous = NORMAL');
    try {
      return this.runInTx.immediate(fn) as T;
    } finally {
      this.raw.pragma('synchronous = FULL');
    }
  }

  /** In a turn of the loop of its own: the caller's turn does not also hold the read (a page of a bulk read takes a few ms). */
  async allAsync(statement: SqlStatement, ...params: unknown[]): Promise<unknown[]> {
    await nextTurn();
    return statement.all(...params);
  }

  schemaVersion(): number {
    return schemaVersion(this.raw);
  }

  ping(): boolean {
    try {
      return this.raw.open && this.pingStmt.get() === 1;
    } catch {
      return false;
    }
  }

  get isOpen(): boolean {
    return this.raw.open;
  }

  close(): void {
    // Closing the last connection checkpoints the WAL into the main file and removes it.
    if (this.raw.open) this.raw.close();
  }
}
