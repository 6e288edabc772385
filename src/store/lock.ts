import { hostname } from 'node:os';
import { resolve } from 'node:path';
import Database from 'better-sqlite3';
import { StoreError } from '../domain/errors.js';

/**
 * One daemon per database file (docs/design.md, "The store").
 *
 * Node has no flock(2), so the lock is SQLite's own: a tiny side database
 * `<db>.lock` (rollback-journal mode) on which the holder keeps a
 * `BEGIN IMMEDIATE` transaction open for its whole life. That is a RESERVED
 * lock, an fcntl(2) byte-range lock the kernel drops when the process dies by
 * any means (kill -9 included), so there is no stale lock to clean up. Another
 * process (or another connection in this process) gets SQLITE_BUSY at once
 * (busy timeout 0) and can still READ the side database, which is where the
 * holder publishes its pid: the holder writes its pid and commits, then takes
 * the lock again; a loser reads the committed row to say who holds the file.
 *
 * The lock itself is exact; the pid in the message is best effort (two daemons
 * started in the same millisecond may race between the commit and the re-lock,
 * which the retry loop below absorbs).
 */
export interface DbLock {
  readonly path: string;
  release(): void;
}

interface HolderRow {
  pid: number;
  host: string;
  started_at: string;
}

/** Tries at the lock: two daemons started together race between the holder's commit and its re-lock (below). */
const ATTEMPTS = 5;
/** The wait before try N is N times this: the whole loop gives up after 200 ms. */
const RETRY_STEP_MS = 20;

/** Lock files held by this process (by resolved path), to fail at once without the retry loop. */
const heldHere = new Set<string>();

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED';
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function lockedError(dbPath: string, holder: HolderRow | undefined): StoreError {
  const who =
    holder && holder.pid !== process.pid
      ? `process ${holder.pid}${holder.host !== hostname() ? ` on ${holder.host}` : ''} (since ${holder.started_at})`
      : holder && holder.pid === process.pid
        ? `this process (pid ${process.pid}), through another open store`
        : 'another process';
  return new StoreError(
    'DB_LOCKED',
    `database ${dbPath} is in use by ${who}; only one berth daemon may use a database file (lock file ${dbPath}.lock)`,
  );
}

/** Takes the exclusive lock for `dbPath` or throws StoreError DB_LOCKED immediately. */
export function acquireDbLock(dbPath: string): DbLock {
  const lockPath = `${dbPath}.lock`;
  const key = resolve(lockPath);
  if (heldHere.has(key)) {
    throw lockedError(dbPath, { pid: process.pid, host: hostname(), started_at: '' });
  }
  let db: Database.Database;
  try {
    db = new Database(lockPath, { timeout: 0 });
  } catch (err) {
    throw new StoreError('DB_LOCK_FAILED', `cannot open lock file ${lockPath}: ${(err as Error).message}`, { cause: err });
  }
  const fail = (err: unknown): never => {
    db.close();
    throw err;
  };

  let holder: HolderRow | undefined;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    if (attempt > 0) sleepSync(RETRY_STEP_MS * attempt);
    try {
      db.exec('BEGIN IMMEDIATE');
    } catch (err) {
      if (!isBusy(err)) {
        fail(
          new StoreError('DB_LOCK_FAILED', `cannot lock ${lockPath}: ${(err as Error).message}`, { cause: err }),
        );
      }
      holder = readHolder(db);
      // Our own pid can only show up here in the commit/re-lock race, or when this
      // process already holds the lock through another Store: look again shortly.
      if (holder && holder.pid !== process.pid && pidAlive(holder.pid)) break;
      continue;
    }
    // Belt and braces: a recorded holder that is still alive keeps the file, whatever
    // the kernel lock said (a clean release deletes its row; kill -9 leaves a dead pid).
    const recorded = readHolder(db);
    if (recorded && recorded.pid !== process.pid && recorded.host === hostname() && pidAlive(recorded.pid)) {
      db.exec('ROLLBACK');
      holder = recorded;
      break;
    }
    try {
      db.exec(
        'CREATE TABLE IF NOT EXISTS holder (id INTEGER PRIMARY KEY CHECK (id = 1), pid INTEGER NOT NULL, host TEXT NOT NULL, started_at TEXT NOT NULL)',
      );
      db.prepare('INSERT OR REPLACE INTO holder (id, pid, host, started_at) VALUES (1, ?, ?, ?)').run(
        process.pid,
        hostname(),
        new Date().toISOString(),
      );
      db.exec('COMMIT');
    } catch (err) {
      if (db.inTransaction) db.exec('ROLLBACK');
      fail(new StoreError('DB_LOCK_FAILED', `cannot write lock file ${lockPath}: ${(err as Error).message}`, { cause: err }));
    }
    try {
      db.exec('BEGIN IMMEDIATE');
    } catch (err) {
      if (!isBusy(err)) fail(new StoreError('DB_LOCK_FAILED', `cannot lock ${lockPath}: ${(err as Error).message}`, { cause: err }));
      holder = readHolder(db);
      if (holder && holder.pid !== process.pid && pidAlive(holder.pid)) break;
      continue;
    }
    let released = false;
    heldHere.add(key);
    return {
      path: lockPath,
      release() {
        if (released) return;
        released = true;
        heldHere.delete(key);
        try {
          if (db.inTransaction) {
            db.exec('DELETE FROM holder WHERE id = 1');
            db.exec('COMMIT');
          }
        } finally {
          db.close();
        }
      },
    };
  }
  return fail(lockedError(dbPath, holder));
}

function readHolder(db: Database.Database): HolderRow | undefined {
  try {
    return db.prepare('SELECT pid, host, started_at FROM holder WHERE id = 1').get() as HolderRow | undefined;
  } catch {
    // No table yet (the holder is creating it) or the reader is itself locked out.
    return undefined;
  }
}
