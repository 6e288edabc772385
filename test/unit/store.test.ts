import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { after, describe, mock, test } from 'node:test';
import Database from 'better-sqlite3';
import type { AppSpec } from '../../src/domain/app-spec.js';
import { ConflictError, NotFoundError, StoreError } from '../../src/domain/errors.js';
import type { AppStatus, BerthEvent } from '../../src/domain/release.js';
import { parseRolloutRecord, rolloutRecordProblem, type RolloutRecord } from '../../src/domain/rollout.js';
import { DEFAULT_MIGRATIONS_DIR, loadMigrations, migrate, openStore, schemaVersion, type Store } from '../../src/store/index.js';
import { newRecord } from '../../src/reconciler/plan.js';
import { makeSpec } from '../support/fixtures.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const STORE_MODULE = new URL('../../src/store/index.ts', import.meta.url).href;

const tmpDirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'berth-store-test-'));
  tmpDirs.push(d);
  return d;
}
after(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

function spec(name: string, over: Partial<AppSpec> = {}): AppSpec {
  return makeSpec({
    name,
    image: '10.77.0.1:5000/web',
    hosts: ['h1', 'h2'],
    proxy: { port: 80, host: null, drainTimeoutMs: 30_000 },
    env: { RAILS_ENV: 'production' },
    secrets: ['DATABASE_URL'],
    ...over,
  });
}

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

function memStore(): Store {
  return openStore(':memory:');
}

function storeError(code: string, message?: RegExp | string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (typeof message === 'string') assert.equal(err.message, message);
    else if (message) assert.match(err.message, message);
    return true;
  };
}

// ---- child processes -------------------------------------------------------

/**
 * Runs `code` (an ES module body, with `store` = the imported src/store module
 * and `env` = process.env) in a fresh `node --import tsx` process.
 */
function child(code: string, env: Record<string, string> = {}): ChildProcessWithoutNullStreams {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete childEnv.NODE_TEST_CONTEXT; // the child is not a test-runner subprocess
  const body = `const store = await import(${JSON.stringify(STORE_MODULE)}); const env = process.env;\n${code}`;
  return spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', body], {
    cwd: ROOT,
    env: childEnv,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function collect(cp: ChildProcessWithoutNullStreams): Promise<Exit> {
  let stdout = '';
  let stderr = '';
  cp.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  cp.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    cp.on('error', reject);
    cp.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Resolves with the first stdout line matching `re` (rejects if the child exits first). */
function waitForLine(cp: ChildProcessWithoutNullStreams, re: RegExp, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`timeout waiting for ${re}; stderr: ${err}`)), timeoutMs);
    cp.stderr.on('data', (d: Buffer) => (err += d.toString()));
    cp.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const line of lines) {
        if (re.test(line)) {
          clearTimeout(timer);
          resolve(line);
        }
      }
    });
    cp.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`child exited (${code}) before printing ${re}; stderr: ${err}`));
    });
  });
}

async function killHard(cp: ChildProcessWithoutNullStreams): Promise<void> {
  if (cp.exitCode !== null || cp.signalCode !== null) return;
  const exited = once(cp, 'exit');
  cp.kill('SIGKILL');
  await exited;
}

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

// ---- apps ------------------------------------------------------------------

describe('apps', () => {
  test('upsert: created, unchanged (no write, no event), updated', () => {
    const s = memStore();
    const r1 = s.apps.upsertApp(spec('web'), 'alice');
    assert.equal(r1.change, 'created');
    assert.deepEqual(r1.app.spec, spec('web'));
    assert.equal(r1.app.paused, false);
    // Same content, different key order: unchanged.
    const reordered = Object.fromEntries(Object.entries(spec('web')).reverse()) as unknown as AppSpec;
    assert.equal(s.apps.upsertApp(reordered, 'alice').change, 'unchanged');
    const r3 = s.apps.upsertApp(spec('web', { hosts: ['h1'] }), 'bob');
    assert.equal(r3.change, 'updated');
    assert.deepEqual(s.apps.getApp('web')?.spec.hosts, ['h1']);
    assert.deepEqual(
      s.events.listEvents('web').map((e) => [e.type, e.actor]),
      [
        ['AppCreated', 'alice'],
        ['AppUpdated', 'bob'],
      ],
    );
    assert.equal(s.apps.getApp('nope'), null);
    s.apps.upsertApp(spec('api'), 'alice');
    assert.deepEqual(
      s.apps.listApps().map((a) => a.name),
      ['api', 'web'],
    );
    s.close();
  });

  test('listRoutes and proxyRoutesOn: name, hosts and route of every app with a route, nothing else of its spec', () => {
    const s = memStore();
    const tls = { port: 80, host: 'a.example.com', pathPrefix: '/api', drainTimeoutMs: 5_000, tls: { source: 'acme' as const } };
    s.apps.upsertApp(spec('web', { hosts: ['h1', 'h2'], proxy: tls }), 'a');
    s.apps.upsertApp(spec('api', { hosts: ['h2'], proxy: { port: 8080, host: null, drainTimeoutMs: 30_000 } }), 'a');
    s.apps.upsertApp(spec('worker', { hosts: ['h1'], proxy: null }), 'a');
    assert.deepEqual(s.apps.listRoutes(), [
      { name: 'api', hosts: ['h2'], proxy: { port: 8080, host: null, drainTimeoutMs: 30_000 }, deleting: false },
      { name: 'web', hosts: ['h1', 'h2'], proxy: tls, deleting: false },
    ]);
    assert.deepEqual(s.apps.proxyRoutesOn('h1'), [{ app: 'web', route: tls }]);
    assert.deepEqual(s.apps.proxyRoutesOn('h2').map((r) => r.app), ['api', 'web']);
    // An app being deleted keeps its route for conflict checks, but no proxy routes it any more.
    s.apps.markDeleting('api', 'a');
    assert.equal(s.apps.listRoutes()[0]!.deleting, true);
    assert.deepEqual(s.apps.proxyRoutesOn('h2').map((r) => r.app), ['web']);
    s.close();
  });

  test('setPaused records an event only when it changes; unknown app is NotFound', () => {
    const s = memStore();
    s.apps.upsertApp(spec('web'), 'a');
    assert.equal(s.apps.setPaused('web', true, 'ops').paused, true);
    assert.equal(s.apps.setPaused('web', true, 'ops').paused, true);
    assert.equal(s.apps.setPaused('web', false, 'ops').paused, false);
    assert.deepEqual(
      s.events.listEvents('web').map((e) => e.type),
      ['AppCreated', 'AppPaused', 'AppResumed'],
    );
    assert.throws(() => s.apps.setPaused('nope', true, 'ops'), NotFoundError);
    s.close();
  });

  test('deleteApp cascades to releases, status and rollout; events stay', () => {
    const s = memStore();
    s.apps.upsertApp(spec('web'), 'a');
    s.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a' });
    s.status.recordStep('web', { status: status('web', 1), rollout: { revision: 1, state: rolloutRecord(1) } });
    assert.equal(s.apps.deleteApp('web', 'a'), true);
    assert.equal(s.apps.deleteApp('web', 'a'), false);
    assert.equal(s.releases.latestRelease('web'), null);
    assert.equal(s.status.readStatus('web'), null);
    assert.equal(s.status.getRollout('web'), null);
    assert.equal(s.events.listEvents('web').at(-1)?.type, 'AppDeleted');
    s.close();
  });
});

