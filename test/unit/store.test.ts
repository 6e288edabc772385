import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { DEFAULT_MIGRATIONS_DIR, loadMigrations, migrate, openStore, schemaVersion, type Store } from '../../src/store/index.js';
import { child, collect, killHard, waitForLine } from '../support/store-child.js';
import { spec, storeContract, storeError } from '../support/store-contract.js';

const tmpDirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'berth-store-test-'));
  tmpDirs.push(d);
  return d;
}
after(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

/** A raw database at schema `version`, migrated by the repository's own first `version` migrations. */
function databaseAt(version: number, file: string): Database.Database {
  const dir = tempDir();
  for (const m of loadMigrations().slice(0, version)) copyFileSync(join(DEFAULT_MIGRATIONS_DIR, m.file), join(dir, m.file));
  const db = new Database(file);
  db.pragma('foreign_keys = ON');
  migrate(db, { dir });
  assert.equal(schemaVersion(db), version);
  return db;
}

// The repositories' contract (test/support/store-contract.ts), on SQLite: each test on a new
// database in memory, or a file for those several stores or processes share.
const SYNCHRONOUS: Record<number, 'observed' | 'durable'> = { 1: 'observed', 2: 'durable' }; // NORMAL, FULL
storeContract({
  engine: 'sqlite',
  open: async (opts) => openStore(':memory:', opts),
  location: async () => join(tempDir(), 'berth.db'),
  checkIntegrity(s) {
    assert.equal(s.db.pragma('integrity_check', { simple: true }), 'ok');
    assert.deepEqual(s.db.pragma('foreign_key_check'), []);
  },
  commitDurability: (s) => SYNCHRONOUS[s.db.pragma('synchronous', { simple: true }) as number] ?? assert.fail('synchronous is neither NORMAL nor FULL'),
});

// ---- migrations ------------------------------------------------------------

describe('migrations', () => {
  test('from an empty database: the real migrations, in one go, then nothing to do', () => {
    const db = new Database(':memory:');
    const r = migrate(db);
    assert.equal(r.from, 0);
    assert.ok(r.to >= 1);
    assert.equal(r.applied[0], '0001_init.sql');
    assert.equal(schemaVersion(db), r.to);
    const tables = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
      .pluck()
      .all();
    assert.deepEqual(tables, ['acme_accounts', 'apps', 'certificates', 'events', 'hosts_status', 'releases', 'rollouts', 'specs', 'status']);
    assert.deepEqual(migrate(db).applied, []);
    db.close();
  });

  test('the token id earlier berths appended to actors ("alice (token 1a2b3c4d)") is removed from events and releases', () => {
    const file = join(tempDir(), 'old-actors.db');
    const old = databaseAt(2, file);
    old.prepare("INSERT INTO apps (name, spec, created_at, updated_at) VALUES ('web', ?, 't0', 't0')").run(JSON.stringify(spec('web')));
    old.prepare("INSERT INTO releases VALUES ('web', 1, 'v1', ?, 'deploy', 'bob (token deadbeef)', 't1')").run(JSON.stringify(spec('web')));
    const event = old.prepare("INSERT INTO events (app, type, message, actor, created_at) VALUES ('web', 'Note', 'm', ?, 't')");
    for (const actor of ['alice (token 1a2b3c4d)', 'bob (token deadbeef)', 'controller', null]) event.run(actor);
    old.close();
    const s = openStore(file);
    assert.deepEqual(
      s.events.listEvents('web').map((e) => e.actor),
      ['alice', 'bob', 'controller', null],
    );
    assert.equal(s.releases.getRelease('web', 1)?.actor, 'bob');
    const raw = JSON.stringify(snapshot(s));
    assert.equal(/token [0-9a-f]{8}/.test(raw), false, raw);
    s.close();
  });

  test('the default directory is the repository migrations/', () => {
    assert.ok(existsSync(join(DEFAULT_MIGRATIONS_DIR, '0001_init.sql')));
  });

  test('from each older version: applies only the missing ones, each with its version bump', () => {
    const dir = tempDir();
    const file = join(tempDir(), 'm.db');
    writeFileSync(join(dir, '0001_one.sql'), 'CREATE TABLE t1 (x INTEGER);');
    const db = new Database(file);
    assert.deepEqual(migrate(db, { dir }), { from: 0, to: 1, applied: ['0001_one.sql'] });
    db.prepare('INSERT INTO t1 VALUES (42)').run();

    writeFileSync(join(dir, '0002_two.sql'), 'CREATE TABLE t2 (y TEXT);\nALTER TABLE t1 ADD COLUMN z TEXT;');
    writeFileSync(join(dir, '0003_three.sql'), "INSERT INTO t2 VALUES ('three');");
    assert.deepEqual(migrate(db, { dir }), { from: 1, to: 3, applied: ['0002_two.sql', '0003_three.sql'] });
    assert.equal(db.prepare('SELECT x FROM t1').pluck().get(), 42);
    assert.equal(db.prepare('SELECT y FROM t2').pluck().get(), 'three');

    // From version 2 only 0003 runs (0003 is not idempotent: running it twice would insert twice).
    db.pragma('user_version = 2');
    db.prepare('DELETE FROM t2').run();
    assert.deepEqual(migrate(db, { dir }), { from: 2, to: 3, applied: ['0003_three.sql'] });
    assert.equal(db.prepare('SELECT count(*) FROM t2').pluck().get(), 1);
    db.close();
  });

  test('a failing migration leaves the previous version and nothing of itself', () => {
    const dir = tempDir();
    writeFileSync(join(dir, '0001_one.sql'), 'CREATE TABLE t1 (x INTEGER);');
    writeFileSync(join(dir, '0002_bad.sql'), 'CREATE TABLE t2 (y TEXT);\nINSERT INTO no_such_table VALUES (1);');
    const db = new Database(':memory:');
    assert.throws(() => migrate(db, { dir }), storeError('MIGRATION_FAILED', /0002_bad\.sql failed: no such table: no_such_table/));
    assert.equal(schemaVersion(db), 1);
    assert.equal(db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 't2'").pluck().get(), 0);
    db.close();
  });

  test('badly numbered migration directories are refused', () => {
    const gap = tempDir();
    writeFileSync(join(gap, '0001_a.sql'), 'SELECT 1;');
    writeFileSync(join(gap, '0003_c.sql'), 'SELECT 1;');
    assert.throws(() => migrate(new Database(':memory:'), { dir: gap }), storeError('MIGRATIONS_INVALID', /without gaps/));
    const dup = tempDir();
    writeFileSync(join(dup, '0001_a.sql'), 'SELECT 1;');
    writeFileSync(join(dup, '0001_b.sql'), 'SELECT 1;');
    assert.throws(() => migrate(new Database(':memory:'), { dir: dup }), storeError('MIGRATIONS_INVALID', /same number/));
    const badName = tempDir();
    writeFileSync(join(badName, '1_a.sql'), 'SELECT 1;');
    assert.throws(() => migrate(new Database(':memory:'), { dir: badName }), storeError('MIGRATIONS_INVALID', /NNNN_name/));
  });

  test('DB_TOO_NEW: a schema newer than the newest migration is refused', () => {
    const dir = tempDir();
    for (const n of ['0001_a', '0002_b', '0003_c']) writeFileSync(join(dir, `${n}.sql`), 'SELECT 1;');
    const db = new Database(':memory:');
    db.pragma('user_version = 7');
    assert.throws(
      () => migrate(db, { dir }),
      storeError('DB_TOO_NEW', 'database schema version 7 is newer than this berth (knows up to 3); upgrade berth'),
    );
    db.close();
  });

  test('openStore refuses a too-new database, and releases its lock doing so', () => {
    const file = join(tempDir(), 'new.db');
    const raw = new Database(file);
    raw.pragma('user_version = 99');
    raw.close();
    assert.throws(() => openStore(file), storeError('DB_TOO_NEW', /version 99 is newer than this berth/));
    // Not DB_LOCKED: the failed open let go of the lock.
    assert.throws(() => openStore(file), storeError('DB_TOO_NEW'));
  });

  test('berth:foreign-keys=off lets a migration rebuild a referenced table without cascading', () => {
    const dir = tempDir();
    for (const m of loadMigrations()) copyFileSync(join(DEFAULT_MIGRATIONS_DIR, m.file), join(dir, m.file));
    const next = loadMigrations().length + 1;
    const file = join(tempDir(), 'fk.db');
    const s1 = openStore(file, { migrationsDir: dir });
    s1.apps.upsertApp(spec('web'), 'test');
    s1.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'test' });
    s1.close();
    writeFileSync(
      join(dir, `${String(next).padStart(4, '0')}_rebuild_apps.sql`),
      `-- berth:foreign-keys=off
       CREATE TABLE apps_new (name TEXT NOT NULL PRIMARY KEY, spec TEXT NOT NULL, paused INTEGER NOT NULL DEFAULT 0,
         maintenance TEXT, deleting_since TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, note TEXT) STRICT;
       INSERT INTO apps_new SELECT name, spec, paused, maintenance, deleting_since, created_at, updated_at, NULL FROM apps;
       DROP TABLE apps;
       ALTER TABLE apps_new RENAME TO apps;`,
    );
    const s2 = openStore(file, { migrationsDir: dir });
    assert.equal(s2.schemaVersion, next);
    assert.equal(s2.releases.latestRelease('web')?.version, 'v1', 'dropping apps must not cascade into releases');
    assert.equal(s2.db.pragma('foreign_keys', { simple: true }), 1, 'foreign keys are back on');
    s2.close();
  });
});

