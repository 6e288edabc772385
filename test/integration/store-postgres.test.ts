/**
 * The store on PostgreSQL (#15): the repositories' contract (test/support/store-contract.ts),
 * each test on a new database, then what only PostgreSQL has: its migrations, connecting
 * (errors that keep the password out), and a server that stops answering.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createServer } from 'node:net';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import { loadMigrations, openStore, type Store } from '../../src/store/index.js';
import { migratePostgres, POSTGRES_MIGRATIONS_DIR, PostgresDatabase, WRITE_LOCK } from '../../src/store/postgres/database.js';
import { freshDatabase, postgresSkipReason, type FreshDatabase } from '../support/postgres.js';
import { child, collect, killHard, waitForLine } from '../support/store-child.js';
import { spec, storeContract, storeError } from '../support/store-contract.js';

const skip = postgresSkipReason();

const databases: FreshDatabase[] = [];
async function fresh(label: string): Promise<FreshDatabase> {
  const db = await freshDatabase(label);
  databases.push(db);
  return db;
}
// Ten at a time: each DROP DATABASE waits for a checkpoint (~1 s here, one after another), and
// one checkpoint serves the drops waiting together.
after(async () => {
  for (let i = 0; i < databases.length; i += 10) await Promise.all(databases.slice(i, i + 10).map((db) => db.drop()));
});

const BRIDGE_OPTIONS = { connectTimeoutMs: 5_000, statementTimeoutMs: 5_000, applicationName: 'berth-test' };
/** The tables of berth's schema on PostgreSQL: SQLite's, the migrations' versions, and the leader lease. */
const TABLES = ['acme_accounts', 'apps', 'berth_schema', 'certificates', 'events', 'hosts_status', 'leases', 'releases', 'rollouts', 'specs', 'status'];

const tables = (s: Store) =>
  s.sql.prepare("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name").pluck().all();
const versions = (s: Store) => s.sql.prepare('SELECT version, name FROM berth_schema ORDER BY version').all();

/** The URL with another password / port. */
function withUrl(url: string, change: (u: URL) => void): string {
  const u = new URL(url);
  change(u);
  return u.href;
}

/** A port nothing listens on (as far as this machine knows a moment later). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A TCP proxy to `target`'s server on 127.0.0.1:`port` (0: any), in a process of its own: this
 * process's thread waits on every statement, so it could not forward them. To the store,
 * killing the proxy is the server going away, and starting it again on the same port is the
 * server back, without stopping a server other tests use.
 */
async function startProxy(target: string, port = 0): Promise<{ cp: ChildProcessWithoutNullStreams; url: string; port: number }> {
  const { hostname, port: targetPort } = new URL(target);
  const code = `const net = require('node:net');
    const server = net.createServer((c) => {
      const up = net.connect(${Number(targetPort || 5432)}, ${JSON.stringify(hostname)});
      c.pipe(up); up.pipe(c);
      for (const [a, b] of [[c, up], [up, c]]) { a.on('error', () => b.destroy()); a.on('close', () => b.destroy()); }
    });
    server.listen(${port}, '127.0.0.1', () => console.log('listening ' + server.address().port));`;
  const cp = spawn(process.execPath, ['-e', code], { stdio: ['pipe', 'pipe', 'pipe'] });
  const listening = Number((await waitForLine(cp, /^listening \d+$/)).split(' ')[1]);
  return { cp, port: listening, url: withUrl(target, (u) => { u.hostname = '127.0.0.1'; u.port = String(listening); }) };
}

