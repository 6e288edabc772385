import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type Database from 'better-sqlite3';
import { StoreError } from '../domain/errors.js';
import { textDigest } from './json.js';

/**
 * Schema migrations: plain SQL files `migrations/NNNN_name.sql`, numbered 1, 2, 3...
 * without gaps, tracked by `PRAGMA user_version` (docs/design.md, "The store").
 *
 * Each file is applied in ONE immediate transaction together with its
 * `PRAGMA user_version = N` bump, so a crash or an error leaves the database at
 * the previous version, never half-migrated. A file must therefore not contain
 * BEGIN/COMMIT nor statements that cannot run in a transaction.
 *
 * A migration that rebuilds a table another table references (SQLite's 12-step
 * ALTER) needs foreign keys off, which SQLite only allows outside a transaction:
 * put the line `-- berth:foreign-keys=off` in the file, and it runs with foreign
 * keys off and a `PRAGMA foreign_key_check` before commit (a violation aborts it).
 *
 * SQL functions a migration may call besides SQLite's own: `berth_sha256(text)`, the
 * store's key of a spec (textDigest in src/store/json.ts), so rows a migration
 * writes match the ones the store writes.
 */

/** `migrations/` at the repository root: two levels above both src/store/ (tsx) and dist/store/ (tsc). */
export const DEFAULT_MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

export interface Migration {
  version: number;
  name: string;
  file: string;
  sql: string;
}

export interface MigrateResult {
  from: number;
  to: number;
  /** File names applied by this call, in order. */
  applied: string[];
}

const FILE_PATTERN = /^(\d{4})_([A-Za-z0-9_-]+)\.sql$/;
const FOREIGN_KEYS_OFF = /^\s*--\s*berth:foreign-keys=off\s*$/m;

export function loadMigrations(dir: string = DEFAULT_MIGRATIONS_DIR): Migration[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw new StoreError('MIGRATIONS_MISSING', `cannot read the migrations directory ${dir}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const migrations: Migration[] = [];
  for (const file of names) {
    if (!file.endsWith('.sql')) continue;
    const m = FILE_PATTERN.exec(file);
    if (!m) {
      throw new StoreError('MIGRATIONS_INVALID', `migration file ${join(dir, file)} is not named NNNN_name.sql`);
    }
    migrations.push({ version: Number(m[1]), name: m[2] ?? '', file, sql: readFileSync(join(dir, file), 'utf8') });
  }
  migrations.sort((a, b) => a.version - b.version);
  migrations.forEach((mig, i) => {
    if (mig.version !== i + 1) {
      const clash = migrations.find((o) => o !== mig && o.version === mig.version);
      throw new StoreError(
        'MIGRATIONS_INVALID',
        clash
          ? `migrations ${clash.file} and ${mig.file} in ${dir} have the same number`
          : `migrations in ${dir} must be numbered 1, 2, 3... without gaps: expected ${String(i + 1).padStart(4, '0')}_*.sql, found ${mig.file}`,
      );
    }
  });
  return migrations;
}

export function schemaVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

export function tooNew(current: number, known: number): StoreError {
  return new StoreError(
    'DB_TOO_NEW',
    `database schema version ${current} is newer than this berth (knows up to ${known}); upgrade berth`,
  );
}

/**
 * Brings `db` up to the newest migration in `dir`. Refuses (StoreError DB_TOO_NEW)
 * a database whose schema is newer than the newest migration. Safe against a
 * concurrent migrator: each step re-reads the version inside its transaction.
 */
export function migrate(db: Database.Database, opts: { dir?: string } = {}): MigrateResult {
  const migrations = loadMigrations(opts.dir);
  const known = migrations.length;
  const from = schemaVersion(db);
  if (from > known) throw tooNew(from, known);

  if (from < known) db.function('berth_sha256', { deterministic: true }, (text: unknown) => textDigest(String(text)));
  const applied: string[] = [];
  for (const mig of migrations) {
    if (mig.version <= from) continue;
    const fkOff = FOREIGN_KEYS_OFF.test(mig.sql);
    const fkWasOn = db.pragma('foreign_keys', { simple: true }) === 1;
    if (fkOff && fkWasOn) db.pragma('foreign_keys = OFF');
    try {
      const step = db.transaction(() => {
        const current = schemaVersion(db);
        if (current >= mig.version) {
          if (current > known) throw tooNew(current, known);
          return false; // another process got here first
        }
        if (current !== mig.version - 1) {
          throw new StoreError('MIGRATION_FAILED', `cannot apply ${mig.file}: database is at version ${current}`);
        }
        try {
          db.exec(mig.sql);
        } catch (err) {
          throw new StoreError('MIGRATION_FAILED', `migration ${mig.file} failed: ${(err as Error).message}`, { cause: err });
        }
        if (fkOff) {
          const violations = db.pragma('foreign_key_check') as unknown[];
          if (violations.length > 0) {
            throw new StoreError(
              'MIGRATION_FAILED',
              `migration ${mig.file} leaves ${violations.length} foreign key violation(s): ${JSON.stringify(violations.slice(0, 3))}`,
            );
          }
        }
        // user_version lives in the database header page: transactional, committed with the schema change.
        db.pragma(`user_version = ${mig.version}`);
        return true;
      });
      if (step.immediate()) applied.push(mig.file);
    } finally {
      if (fkOff && fkWasOn) db.pragma('foreign_keys = ON');
    }
  }
  return { from, to: schemaVersion(db), applied };
}