// ---- open, pragmas, lock ---------------------------------------------------

describe('openStore and the one-daemon lock', () => {
  test('creates the parent directory and sets the pragmas', () => {
    const file = join(tempDir(), 'a', 'b', 'berth.db');
    const s = openStore(file);
    assert.ok(existsSync(file));
    assert.equal(s.db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(s.db.pragma('synchronous', { simple: true }), 2); // FULL
    assert.equal(s.db.pragma('foreign_keys', { simple: true }), 1);
    assert.equal(s.db.pragma('busy_timeout', { simple: true }), 5000);
    assert.ok(s.ping());
    s.close();
    assert.equal(s.ping(), false);
    s.close(); // idempotent
  });

  test('a second open in the same process fails at once; after close it works', () => {
    const file = join(tempDir(), 'berth.db');
    const s = openStore(file);
    const t0 = Date.now();
    assert.throws(() => openStore(file), storeError('DB_LOCKED', new RegExp(`database ${file} is in use by this process`)));
    assert.ok(Date.now() - t0 < 1000);
    s.close();
    openStore(file).close();
  });

  test(':memory: takes no lock', () => {
    const a = openStore(':memory:');
    const b = openStore(':memory:');
    a.close();
    b.close();
  });

  test('another process holding the file: immediate DB_LOCKED naming the file and pid; released by kill -9', async () => {
    const file = join(tempDir(), 'held.db');
    const holder = child(
      `const s = store.openStore(env.DB); s.apps.upsertApp(${JSON.stringify(spec('web'))}, 'holder');
       console.log('ready ' + process.pid); setInterval(() => {}, 1000);`,
      { DB: file },
    );
    try {
      await waitForLine(holder, /^ready /);

      // In this process.
      const t0 = Date.now();
      assert.throws(
        () => openStore(file),
        storeError('DB_LOCKED', new RegExp(`^database ${file} is in use by process ${holder.pid} .*only one berth daemon`)),
      );
      assert.ok(Date.now() - t0 < 1000, 'fails fast');

      // In another process.
      const t1 = Date.now();
      const second = await collect(
        child(
          `try { store.openStore(env.DB); console.log('OPENED'); }
           catch (e) { console.log(e.code + ': ' + e.message); process.exitCode = 3; }`,
          { DB: file },
        ),
      );
      assert.equal(second.code, 3, `exit ${second.code} ${second.signal ?? ''}; stdout: ${second.stdout}; stderr: ${second.stderr}`);
      assert.match(second.stdout, new RegExp(`^DB_LOCKED: database ${file} is in use by process ${holder.pid}`));
      assert.ok(Date.now() - t1 < 10_000);

      await killHard(holder);
      const s = openStore(file);
      assert.equal(s.apps.getApp('web')?.name, 'web');
      s.close();
    } finally {
      await killHard(holder);
    }
  });

  test('a stale lock row naming a live process that is not its writer (pid reused after kill -9 or a reboot) does not block startup', async () => {
    const other = spawn('sleep', ['60'], { stdio: 'ignore' }); // alive, and not berth
    try {
      await once(other, 'spawn');
      const pid = other.pid!;
      // As an older berth left it: pid, host and time only.
      const oldFormat = join(tempDir(), 'old.db');
      writeHolderRow(oldFormat, { pid, host: hostname() });
      openStore(oldFormat).close();
      // As this berth leaves it, with the recorded process's start time, which is not this process's.
      const wrongStart = join(tempDir(), 'reused.db');
      const real = procIdentity(pid);
      writeHolderRow(wrongStart, { pid, host: hostname(), bootId: real?.bootId ?? 'x', startTicks: (real?.startTicks ?? 1) + 12345 });
      openStore(wrongStart).close();
      // Another boot, same pid and start time: not the same process either.
      const otherBoot = join(tempDir(), 'reboot.db');
      writeHolderRow(otherBoot, { pid, host: hostname(), bootId: 'another-boot', startTicks: real?.startTicks ?? 1 });
      openStore(otherBoot).close();
    } finally {
      other.kill('SIGKILL');
    }
  });

  test('a lock row naming exactly a live process (pid, boot and start time) keeps the file even without the kernel lock', { skip: !existsSync('/proc/self/stat') && 'needs /proc' }, async () => {
    const other = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      await once(other, 'spawn');
      const pid = other.pid!;
      const file = join(tempDir(), 'exact.db');
      const id = procIdentity(pid)!;
      writeHolderRow(file, { pid, host: hostname(), bootId: id.bootId, startTicks: id.startTicks });
      assert.throws(() => openStore(file), storeError('DB_LOCKED', new RegExp(`in use by process ${pid} `)));
      const exited = once(other, 'exit');
      other.kill('SIGKILL');
      await exited;
      openStore(file).close();
    } finally {
      other.kill('SIGKILL');
    }
  });

  test('the data directory is created 0700 and the database, WAL, SHM and lock files 0600, whatever the umask', () => {
    const dir = join(tempDir(), 'data');
    const file = join(dir, 'berth.db');
    const umask = process.umask(0o022);
    try {
      const s = openStore(file);
      s.apps.upsertApp(spec('web'), 'test'); // the WAL has frames
      assert.equal(modeOf(dir), 0o700, 'data directory');
      const files = readdirSync(dir).sort();
      for (const f of ['berth.db', 'berth.db-shm', 'berth.db-wal', 'berth.db.lock']) assert.ok(files.includes(f), `${f} exists`);
      for (const f of files) assert.equal(modeOf(join(dir, f)), 0o600, f);
      s.close();
      for (const f of readdirSync(dir)) assert.equal(modeOf(join(dir, f)), 0o600, `${f} after close`);
      const again = openStore(file);
      for (const f of readdirSync(dir)) assert.equal(modeOf(join(dir, f)), 0o600, `${f} after reopening`);
      again.close();
      // Nested directories berth creates are 0700 too; the process umask is as it was.
      const nested = join(tempDir(), 'x', 'y', 'berth.db');
      openStore(nested).close();
      assert.equal(modeOf(join(nested, '..')), 0o700);
      assert.equal(modeOf(join(nested, '..', '..')), 0o700);
      assert.equal(process.umask(), 0o022, 'openStore leaves the umask alone');
    } finally {
      process.umask(umask);
    }
  });

  test('an existing data directory with looser permissions is warned about and left as it is; berth\'s own files in it are tightened to 0600', () => {
    const dir = join(tempDir(), 'data');
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    const file = join(dir, 'berth.db');
    // As an older berth left them under umask 022.
    const old = openStore(file);
    old.close();
    const raw = new Database(file);
    raw.pragma('journal_mode = WAL');
    for (const f of readdirSync(dir)) chmodSync(join(dir, f), 0o644);
    const warnings: string[] = [];
    const s = openStore(file, { onWarning: (m: string) => warnings.push(m) } as Parameters<typeof openStore>[1]);
    try {
      for (const f of readdirSync(dir)) assert.equal(modeOf(join(dir, f)), 0o600, f);
      assert.equal(modeOf(dir), 0o755, 'not chmod-ed: it is not a directory berth created');
      assert.equal(warnings.length, 2, warnings.join('\n'));
      assert.match(warnings.find((w) => w.includes('directory')) ?? '', new RegExp(`directory ${dir} .*0755.*chmod 700`));
      assert.match(warnings.find((w) => w.includes('0600')) ?? '', /berth\.db.*0644.*0600/);
    } finally {
      s.close();
      raw.close();
    }
    // A private directory: no warning.
    chmodSync(dir, 0o700);
    warnings.length = 0;
    openStore(file, { onWarning: (m: string) => warnings.push(m) } as Parameters<typeof openStore>[1]).close();
    assert.deepEqual(warnings, []);
  });
});

