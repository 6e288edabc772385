/**
 * PostgreSQL for tests: a new, empty database per test. Until the bed's own PostgreSQL lands
 * (branch pgbed, which replaces this file with the same interface), the dev instance on this
 * machine: postgres://postgres@127.0.0.1:55999/ (trust, superuser).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import pg from 'pg';

const SERVER = 'postgres://postgres@127.0.0.1:55999/';

export interface FreshDatabase {
  name: string;
  url: string;
  /** Drops it, ending any connection still open to it; a second call does nothing. */
  drop(): Promise<void>;
}

/** The server accepts connections (checked synchronously, so that it can decide a `skip`). */
export function postgresAvailable(): boolean {
  const { hostname, port } = new URL(SERVER);
  const probe = `require('node:net').connect(${Number(port)}, ${JSON.stringify(hostname)}).on('connect', () => process.exit(0)).on('error', () => process.exit(1)).setTimeout(1000, () => process.exit(1));`;
  return spawnSync(process.execPath, ['-e', probe], { stdio: 'ignore', timeout: 5_000 }).status === 0;
}

async function onServer(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: new URL('postgres', SERVER).href, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** A new, empty database `berth_t_<label>_<random>`. */
export async function freshDatabase(label = 'db'): Promise<FreshDatabase> {
  const tag = label.toLowerCase().replace(/[^a-z0-9_]+/g, '_').slice(0, 24);
  const name = `berth_t_${tag}_${randomBytes(6).toString('hex')}`;
  await onServer(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  let dropped = false;
  return {
    name,
    url: new URL(name, SERVER).href,
    async drop() {
      if (dropped) return;
      await onServer(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
      dropped = true;
    },
  };
}
