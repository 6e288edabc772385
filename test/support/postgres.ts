/**
 * The test bed's PostgreSQL 15 server (`postgres.json`, written by test/hosts/postgres up,
 * which testbed up runs): listening on 127.0.0.1:5499 and on the bridge address
 * 10.77.0.1:5499, role `berth` (not a superuser, CREATEDB) with a password new at every `up`.
 *
 *   describe('...', { skip: postgresSkipReason() }, () => {
 *     test('...', async () => {
 *       const db = await freshDatabase('leases');   // an empty database of berth's own
 *       try { ... BERTH_DB = db.url ... } finally { await db.drop(); }
 *     });
 *   });
 *
 * Every test gets a database of its own (freshDatabase), never the `berth` database itself.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, escapeIdentifier } from 'pg';
import { testbedDir, testbedRequired } from './testbed.js';

export interface PostgresBed {
  /** The directory postgres.json was read from (the testbed dir). */
  dir: string;
  /** `postgres://berth:PASSWORD@127.0.0.1:5499/berth`. */
  url: string;
  /** The same on the bridge address (`10.77.0.1`): what a daemon in a host's namespace reaches. */
  bridgeUrl: string;
  host: string;
  bridgeHost: string;
  port: number;
  /** The server's unix socket directory (`.s.PGSQL.5499` in it). */
  socketDir: string;
  user: string;
  password: string;
  /** The role's own database (the URL's); tests use freshDatabase. */
  database: string;
  /** The server's log (initdb's output, then the server's). */
  log: string;
}

/** A database made for one test: empty, owned by the bed's role. */
export interface FreshDatabase {
  name: string;
  /** Its URL on 127.0.0.1. */
  url: string;
  /** Its URL on the bridge address. */
  bridgeUrl: string;
  /** Drops it, ending any connection still open to it; a second call does nothing. */
  drop(): Promise<void>;
}

export function postgresBedFile(dir = testbedDir()): string {
  return join(dir, 'postgres.json');
}

function str(raw: Record<string, unknown>, key: string, file: string): string {
  const v = raw[key];
  if (typeof v !== 'string' || v === '') throw new Error(`${file}: ${key} must be a non-empty string`);
  return v;
}

/** Parses postgres.json; throws when it is malformed, returns null when absent. */
export function readPostgresBed(dir = testbedDir()): PostgresBed | null {
  const file = postgresBedFile(dir);
  if (!existsSync(file)) return null;
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  if (typeof raw.port !== 'number') throw new Error(`${file}: port must be a number`);
  return {
    dir,
    url: str(raw, 'url', file),
    bridgeUrl: str(raw, 'bridgeUrl', file),
    host: str(raw, 'host', file),
    bridgeHost: str(raw, 'bridgeHost', file),
    port: raw.port,
    socketDir: str(raw, 'socketDir', file),
    user: str(raw, 'user', file),
    password: str(raw, 'password', file),
    database: str(raw, 'database', file),
    log: str(raw, 'log', file),
  };
}

/** The bed's PostgreSQL is up (`postgres down` removes postgres.json; `postgres stop` keeps it). */
export function postgresAvailable(dir = testbedDir()): boolean {
  return existsSync(postgresBedFile(dir));
}

/**
 * Why PostgreSQL tests cannot run (a `skip` value for node:test), or false when they can. Like
 * testbed.ts's bedSkipReason: with BERTH_TESTBED_REQUIRED=1 a missing server is not a skip,
 * and requirePostgres then fails the test.
 */
export function postgresSkipReason(dir = testbedDir()): string | false {
  if (postgresAvailable(dir)) return false;
  if (testbedRequired()) return false;
  return `no PostgreSQL on the test bed (${postgresBedFile(dir)} missing); run test/hosts/testbed up (or testbed pg-up), or set BERTH_TESTBED_REQUIRED=1 to make this a failure`;
}

/** The bed's PostgreSQL, or a thrown error saying it is not up (inside a test that was not skipped). */
export function requirePostgres(dir = testbedDir()): PostgresBed {
  const bed = readPostgresBed(dir);
  if (!bed) throw new Error(`the test bed's PostgreSQL is not up: ${postgresBedFile(dir)} is missing (test/hosts/testbed pg-up)`);
  return bed;
}

/** `url` with its database replaced. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

/** Runs `fn` on a connection as the bed's role to its own database, closed afterwards. */
async function asRole<T>(bed: PostgresBed, fn: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: bed.url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * A new, empty database owned by the bed's role, named `berth_test_<label>_<pid>_<random>`
 * (at most 63 characters, PostgreSQL's limit): tests running at once never share one.
 * `label` says which test made it (letters, digits and `_` kept, lower-cased).
 */
export async function freshDatabase(label = 'db', bed = requirePostgres()): Promise<FreshDatabase> {
  const tag = label.toLowerCase().replace(/[^a-z0-9_]+/g, '_').slice(0, 24) || 'db';
  const name = `berth_test_${tag}_${process.pid}_${randomBytes(4).toString('hex')}`;
  await asRole(bed, (c) => c.query(`CREATE DATABASE ${escapeIdentifier(name)} OWNER ${escapeIdentifier(bed.user)}`));
  let dropped = false;
  return {
    name,
    url: withDatabase(bed.url, name),
    bridgeUrl: withDatabase(bed.bridgeUrl, name),
    async drop() {
      if (dropped) return;
      // FORCE: a connection the test left open (a daemon killed mid-way) would block the drop.
      // An autovacuum worker on the database is a backend the bed's role may not terminate
      // (PostgreSQL 15: 42501, "must be a member of the role whose process is being
      // terminated"; CI33): it is done within moments, so the drop is tried again.
      for (let attempt = 1; ; attempt += 1) {
        try {
          await asRole(bed, (c) => c.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(name)} WITH (FORCE)`));
          break;
        } catch (err) {
          if ((err as { code?: string }).code !== '42501' || attempt >= 40) throw err;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
      dropped = true;
    },
  };
}
