/**
 * Crash safety of the API with a real daemon child process (`berth daemon`): an
 * acknowledged (202) release survives `kill -9`; one daemon per database; SIGTERM
 * is a quick clean exit; a bad config fails fast and says where. The one host is a
 * local Docker whose socket does not exist: the controller runs, the host is down.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { sseClient } from '../support/api.js';
import { DAEMON_CONFIG, daemonSandbox, freePort, waitReady, type DaemonChild } from '../support/daemon.js';

const TOKEN = 'daemon-test-token-4f1c9b7e2a';
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
