import { dirname, join, resolve } from 'node:path';

/** Where berth looks when BERTH_CONFIG / BERTH_DB are not set (relative to the working directory). */
export const DEFAULTS = { config: 'deploy/berth.yml', db: 'data/berth.db', url: 'http://127.0.0.1:7373' } as const;

/**
 * The file berth's local files (token, secrets, registry passwords) live next to: the SQLite
 * database, or with PostgreSQL (BERTH_DB=postgres://…) `berth.db`'s place in BERTH_DATA_DIR
 * (default `data`), since each daemon of a shared database keeps its own copy of them.
 */
export function localStatePath(env: Record<string, string | undefined>): string {
  const db = env.BERTH_DB || DEFAULTS.db;
  return isPostgresUrl(db) ? join(env.BERTH_DATA_DIR || dirname(DEFAULTS.db), 'berth.db') : db;
}

/** Whether BERTH_DB names a PostgreSQL database rather than a SQLite file. */
export function isPostgresUrl(db: string): boolean {
  return /^postgres(ql)?:\/\//i.test(db);
}

/** The generated API token lives next to the database; daemon and CLI agree on it here. */
export function tokenFilePath(dbPath: string): string {
  return join(dirname(resolve(dbPath)), 'token');
}

/** Apps' secrets files (`<app>.env`, src/secrets/app-secrets.ts) live next to the database too. */
export function secretsDirPath(dbPath: string): string {
  return join(dirname(resolve(dbPath)), 'secrets');
}

/** Registry passwords (`registries:`, src/secrets/registry-credentials.ts): one file for the daemon, next to the database. */
export const REGISTRIES_FILE = 'registries.env';

export function registriesFilePath(dbPath: string): string {
  return join(dirname(resolve(dbPath)), REGISTRIES_FILE);
}
