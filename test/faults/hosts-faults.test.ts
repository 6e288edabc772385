import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mulberry32 } from '../../src/domain/prng.js';
import type { AppStatus } from '../../src/domain/release.js';
import { startBedDaemon, type BedDaemon } from '../support/bed-daemon.js';
import { startLoad, type LoadOptions, type LoadRun } from '../support/load.js';
import { startLoadProcess } from '../support/load-process.js';
import { bedSkipReason, requireTestbed, testbedCommand, type Testbed } from '../support/testbed.js';

/**
 * Faults on the real test hosts, each under continuous load through the per-host
 * proxies: the daemon killed at random moments, a host cut off, dockerd restarted, a
 * version that flaps. Each asserts convergence AND zero failed requests.
 */
const skip = bedSkipReason();
const APP = 'flt';
const PORT = 8090;
/** The app's YAML keys in the daemon's config file. */
const SPEC = {
  healthcheck: { interval: '500ms', max_attempts: 6 },
  rollout: { parallelism: 1 },
  retain_containers: 3,
  stop_timeout: '5s',
  proxy: { port: PORT, drain_timeout: '10s' },
};
const VERSIONS = ['v1', 'v2', 'v3'];

type AppView = { status: AppStatus | null; desired: { revision: number } | null };


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('faults on real hosts, under load', { skip, concurrency: false }, () => {
  let bed: Testbed;
  let daemon: BedDaemon;
  let next = 0;

  const url = (host: string) => `http://${bed.hosts.find((h) => h.name === host)!.address}:${PORT}`;

  async function waitConverged(revision: number, timeoutMs = 120_000): Promise<AppStatus> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const view = await daemon.request<AppView>('GET', `/v1/apps/${APP}`).then((r) => r.body, () => null);
      const s = view?.status;
      if (s && s.observedRevision === revision && (s.phase === 'Complete' || s.phase === 'RolledBack')) return s;
      if (Date.now() > deadline) {
        const events = (await daemon.request<{ events: Array<{ revision: number; host: string | null; type: string; message: string }> }>('GET', `/v1/apps/${APP}/events?limit=1000`)).body.events;
        const story = events.filter((e) => e.revision !== null && e.revision >= revision).map((e) => `r${e.revision} ${e.host ?? '-'} ${e.type}: ${e.message}`);
        throw new Error(`revision ${revision} did not converge: ${JSON.stringify(s)}\n${story.join('\n')}`);
      }
      await sleep(100);
    }
  }

  async function deploy(version?: string): Promise<{ revision: number; version: string }> {
    const v = version ?? VERSIONS[next++ % VERSIONS.length]!;
    const { status, body } = await daemon.request<{ revision: number }>('POST', `/v1/apps/${APP}/releases`, { version: v });
    assert.equal(status, 202);
    return { revision: body.revision, version: v };
  }

  /** One running app container per host, of `version`, routed by the proxy; no duplicates, no leftovers. */
  async function assertFleet(version: string): Promise<void> {
    for (const [host, d] of daemon.drivers) {
      const cs = (await d.listContainers({ app: APP })).filter((c) => c.role === 'app');
      const running = cs.filter((c) => c.running);
      assert.deepEqual(running.map((c) => c.version), [version], `${host}: exactly one running container, ${version}`);
      assert.equal(new Set(cs.map((c) => c.revision)).size, cs.length, `${host}: no duplicate per revision`);
      assert.ok(cs.length <= 4, `${host}: pruned to retain_containers 3 (+1 running), found ${cs.length}`);
      assert.equal((await d.listContainers({ app: APP })).filter((c) => c.role === 'hook').length, 0, `${host}: no orphaned one-off container`);
      const body = await fetch(`${url(host)}/`).then((r) => r.text());
      assert.equal(body.trim(), version, `${host} proxy serves ${version}`);
    }
  }

  const loadOptions = (hosts: string[]): LoadOptions => ({ targets: hosts.map(url), clientsPerTarget: 2, slowClientsPerTarget: 1, slowPath: '/cgi-bin/slow?s=1', maxDurationMs: 240_000 });
  function load(hosts: string[]): LoadRun {
    return startLoad(loadOptions(hosts));
  }

  before(async () => {
    bed = requireTestbed();
    testbedCommand('live-restore', 'on');
    daemon = await startBedDaemon(APP, SPEC, { bed });
    const first = await deploy('v1');
    next = 1;
    await waitConverged(first.revision);
  });

  after(async () => {
    testbedCommand('netup', 'h3');
    await daemon?.close();
  });

  it('kill -9 at 20 random moments of rollouts: converges every time, no duplicate, no orphan, zero failed requests', async () => {
    const seed = Number(process.env.BERTH_FAULT_SEED ?? Date.now() % 1_000_000);
    const random = mulberry32(seed);
    const traffic = load(['h1', 'h2', 'h3']);
    let kills = 0;
    try {
      for (let round = 0; round < 10; round++) {
        const { revision, version } = await deploy();
        // Two crashes per rollout, at random points of its ~3 s.
        for (let k = 0; k < 2; k++) {
          await sleep(Math.floor(random() * 2500));
          await daemon.kill9();
          kills += 1;
          await daemon.restart();
        }
        await waitConverged(revision);
        await assertFleet(version);
      }
    } finally {
      const report = await traffic.stop();
      console.log(`# crash points: ${kills} (seed ${seed}); requests ${report.requests}, failed ${report.failures.length}, slow ${report.slow.completed}/${report.slow.started} (${report.slow.posts} POSTs), ${report.socketsReused} on reused keep-alive sockets, no retries`);
      assert.deepEqual(report.failures, []);
      assert.equal(report.slow.failed, 0);
    }
    assert.equal(kills, 20);
  });

  it('a host cut off mid-rollout: reported down, the others finish, it converges when the link returns', async () => {
    const traffic = load(['h1', 'h2']);
    try {
      const { revision, version } = await deploy();
      // Cut h3 while h1 is being updated.
      await sleep(300);
      testbedCommand('netdown', 'h3');
      const cutAt = Date.now();
      const deadline = Date.now() + 60_000;
      let hosts: Array<{ host: string; up: boolean; lastError: string | null }> = [];
      for (;;) {
        hosts = (await daemon.request<{ hosts: typeof hosts }>('GET', '/v1/hosts')).body.hosts;
        const view = (await daemon.request<AppView>('GET', `/v1/apps/${APP}`)).body;
        const h3Down = hosts.find((h) => h.host === 'h3')?.up === false;
        const othersDone = view.status?.hosts.filter((h) => h.host !== 'h3').every((h) => h.version === version && h.health === 'healthy');
        if (h3Down && othersDone) break;
        assert.ok(Date.now() < deadline, `h1/h2 did not finish while h3 was down: ${JSON.stringify(view.status)}`);
        await sleep(200);
      }
      const metrics = await fetch(`${daemon.url}/metrics`).then((r) => r.text());
      assert.match(metrics, /berth_host_up\{host="h3"\} 0/);
      const view = (await daemon.request<AppView>('GET', `/v1/apps/${APP}`)).body;
      assert.equal(view.status?.phase, 'Progressing', 'not Complete while a host is missing');
      assert.equal(view.status?.conditions.find((c) => c.type === 'HostsReachable')?.status, 'False');
      console.log(`# h3 cut off: reported down and h1/h2 on ${version} ${Date.now() - cutAt} ms after the cut`);
      testbedCommand('netup', 'h3');
      const back = Date.now();
      await waitConverged(revision);
      console.log(`# h3 back: converged ${Date.now() - back} ms after the link returned`);
      await assertFleet(version);
    } finally {
      testbedCommand('netup', 'h3');
      const report = await traffic.stop();
      console.log(`# host lost: requests ${report.requests}, failed ${report.failures.length}`);
      assert.deepEqual(report.failures, []);
    }
  });

  it('dockerd restarted on a host mid-rollout and after: berth reconnects and converges, zero failed requests', async () => {
    // The restart is a blocking spawnSync of this process: the load runs in its own, so it sees the restart.
    const traffic = await startLoadProcess(loadOptions(['h1', 'h2', 'h3']));
    try {
      const { revision, version } = await deploy();
      await sleep(800);
      testbedCommand('dockerd-restart', 'h2');
      await waitConverged(revision);
      await assertFleet(version);
      testbedCommand('dockerd-restart', 'h1');
      const again = await deploy();
      await waitConverged(again.revision);
      await assertFleet(again.version);
    } finally {
      const report = await traffic.stop();
      console.log(`# dockerd restarts (load in its own process): requests ${report.requests} over ${report.durationMs} ms, failed ${report.failures.length}`);
      assert.deepEqual(report.failures, []);
    }
  });

  it('a version that is healthy, then unhealthy inside the min_healthy soak, is never promoted', async () => {
    const current = (await daemon.request<AppView>('GET', `/v1/apps/${APP}`)).body;
    const servingVersion = (await fetch(`${url('h1')}/`).then((r) => r.text())).trim();
    // The app is the config file's: the operator edits the file and reloads.
    daemon.rewriteConfig({ [APP]: { ...SPEC, healthcheck: { ...SPEC.healthcheck, min_healthy: '6s' } } });
    const reload = await daemon.request<{ apps: Record<string, string> }>('POST', '/v1/reload', {});
    assert.equal(reload.status, 200, JSON.stringify(reload.body));
    assert.equal(reload.body.apps[APP], 'updated');
    const traffic = load(['h1', 'h2', 'h3']);
    try {
      const { revision } = await deploy('flappy');
      const deadline = Date.now() + 90_000;
      for (;;) {
        const view = (await daemon.request<AppView>('GET', `/v1/apps/${APP}`)).body;
        if ((view.desired?.revision ?? 0) > revision && view.status?.observedRevision === view.desired?.revision) break;
        assert.ok(Date.now() < deadline, 'flappy was not rolled back');
        await sleep(200);
      }
      const events = (await daemon.request<{ events: Array<{ revision: number; type: string; message: string }> }>('GET', `/v1/apps/${APP}/events?limit=1000`)).body.events;
      assert.ok(!events.some((e) => e.revision === revision && e.type === 'TrafficSwitched'), 'flappy never received traffic');
      assert.ok(events.some((e) => e.revision === revision && e.type === 'RolloutFailed' && /min_healthy/.test(e.message)));
      await assertFleet(servingVersion);
    } finally {
      const report = await traffic.stop();
      console.log(`# flapping version: requests ${report.requests}, failed ${report.failures.length}, versions ${JSON.stringify(report.versions)}`);
      assert.deepEqual(report.failures, []);
      assert.deepEqual(Object.keys(report.versions), [servingVersion]);
      assert.ok(current.desired);
    }
  });
});
