/**
 * Crash safety of the API with a real daemon child process (`berth daemon`): an
 * acknowledged (202) release survives `kill -9`; one daemon per database; SIGTERM
 * is a quick clean exit; a bad config fails fast and says where. The one host is a
 * local Docker whose socket does not exist: the controller runs, the host is down.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { sseClient } from '../support/api.js';
import { DAEMON_CONFIG, daemonSandbox, freePort, killDaemon, spawnDaemon, waitReady, type DaemonChild } from '../support/daemon.js';

const TOKEN = 'daemon-test-token-4f1c9b7e2a-0d83b5e61c';
const AUTH = { authorization: `Bearer ${TOKEN}` };

const sandbox = daemonSandbox('berth-daemon-test-', TOKEN);
after(() => sandbox.cleanup());

/** POSTs a release and SIGKILLs the daemon the moment the 202 status line arrives. */
function postThenKill(d: DaemonChild, body: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${d.url}/v1/apps/web/releases`, { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' } }, (res) => {
      if (res.statusCode === 202) d.proc.kill('SIGKILL');
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

async function releases(d: DaemonChild): Promise<Array<{ revision: number; version: string; reason: string }>> {
  const res = await fetch(`${d.url}/v1/apps/web/releases`, { headers: AUTH });
  assert.equal(res.status, 200);
  return ((await res.json()) as { releases: Array<{ revision: number; version: string; reason: string }> }).releases;
}

describe('berth daemon as a child process', () => {
  const config = sandbox.writeConfig('berth.yml', DAEMON_CONFIG);
  const db = join(sandbox.path, 'data', 'berth.db');
  let port = 0;
  /** The daemon the next test works with. */
  let live: DaemonChild | undefined;

  test('an acknowledged release survives kill -9 right after the 202', async () => {
    port = await freePort();
    const a = await sandbox.spawn({ config, db, port });
    await waitReady(a);
    assert.equal(await postThenKill(a, { version: 'v2' }), 202);
    assert.deepEqual(await a.exit(5000), { code: null, signal: 'SIGKILL' });

    // Restart on the same database and port: the lock died with the process.
    const b = await sandbox.spawn({ config, db, port });
    await waitReady(b);
    assert.deepEqual((await releases(b)).map((r) => [r.revision, r.version]), [[1, 'v2']]);

    // Once more, with optimistic concurrency on top of the recovered history.
    assert.equal(await postThenKill(b, { version: 'v3', expectedRevision: 1 }), 202);
    await b.exit(5000);
    const c = await sandbox.spawn({ config, db, port });
    await waitReady(c);
    assert.deepEqual((await releases(c)).map((r) => [r.revision, r.version]), [[2, 'v3'], [1, 'v2']]);
    const app = (await (await fetch(`${c.url}/v1/apps/web`, { headers: AUTH })).json()) as { desired: { revision: number; version: string } };
    assert.deepEqual([app.desired.revision, app.desired.version], [2, 'v3']);
    // The controller runs (readyz) although its only host is down, and says so.
    assert.equal((await fetch(`${c.url}/readyz`)).status, 200);
    const hosts = (await (await fetch(`${c.url}/v1/hosts`, { headers: AUTH })).json()) as { hosts: Array<{ host: string; up: boolean; lastError: string }> };
    assert.equal(hosts.hosts[0]?.host, 'local');
    assert.equal(hosts.hosts[0]?.up, false);
    for (const d of [a, b, c]) assert.equal(d.output().includes(TOKEN), false, 'the token never reaches the log');
    live = c;
  });

  test('a second daemon on the same database fails fast with DB_LOCKED and a non-zero exit', async () => {
    const running = live!;
    assert.ok(running, 'needs the daemon of the first test');
    assert.equal(running.proc.exitCode, null, 'the first daemon still runs');
    const t0 = Date.now();
    const second = await sandbox.spawn({ config, db });
    const exit = await second.exit(15_000);
    assert.notEqual(exit.code, 0);
    assert.equal(exit.signal, null);
    assert.ok(Date.now() - t0 < 15_000);
    const out = second.output();
    assert.match(out, /DB_LOCKED/);
    assert.match(out, new RegExp(`database .*berth\\.db is in use by process ${running.proc.pid}.*only one berth daemon may use a database file`));
    // The first one is unharmed.
    assert.equal((await fetch(`${running.url}/healthz`)).status, 200);
  });

  test('SIGTERM: exits 0 within 5 s, even with a live event stream open', async () => {
    const d = live!;
    assert.ok(d, 'needs the daemon of the first test');
    const stream = sseClient(`${d.url}/v1/apps/web/events?after=0`, { ...AUTH, accept: 'text/event-stream' });
    try {
      assert.equal((await stream.response).statusCode, 200);
      await stream.next(1);
      const t0 = Date.now();
      d.proc.kill('SIGTERM');
      const exit = await d.exit(5000);
      assert.deepEqual(exit, { code: 0, signal: null });
      assert.ok(Date.now() - t0 < 5000, `exited in ${Date.now() - t0} ms`);
      assert.match(d.output(), /"msg":"stopped"/);
      await stream.ended;
    } finally {
      stream.close();
    }
    // And the database is free again: a new daemon starts on it at once.
    const next = await sandbox.spawn({ config, db });
    await waitReady(next);
    assert.equal((await releases(next)).length, 2);
    next.proc.kill('SIGTERM');
    assert.deepEqual(await next.exit(5000), { code: 0, signal: null });
  });

  test('a config error exits non-zero and names the key path', async () => {
    const bad = sandbox.writeConfig(
      'bad.yml',
      DAEMON_CONFIG.replace('interval: 1s', 'interval: 5 parsecs').replace('hosts: [local]', 'hosts: [local, nowhere]'),
    );
    const d = await sandbox.spawn({ config: bad, db: join(sandbox.path, 'bad', 'berth.db') });
    const exit = await d.exit(15_000);
    assert.notEqual(exit.code, 0);
    assert.equal(exit.signal, null);
    const out = d.output();
    assert.match(out, /apps\.web\.healthcheck\.interval: expected a duration like \\?"5s\\?", got \\?"5 parsecs\\?"/);
    assert.match(out, /apps\.web\.hosts\[1\]: unknown host \\?"nowhere\\?"/);
    assert.doesNotMatch(out, /berth is running/);
  });
});

describe('the API token is long enough', () => {
  const config = sandbox.writeConfig('token.yml', DAEMON_CONFIG);
  const FIX = /make one with: openssl rand -base64 32/;

  test('a BERTH_TOKEN shorter than 32 bytes: the daemon refuses to start, naming the variable and the fix', async () => {
    const short = 'short-token-0123456789';
    const d = spawnDaemon({ config, db: join(sandbox.path, 'short-env', 'berth.db'), port: await freePort(), token: short });
    try {
      const exit = await d.exit(15_000);
      assert.notEqual(exit.code, 0);
      const out = d.output();
      assert.match(out, /BERTH_TOKEN: too short: 22 bytes, at least 32 are needed/);
      assert.match(out, FIX);
      assert.equal(out.includes(short), false, 'the value is not shown');
      assert.doesNotMatch(out, /berth is running/);
    } finally {
      await killDaemon(d);
    }
  });

  test('an api.token shorter than 32 bytes in the config file: refused, naming the key path', async () => {
    const short = sandbox.writeConfig('short-token.yml', `${DAEMON_CONFIG}api:\n  token: "config-token-01234567"\n`);
    const d = spawnDaemon({ config: short, db: join(sandbox.path, 'short-file', 'berth.db'), port: await freePort() });
    try {
      assert.notEqual((await d.exit(15_000)).code, 0);
      assert.match(d.output(), /api\.token: too short: 21 bytes/);
      assert.match(d.output(), FIX);
    } finally {
      await killDaemon(d);
    }
  });

  test('a generated token (data/token) is at least 32 bytes and works; a short hand-written token file is refused', async () => {
    const dir = join(sandbox.path, 'generated');
    const d = spawnDaemon({ config, db: join(dir, 'berth.db'), port: await freePort() });
    try {
      await waitReady(d);
      const token = readFileSync(join(dir, 'token'), 'utf8').trim();
      assert.ok(Buffer.byteLength(token) >= 32, `generated token is ${Buffer.byteLength(token)} bytes`);
      assert.equal((await fetch(`${d.url}/v1/apps`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
      assert.equal(d.output().includes(token), false, 'the generated token is never logged');
    } finally {
      await killDaemon(d);
    }
    const handDir = join(sandbox.path, 'hand-written');
    mkdirSync(handDir, { recursive: true });
    writeFileSync(join(handDir, 'token'), 'hunter2\n', { mode: 0o600 });
    const h = spawnDaemon({ config, db: join(handDir, 'berth.db'), port: await freePort() });
    try {
      assert.notEqual((await h.exit(15_000)).code, 0);
      assert.match(h.output(), /hand-written\/token: too short: 7 bytes/);
      assert.match(h.output(), FIX);
      assert.equal(h.output().includes('hunter2'), false);
    } finally {
      await killDaemon(h);
    }
  });
});

describe('the listen address: clear-text warning and open_reads', () => {
  const openReads = sandbox.writeConfig('open-reads.yml', `${DAEMON_CONFIG}api:\n  open_reads: true\n`);
  const CLEAR_TEXT = /the API listens on 0\.0\.0\.0:\d+, not a loopback address, without TLS: requests and the bearer token travel in clear text/;
  const FIX = /bind it to 127\.0\.0\.1 .*TLS/;
  const IGNORED = /api\.open_reads is ignored: it is honoured only on a loopback listener/;

  test('on 0.0.0.0: a startup warning about clear text, and open_reads ignored (with a warning): reads need the token', async () => {
    const port = await freePort();
    const d = await sandbox.spawn({ config: openReads, db: join(sandbox.path, 'any', 'berth.db'), port, env: { BERTH_LISTEN: `0.0.0.0:${port}` } });
    try {
      await waitReady(d);
      const out = d.output();
      assert.match(out, CLEAR_TEXT);
      assert.match(out, FIX);
      assert.match(out, IGNORED);
      assert.match(out, /"level":40/, 'logged as warnings');
      assert.equal((await fetch(`http://127.0.0.1:${port}/v1/apps`)).status, 401, 'open_reads is not honoured, not even for a loopback client');
      assert.equal((await fetch(`http://127.0.0.1:${port}/v1/apps`, { headers: AUTH })).status, 200);
    } finally {
      await killDaemon(d);
    }
  });

  test('on 0.0.0.0 without open_reads: the clear-text warning only', async () => {
    const port = await freePort();
    const d = await sandbox.spawn({ config: sandbox.writeConfig('plain.yml', DAEMON_CONFIG), db: join(sandbox.path, 'any2', 'berth.db'), port, env: { BERTH_LISTEN: `0.0.0.0:${port}` } });
    try {
      await waitReady(d);
      assert.match(d.output(), CLEAR_TEXT);
      assert.doesNotMatch(d.output(), /open_reads/);
    } finally {
      await killDaemon(d);
    }
  });

  test('on 127.0.0.1: no warning, and open_reads serves reads to loopback clients', async () => {
    const d = await sandbox.spawn({ config: openReads, db: join(sandbox.path, 'lo', 'berth.db') });
    try {
      await waitReady(d);
      assert.equal((await fetch(`${d.url}/v1/apps`)).status, 200, 'open_reads is honoured on a loopback listener');
      assert.equal((await fetch(`${d.url}/v1/apps/web/pause`, { method: 'POST' })).status, 401, 'writes still need the token');
      assert.doesNotMatch(d.output(), /clear text|open_reads is ignored/);
    } finally {
      await killDaemon(d);
    }
  });
});
