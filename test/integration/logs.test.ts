import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { AppLogItem } from '../../src/domain/logs.js';
import type { AppStatus, BerthEvent } from '../../src/domain/release.js';
import { startBedDaemon, type BedDaemon } from '../support/bed-daemon.js';
import { BIN, ROOT, TOKEN } from '../support/daemon.js';
import { bedSkipReason, testbedCommandAsync } from '../support/testbed.js';
import { waitUntil } from '../support/wait.js';

/**
 * `berth logs` and the failed container's last lines on the real test hosts: every container
 * of the app prints a boot line naming its version and the app's secret, then runs the bed's
 * app. The `broken` version never becomes healthy: its boot line must be in the failure
 * event, GET /v1/apps/:app and `berth status`, the secret redacted everywhere. Followed, a
 * line written into each host's serving container reaches `berth logs -f` within 1 s, and
 * a rollout moves the stream onto the new containers.
 */
const skip = bedSkipReason();
const APP = 'logs';
const SECRET = `s3cret-${randomBytes(8).toString('hex')}`;
const HOSTS = ['h1', 'h2', 'h3'];

type View = { status: AppStatus | null; lastFailure: { reason: string; revision: number | null; logs: Array<{ host: string; lines: string[] }> } | null };

describe('logs on the test hosts', { skip, concurrency: false }, () => {
  let daemon: BedDaemon;
  const children: ChildProcess[] = [];

  const cli = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000, env: { ...process.env, BERTH_URL: daemon.url, BERTH_TOKEN: TOKEN } });

  /** `berth logs ARGS` running on: what it printed so far, each stdout line with when it came. */
  function follow(...args: string[]) {
    const proc = spawn(process.execPath, ['--import', 'tsx', BIN, 'logs', APP, ...args], { cwd: ROOT, env: { ...process.env, BERTH_URL: daemon.url, BERTH_TOKEN: TOKEN }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(proc);
    const lines: Array<{ at: number; text: string }> = [];
    let stderr = '';
    let buf = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      const at = Date.now();
      buf += d;
      const parts = buf.split('\n');
      buf = parts.pop()!;
      for (const text of parts) lines.push({ at, text });
    });
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    return { lines, stderr: () => stderr, proc };
  }

  const view = async () => (await daemon.request<View>('GET', `/v1/apps/${APP}`)).body;
  const serving = async (host: string) => (await view()).status!.hosts.find((h) => h.host === host)!.containerId!;

  before(async () => {
    daemon = await startBedDaemon(
      APP,
      {
        healthcheck: { interval: '500ms', max_attempts: 3 },
        secrets: ['LOG_SECRET'],
        // Every container says who it is (and the secret) before the bed's app starts.
        cmd: ['sh', '-c', 'echo "boot marker-$VERSION secret=$LOG_SECRET"; exec /app/start'],
      },
      { secrets: { [APP]: { LOG_SECRET: SECRET } } },
    );
    const ok = cli('deploy', APP, 'v1', '--wait');
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  });

  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    await daemon?.close();
  });

  it('a container that fails its health check leaves its last lines in the failure event, GET /v1/apps/:app and berth status, the secret redacted', async () => {
    const r = cli('deploy', APP, 'broken', '--wait');
    assert.equal(r.status, 1, r.stdout + r.stderr);
    const events = (await daemon.request<{ events: BerthEvent[] }>('GET', `/v1/apps/${APP}/events?limit=1000`)).body.events;
    const failed = events.filter((e) => e.type === 'FailedContainerLogs');
    assert.equal(failed.length, 1, `one host tried broken before the rollback: ${JSON.stringify(failed)}`);
    assert.match(failed[0]!.message, /^logs-r2 \(broken\) failed its health check; its last \d+ log lines:\nboot marker-broken secret=\[redacted:LOG_SECRET\]$/m);

    // --wait ends at the failure; the rollback it started runs on.
    const v = await waitUntil('the rollback', async () => {
      const now = await view();
      return now.status?.phase === 'RolledBack' ? now : null;
    });
    assert.equal(v.lastFailure?.reason, 'RolloutFailed');
    assert.deepEqual(v.lastFailure?.logs.map((l) => [l.host, l.lines.includes('boot marker-broken secret=[redacted:LOG_SECRET]')]), [[failed[0]!.host, true]]);

    const status = cli('status', APP);
    assert.equal(status.status, 0, status.stderr);
    assert.match(status.stdout, /last failure: RolloutFailed \(revision 2\)/);
    assert.match(status.stdout, new RegExp(`^  ${failed[0]!.host}: the last \\d+ log lines? of its failed container:\\n {4}\\| boot marker-broken secret=\\[redacted:LOG_SECRET\\]$`, 'm'));
    for (const text of [JSON.stringify(events), JSON.stringify(v), status.stdout, r.stdout, daemon.output()]) assert.ok(!text.includes(SECRET), 'the secret is nowhere');
  });

  it('berth logs: the serving containers of every host, each line after its host, redacted; --host and --tail narrow it', async () => {
    const all = cli('logs', APP);
    assert.equal(all.status, 0, all.stderr);
    for (const h of HOSTS) assert.match(all.stdout, new RegExp(`^${h} \\| boot marker-v1 secret=\\[redacted:LOG_SECRET\\]$`, 'm'));
    assert.ok(!all.stdout.includes(SECRET));
    assert.doesNotMatch(all.stdout, /marker-broken/, 'the failed container is gone; its lines are not the serving one\'s');
    const one = cli('logs', APP, '--host', 'h2', '--tail', '1');
    assert.equal(one.status, 0, one.stderr);
    assert.deepEqual(one.stdout.trimEnd().split('\n'), ['h2 | boot marker-v1 secret=[redacted:LOG_SECRET]']);
    assert.equal(cli('logs', APP, '--since', '2099-01-01T00:00:00Z').stdout, '');
  });

  it('berth logs -f shows a line written on each host within 1 s, and goes on with the new containers of a rollout', async () => {
    const human = follow('-f', '--tail', '0');
    const json = follow('-f', '--tail', '0', '--json');
    await waitUntil('both follow every host', async () => (HOSTS.every((h) => human.stderr().includes(`${h}: attached: logs-r1 (v1)`)) && json.lines.filter((l) => l.text.includes('"attached"')).length === 3 ? true : null), {
      timeoutMs: 20_000,
      describe: async () => human.stderr(),
    });
    const latencies: number[] = [];
    for (const h of HOSTS) {
      const id = await serving(h);
      const mark = `tick-${h}-${randomBytes(4).toString('hex')} secret=${SECRET}`;
      const wrote = Date.now();
      // Written to the container's stdout as its own process would (PID 1 is Docker's init).
      await testbedCommandAsync('exec', h, 'exec', id, 'sh', '-c', `echo "${mark}" > /proc/1/fd/1`);
      const expected = `${h} | ${mark.replace(SECRET, '[redacted:LOG_SECRET]')}`;
      const seen = await waitUntil(`"${expected}" in berth logs -f`, async () => human.lines.find((l) => l.text === expected) ?? null, { timeoutMs: 5_000, describe: async () => JSON.stringify(human.lines.slice(-5)) });
      const item = await waitUntil('the JSON line', async () => json.lines.find((l) => l.text.includes(mark.split(' ')[0]!)) ?? null, { timeoutMs: 5_000 });
      const line = JSON.parse(item.text) as Extract<AppLogItem, { type: 'line' }>;
      // From Docker's own timestamp of the line (same machine clock) to the CLI printing it.
      latencies.push(item.at - Date.parse(line.time!));
      assert.ok(seen.at - wrote < 1_000, `${h}: printed ${seen.at - wrote} ms after the write began (docker exec included)`);
    }
    console.log(`# logs -f latency from Docker's timestamp to the CLI's output: ${latencies.join(', ')} ms`);
    for (const ms of latencies) assert.ok(ms < 1_000, `within 1 s: ${latencies.join(', ')}`);
    assert.ok(!human.lines.some((l) => l.text.includes(SECRET)) && !json.lines.some((l) => l.text.includes(SECRET)));

    // A rollout: each host's stream leaves the stopped container for the new one, whose boot line follows.
    const r = cli('deploy', APP, 'v2', '--wait');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    for (const h of HOSTS) {
      await waitUntil(`${h}'s new container in the followed stream`, async () => (human.lines.some((l) => l.text === `${h} | boot marker-v2 secret=[redacted:LOG_SECRET]`) ? true : null), {
        timeoutMs: 15_000,
        describe: async () => `${human.stderr()}\n${human.lines.map((l) => l.text).join('\n')}`,
      });
    }
    assert.match(human.stderr(), /h1: detached: logs-r1 stopped; following the next container of logs on h1/);
    assert.match(human.stderr(), /h1: attached: logs-r4 \(v2\)/);
    assert.equal(human.proc.exitCode, null, 'still following');
  });
});
