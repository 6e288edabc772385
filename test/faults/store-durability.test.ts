/**
 * An acknowledged write survives `kill -9` (docs/design.md, "The store"), under load: 8 clients
 * post releases to a real daemon process as fast as it answers; once ~100 have been
 * acknowledged the daemon is SIGKILLed with the burst still running. With the
 * daemon dead, the database file (opened read-only with better-sqlite3) passes
 * `PRAGMA integrity_check`, holds every acknowledged revision with the version that
 * request sent, and its revisions are contiguous; a restarted daemon on the same
 * file serves them all. Three rounds on the same database.
 *
 * Then the data directory and its lock, with real daemons: under umask 022 the
 * directory is 0700 and every file in it 0600; a second daemon on a database in use
 * is refused; a lock row left by a kill -9 whose pid now belongs to another live
 * process does not stop the next start.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { DAEMON_CONFIG, freePort, killDaemon, spawnDaemon, tempDir, waitReady, type DaemonChild } from '../support/daemon.js';

const TOKEN = 'durability-test-token-5b0c7a93e1f42d68'; // (at least 32 bytes: config MIN_TOKEN_BYTES)
const AUTH = { authorization: `Bearer ${TOKEN}` };
const CLIENTS = 8;
const KILL_AFTER = 100;
const ROUNDS = 3;

const dir = tempDir('berth-durability-');
const config = join(dir.path, 'berth.yml');
const db = join(dir.path, 'data', 'berth.db');
writeFileSync(config, DAEMON_CONFIG);
const daemons: DaemonChild[] = [];

after(async () => {
  await Promise.all(daemons.map(killDaemon));
  dir.remove();
});

async function start(): Promise<DaemonChild> {
  const d = spawnDaemon({ config, db, port: await freePort(), token: TOKEN });
  daemons.push(d);
  await waitReady(d);
  return d;
}

interface Burst {
  /** revision -> version of every 202. */
  acked: Map<number, string>;
  /** Requests in flight when the kill was sent. */
  inFlightAtKill: number;
  /** Requests that got no answer (connection reset / refused). */
  failed: number;
  /** Answers other than a 202 for this request's version with a fresh revision (there should be none). */
  unexpected: string[];
}

/**
 * CLIENTS loops, each posting `r<round>-c<client>-<n>` back to back until its
 * connection fails. The response that brings the acknowledged count to KILL_AFTER
 * sends SIGKILL; the other clients' requests are in flight at that moment.
 */
async function burst(d: DaemonChild, round: number): Promise<Burst> {
  const acked = new Map<number, string>();
  const unexpected: string[] = [];
  let inFlight = 0;
  let inFlightAtKill = -1;
  let failed = 0;
  let killed = false;
  const client = async (c: number) => {
    for (let n = 1; ; n++) {
      const version = `r${round}-c${c}-${n}`;
      inFlight++;
      try {
        const res = await fetch(`${d.url}/v1/apps/web/releases`, {
          method: 'POST',
          headers: { ...AUTH, 'content-type': 'application/json', 'x-berth-actor': `client-${c}` },
          body: JSON.stringify({ version }),
        });
        const body = (await res.json()) as { revision: number; version: string };
        if (res.status !== 202 || body.version !== version || acked.has(body.revision)) {
          // (recorded, not thrown: the catch below is for the connection dying)
          unexpected.push(`${version}: ${res.status} ${JSON.stringify(body)}${acked.has(body.revision) ? ' (revision acknowledged twice)' : ''}`);
          continue;
        }
        acked.set(body.revision, version);
        if (!killed && acked.size >= KILL_AFTER) {
          killed = true;
          inFlightAtKill = inFlight - 1;
          d.proc.kill('SIGKILL');
        }
      } catch {
        // The daemon is gone: this request may or may not have been committed; it was not acknowledged.
        failed++;
        return;
      } finally {
        inFlight--;
      }
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c + 1)));
  return { acked, inFlightAtKill, failed, unexpected };
}

