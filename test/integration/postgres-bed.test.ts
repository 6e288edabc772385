/**
 * The test bed's PostgreSQL (test/hosts/postgres, started by testbed up) and its fixture:
 * freshDatabase gives each test an empty database of its own that drop() removes, the server
 * runs with the durability settings of a real one, and berth logs in on 127.0.0.1 and on the
 * bridge address with its password only.
 *
 * Without postgres.json the suite is skipped, unless BERTH_TESTBED_REQUIRED=1 (then it fails).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Client, type DatabaseError } from 'pg';
import { freshDatabase, postgresSkipReason, requirePostgres, withDatabase } from '../support/postgres.js';

const skip = postgresSkipReason();

async function withClient<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

const code = (want: string) => (e: unknown) => (e as DatabaseError).code === want;

describe('PostgreSQL of the test bed', { skip }, () => {
  test('two fresh databases: what is written in one is read back from it, the other stays empty; drop removes both', async () => {
    const pg = requirePostgres();
    const a = await freshDatabase('bed a');
    const b = await freshDatabase('bed a');
    try {
      assert.notEqual(a.name, b.name);
      assert.match(a.name, /^berth_test_bed_a_\d+_[0-9a-f]{8}$/);
      await withClient(a.url, async (c) => {
        await c.query('CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)');
        await c.query("INSERT INTO items VALUES (1, 'one'), (2, 'two')");
      });
      // a new connection: the rows were committed, not just seen by the session that wrote them
      const rows = await withClient(a.url, async (c) => (await c.query('SELECT id, v FROM items ORDER BY id')).rows);
      assert.deepEqual(rows, [
        { id: 1, v: 'one' },
        { id: 2, v: 'two' },
      ]);
      await withClient(b.url, async (c) => {
        const res = await c.query("SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'");
        assert.equal(res.rows[0].n, 0);
        await assert.rejects(c.query('SELECT * FROM items'), code('42P01')); // undefined_table
      });
      // both belong to berth, which can therefore create and drop in them
      const owners = await withClient(pg.url, async (c) =>
        (await c.query('SELECT datname, pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = ANY($1) ORDER BY datname', [[a.name, b.name]])).rows,
      );
      assert.deepEqual(owners, [a.name, b.name].sort().map((datname) => ({ datname, owner: pg.user })));
    } finally {
      await a.drop();
      await b.drop();
    }
    const left = await withClient(pg.url, async (c) => (await c.query('SELECT datname FROM pg_database WHERE datname = ANY($1)', [[a.name, b.name]])).rows);
    assert.deepEqual(left, []);
    await assert.rejects(withClient(a.url, async () => undefined), code('3D000')); // invalid_catalog_name
    await a.drop(); // a second drop does nothing
  });

  test('drop ends a connection the test left open', async () => {
    const db = await freshDatabase('left open');
    const c = new Client({ connectionString: db.url });
    const ended = new Promise<unknown>((resolve) => c.on('error', resolve));
    await c.connect();
    try {
      await c.query('SELECT 1');
      await db.drop();
      const err = await Promise.race([ended, delay(5000, 'no error within 5 s', { ref: false })]);
      assert.equal((err as DatabaseError).code, '57P01', String(err)); // admin_shutdown: DROP ... WITH (FORCE) ended it
    } finally {
      await c.end().catch(() => undefined);
      await db.drop().catch(() => undefined); // when the drop above failed; a no-op after one that worked
    }
  });

  test('durability settings are the defaults of a real server: fsync, synchronous_commit, full_page_writes on', async () => {
    const pg = requirePostgres();
    const settings = await withClient(pg.url, async (c) =>
      Object.fromEntries(
        (await c.query("SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'server_version_num')")).rows.map(
          (r: { name: string; setting: string }) => [r.name, r.setting],
        ),
      ),
    );
    assert.equal(settings.fsync, 'on');
    assert.equal(settings.synchronous_commit, 'on');
    assert.equal(settings.full_page_writes, 'on');
    assert.equal(Math.floor(Number(settings.server_version_num) / 10000), 15);
  });

  test('berth logs in on 127.0.0.1 and on the bridge address, with its password only, and is no superuser', async () => {
    const pg = requirePostgres();
    for (const [url, host] of [
      [pg.url, pg.host],
      [pg.bridgeUrl, pg.bridgeHost],
    ] as const) {
      const row = await withClient(url, async (c) =>
        (await c.query('SELECT host(inet_server_addr()) AS addr, current_user AS who, rolsuper FROM pg_roles WHERE rolname = current_user')).rows[0],
      );
      assert.deepEqual(row, { addr: host, who: pg.user, rolsuper: false });
    }
    const wrong = new URL(pg.url);
    wrong.password = `${pg.password}x`;
    await assert.rejects(withClient(wrong.toString(), async () => undefined), code('28P01')); // invalid_password
    // the superuser is not reachable over TCP at all (peer auth on the socket only)
    const admin = new URL(withDatabase(pg.url, 'postgres'));
    admin.username = 'postgres';
    await assert.rejects(withClient(admin.toString(), async () => undefined), code('28000')); // no pg_hba.conf entry
  });
});