// ---- releases --------------------------------------------------------------

describe('releases', () => {
  test('revisions grow from 1; spec snapshot defaults to the app spec; queries', () => {
    const s = memStore();
    s.apps.upsertApp(spec('web'), 'a');
    const r1 = s.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'alice' });
    assert.equal(r1.revision, 1);
    assert.deepEqual(r1.spec, spec('web'));
    s.apps.upsertApp(spec('web', { port: 4000 }), 'a');
    const r2 = s.releases.createRelease({ app: 'web', version: 'v2', reason: 'deploy', actor: 'alice' });
    assert.equal(r2.spec.port, 4000, 'snapshot of the spec at release time');
    s.releases.createRelease({ app: 'web', version: 'v3', reason: 'deploy', actor: 'alice' });
    const r4 = s.releases.createRelease({ app: 'web', version: 'v1', reason: 'rollback', actor: 'bob', spec: r1.spec });
    assert.equal(r4.revision, 4);
    assert.equal(r4.reason, 'rollback');
    assert.equal(r4.spec.port, 3000);

    assert.deepEqual(s.releases.getRelease('web', 2), r2);
    assert.equal(s.releases.getRelease('web', 9), null);
    assert.equal(s.releases.latestRelease('web')?.revision, 4);
    assert.equal(s.releases.latestRelease('other'), null);
    assert.equal(s.releases.findLatestByVersion('web', 'v1')?.revision, 4);
    assert.equal(s.releases.findLatestByVersion('web', 'v2')?.revision, 2);
    assert.equal(s.releases.findLatestByVersion('web', 'v9'), null);

    assert.deepEqual(
      s.releases.listReleases('web', { limit: 3 }).map((r) => r.revision),
      [4, 3, 2],
    );
    assert.deepEqual(
      s.releases.listReleases('web', { limit: 3, before: 2 }).map((r) => r.revision),
      [1],
    );
    const evs = s.events.listEvents('web').filter((e) => e.type === 'ReleaseCreated');
    assert.deepEqual(
      evs.map((e) => [e.revision, e.actor]),
      [
        [1, 'alice'],
        [2, 'alice'],
        [3, 'alice'],
        [4, 'bob'],
      ],
    );
    assert.match(evs[3]?.message ?? '', /rollback to version v1/);
    s.close();
  });

  test('createReleaseUnlessCurrent: same version and spec as the newest release is unchanged, nothing written', () => {
    const s = memStore();
    s.apps.upsertApp(spec('web'), 'a');
    const first = s.releases.createReleaseUnlessCurrent({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a' });
    assert.deepEqual([first.release.revision, first.unchanged], [1, false]);
    const eventsBefore = s.events.latestEventId();
    const same = s.releases.createReleaseUnlessCurrent({ app: 'web', version: 'v1', reason: 'deploy', actor: 'b' });
    assert.equal(same.unchanged, true);
    assert.deepEqual(same.release, first.release);
    assert.equal(s.events.latestEventId(), eventsBefore, 'no event');
    assert.equal(s.releases.latestRelease('web')?.revision, 1);
    // expectedRevision is checked before anything else.
    assert.throws(
      () => s.releases.createReleaseUnlessCurrent({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a', expectedRevision: 0 }),
      ConflictError,
    );
    // The same spec given explicitly, with keys in another order, is the same snapshot.
    const reordered = Object.fromEntries(Object.entries(first.release.spec).reverse()) as typeof first.release.spec;
    assert.equal(s.releases.createReleaseUnlessCurrent({ app: 'web', version: 'v1', spec: reordered, reason: 'rollback', actor: 'a' }).unchanged, true);
    // A changed spec with the same version is a new release.
    s.apps.upsertApp(spec('web', { port: 4000 }), 'a');
    const changed = s.releases.createReleaseUnlessCurrent({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a' });
    assert.deepEqual([changed.release.revision, changed.unchanged, changed.release.spec.port], [2, false, 4000]);
    // createRelease itself still always appends.
    assert.equal(s.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a' }).revision, 3);
    s.close();
  });

  test('unknown app: NotFoundError, nothing written', () => {
    const s = memStore();
    assert.throws(() => s.releases.createRelease({ app: 'nope', version: 'v1', reason: 'deploy', actor: 'a' }), NotFoundError);
    assert.equal(s.events.latestEventId(), 0);
    s.close();
  });

  test('expectedRevision mismatch: ConflictError with both numbers, nothing written', () => {
    const s = memStore();
    s.apps.upsertApp(spec('web'), 'a');
    assert.throws(
      () => s.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a', expectedRevision: 2 }),
      (err: unknown) => err instanceof ConflictError && /has no releases yet/.test(err.message),
    );
    assert.equal(
      s.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a', expectedRevision: 0 }).revision,
      1,
    );
    for (const v of ['v2', 'v3', 'v4']) s.releases.createRelease({ app: 'web', version: v, reason: 'deploy', actor: 'a' });
    const eventsBefore = s.events.latestEventId();
    assert.throws(
      () => s.releases.createRelease({ app: 'web', version: 'v5', reason: 'deploy', actor: 'a', expectedRevision: 3 }),
      (err: unknown) => {
        assert.ok(err instanceof ConflictError);
        assert.equal(err.code, 'CONFLICT');
        assert.equal(err.message, 'expected revision 3 but the newest is 4');
        return true;
      },
    );
    assert.equal(s.releases.latestRelease('web')?.revision, 4);
    assert.equal(s.events.latestEventId(), eventsBefore);
    assert.equal(
      s.releases.createRelease({ app: 'web', version: 'v5', reason: 'deploy', actor: 'a', expectedRevision: 4 }).revision,
      5,
    );
    s.close();
  });

  test('concurrent writers in 3 processes: distinct, contiguous revisions 1..150', async (t) => {
    const file = join(tempDir(), 'concurrent.db');
    const s = openStore(file);
    s.apps.upsertApp(spec('web'), 'test');
    s.close();
    const N = 50;
    const procs = [1, 2, 3].map((w) =>
      child(
        // lock: false — several writers on purpose; the daemon lock would (rightly) refuse them.
        // Each opens, says ready, and waits for "go" on stdin so all three write at the same time.
        `const s = store.openStore(env.DB, { lock: false });
         console.log('ready');
         await new Promise((r) => process.stdin.once('data', r));
         const revs = [];
         for (let i = 0; i < ${N}; i++) {
           if (i % 2 === 1) await new Promise((r) => setTimeout(r, Math.random() * 3)); // let the others in
           revs.push(s.releases.createRelease({ app: 'web', version: 'w' + env.W + '-' + i, reason: 'deploy', actor: 'writer' + env.W }).revision);
         }
         s.close();
         console.log(JSON.stringify(revs));
         process.exit(0);`,
        { DB: file, W: String(w) },
      ),
    );
    await Promise.all(procs.map((p) => waitForLine(p, /^ready$/)));
    const done = procs.map((p) => collect(p));
    for (const p of procs) p.stdin.write('go\n');
    const results = (await Promise.all(done)).map((r) => ({ ...r, stdout: r.stdout.trim().split('\n').at(-1) ?? '' }));
    const all: number[] = [];
    for (const r of results) {
      assert.equal(r.code, 0, r.stderr);
      const revs = JSON.parse(r.stdout) as number[];
      assert.equal(revs.length, N);
      for (let i = 1; i < revs.length; i++) assert.ok(revs[i]! > revs[i - 1]!, 'each writer sees increasing revisions');
      all.push(...revs);
    }
    const interleaved = results.some((r) => {
      const revs = JSON.parse(r.stdout) as number[];
      return revs.at(-1)! - revs[0]! !== N - 1;
    });
    t.diagnostic(`writers interleaved: ${interleaved}`);
    assert.ok(interleaved, 'the writers overlapped (else this test proves nothing)');
    all.sort((a, b) => a - b);
    assert.deepEqual(
      all,
      Array.from({ length: 3 * N }, (_, i) => i + 1),
    );
    const check = openStore(file);
    const stored = check.releases.listReleases('web', { limit: 1000 });
    assert.equal(stored.length, 3 * N);
    // The version each writer stored under a revision is the one it was told it got.
    for (const r of results) {
      const revs = JSON.parse(r.stdout) as number[];
      const w = check.releases.getRelease('web', revs[0]!)!.actor;
      for (const rev of revs) assert.equal(check.releases.getRelease('web', rev)?.actor, w);
    }
    assert.equal(check.events.listEvents('web', { limit: 1000 }).filter((e) => e.type === 'ReleaseCreated').length, 3 * N);
    check.close();
  });
});

// ---- crash safety ----------------------------------------------------------

describe('crash safety', () => {
  test('an acknowledged write survives kill -9 right after the acknowledgement', async () => {
    const file = join(tempDir(), 'crash.db');
    const writer = child(
      `const s = store.openStore(env.DB);
       s.apps.upsertApp(${JSON.stringify(spec('web'))}, 'crash');
       for (let i = 1; ; i++) {
         const r = s.releases.createRelease({ app: 'web', version: 'v' + i, reason: 'deploy', actor: 'crash' });
         s.status.recordStep('web', {
           status: { app: 'web', phase: 'Progressing', observedRevision: r.revision, conditions: [], hosts: [], updatedAt: new Date().toISOString() },
           rollout: { revision: r.revision, state: { ...${JSON.stringify(rolloutRecord(0))}, revision: r.revision, batch: i } },
           events: [{ type: 'Step', message: 'step ' + i, revision: r.revision }],
         });
         process.stdout.write(r.revision + '\\n'); // acknowledged: printed only after both commits
       }`,
      { DB: file },
    );
    const acked: number[] = [];
    let buf = '';
    await new Promise<void>((resolve, reject) => {
      writer.on('exit', (code) => reject(new Error(`writer exited early (${code})`)));
      writer.stderr.on('data', (d: Buffer) => process.stderr.write(d));
      writer.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        const lines = buf.split('\n');
        buf = lines.pop() ?? '';
        for (const l of lines) acked.push(Number(l));
        if (acked.length >= 40) {
          writer.kill('SIGKILL'); // immediately, mid-stream
          resolve();
        }
      });
    });
    await killHard(writer);
    assert.equal(writer.signalCode, 'SIGKILL');
    const newestAcked = Math.max(...acked);

    const s = openStore(file); // the lock died with the writer
    assert.equal(s.db.pragma('integrity_check', { simple: true }), 'ok');
    assert.equal((s.db.pragma('foreign_key_check') as unknown[]).length, 0);
    const latest = s.releases.latestRelease('web');
    assert.ok(latest && latest.revision >= newestAcked, `acknowledged revision ${newestAcked} is stored`);
    for (const rev of acked) assert.equal(s.releases.getRelease('web', rev)?.version, `v${rev}`);
    // The record step of an acknowledged revision is all there.
    const rollout = s.status.getRollout('web');
    assert.ok(rollout && rollout.revision >= newestAcked);
    assert.equal(s.status.readStatus('web')?.observedRevision, rollout.revision);
    // Revisions stay contiguous across the crash.
    const next = s.releases.createRelease({ app: 'web', version: 'after', reason: 'deploy', actor: 't' });
    assert.equal(next.revision, latest.revision + 1);
    s.close();
  });
});

// ---- status and the record step ----------------------------------------------

function status(app: string, observedRevision: number, phase: AppStatus['phase'] = 'Progressing'): AppStatus {
  return {
    app,
    phase,
    observedRevision,
    conditions: [
      { type: 'Progressing', status: 'True', reason: 'NewReleaseCreated', message: 'rolling', lastTransitionTime: '2025-01-01T00:00:00.000Z' },
    ],
    hosts: [
      { host: 'h1', version: 'v1', revision: observedRevision, containerId: 'abc', health: 'healthy', lastError: null, lastLogs: null },
    ],
    updatedAt: '2025-01-01T00:00:01.000Z',
  };
}

/** A valid rollout record of `revision`, as the planner starts one. */
function rolloutRecord(revision: number, over: Partial<RolloutRecord> = {}): RolloutRecord {
  return { ...newRecord(revision, 1_700_000_000_000), ...over };
}

// ---- history: specs once, retention, rollback target ------------------------

describe('history', () => {
  const specRows = (s: Store) => s.db.prepare('SELECT count(*) FROM specs').pluck().get() as number;
  const digestOf = (s: Store, revision: number) => s.db.prepare("SELECT spec_digest FROM releases WHERE app = 'web' AND revision = ?").pluck().get(revision) as string;

  test('a spec is stored once per distinct content: equal specs share one row, different ones do not', () => {
    const s = memStore();
    s.apps.upsertApp(spec('web'), 'a');
    for (const version of ['v1', 'v2', 'v3']) s.releases.createRelease({ app: 'web', version, reason: 'deploy', actor: 'a' });
    assert.equal(specRows(s), 1, 'three releases of one spec: one row');
    assert.equal(digestOf(s, 1), digestOf(s, 3));
    s.apps.upsertApp(spec('web', { port: 4000 }), 'a');
    s.releases.createRelease({ app: 'web', version: 'v4', reason: 'deploy', actor: 'a' });
    assert.equal(specRows(s), 2, 'a different spec: its own row');
    assert.notEqual(digestOf(s, 4), digestOf(s, 3));
    // A rollback to v1 carries v1's spec: the same content, the same row.
    s.releases.createRelease({ app: 'web', version: 'v1', reason: 'rollback', actor: 'a', spec: s.releases.getRelease('web', 1)!.spec });
    assert.equal(specRows(s), 2);
    assert.equal(digestOf(s, 5), digestOf(s, 1));
    // Every release reads back its own snapshot.
    assert.equal(s.releases.getRelease('web', 4)?.spec.port, 4000);
    assert.equal(s.releases.getRelease('web', 5)?.spec.port, 3000);
    // Another app with the same spec text shares it too; deleting that app leaves the row to the first.
    s.apps.upsertApp(spec('api'), 'a');
    s.releases.createRelease({ app: 'api', version: 'v1', reason: 'deploy', actor: 'a', spec: s.releases.getRelease('web', 1)!.spec });
    assert.equal(specRows(s), 2);
    s.apps.deleteApp('api', 'a');
    assert.equal(specRows(s), 2, 'still used by web');
    s.apps.deleteApp('web', 'a');
    assert.equal(specRows(s), 0, 'an app deleted with its releases takes the specs only it used');
    s.close();
  });

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

  interface RetentionCase {
    name: string;
    /** Release i + 1 is of versions[i]. */
    versions: string[];
    limit: number;
    batch?: number;
    observedRevision?: number;
    hostRevisions?: number[];
    rolloutRevision?: number;
    keep?: number[];
    kept: number[];
    /** Revisions whose rollout completed (default: all). */
    completed?: number[];
  }
  const v = (n: number) => Array.from({ length: n }, (_, i) => `v${i + 1}`);
  const RETENTION: RetentionCase[] = [
    { name: 'under the limit: nothing goes', versions: v(3), limit: 5, kept: [1, 2, 3] },
    { name: 'over the limit: the oldest go', versions: v(6), limit: 3, kept: [4, 5, 6] },
    { name: 'limit 1: the desired release and the rollback target stay', versions: v(5), limit: 1, kept: [4, 5] },
    { name: 'the rollback target stays however old (restarts of the desired version since)', versions: ['v1', 'v2', 'v2', 'v2', 'v2'], limit: 2, kept: [1, 4, 5] },
    { name: 'the rollback target is the newest completed release: newer failed ones may go', versions: v(5), completed: [1, 2], limit: 1, kept: [2, 5] },
    { name: 'the converged revision (automatic rollback target) stays', versions: v(6), limit: 2, observedRevision: 2, kept: [2, 5, 6] },
    { name: 'a revision a host still serves stays', versions: v(6), limit: 2, hostRevisions: [1, 3], kept: [1, 3, 5, 6] },
    { name: "the rollout record's revision stays", versions: v(6), limit: 2, rolloutRevision: 2, kept: [2, 5, 6] },
    { name: 'revisions of retained containers stay', versions: v(6), limit: 2, keep: [1, 2], kept: [1, 2, 5, 6] },
    { name: 'one call removes at most a batch, oldest first', versions: v(10), limit: 2, batch: 3, kept: [4, 5, 6, 7, 8, 9, 10] },
    { name: 'a batch skips what stays', versions: v(10), limit: 2, batch: 3, hostRevisions: [1, 2], kept: [1, 2, 6, 7, 8, 9, 10] },
  ];
  for (const c of RETENTION) {
    test(`retention: ${c.name}`, () => {
      const s = memStore();
      s.apps.upsertApp(spec('web'), 'a');
      // Each release its own spec, so what goes takes its spec row with it.
      c.versions.forEach((version, i) => s.releases.createRelease({ app: 'web', version, reason: 'deploy', actor: 'a', spec: spec('web', { port: 3000 + i }) }));
      // Every release rolled out unless the case says which did.
      for (const revision of c.completed ?? c.versions.map((_, i) => i + 1)) s.releases.markCompleted('web', revision, new Date());
      if (c.observedRevision !== undefined || c.hostRevisions) {
        s.status.writeStatus({
          app: 'web',
          phase: 'Complete',
          observedRevision: c.observedRevision ?? null,
          conditions: [],
          hosts: (c.hostRevisions ?? []).map((revision, i) => ({ host: `h${i + 1}`, version: `v${revision}`, revision, containerId: `c${i}`, health: 'healthy', lastError: null, lastLogs: null })),
          updatedAt: '',
        });
      }
      if (c.rolloutRevision !== undefined) s.status.putRollout('web', c.rolloutRevision, newRecord(c.rolloutRevision, 0));
      const removed = s.releases.pruneReleases('web', { limit: c.limit, ...(c.keep ? { keep: c.keep } : {}), ...(c.batch ? { batch: c.batch } : {}) });
      const kept = s.releases.listReleases('web', { limit: 1000 }).map((r) => r.revision).reverse();
      assert.deepEqual(kept, c.kept);
      assert.equal(removed, c.versions.length - c.kept.length);
      assert.equal(specRows(s), kept.length, 'the specs of removed releases are gone, the others stay');
      assert.deepEqual(s.db.pragma('foreign_key_check'), []);
      s.close();
    });
  }

  test('rollbackTarget: the newest release of another version, however far back, reading one spec', () => {
    const s = memStore();
    s.apps.upsertApp(spec('web'), 'a');
    assert.equal(s.releases.rollbackTarget('web'), null, 'no release');
    s.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a' });
    assert.equal(s.releases.rollbackTarget('web'), null, 'only one version');
    s.releases.createRelease({ app: 'web', version: 'v2', reason: 'deploy', actor: 'a', spec: spec('web', { port: 4000 }) });
    assert.equal(s.releases.rollbackTarget('web'), null, 'v1 never completed a rollout');
    s.releases.markCompleted('web', 1, new Date());
    // 1,200 more releases of v2 (restarts, each its own spec): the target is beyond any page of releases.
    s.transaction(() => {
      for (let i = 0; i < 1200; i++) s.releases.createRelease({ app: 'web', version: 'v2', reason: 'deploy', actor: 'a', spec: spec('web', { port: 5000 + i }) });
    });
    const parse = mock.method(JSON, 'parse');
    try {
      const target = s.releases.rollbackTarget('web');
      assert.equal(target?.revision, 1);
      assert.equal(target?.spec.port, 3000);
      assert.equal(parse.mock.callCount(), 1, 'one spec parsed, not the history');
    } finally {
      parse.mock.restore();
    }
    s.close();
  });
});

describe('observed writes (synchronous=NORMAL)', () => {
  const SYNC = { NORMAL: 1, FULL: 2 };
  const sync = (s: Store) => s.db.pragma('synchronous', { simple: true });

  test('commit without an fsync, then FULL again for every other write, also after a throw', () => {
    const s = openStore(join(tempDir(), 'b.db'));
    assert.equal(sync(s), SYNC.FULL, 'the API\'s writes are fsync\'d');
    assert.equal(s.observedTransaction(() => sync(s)), SYNC.NORMAL);
    assert.equal(sync(s), SYNC.FULL);
    assert.throws(() => s.observedTransaction(() => { throw new Error('boom'); }), /boom/);
    assert.equal(sync(s), SYNC.FULL);
    s.close();
  });

  test('inside a transaction it joins it, with its durability: a step that creates a rollback release is fsync\'d', () => {
    const s = openStore(join(tempDir(), 'b.db'));
    s.apps.upsertApp(spec('web'), 'a');
    const seen = s.transaction(() => {
      s.releases.createRelease({ app: 'web', version: 'v1', reason: 'rollback', actor: 'controller' });
      return s.status.recordStep('web', { events: [{ type: 'RollbackStarted', message: 'm', host: null, revision: 1, actor: 'controller' }] }) && sync(s);
    });
    assert.equal(seen, SYNC.FULL);
    assert.equal(s.events.listEvents('web', { limit: 10 }).at(-1)?.type, 'RollbackStarted');
    s.close();
  });

  test('what the controller records is observed: recordStep and host status commit without an fsync', () => {
    const s = openStore(join(tempDir(), 'b.db'));
    s.apps.upsertApp(spec('web'), 'a');
    const modes: number[] = [];
    const pragma = s.db.pragma.bind(s.db);
    const spy = mock.method(s.db, 'pragma', (src: string, o?: Database.PragmaOptions) => {
      if (src.startsWith('synchronous =')) modes.push(src.endsWith('NORMAL') ? SYNC.NORMAL : SYNC.FULL);
      return pragma(src, o);
    });
    try {
      s.status.recordStep('web', { events: [{ type: 'X', message: 'm', host: null, revision: null, actor: 'controller' }] });
      s.hostsStatus.upsert({ host: 'h1', up: true, lastError: null });
      s.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a' });
    } finally {
      spy.mock.restore();
    }
    assert.deepEqual(modes, [SYNC.NORMAL, SYNC.FULL, SYNC.NORMAL, SYNC.FULL], 'two observed writes, each back to FULL; the release touches nothing');
    s.close();
  });
});

describe('status', () => {
  test('write/read round trip; unknown app is NotFound', () => {
    const s = memStore();
    s.apps.upsertApp(spec('web'), 'a');
    assert.equal(s.status.readStatus('web'), null);
    s.status.writeStatus(status('web', 1));
    assert.deepEqual(s.status.readStatus('web'), status('web', 1));
    s.status.writeStatus(status('web', 2, 'Complete'));
    assert.equal(s.status.readStatus('web')?.phase, 'Complete');
    assert.deepEqual(
      s.status.listStatus().map((x) => x.app),
      ['web'],
    );
    assert.throws(() => s.status.writeStatus(status('nope', 1)), NotFoundError);
    s.close();
  });

  test('a host status written before lastLogs existed reads with lastLogs null', () => {
    const s = memStore();
    s.apps.upsertApp(spec('web'), 'a');
    s.status.writeStatus(status('web', 1));
    s.db.prepare('UPDATE status SET hosts = ? WHERE app = ?').run(JSON.stringify([{ host: 'h1', version: 'v1', revision: 1, containerId: 'c1', health: 'healthy', lastError: null }]), 'web');
    assert.deepEqual(s.status.readStatus('web')?.hosts, [{ host: 'h1', version: 'v1', revision: 1, containerId: 'c1', health: 'healthy', lastError: null, lastLogs: null }]);
    s.close();
  });

  test('rollout record: put, get, replace, delete', () => {
    const s = memStore();
    s.apps.upsertApp(spec('web'), 'a');
    assert.equal(s.status.getRollout('web'), null);
    const first = rolloutRecord(3, { hosts: { h1: { step: 'switched', containerId: 'abc', at: 5 } } });
    s.status.putRollout('web', 3, first);
    const r = s.status.getRollout('web');
    assert.equal(r?.revision, 3);
    assert.deepEqual(r?.state, first);
    s.status.putRollout('web', 3, rolloutRecord(3, { batch: 1 }));
    assert.equal(s.status.getRollout('web')?.state.batch, 1);
    assert.equal(s.status.deleteRollout('web'), true);
    assert.equal(s.status.deleteRollout('web'), false);
    assert.throws(() => s.status.putRollout('nope', 1, rolloutRecord(1)), NotFoundError);
    s.close();
  });

  test('a valid rollout record round-trips field for field, in every state it can be in', () => {
    const problems: string[] = [];
    const s = openStore(':memory:', { onInvalidRollout: (app, problem) => problems.push(`${app}: ${problem}`) });
    s.apps.upsertApp(spec('web'), 'a');
    const records: RolloutRecord[] = [
      rolloutRecord(1),
      rolloutRecord(7, {
        state: 'failed',
        pulled: ['h1', 'h2'],
        preDeployDone: true,
        postDeployDone: false,
        batch: 2,
        batchNotBefore: 1_700_000_060_000,
        hosts: {
          h1: { step: 'switched', containerId: 'c0ffee', at: 1_700_000_001_000 },
          h2: { step: 'failed', reason: 'HealthCheckFailed', message: 'GET /health: 503', at: 1_700_000_002_000 },
          h3: { step: 'failed', reason: 'StartFailed', message: 'exit 1', at: 1_700_000_003_000, logs: ['booting', 'fatal: no config'] },
        },
        failure: { reason: 'HealthCheckFailed', message: 'h2: GET /health: 503' },
        finishedAt: 1_700_000_004_000,
      }),
      rolloutRecord(8, { state: 'paused', failure: { reason: 'HealthCheckFailed', message: 'paused' } }),
      rolloutRecord(9, { state: 'complete', postDeployDone: true, finishedAt: 1_700_000_009_500 }),
    ];
    for (const rec of records) {
      s.status.recordStep('web', { rollout: { revision: rec.revision, state: rec } });
      const got = s.status.getRollout('web');
      assert.deepEqual(got?.state, rec, `revision ${rec.revision} (${rec.state})`);
      assert.equal(got?.revision, rec.revision);
      assert.equal(got?.app, 'web');
      assert.equal(rolloutRecordProblem(rec), null);
      assert.deepEqual(parseRolloutRecord(JSON.parse(JSON.stringify(rec))), rec);
    }
    assert.deepEqual(problems, [], 'no valid record was reported');
    s.close();
  });

  test('a malformed stored rollout record reads as absent and is reported, never thrown', () => {
    const problems: Array<[string, string]> = [];
    const s = openStore(':memory:', { onInvalidRollout: (app, problem) => problems.push([app, problem]) });
    s.apps.upsertApp(spec('web'), 'a');
    const good = rolloutRecord(4);
    // Written with raw SQL, as a corrupt row or another berth's shape would be; the
    // CHECK (json_valid(state)) is switched off so that text that is not JSON gets in too.
    const write = (revision: number, text: string) => {
      s.db.pragma('ignore_check_constraints = ON');
      s.db.prepare('DELETE FROM rollouts WHERE app = ?').run('web');
      s.db.prepare('INSERT INTO rollouts (app, revision, state, updated_at) VALUES (?, ?, ?, ?)').run('web', revision, text, '2025-01-01T00:00:00.000Z');
      s.db.pragma('ignore_check_constraints = OFF');
    };
    const cases: Array<[string, number, string, RegExp]> = [
      ['not JSON', 4, '{"revision":4,', /^not JSON/],
      ['JSON null', 4, 'null', /^not an object/],
      ['an array', 4, '[]', /^not an object/],
      ['the old opaque shape', 4, '{"batch":0,"hosts":{"h1":"started"}}', /^revision/],
      ['an unknown state', 4, JSON.stringify({ ...good, state: 'rolling' }), /^state: "rolling"/],
      ['a missing field', 4, JSON.stringify({ ...good, pulled: undefined }), /^pulled/],
      ['a fractional batch', 4, JSON.stringify({ ...good, batch: 0.5 }), /^batch/],
      ['a host step the planner never writes', 4, JSON.stringify({ ...good, hosts: { h1: { step: 'started', at: 1 } } }), /^hosts\.h1\.step "started"/],
      ['a host failure without a message', 4, JSON.stringify({ ...good, hosts: { h1: { step: 'failed', reason: 'StartFailed', at: 1 } } }), /^hosts\.h1\.message/],
      ['a host failure whose logs are not lines', 4, JSON.stringify({ ...good, hosts: { h1: { step: 'failed', reason: 'StartFailed', message: 'x', at: 1, logs: 'boom' } } }), /^hosts\.h1\.logs is not a list of lines/],
      ['a failure without a message', 4, JSON.stringify({ ...good, state: 'failed', failure: { reason: 'X' } }), /^failure/],
      ['finishedAt a string', 4, JSON.stringify({ ...good, finishedAt: 'yesterday' }), /^finishedAt/],
      ['another revision than its row', 5, JSON.stringify(good), /^revision: 4, but the row is revision 5/],
    ];
    for (const [what, revision, text, problem] of cases) {
      problems.length = 0;
      write(revision, text);
      assert.equal(s.status.getRollout('web'), null, `${what} reads as absent`);
      assert.equal(problems.length, 1, `${what} is reported once`);
      assert.equal(problems[0]![0], 'web');
      assert.match(problems[0]![1], problem, what);
      if (what !== 'not JSON' && revision === 4) assert.equal(parseRolloutRecord(JSON.parse(text)), null, `parseRolloutRecord: ${what}`);
    }
    // The controller's next record step replaces the bad row, and it reads again.
    s.status.recordStep('web', { rollout: { revision: 4, state: good } });
    problems.length = 0;
    assert.deepEqual(s.status.getRollout('web')?.state, good);
    assert.deepEqual(problems, []);
    s.close();
  });

  test('recordStep writes status, rollout and events together, or nothing at all', () => {
    const s = memStore();
    s.apps.upsertApp(spec('web'), 'a');
    const seen: BerthEvent[] = [];
    s.events.subscribe((e) => seen.push(e));
    const res = s.status.recordStep('web', {
      status: status('web', 1),
      rollout: { revision: 1, state: rolloutRecord(1) },
      events: [
        { type: 'ContainerStarted', message: 'started web-r1', host: 'h1', revision: 1, actor: 'controller' },
        { type: 'HostDown', message: 'h2 unreachable', app: null, host: 'h2' },
      ],
    });
    assert.deepEqual(
      res.events.map((e) => [e.app, e.type]),
      [
        ['web', 'ContainerStarted'],
        [null, 'HostDown'],
      ],
    );
    assert.deepEqual(seen, res.events);

    const before = { status: s.status.readStatus('web'), rollout: s.status.getRollout('web'), lastEvent: s.events.latestEventId() };
    assert.throws(() =>
      s.status.recordStep('web', {
        status: status('web', 2, 'Complete'),
        rollout: null,
        // type is NOT NULL: this event fails after status and rollout were written in the transaction.
        events: [{ type: 'Fine', message: 'ok' }, { type: null as unknown as string, message: 'bad' }],
      }),
    );
    assert.deepEqual(s.status.readStatus('web'), before.status);
    assert.deepEqual(s.status.getRollout('web'), before.rollout);
    assert.equal(s.events.latestEventId(), before.lastEvent);
    assert.equal(seen.length, 2, 'rolled-back events are not delivered');

    s.status.recordStep('web', { rollout: null, events: [] });
    assert.equal(s.status.getRollout('web'), null);
    assert.deepEqual(s.status.readStatus('web'), before.status, 'status untouched when omitted');
    assert.throws(() => s.status.recordStep('web', { status: status('api', 1) }), storeError('INVALID_STEP'));
    s.close();
  });
});

// ---- events ----------------------------------------------------------------

describe('events', () => {
  test('paging: ascending after an id (SSE resume), newest first before an id, per app or global', () => {
    let t = Date.parse('2025-01-01T00:00:00Z');
    const s = openStore(':memory:', { clock: () => new Date((t += 1000)) });
    for (let i = 1; i <= 25; i++) {
      s.events.appendEvent({ app: i % 5 === 0 ? 'api' : 'web', type: 'Step', message: `m${i}`, revision: i });
    }
    const web = s.events.listEvents('web', { limit: 1000 });
    assert.equal(web.length, 20);
    assert.ok(web.every((e, i) => i === 0 || e.id > web[i - 1]!.id));
    assert.equal(web[0]?.createdAt, '2025-01-01T00:00:01.000Z');

    // Resume: pages of 7 after the last id seen give everything exactly once, in order.
    const resumed: number[] = [];
    let last = 0;
    for (;;) {
      const page = s.events.listEvents('web', { afterId: last, limit: 7 });
      if (page.length === 0) break;
      resumed.push(...page.map((e) => e.id));
      last = page.at(-1)!.id;
    }
    assert.deepEqual(resumed, web.map((e) => e.id));

    const newest = s.events.pageEvents('web', { limit: 3 });
    assert.deepEqual(newest.map((e) => e.message), ['m24', 'm23', 'm22']);
    const older = s.events.pageEvents('web', { limit: 3, beforeId: newest.at(-1)!.id });
    assert.deepEqual(older.map((e) => e.message), ['m21', 'm19', 'm18']);

    assert.equal(s.events.listEvents(null, { limit: 1000 }).length, 25);
    assert.deepEqual(s.events.listEvents('api').map((e) => e.message), ['m5', 'm10', 'm15', 'm20', 'm25']);
    assert.equal(s.events.listEvents(null, { afterId: s.events.latestEventId() }).length, 0);
    assert.equal(s.events.latestEventId('api'), 25);
    assert.equal(s.events.listEvents('web', { limit: 0 }).length, 1, 'limit clamps to at least 1');
    s.close();
  });

  test('newestOfTypes: the newest event of the given types among the app\'s newest N, or null', () => {
    const s = memStore();
    const add = (app: string, type: string, message: string) => s.events.appendEvent({ app, type, message });
    add('web', 'RolloutFailed', 'old failure');
    add('web', 'RolloutPaused', 'newer pause');
    add('api', 'RolloutFailed', 'another app');
    for (let i = 0; i < 5; i++) add('web', 'Step', `s${i}`);
    const types = ['RolloutFailed', 'RolloutPaused'];
    assert.equal(s.events.newestOfTypes('web', types, 10)?.message, 'newer pause');
    assert.equal(s.events.newestOfTypes('web', ['RolloutFailed'], 10)?.message, 'old failure');
    assert.equal(s.events.newestOfTypes('web', types, 6)?.message, 'newer pause', 'the 6th newest is the pause');
    assert.equal(s.events.newestOfTypes('web', types, 5), null, 'beyond the lookback');
    assert.equal(s.events.newestOfTypes('api', types, 10)?.message, 'another app');
    assert.equal(s.events.newestOfTypes('nope', types, 10), null);
    s.close();
  });

  test('subscribe: delivered after commit, not on rollback; a throwing listener does not fail the write', () => {
    const listenerErrors: unknown[] = [];
    const s = openStore(':memory:', { onListenerError: (err) => listenerErrors.push(err) });
    s.apps.upsertApp(spec('web'), 'a');
    const seen: string[] = [];
    let inTxWhenDelivered: boolean | null = null;
    const off = s.events.subscribe((e) => {
      inTxWhenDelivered = s.db.inTransaction;
      seen.push(e.message);
    });
    const offBad = s.events.subscribe(() => {
      throw new Error('listener bug');
    });

    s.transaction(() => {
      s.events.appendEvent({ app: 'web', type: 'A', message: 'one' });
      s.events.appendEvent({ app: 'web', type: 'A', message: 'two' });
      assert.deepEqual(seen, [], 'nothing delivered before the commit');
    });
    assert.deepEqual(seen, ['one', 'two']);
    assert.equal(inTxWhenDelivered, false);
    assert.equal(listenerErrors.length, 2, 'the throwing listener was reported, once per event');

    assert.throws(() =>
      s.transaction(() => {
        s.events.appendEvent({ app: 'web', type: 'A', message: 'rolled back' });
        throw new Error('abort');
      }),
    );
    assert.deepEqual(seen, ['one', 'two']);
    assert.equal(s.events.listEvents('web').filter((e) => e.message === 'rolled back').length, 0);

    off();
    offBad();
    s.events.appendEvent({ app: 'web', type: 'A', message: 'after unsubscribe' });
    assert.deepEqual(seen, ['one', 'two']);
    s.close();
  });

  test('a transaction cannot span an await', () => {
    const s = memStore();
    assert.throws(() => s.transaction((async () => undefined) as unknown as () => void), /promise/i);
    assert.equal(s.db.inTransaction, false);
    s.close();
  });
});

// ---- hosts -----------------------------------------------------------------

describe('hosts status', () => {
  test('upsert and list; a down host keeps its last docker version', () => {
    const s = memStore();
    s.hostsStatus.upsert({ host: 'h2', up: true, dockerVersion: '24.0.7', checkedAt: '2025-01-01T00:00:00.000Z' });
    s.hostsStatus.upsert({ host: 'h1', up: true, dockerVersion: '24.0.7' });
    const down = s.hostsStatus.upsert({ host: 'h2', up: false, lastError: 'connect ECONNREFUSED' });
    assert.deepEqual(
      { up: down.up, dockerVersion: down.dockerVersion, lastError: down.lastError },
      { up: false, dockerVersion: '24.0.7', lastError: 'connect ECONNREFUSED' },
    );
    assert.deepEqual(
      s.hostsStatus.list().map((h) => [h.host, h.up]),
      [
        ['h1', true],
        ['h2', false],
      ],
    );
    assert.equal(s.hostsStatus.upsert({ host: 'h2', up: true }).lastError, null);
    assert.equal(s.hostsStatus.get('h3'), null);
    assert.equal(s.hostsStatus.delete('h1'), true);
    assert.equal(s.hostsStatus.list().length, 1);
    s.close();
  });
});
