import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { BerthError, StoreError } from '../domain/errors.js';
import { createPrivateFile, ensurePrivateDir, octal, tightenFile } from './files.js';
import { acquireDbLock, type DbLock } from './lock.js';
import { migrate } from './migrate.js';
import { isPostgresUrl } from '../defaults.js';
import { redactUrl } from './postgres/bridge.js';
import { migratePostgres, PostgresDatabase } from './postgres/database.js';
import { SqliteDatabase } from './sqlite.js';
import { Store, type StoreOptions } from './store.js';

export interface OpenStoreOptions extends StoreOptions {
  /** Directory of NNNN_name.sql files; defaults to the repository's `migrations/`. */
  migrationsDir?: string;
  /**
   * Take the one-daemon-per-file lock (default true). Only tools that share a
   * database with a running daemon on purpose (tests, offline inspection) turn
   * it off. Ignored for `:memory:`.
   */
  lock?: boolean;
  /** Busy timeout for the write lock between processes, ms (default DEFAULT_BUSY_TIMEOUT_MS, 5 s). */
  busyTimeoutMs?: number;
  /**
   * Where a warning about the data directory or the files' permissions goes (default:
   * a process warning). The open goes on after a warning.
   */
  onWarning?: (message: string) => void;
}

const defaultWarning = (message: string): void => {
  process.emitWarning(message);
};

export const MEMORY = ':memory:';

/** How long a write waits for another process's write lock: longer than any of berth's transactions take. */
const DEFAULT_BUSY_TIMEOUT_MS = 5_000;

/**
 * Opens (creating it and its parent directory if needed) the berth database at
 * `path`, locks it for this process, applies the pragmas berth relies on
 * (WAL, synchronous=FULL so an acknowledged commit survives a crash or power
 * loss, foreign keys, busy timeout) and migrates it.
 *
 * Permissions (src/store/files.ts): a directory it creates is 0700; the database,
 * its -wal/-shm/-journal and the lock file are 0600 (created so, or set so if an
 * older berth left them looser: reported through `onWarning`). A directory that
 * already existed is left as it is, with a warning if others can get into it.
 *
 * Throws StoreError: DB_LOCKED (another daemon has it), DB_TOO_NEW (schema newer
 * than this berth), MIGRATION_FAILED, DB_OPEN_FAILED.
 */
export function openStore(path: string, opts: OpenStoreOptions = {}): Store {
  if (isPostgresUrl(path)) return openPostgresStore(path, opts);
  const memory = path === MEMORY;
  const busyTimeoutMs = opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  let lock: DbLock | null = null;
  let db: Database.Database | null = null;
  try {
    if (!memory) {
      const warn = opts.onWarning ?? defaultWarning;
      const dir = dirname(path);
      let looseDir: number | null;
      try {
        looseDir = ensurePrivateDir(dir);
      } catch (err) {
        throw new StoreError('DB_OPEN_FAILED', `cannot create the directory of ${path}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      if (looseDir !== null) {
        warn(
          `berth store: the data directory ${dir} is ${octal(looseDir)}: other users can list it` +
            `${looseDir & 0o022 ? ' and replace or delete the files in it' : ''}. berth creates its data directory 0700 ` +
            `but does not change a directory it did not create (it may be shared); if it is berth's alone, chmod 700 ${dir}`,
        );
      }
      // berth's own files: the lock file's before the lock is taken, the database's once it is ours.
      const loosened: string[] = [];
      const tighten = (file: string) => {
        try {
          const was = tightenFile(file);
          if (was !== null) loosened.push(`${file} (${octal(was)})`);
        } catch (err) {
          // (Not fatal: e.g. a file another user owns; it worked before berth tightened modes.)
          warn(`berth store: cannot set ${file} to 0600: ${(err as Error).message}`);
        }
      };
      if (opts.lock !== false) {
        tighten(`${path}.lock`);
        tighten(`${path}.lock-journal`);
        lock = acquireDbLock(path); // creates the lock file 0600
      }
      try {
        createPrivateFile(path);
      } catch (err) {
        throw new StoreError('DB_OPEN_FAILED', `cannot create database ${path}: ${(err as Error).message}`, { cause: err });
      }
      for (const file of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) tighten(file);
      if (loosened.length > 0) {
        warn(`berth store: ${loosened.join(', ')} were open to other users; set to 0600`);
      }
    }
    try {
      db = new Database(path, { timeout: busyTimeoutMs });
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (!memory && mode !== 'wal') {
        throw new Error(`journal_mode is ${String(mode)}, expected wal (is the file on a filesystem without shared memory?)`);
      }
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.pragma(`busy_timeout = ${Math.max(0, Math.trunc(busyTimeoutMs))}`);
    } catch (err) {
      throw new StoreError('DB_OPEN_FAILED', `cannot open database ${path}: ${(err as Error).message}`, { cause: err });
    }
    migrate(db, { ...(opts.migrationsDir !== undefined ? { dir: opts.migrationsDir } : {}) });
    return new Store(new SqliteDatabase(db), path, lock, {
      ...(opts.clock ? { clock: opts.clock } : {}),
      ...(opts.onListenerError ? { onListenerError: opts.onListenerError } : {}),
      ...(opts.onInvalidRollout ? { onInvalidRollout: opts.onInvalidRollout } : {}),
    });
  } catch (err) {
    try {
      // (TypeScript narrows `db` to null in this catch; it may have been assigned in the try.)
      (db as Database.Database | null)?.close();
    } finally {
      lock?.release();
    }
    if (err instanceof BerthError) throw err;
    throw new StoreError('DB_OPEN_FAILED', `cannot open database ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * How long connecting to PostgreSQL may take, and any one statement. berth's statements take
 * milliseconds; the daemon's thread waits on each (bridge.ts), so a database that stops
 * answering stalls it once for the statement timeout plus a second, then calls fail at once
 * until it answers again.
 */
const POSTGRES_CONNECT_TIMEOUT_MS = 5_000;
const POSTGRES_STATEMENT_TIMEOUT_MS = 2_000;

/**
 * `openStore` for a `postgres://` URL: connects, migrates (migrations/postgres/) and
 * returns the same Store. No file lock: several daemons share the database on purpose
 * and one of them leads (src/cluster/lease.ts). Throws StoreError like `openStore`.
 */
function openPostgresStore(url: string, opts: OpenStoreOptions): Store {
  const db = PostgresDatabase.connect(url, {
    connectTimeoutMs: POSTGRES_CONNECT_TIMEOUT_MS,
    statementTimeoutMs: opts.busyTimeoutMs ?? POSTGRES_STATEMENT_TIMEOUT_MS,
    applicationName: 'berth',
  });
  try {
    migratePostgres(db, ...(opts.migrationsDir !== undefined ? [join(opts.migrationsDir, 'postgres')] : []));
    return new Store(db, redactUrl(url), null, {
      ...(opts.clock ? { clock: opts.clock } : {}),
      ...(opts.onListenerError ? { onListenerError: opts.onListenerError } : {}),
      ...(opts.onInvalidRollout ? { onInvalidRollout: opts.onInvalidRollout } : {}),
    });
  } catch (err) {
    db.close();
    if (err instanceof BerthError) throw err;
    throw new StoreError('DB_OPEN_FAILED', `cannot open PostgreSQL ${redactUrl(url)}: ${(err as Error).message}`, { cause: err });
  }
}