describe('store on PostgreSQL', { skip }, () => {
  storeContract({
    engine: 'postgres',
    open: async (opts) => openStore((await fresh('contract')).url, opts),
    location: async () => (await fresh('contract')).url,
    // PostgreSQL enforces every constraint at every commit: there is nothing to find afterwards.
    checkIntegrity: () => {},
    commitDurability: (s) => (s.sql.prepare('SHOW synchronous_commit').pluck().get() === 'off' ? 'observed' : 'durable'),
  });

  describe('migrations (migrations/postgres/)', () => {
    test('a new database migrates to the newest migration, each in one step with its version row; then nothing is left to do', async () => {
      const { url } = await fresh('migrate');
      const known = loadMigrations(POSTGRES_MIGRATIONS_DIR);
      const db = PostgresDatabase.connect(url, BRIDGE_OPTIONS);
      try {
        assert.deepEqual(migratePostgres(db), { from: 0, to: known.length, applied: known.map((m) => m.file) });
        assert.deepEqual(migratePostgres(db), { from: known.length, to: known.length, applied: [] });
      } finally {
        db.close();
      }
      const s = openStore(url);
      try {
        assert.equal(s.schemaVersion, known.length);
        assert.deepEqual(tables(s), TABLES);
        assert.deepEqual(versions(s), known.map((m) => ({ version: m.version, name: m.file })));
      } finally {
        s.close();
      }
    });

    test('three daemons opening a new database at once migrate it once', async () => {
      const { url } = await fresh('migrate_race');
      // The write lock, held here until the three wait for it: then each of them finds the
      // database at version 0 before any has migrated it, and they migrate one after another.
      const lockHolder = new pg.Client({ connectionString: url });
      await lockHolder.connect();
      await lockHolder.query('BEGIN');
      await lockHolder.query('SELECT pg_advisory_xact_lock($1)', [WRITE_LOCK]);
      // Each imports the store, says ready, and opens on "go".
      const procs = [1, 2, 3].map(() =>
        child(
          `console.log('ready');
           await new Promise((r) => process.stdin.once('data', r));
           try { const s = store.openStore(env.DB); console.log('version ' + s.schemaVersion); s.close(); }
           catch (e) { console.log(e.code + ': ' + e.message); process.exitCode = 3; }`,
          { DB: url },
        ),
      );
      await Promise.all(procs.map((p) => waitForLine(p, /^ready$/)));
      const done = procs.map((p) => collect(p));
      // (Ended, not just written: an open stdin would keep the child alive.)
      for (const p of procs) p.stdin.end('go\n');
      const waiting = "SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()";
      const deadline = Date.now() + 20_000;
      while ((await lockHolder.query<{ n: number }>(waiting)).rows[0]!.n < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await lockHolder.query('COMMIT');
      await lockHolder.end();
      const known = loadMigrations(POSTGRES_MIGRATIONS_DIR);
      for (const r of await Promise.all(done)) {
        assert.equal(r.code, 0, `stdout: ${r.stdout}; stderr: ${r.stderr}`);
        assert.match(r.stdout, new RegExp(`^version ${known.length}$`, 'm'));
      }
      const s = openStore(url);
      try {
        assert.deepEqual(versions(s), known.map((m) => ({ version: m.version, name: m.file })), 'one row per migration');
        assert.deepEqual(tables(s), TABLES);
      } finally {
        s.close();
      }
    });

    test('every column holding an app\'s name compares as apps.name does ("C"): joins on the name read the other tables by their indexes', async () => {
      const { url } = await fresh('collation');
      openStore(url).close();
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        const collations = await c.query<{ col: string; collation: string | null }>(
          `SELECT table_name || '.' || column_name AS col, collation_name AS collation FROM information_schema.columns
           WHERE table_schema = 'public' AND (table_name, column_name) IN (('apps', 'name'), ('releases', 'app'), ('status', 'app'), ('rollouts', 'app'), ('events', 'app'))
           ORDER BY 1`,
        );
        assert.deepEqual(
          collations.rows,
          ['apps.name', 'events.app', 'releases.app', 'rollouts.app', 'status.app'].map((col) => ({ col, collation: 'C' })),
        );
        // With sequential scans off, a join whose collations differ can still only scan: the plan says which.
        await c.query('SET enable_seqscan = off');
        const plan = await c.query<{ 'QUERY PLAN': string }>(
          `EXPLAIN SELECT a.name, r.revision, ro.state FROM apps a
           JOIN releases r ON r.app = a.name JOIN rollouts ro ON ro.app = a.name WHERE a.name >= 'app-5' ORDER BY a.name LIMIT 128`,
        );
        const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
        assert.doesNotMatch(text, /Seq Scan on (releases|rollouts)/, text);
      } finally {
        await c.end();
      }
    });

    test('DB_TOO_NEW: a schema newer than this berth is refused, and the refused open leaves no connection behind', async () => {
      const { url, name } = await fresh('too_new');
      const s = openStore(url);
      s.sql.prepare("INSERT INTO berth_schema (version, name) VALUES (99, '0099_future.sql')").run();
      s.close();
      const known = loadMigrations(POSTGRES_MIGRATIONS_DIR).length;
      assert.throws(
        () => openStore(url),
        storeError('DB_TOO_NEW', `database schema version 99 is newer than this berth (knows up to ${known}); upgrade berth`),
      );
      // Asked from another database: the refused open's session is gone.
      const watcher = openStore((await fresh('watcher')).url);
      try {
        const sessions = watcher.sql.prepare('SELECT count(*) FROM pg_stat_activity WHERE datname = ?').pluck();
        const deadline = Date.now() + 2_000;
        while (sessions.get(name) !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        assert.equal(sessions.get(name), 0);
      } finally {
        watcher.close();
      }
    });
  });

  describe('connecting', () => {
    test('the password is never in store.path, nor in what the database says of itself', async () => {
      const { url } = await fresh('path');
      // The bed's URL has a password; a server that trusts the connection ignores this one.
      const password = new URL(url).password || 'Not-Checked-By-Trust-4b1d';
      const s = openStore(withUrl(url, (u) => (u.password = password)));
      try {
        for (const shown of [s.path, String(s.sql)]) {
          assert.equal(shown.includes(password), false, shown);
          assert.match(shown, /:\*\*\*@/, 'the password replaced');
        }
        assert.equal(new URL(s.path).pathname, new URL(url).pathname, 'names the database');
      } finally {
        s.close();
      }
    });


    test('a wrong password, port or role: DB_OPEN_FAILED at once, its message without the password', async (t) => {
      const { url } = await fresh('auth');
      const secret = 'Not-The-Password-7f3a';
      const port = String(await closedPort());
      const cases: Array<[string, string]> = [
        ['a port nothing listens on', withUrl(url, (u) => { u.password = secret; u.port = port; })],
        ['a role that does not exist', withUrl(url, (u) => { u.username = 'berth_no_such_role'; u.password = secret; })],
      ];
      // A server that trusts the connection (the dev instance) takes any password.
      if (new URL(url).password) cases.push(['a wrong password', withUrl(url, (u) => (u.password = secret))]);
      else t.diagnostic('no wrong-password case: the server asks for no password');
      for (const [what, bad] of cases) {
        const t0 = performance.now();
        assert.throws(
          () => openStore(bad),
          (err: unknown) => {
            storeError('DB_OPEN_FAILED')(err);
            const all = `${(err as Error).stack}\n${String((err as Error).cause)}`;
            assert.equal(all.includes(secret), false, `${what}: ${all}`);
            assert.match((err as Error).message, /\*\*\*/, `${what}: the URL is named, its password replaced`);
            return true;
          },
          what,
        );
        assert.ok(performance.now() - t0 < 6_000, `${what}: fails within the connect timeout`);
      }
    });
  });

  describe('reads the daemon awaits (allAsync: a resync\'s bulk reads)', () => {
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

    test('the event loop runs while PostgreSQL works; on a connection of its own, so no synchronous statement waits behind it', async () => {
      const { url } = await fresh('async');
      const s = openStore(url);
      try {
        s.apps.upsertApp(spec('web'), 'a');
        const slow = s.sql.prepare('SELECT pg_sleep(0.3) AS slept, name FROM apps');
        let ticks = 0;
        const timer = setInterval(() => (ticks += 1), 10);
        const rows = (await s.sql.allAsync(slow)) as Array<{ name: string }>;
        clearInterval(timer);
        assert.deepEqual(
          rows.map((r) => r.name),
          ['web'],
        );
        assert.ok(ticks >= 10, `a 10 ms timer fired ${ticks} times during a 300 ms read`);
        assert.deepEqual(await s.sql.allAsync(s.sql.prepare('SELECT name FROM apps').pluck()), ['web'], 'plucked');
        // A synchronous statement sent after it does not wait for it (on one connection it waited 300 ms).
        const pending = s.sql.allAsync(slow);
        const t0 = performance.now();
        s.apps.upsertApp(spec('api'), 'a');
        assert.equal(s.apps.getApp('web')?.name, 'web');
        assert.ok(performance.now() - t0 < 150, `the synchronous write and read answered after ${Math.round(performance.now() - t0)} ms`);
        assert.equal((await pending).length, 1, 'the read began before the write committed');
        assert.deepEqual(await s.sql.allAsync(s.sql.prepare('SELECT name FROM apps ORDER BY name').pluck()), ['api', 'web'], 'a read asked for after a commit sees it');
      } finally {
        s.close();
      }
    });

    test("the reads' connection lost (the daemon's still up): that read fails with DB_UNAVAILABLE, the next opens another", async () => {
      const { url } = await fresh('async_lost');
      const s = openStore(url);
      try {
        s.apps.upsertApp(spec('web'), 'a');
        const names = s.sql.prepare('SELECT name FROM apps').pluck();
        assert.deepEqual(await s.sql.allAsync(names), ['web']);
        const reading = assert.rejects(s.sql.allAsync(s.sql.prepare('SELECT pg_sleep(3)')), storeError('DB_UNAVAILABLE'));
        await sleep(200);
        // (From the daemon's own connection: every other backend of this database is the reads'.)
        const ended = s.sql
          .prepare('SELECT count(*) AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()) t')
          .pluck()
          .get() as number;
        assert.equal(ended, 1, "one other connection: the reads'");
        await reading;
        assert.equal(s.apps.getApp('web')?.name, 'web', "the daemon's connection is untouched");
        assert.deepEqual(await s.sql.allAsync(names), ['web'], 'the next read opens a connection of its own again');
      } finally {
        s.close();
      }
    });

    test('the server going away mid-read, or gone, or the store closed: DB_UNAVAILABLE, never a hang', async () => {
      const { url } = await fresh('async_gone');
      const proxy = await startProxy(url);
      const s = openStore(proxy.url);
      try {
        // (Checked from the start: it may fail before killHard returns.)
        const inFlight = assert.rejects(s.sql.allAsync(s.sql.prepare('SELECT pg_sleep(3)')), storeError('DB_UNAVAILABLE'));
        await sleep(200);
        const t0 = performance.now();
        await killHard(proxy.cp);
        await inFlight;
        assert.ok(performance.now() - t0 < 2_000, 'mid-read: fails when the connection does');
        await assert.rejects(s.sql.allAsync(s.sql.prepare('SELECT 1')), storeError('DB_UNAVAILABLE'), 'gone');
      } finally {
        s.close();
      }
      const closed = openStore(url);
      const pending = closed.sql.allAsync(closed.sql.prepare('SELECT pg_sleep(3)'));
      closed.close();
      await assert.rejects(pending, storeError('DB_UNAVAILABLE'), 'closed');
    });
  });

  describe('the server going away', () => {
    test('a statement while PostgreSQL is down fails with DB_UNAVAILABLE at once, not a hang; once it is back the store works again', async () => {
      const { url } = await fresh('stopped');
      let proxy = await startProxy(url);
      const s = openStore(proxy.url);
      try {
        s.apps.upsertApp(spec('web'), 'a');
        await killHard(proxy.cp);
        // The connection it had is gone, and a new one is refused.
        for (const attempt of ['first', 'second']) {
          const t0 = performance.now();
          assert.throws(() => s.apps.upsertApp(spec('api'), 'a'), storeError('DB_UNAVAILABLE'), `${attempt} write`);
          assert.throws(() => s.apps.getApp('web'), storeError('DB_UNAVAILABLE'), `${attempt} read`);
          assert.ok(performance.now() - t0 < 2_000, `${attempt}: fails at once`);
        }
        assert.equal(s.ping(), false);
        proxy = await startProxy(url, proxy.port);
        // The worker reconnects in the background (every 500 ms): ready again within a second or so.
        const back = performance.now();
        while (!s.ping() && performance.now() - back < 5_000) await new Promise((r) => setTimeout(r, 50));
        assert.equal(s.ping(), true, 'ready again once the server answers');
        console.log(`# ready again ${Math.round(performance.now() - back)} ms after the server came back`);
        assert.equal(s.apps.upsertApp(spec('api'), 'a').change, 'created');
        assert.deepEqual(s.apps.listApps().map((a) => a.name), ['api', 'web'], 'what failed was not written');
      } finally {
        s.close();
        await killHard(proxy.cp);
      }
    });
  });
});
