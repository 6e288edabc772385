import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { BerthError, StoreError } from '../domain/errors.js';
import { acquireDbLock, type DbLock } from './lock.js';
import { migrate } from './migrate.js';
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
}

export const MEMORY = ':memory:';

/** How long a write waits for another process's write lock: longer than any of berth's transactions take. */
const DEFAULT_BUSY_TIMEOUT_MS = 5_000;

/**
 * Opens (creating it and its parent directory if needed) the berth database at
 * `path`, locks it for this process, applies the pragmas berth relies on
 * (WAL, synchronous=FULL so an acknowledged commit survives a crash or power
 * loss, foreign keys, busy timeout) and migrates it.
 *
 * Throws StoreError: DB_LOCKED (another daemon has it), DB_TOO_NEW (schema newer
 * than this berth), MIGRATION_FAILED, DB_OPEN_FAILED.
 */
export function openStore(path: string, opts: OpenStoreOptions = {}): Store {
  const memory = path === MEMORY;
  const busyTimeoutMs = opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  let lock: DbLock | null = null;
  let db: Database.Database | null = null;
  try {
    if (!memory) {
      try {
        mkdirSync(dirname(path), { recursive: true });
      } catch (err) {
        throw new StoreError('DB_OPEN_FAILED', `cannot create the directory of ${path}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      if (opts.lock !== false) lock = acquireDbLock(path);
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
    return new Store(db, path, lock, {
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
