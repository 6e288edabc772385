import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import Database from 'better-sqlite3';
import { StoreError } from '../domain/errors.js';
import { createPrivateFile } from './files.js';

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
 *
 * The row is never trusted on the pid alone: after kill -9 or a reboot the recorded
 * pid may belong to any other process by the time berth starts again (and systemd
 * stops restarting a unit that keeps failing). On Linux the holder also records its
 * boot id and its start time (/proc/PID/stat field 22); a row refuses the file
 * despite the kernel lock being free only if that exact process still runs on this
 * host (belt and braces, for a kernel lock lost while its holder lives). Where that
 * cannot be checked (no /proc, a row from an older berth), the kernel lock alone
 * decides. The lock file is created 0600 (src/store/files.ts): a process that can
 * open it can hold a read lock on it and stop the holder from committing its row.
 */
export interface DbLock {
  readonly path: string;
  release(): void;
}

interface HolderRow {
  pid: number;
  host: string;
  started_at: string;
  /** Linux boot id and /proc/PID/stat start time of the holder; null if it could not read them (or is an older berth). */
  boot_id?: string | null;
  start_ticks?: number | null;
}

/** What tells a process from a later one that got the same pid. */
interface ProcessIdentity {
  bootId: string;
  startTicks: number;
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

/** The boot id and the start time (clock ticks after boot, /proc/PID/stat field 22) of `pid`; null without /proc or if it is gone. */
function processIdentity(pid: number): ProcessIdentity | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2, the command name, is in parentheses and may hold spaces and parentheses:
    // count the fields after the last ')' (field 3 is the first of them).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const startTicks = Number(fields[22 - 3]);
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return Number.isSafeInteger(startTicks) && bootId !== '' ? { bootId, startTicks } : null;
  } catch {
    return null;
  }
}

/** The process the row names, exactly (same host, boot, pid and start time), is running; false when that cannot be known. */
function recordedProcessRuns(row: HolderRow): boolean {
  if (row.pid === process.pid || row.host !== hostname() || row.boot_id == null || row.start_ticks == null) return false;
  const now = processIdentity(row.pid);
  return now !== null && now.bootId === row.boot_id && now.startTicks === row.start_ticks;
}

/**
 * For naming the holder when the kernel lock is taken: the row describes it unless
 * it is ours (the commit/re-lock race) or provably stale. A row from another host, or
 * without an identity to check, is believed if its pid is alive.
 */
function plausibleHolder(row: HolderRow | undefined): HolderRow | undefined {
  if (!row || row.pid === process.pid) return undefined;
  if (row.host !== hostname()) return row;
  if (row.boot_id != null && row.start_ticks != null && processIdentity(process.pid) !== null) {
    return recordedProcessRuns(row) ? row : undefined;
  }
  return pidAlive(row.pid) ? row : undefined;
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
    createPrivateFile(lockPath);
    db = new Database(lockPath, { timeout: 0 });
  } catch (err) {
    throw new StoreError('DB_LOCK_FAILED', `cannot open lock file ${lockPath}: ${(err as Error).message}`, { cause: err });
  }
  const fail = (err: unknown): never => {
    db.close();
    throw err;
  };

  const self = processIdentity(process.pid);
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
      // Our own pid can only show up here in the commit/re-lock race, or when this
      // process already holds the lock through another Store; a stale row, while a new
      // holder has not committed its own yet: look again shortly.
      holder = plausibleHolder(readHolder(db));
      if (holder) break;
      continue;
    }
    // Belt and braces: the exact process a row names, still running, keeps the file
    // whatever the kernel lock said (a clean release deletes its row; after kill -9 or
    // a reboot the row names a process that is gone, even if its pid is in use again).
    const recorded = readHolder(db);
    if (recorded && recordedProcessRuns(recorded)) {
      db.exec('ROLLBACK');
      holder = recorded;
      break;
    }
    try {
      // Recreated each time: a lock file an older berth wrote has no identity columns.
      db.exec('DROP TABLE IF EXISTS holder');
      db.exec(
        'CREATE TABLE holder (id INTEGER PRIMARY KEY CHECK (id = 1), pid INTEGER NOT NULL, host TEXT NOT NULL, started_at TEXT NOT NULL, boot_id TEXT, start_ticks INTEGER)',
      );
      db.prepare('INSERT INTO holder (id, pid, host, started_at, boot_id, start_ticks) VALUES (1, ?, ?, ?, ?, ?)').run(
        process.pid,
        hostname(),
        new Date().toISOString(),
        self?.bootId ?? null,
        self?.startTicks ?? null,
      );
      db.exec('COMMIT');
    } catch (err) {
      if (db.inTransaction) db.exec('ROLLBACK');
      // A reader of the row (a daemon being refused) holds a shared lock for a moment: try again.
      if (isBusy(err)) continue;
      fail(new StoreError('DB_LOCK_FAILED', `cannot write lock file ${lockPath}: ${(err as Error).message}`, { cause: err }));
    }
    try {
      db.exec('BEGIN IMMEDIATE');
    } catch (err) {
      if (!isBusy(err)) fail(new StoreError('DB_LOCK_FAILED', `cannot lock ${lockPath}: ${(err as Error).message}`, { cause: err }));
      holder = plausibleHolder(readHolder(db));
      if (holder) break;
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
    // (SELECT *: a row an older berth wrote has no boot_id / start_ticks.)
    return db.prepare('SELECT * FROM holder WHERE id = 1').get() as HolderRow | undefined;
  } catch {
    // No table yet (the holder is creating it) or the reader is itself locked out.
    return undefined;
  }
}