/** Every release of `web` in the file, read with the daemon dead, and the integrity check. */
function readDead(): { integrity: string; releases: Array<{ revision: number; version: string }> } {
  const conn = new Database(db, { readonly: true, fileMustExist: true });
  try {
    return {
      integrity: conn.pragma('integrity_check', { simple: true }) as string,
      releases: conn.prepare("SELECT revision, version FROM releases WHERE app = 'web' ORDER BY revision").all() as Array<{ revision: number; version: string }>,
    };
  } finally {
    conn.close();
  }
}

async function served(d: DaemonChild): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  let before = '';
  for (;;) {
    const res = await fetch(`${d.url}/v1/apps/web/releases?limit=1000${before}`, { headers: AUTH });
    assert.equal(res.status, 200);
    const page = ((await res.json()) as { releases: Array<{ revision: number; version: string }> }).releases;
    for (const r of page) out.set(r.revision, r.version);
    if (page.length < 1000) return out;
    before = `&before=${page[page.length - 1]!.revision}`;
  }
}

describe('acknowledged releases survive kill -9 during a burst', () => {
  /** Everything acknowledged in all rounds so far. */
  const allAcked = new Map<number, string>();
  let live: DaemonChild | undefined;

  for (let round = 1; round <= ROUNDS; round++) {
    test(`round ${round}: ${CLIENTS} clients, SIGKILL after ${KILL_AFTER} acknowledged; all of them are in the file and served after restart`, { timeout: 120_000 }, async (t) => {
      const d = live ?? (await start());
      const b = await burst(d, round);
      const exit = await d.exit(10_000);
      assert.deepEqual(exit, { code: null, signal: 'SIGKILL' }, 'the daemon died of the SIGKILL');
      t.diagnostic(`round ${round}: ${b.acked.size} acknowledged, ${b.inFlightAtKill} requests in flight at the kill, ${b.failed} unanswered`);
      assert.deepEqual(b.unexpected, [], 'every answer before the kill was a 202 with its own version and a revision of its own');
      assert.ok(b.acked.size >= KILL_AFTER, `at least ${KILL_AFTER} acknowledged`);
      assert.ok(b.inFlightAtKill > 0, 'the kill hit a running burst (requests were in flight)');
      assert.ok(b.failed > 0, 'some requests went unanswered: the daemon died mid-burst');
      for (const [rev, v] of b.acked) allAcked.set(rev, v);

      // The file, with no daemon: intact, and holding every acknowledged release.
      assert.ok(existsSync(db));
      const dead = readDead();
      assert.equal(dead.integrity, 'ok', 'PRAGMA integrity_check');
      const inFile = new Map(dead.releases.map((r) => [r.revision, r.version]));
      const missing = [...allAcked].filter(([rev, v]) => inFile.get(rev) !== v);
      assert.deepEqual(missing, [], 'every acknowledged revision is in the file with its version');
      const revisions = dead.releases.map((r) => r.revision);
      assert.deepEqual(revisions, Array.from({ length: revisions.length }, (_, i) => i + 1), 'revisions are contiguous from 1, no gaps');
      const maxAcked = Math.max(...allAcked.keys());
      assert.ok(revisions.length >= maxAcked, 'nothing past the newest acknowledged revision is missing');
      // Unacknowledged but committed (the answer was lost with the process) is allowed; each is one of ours.
      const extra = dead.releases.filter((r) => !allAcked.has(r.revision));
      for (const r of extra) assert.match(r.version, /^r\d+-c\d+-\d+$/, `an unacknowledged revision ${r.revision} is one of the burst's requests`);
      t.diagnostic(`round ${round}: ${revisions.length} revisions in the file, ${extra.length} committed without an answer`);

      // A new daemon on the same file serves all of them.
      live = await start();
      const onApi = await served(live);
      const notServed = [...allAcked].filter(([rev, v]) => onApi.get(rev) !== v);
      assert.deepEqual(notServed, [], 'the restarted daemon serves every acknowledged release');
      assert.equal(onApi.size, revisions.length);
      const app = (await (await fetch(`${live.url}/v1/apps/web`, { headers: AUTH })).json()) as { desired: { revision: number } };
      assert.equal(app.desired.revision, revisions.length, 'the newest revision in the file is the desired one');
    });
  }
});