function snapshot(s: Store): unknown[] {
  const tables = s.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[];
  return tables.map((t) => s.db.prepare(`SELECT * FROM "${t}"`).all());
}

function modeOf(path: string): number {
  return statSync(path).mode & 0o777;
}

/** /proc/PID/stat field 22 (start time, clock ticks after boot) and the boot id, or null without /proc. */
function procIdentity(pid: number): { bootId: string; startTicks: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields 3, 4, ...
    return { bootId: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(), startTicks: Number(fields[22 - 3]) };
  } catch {
    return null;
  }
}

/** A lock file `<db>.lock` whose holder row says `row`, with no process holding the lock. */
function writeHolderRow(dbFile: string, row: { pid: number; host: string; bootId?: string; startTicks?: number }): void {
  const db = new Database(`${dbFile}.lock`);
  if (row.bootId === undefined) {
    db.exec('CREATE TABLE holder (id INTEGER PRIMARY KEY CHECK (id = 1), pid INTEGER NOT NULL, host TEXT NOT NULL, started_at TEXT NOT NULL)');
    db.prepare('INSERT INTO holder VALUES (1, ?, ?, ?)').run(row.pid, row.host, '2026-01-01T00:00:00.000Z');
  } else {
    db.exec(
      'CREATE TABLE holder (id INTEGER PRIMARY KEY CHECK (id = 1), pid INTEGER NOT NULL, host TEXT NOT NULL, started_at TEXT NOT NULL, boot_id TEXT, start_ticks INTEGER)',
    );
    db.prepare('INSERT INTO holder VALUES (1, ?, ?, ?, ?, ?)').run(row.pid, row.host, '2026-01-01T00:00:00.000Z', row.bootId, row.startTicks ?? null);
  }
  db.close();
}

