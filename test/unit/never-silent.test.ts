/**
 * Issue #16 "Never silent", as the operator sees it: `berth deploy --wait` names an
 * unreachable host and its reason at once and gives up at --timeout (exit 3);
 * `berth hosts` lists reachability; `berth status APP` shows maintenance, pause and the
 * last failure. A real daemon child whose only host is a local Docker whose socket does
 * not exist (DAEMON_CONFIG: the reason, ENOENT on the socket path, comes at the first
 * check), and the CLI as a child process. The last-failure view is checked through the
 * in-process API (no host can fail a health check here).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FAILURE_LOGS_EVENT, failureLogsMessage } from '../../src/domain/logs.js';
import type { AppStatus } from '../../src/domain/release.js';
import { appDoc, makeApi, seedApp } from '../support/api.js';
import { BIN, DAEMON_CONFIG, ROOT, daemonSandbox, runCli, waitReady, type DaemonChild } from '../support/daemon.js';

const TOKEN = 'never-silent-token-5b1f0e27c9d4-a83e61f7';
const sandbox = daemonSandbox('berth-never-silent-', TOKEN);
let daemon: DaemonChild;
let env: Record<string, string>;

before(async () => {
  daemon = await sandbox.spawn({ config: sandbox.writeConfig('berth.yml', DAEMON_CONFIG), db: join(sandbox.path, 'data', 'berth.db') });
  await waitReady(daemon);
  env = { BERTH_URL: daemon.url, BERTH_TOKEN: TOKEN, BERTH_DB: join(sandbox.path, 'cli', 'berth.db'), USER: 'ci-tester' };
});
after(() => sandbox.cleanup());

const berth = (...args: string[]) => runCli(args, env);
const REASON = /host local: unreachable: .*ENOENT.*\/nonexistent\/docker\.sock/;

/** Runs the CLI and notes when each stdout line arrived (ms after the spawn). */
function timedCli(args: string[]): Promise<{ code: number | null; lines: Array<{ at: number; text: string }>; stderr: string; exitAt: number }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const proc = spawn(process.execPath, ['--import', 'tsx', BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: Array<{ at: number; text: string }> = [];
    let buf = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        lines.push({ at: Date.now() - t0, text: buf.slice(0, nl) });
        buf = buf.slice(nl + 1);
      }
    });
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const kill = setTimeout(() => proc.kill('SIGKILL'), 30_000);
    proc.once('error', reject);
    proc.once('close', (code) => {
      clearTimeout(kill);
      resolve({ code, lines, stderr, exitAt: Date.now() - t0 });
    });
  });
}

describe('never silent', () => {
  test('deploy --wait --timeout 10s with the only host unreachable: the reason within 2 s, exit 3 at 10 s', async () => {
    const r = await timedCli(['deploy', 'web', 'v2', '--wait', '--timeout', '10s']);
    const accepted = r.lines.find((l) => l.text === 'web: revision 1 asks for v2');
    const reason = r.lines.find((l) => REASON.test(l.text));
    assert.ok(accepted && reason, `stdout:\n${r.lines.map((l) => l.text).join('\n')}\nstderr: ${r.stderr}`);
    console.log(`# reason after ${reason.at} ms (${reason.at - accepted.at} ms after the release was accepted); exit ${r.code} after ${r.exitAt} ms`);
    assert.ok(reason.at < 2_000, `the host's reason came ${reason.at} ms after the command started`);
    assert.equal(r.code, 3, `exit 3 (timeout); stderr: ${r.stderr}`);
    assert.match(r.stderr, /^berth: web: revision 1 not done after 10s \(Progressing; hosts with an error: local\)/);
    assert.ok(r.exitAt - accepted.at >= 9_900 && r.exitAt < 12_500, `exited ${r.exitAt} ms after the start, ${r.exitAt - accepted.at} ms after the release was accepted`);
    // The reason is printed once, not at every poll.
    assert.equal(r.lines.filter((l) => REASON.test(l.text)).length, 1);
  });

  test('the daemon\'s log and events say when the host went down', async () => {
    const line = daemon
      .output()
      .split('\n')
      .map((l) => (l.startsWith('{') ? (JSON.parse(l) as Record<string, unknown>) : {}))
      .find((l) => l.msg === 'host is down');
    assert.ok(line, `a "host is down" line in the daemon's log:\n${daemon.output()}`);
    assert.equal(line.level, 40, 'a warning');
    assert.equal(line.host, 'local');
    assert.match(String(line.err), /ENOENT/);
    const events = await berth('events', 'web', '--json');
    const down = (JSON.parse(events.stdout) as { events: Array<{ type: string; host: string; message: string; createdAt: string }> }).events.find((e) => e.type === 'HostUnreachable');
    assert.ok(down, events.stdout);
    assert.equal(down.host, 'local');
    assert.match(down.message, /host local is unreachable: .*ENOENT/);
    assert.ok(Math.abs(Date.parse(down.createdAt) - (line.time as number)) < 1_000, 'the event is dated when the log line was written');
  });

  test('hosts: reachability, Docker version, last check and last error; --json is the API\'s', async () => {
    const r = await berth('hosts');
    assert.equal(r.code, 0, r.stderr);
    const [head, row, ...more] = r.stdout.trimEnd().split('\n');
    assert.match(head!, /^HOST\s+STATE\s+DOCKER\s+PROXY\s+CHECKED\s+LAST ERROR$/);
    assert.match(row!, /^local\s+down\s+-\s+-\s+(\d+[smhd] ago)\s+docker version: docker daemon not reachable \(ENOENT\)/);
    assert.deepEqual(more, []);
    const json = JSON.parse((await berth('hosts', '--json')).stdout) as { hosts: Array<{ host: string; up: boolean; lastError: string }> };
    assert.equal(json.hosts.length, 1);
    assert.equal(json.hosts[0]!.up, false);
    assert.match(json.hosts[0]!.lastError, /ENOENT/);
  });

  test('status APP shows maintenance and pause; --timeout is refused without --wait or with a bad duration (exit 2)', async () => {
    assert.equal((await berth('maintenance', 'web', '--message', 'back at 5')).code, 0);
    assert.equal((await berth('pause', 'web')).code, 0);
    const out = (await berth('status', 'web')).stdout;
    assert.match(out, /^web: Paused \(paused\) \(maintenance\)/);
    assert.match(out, /^ {2}paused: the rollout holds between steps \(berth resume web\)$/m);
    assert.match(out, /^ {2}maintenance: proxies answer 503 "back at 5" \(berth live web\)$/m);
    // Paused is where --wait stops: exit 1, at once.
    const t0 = Date.now();
    const waited = await berth('deploy', 'web', 'v3', '--wait', '--timeout', '10s');
    assert.equal(waited.code, 1, waited.stderr);
    assert.ok(Date.now() - t0 < 8_000, 'not at the timeout');
    assert.match(waited.stdout, /^web: Paused \(paused\)/m);
    for (const args of [['deploy', 'web', 'v3', '--timeout', '5s'], ['deploy', 'web', 'v3', '--wait', '--timeout', '5'], ['rollback', 'web', '--wait', '--timeout', '0s']]) {
      const r = await berth(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^berth: --timeout .*; see berth (deploy|rollback) --help\n$/);
    }
    const help = (await berth('deploy', '--help')).stdout;
    assert.match(help, /--timeout D/);
    assert.match(help, /Exit: 0 complete; 1 failed, rolled back or paused \(or an API error\); 2 usage; 3 --timeout passed first/);
  });
});