describe('the data directory and the one-daemon lock, with real daemons', () => {
  const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);

  test('under umask 022 the data directory is 0700 and every file berth creates in it 0600 (database, WAL, SHM, lock, token), the secrets directory 0700', { timeout: 60_000 }, async () => {
    const data = join(dir.path, 'perm-data');
    const file = join(data, 'berth.db');
    const umask = process.umask(0o022); // what `npm start` usually runs under; the daemon inherits it
    let d: DaemonChild;
    try {
      // No BERTH_TOKEN: the daemon generates data/token too.
      d = spawnDaemon({ config, db: file, port: await freePort() });
    } finally {
      process.umask(umask);
    }
    daemons.push(d);
    await waitReady(d);
    const token = readFileSync(join(data, 'token'), 'utf8').trim();
    const res = await fetch(`${d.url}/v1/apps/web/releases`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ version: 'v1' }),
    });
    assert.equal(res.status, 202);
    assert.equal(mode(data), '700', 'data directory');
    const files = readdirSync(data).sort();
    for (const f of ['berth.db', 'berth.db-shm', 'berth.db-wal', 'berth.db.lock', 'token']) assert.ok(files.includes(f), `${f} exists (${files.join(', ')})`);
    // Files 0600; the apps' secrets directory 0700 (its files are the operator's, refused when looser).
    assert.deepEqual(files.map((f) => `${f} ${mode(join(data, f))}`), files.map((f) => `${f} ${f === 'secrets' ? '700' : '600'}`));
    await killDaemon(d);
  });

  test('a second daemon on a database in use is refused (DB_LOCKED) while the first runs', { timeout: 60_000 }, async () => {
    const file = join(dir.path, 'twice', 'berth.db');
    const first = spawnDaemon({ config, db: file, port: await freePort(), token: TOKEN });
    daemons.push(first);
    await waitReady(first);
    const second = spawnDaemon({ config, db: file, port: await freePort(), token: TOKEN });
    daemons.push(second);
    const exit = await second.exit(20_000);
    assert.equal(exit.code, 1, second.output());
    assert.match(second.output(), new RegExp(`DB_LOCKED.*in use by process ${first.proc.pid}`));
    assert.equal((await fetch(`${first.url}/healthz`)).status, 200, 'the first one runs on');
    await killDaemon(first);
  });

  test('after kill -9, a lock row whose pid now belongs to another live process (not berth) does not stop the next start', { timeout: 60_000 }, async () => {
    const file = join(dir.path, 'reused', 'berth.db');
    const first = spawnDaemon({ config, db: file, port: await freePort(), token: TOKEN });
    daemons.push(first);
    await waitReady(first);
    await killDaemon(first); // kill -9: the lock row stays
    // The pid is reused: make the row name a live process that is not berth (as after a reboot).
    const other = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      await once(other, 'spawn');
      const lock = new Database(`${file}.lock`);
      const row = lock.prepare('SELECT pid FROM holder WHERE id = 1').get() as { pid: number } | undefined;
      assert.equal(row?.pid, first.proc.pid, 'kill -9 left the row behind');
      lock.prepare('UPDATE holder SET pid = ? WHERE id = 1').run(other.pid);
      lock.close();
      const next = spawnDaemon({ config, db: file, port: await freePort(), token: TOKEN });
      daemons.push(next);
      await waitReady(next);
      await killDaemon(next);
    } finally {
      other.kill('SIGKILL');
    }
  });
});