// ---- history: SQLite's own migrations of it ----------------------------------

describe('history migrations', () => {
  const specRows = (s: Store) => s.sql.prepare('SELECT count(*) FROM specs').pluck().get() as number;

  test('migration 0005: releases written at schema 4 read back identical, their specs stored once', () => {
    const file = join(tempDir(), 'v4.db');
    const db = databaseAt(4, file);
    const a = JSON.stringify(spec('web'));
    const b = JSON.stringify(spec('web', { env: { BIG: 'x'.repeat(200_000) } }));
    // The same document with its keys in another order: other text, so another row, read back equal.
    const aReordered = JSON.stringify(Object.fromEntries(Object.entries(spec('web')).reverse()));
    db.prepare("INSERT INTO apps (name, spec, created_at, updated_at) VALUES ('web', ?, 't0', 't0')").run(a);
    const rows: Array<[number, string, string, string, string, string]> = [
      [1, 'v1', a, 'deploy', 'alice', '2025-01-01T00:00:01.000Z'],
      [2, 'v2', a, 'deploy', 'alice', '2025-01-01T00:00:02.000Z'],
      [3, 'v3', b, 'deploy', 'bob', '2025-01-01T00:00:03.000Z'],
      [4, 'v1', a, 'rollback', 'controller', '2025-01-01T00:00:04.000Z'],
      [5, 'v5', aReordered, 'deploy', 'carol', '2025-01-01T00:00:05.000Z'],
    ];
    const insert = db.prepare("INSERT INTO releases VALUES ('web', ?, ?, ?, ?, ?, ?)");
    for (const r of rows) insert.run(...r);
    db.close();

    const s = openStore(file);
    assert.equal(s.schemaVersion, loadMigrations().length, 'every migration applied');
    for (const [revision, version, text, reason, actor, createdAt] of rows) {
      assert.deepEqual(s.releases.getRelease('web', revision), { app: 'web', revision, version, spec: JSON.parse(text), reason, actor, createdAt });
    }
    assert.deepEqual(s.releases.listReleases('web').map((r) => r.revision), [5, 4, 3, 2, 1]);
    assert.equal(specRows(s), 3, 'a, b and the reordered a');
    assert.deepEqual(s.db.pragma('foreign_key_check'), []);
    // The repositories go on from there: next revision, the same spec shares its row.
    assert.equal(s.releases.createRelease({ app: 'web', version: 'v6', reason: 'deploy', actor: 'a' }).revision, 6);
    assert.equal(specRows(s), 3);
    assert.equal(s.releases.createReleaseUnlessCurrent({ app: 'web', version: 'v6', reason: 'deploy', actor: 'a' }).unchanged, true);
    s.close();
  });

  test('migration 0007: releases that completed before it are marked, from their RolloutComplete event or the converged status', () => {
    const file = join(tempDir(), 'v6.db');
    const db = databaseAt(6, file);
    const a = JSON.stringify(spec('web'));
    db.prepare("INSERT INTO apps (name, spec, created_at, updated_at) VALUES ('web', ?, 't0', 't0')").run(a);
    db.prepare("INSERT INTO specs (digest, spec) VALUES ('d', ?)").run(a);
    const insert = db.prepare("INSERT INTO releases (app, revision, version, spec_digest, reason, actor, created_at) VALUES ('web', ?, ?, 'd', 'deploy', 'a', 't')");
    for (const [revision, version] of [[1, 'v1'], [2, 'v2'], [3, 'broken'], [4, 'v3']] as const) insert.run(revision, version);
    const event = db.prepare("INSERT INTO events (app, host, revision, type, message, actor, created_at) VALUES ('web', NULL, ?, ?, 'm', 'controller', ?)");
    event.run(1, 'RolloutComplete', '2025-01-01T00:00:01.000Z');
    event.run(1, 'RolloutComplete', '2025-01-01T00:00:09.000Z');
    event.run(3, 'RolloutFailed', '2025-01-01T00:00:03.000Z');
    db.prepare("INSERT INTO status (app, phase, observed_revision, conditions, hosts, updated_at) VALUES ('web', 'Failed', 2, '[]', '[]', '2025-01-01T00:00:02.000Z')").run();
    db.close();

    const s = openStore(file);
    assert.deepEqual(s.db.prepare('SELECT revision, completed_at AS at FROM releases ORDER BY revision').all(), [
      { revision: 1, at: '2025-01-01T00:00:01.000Z' },
      { revision: 2, at: '2025-01-01T00:00:02.000Z' },
      { revision: 3, at: null },
      { revision: 4, at: null },
    ]);
    assert.equal(s.releases.rollbackTarget('web')?.revision, 2, 'v3 desired, broken never completed: v2');
    s.close();
  });

});