describe('lastFailure in the app view', () => {
  test('a failed status gives its reason and message; after it, the newest RolloutFailed event', async () => {
    const api = makeApi();
    try {
      await seedApp(api, 'web', ['v1', 'v2'], appDoc());
      const view = async () => (await api.call({ method: 'GET', url: '/v1/apps/web' })).json() as { lastFailure: unknown };
      assert.equal((await view()).lastFailure, null);
      api.store.events.appendEvent({ app: 'web', revision: 1, type: 'RolloutFailed', message: 'h1: never healthy after 3 attempts: GET /health -> 500: old' });
      api.store.events.appendEvent({ app: 'web', revision: 2, type: 'RolloutFailed', message: 'h1: never healthy after 3 attempts: GET /health -> 503: db down' });
      api.store.events.appendEvent({ app: 'web', revision: 2, type: 'RollbackStarted', message: 'rolling the fleet back' });
      assert.deepEqual(
        { ...((await view()).lastFailure as object), at: 'x' },
        { reason: 'RolloutFailed', message: 'h1: never healthy after 3 attempts: GET /health -> 503: db down', revision: 2, at: 'x', logs: [] },
      );
      const status: AppStatus = {
        app: 'web',
        phase: 'Failed',
        observedRevision: 1,
        conditions: [{ type: 'Progressing', status: 'False', reason: 'HookFailed', message: 'pre_deploy on h1: exit 1: no db', lastTransitionTime: '2026-01-01T00:00:00.000Z' }],
        hosts: [],
        updatedAt: '2026-01-01T00:00:00.000Z',
      };
      api.store.status.writeStatus(status);
      assert.deepEqual((await view()).lastFailure, { reason: 'HookFailed', message: 'pre_deploy on h1: exit 1: no db', revision: 2, at: '2026-01-01T00:00:00.000Z', logs: [] });
    } finally {
      await api.close();
    }
  });

  test("the failed containers' last log lines: those of the failure's revision, the newest per host, after a rollback too", async () => {
    const api = makeApi();
    try {
      await seedApp(api, 'web', ['v1', 'v2'], appDoc());
      const logs = (host: string, revision: number, ...lines: string[]) =>
        api.store.events.appendEvent({ app: 'web', host, revision, type: FAILURE_LOGS_EVENT, message: failureLogsMessage(`web-r${revision} (v${revision}) failed its health check`, lines) });
      logs('h1', 1, 'an older release');
      logs('h3', 1, 'an older release, a host that did not fail this time');
      logs('h1', 2, 'first try');
      logs('h1', 2, 'booting', 'db: connection refused');
      logs('h2', 2);
      api.store.events.appendEvent({ app: 'web', revision: 2, type: 'RolloutFailed', message: 'h1: never healthy' });
      api.store.releases.createRelease({ app: 'web', version: 'v1', reason: 'rollback', actor: 'controller' });
      const view = (await api.call({ method: 'GET', url: '/v1/apps/web' })).json() as { lastFailure: { revision: number; logs: unknown } };
      assert.equal(view.lastFailure.revision, 2);
      assert.deepEqual(view.lastFailure.logs, [
        { host: 'h1', lines: ['booting', 'db: connection refused'] },
        { host: 'h2', lines: [] },
      ]);
    } finally {
      await api.close();
    }
  });
});
