import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { AppStatus, BerthEvent } from '../../src/domain/release.js';
import type { AppSpec } from '../../src/domain/app-spec.js';
import { appStory } from '../support/bed-app.js';
import { startBedDaemon, type BedDaemon } from '../support/bed-daemon.js';
import { makeSpec } from '../support/fixtures.js';
import { startFleet, type Fleet } from '../support/fleet.js';
import { startLoad, summarizeFailures } from '../support/load.js';
import { appImage, bedSkipReason, requireTestbed, testbedCommand } from '../support/testbed.js';
import { waitUntil } from '../support/wait.js';

/**
 * rollout.preboot on 3 real test hosts, through their real HAProxy under a zero-failure
 * load checker: at parallelism 1 every new container boots while the first host switches,
 * and the traffic still moves host by host.
 */
const skip = bedSkipReason();
const PORT = 8095;
const base = makeSpec();
/** Each new container needs 2 s before it answers its health check (the bed app's slowboot mode): the boot a pre-boot overlaps. */
const SLOW_BOOT = { MODE: 'slowboot', BOOT_DELAY: '2' };

const at = (events: BerthEvent[], type: string, host: string): number => {
  const e = events.find((x) => x.type === type && x.host === host);
  assert.ok(e, `an event ${type} on ${host}`);
  return e.id;
};

describe('rollout.preboot on 3 real hosts', { skip, concurrency: false }, () => {
  let f: Fleet | undefined;
  after(async () => {
    await f?.stop();
  });

  /** One release under load: zero failed requests; its events, and how long it took. */
  async function rollUnderLoad(fleet: Fleet, version: string): Promise<{ events: BerthEvent[]; wallMs: number }> {
    const targets = fleet.bed.hosts.slice(0, 3).map((h) => `http://${h.address}:${PORT}`);
    const load = startLoad({ targets, clientsPerTarget: 2, slowClientsPerTarget: 0, maxDurationMs: 120_000 });
    const started = Date.now();
    const r = fleet.deploy(version);
    const s = await fleet.settle(r, 90_000);
    const wallMs = Date.now() - started;
    const report = await load.stop();
    assert.equal(s.phase, 'Complete', JSON.stringify(s.conditions));
    assert.deepEqual(report.failures, [], summarizeFailures(report.failures));
    assert.ok(report.requests > 100, `load ran (${report.requests} requests)`);
    return { events: fleet.events().filter((e) => e.revision === r), wallMs };
  }

  it('parallelism 1: all new containers run before the second host switches, traffic never fails, switches go host by host', async () => {
    const spec: Partial<AppSpec> = {
      healthcheck: { ...base.healthcheck, intervalMs: 500, timeoutMs: 2000, maxAttempts: 12 },
      proxy: { port: PORT, host: null, drainTimeoutMs: 2_000 },
      stopTimeoutMs: 5_000,
      env: SLOW_BOOT,
      rollout: { ...base.rollout, parallelism: { kind: 'count', value: 1 }, preboot: true },
    };
    f = await startFleet('preb', spec, { proxy: true });
    assert.equal((await f.settle(f.deploy('v1'), 90_000)).phase, 'Complete');

    const on = await rollUnderLoad(f, 'v2');
    const ev = on.events;
    // Every host's new container starts (h2 and h3 pre-booting) before the first switch...
    const firstSwitch = at(ev, 'TrafficSwitched', 'h1');
    for (const h of ['h2', 'h3']) {
      assert.ok(at(ev, 'PrebootStarted', h) < firstSwitch, `${h} began booting before h1 switched`);
      assert.ok(at(ev, 'ContainerPrebooted', h) < at(ev, 'TrafficSwitched', 'h2'), `${h}'s container was healthy before h2 switched`);
    }
    // ...and the traffic moves one host at a time, in order.
    assert.deepEqual(ev.filter((e) => e.type === 'TrafficSwitched').map((e) => e.host), ['h1', 'h2', 'h3']);
    assert.deepEqual(ev.filter((e) => e.type === 'ContainerStarted').map((e) => e.host).sort(), ['h1', 'h2', 'h3'], 'one container started per host: none booted twice');
    // The hosts agree: each v2 container was created before h2's switch was recorded.
    const h2Switched = Date.parse(ev.find((e) => e.type === 'TrafficSwitched' && e.host === 'h2')!.createdAt);
    const all = await f.containers();
    for (const h of ['h1', 'h2', 'h3']) {
      const fresh = all[h]!.filter((c) => c.version === 'v2');
      assert.equal(fresh.length, 1, `${h}: one v2 container`);
      assert.ok(fresh[0]!.running && fresh[0]!.createdAt <= h2Switched, `${h}: its v2 container was created (${fresh[0]!.createdAt}) before h2 switched (${h2Switched})`);
    }

    // The same fleet without preboot: each host boots only after the one before it switched.
    const { preboot: _on, ...sequential } = f.spec.rollout;
    f.store.apps.upsertApp({ ...f.spec, rollout: sequential }, 'test');
    const off = await rollUnderLoad(f, 'v3');
    assert.ok(at(off.events, 'ContainerStarted', 'h2') > at(off.events, 'TrafficSwitched', 'h1'), 'without preboot h2 boots after h1 switched');
    assert.ok(at(off.events, 'ContainerStarted', 'h3') > at(off.events, 'TrafficSwitched', 'h2'), 'without preboot h3 boots after h2 switched');
    assert.ok(!off.events.some((e) => e.type === 'PrebootStarted'));
    console.log(`# 3 hosts, parallelism 1, 2 s boot, under load: preboot on ${on.wallMs} ms, off ${off.wallMs} ms`);
  });
});

describe('rollout.preboot: a pre-booted container that never passes its health check, on real hosts', { skip, concurrency: false }, () => {
  /** v2 on h1 and h2, the never-healthy image on h3 (tagged on each host, never pushed). */
  const SPOTTY = 'prebspotty';
  const PORT_SPOTTY = 8096;
  let f: Fleet | undefined;
  after(async () => {
    await f?.stop();
    for (const h of ['h1', 'h2', 'h3']) {
      try {
        testbedCommand('exec', h, 'rmi', appImage(requireTestbed(), SPOTTY));
      } catch {
        // not tagged (the test did not get that far)
      }
    }
  });

  it('parallelism 1: the release fails on it, rolls the fleet back to v1, and no request fails; no container of the release is left running', async () => {
    f = await startFleet('prebfail', {
      healthcheck: { ...base.healthcheck, intervalMs: 500, timeoutMs: 1000, maxAttempts: 6 },
      proxy: { port: PORT_SPOTTY, host: null, drainTimeoutMs: 1_000 },
      stopTimeoutMs: 2_000,
      rollout: { ...base.rollout, parallelism: { kind: 'count', value: 1 }, preboot: true, onFailure: 'rollback' },
    }, { proxy: true });
    assert.equal((await f.settle(f.deploy('v1'), 90_000)).phase, 'Complete');
    for (const h of ['h1', 'h2', 'h3']) {
      const image = appImage(f.bed, h === 'h3' ? 'broken' : 'v2');
      testbedCommand('exec', h, 'pull', '-q', image);
      testbedCommand('exec', h, 'tag', image, appImage(f.bed, SPOTTY));
    }

    const targets = f.bed.hosts.slice(0, 3).map((h) => `http://${h.address}:${PORT_SPOTTY}`);
    const load = startLoad({ targets, clientsPerTarget: 2, slowClientsPerTarget: 0, maxDurationMs: 120_000 });
    const bad = f.deploy(SPOTTY);
    await f.settle(bad, 90_000);
    // The rollback is a release of its own (v1 again): wait for it to complete.
    const rollback = f.store.releases.latestRelease('prebfail')!;
    assert.ok(rollback.revision > bad && rollback.version === 'v1' && rollback.reason === 'rollback', `a rollback release follows: ${JSON.stringify(rollback)}`);
    const s = await f.settle(rollback.revision, 90_000);
    const report = await load.stop();
    assert.equal(s.phase, 'RolledBack', JSON.stringify(s.conditions));
    assert.deepEqual(report.failures, [], summarizeFailures(report.failures));
    assert.ok(report.requests > 100, `load ran (${report.requests} requests)`);

    const ev = f.events().filter((e) => e.revision === bad);
    assert.ok(at(ev, 'PrebootStarted', 'h3') > 0, 'h3 pre-booted the release');
    assert.ok(!ev.some((e) => e.type === 'TrafficSwitched' && e.host === 'h3'), 'h3 never served the release');
    assert.equal(ev.filter((e) => e.type === 'RolloutFailed').length, 1);
    assert.deepEqual(await f.serving(), { h1: ['v1'], h2: ['v1'], h3: ['v1'] }, 'every host serves v1 alone');
    const all = await f.containers();
    for (const h of ['h1', 'h2', 'h3']) {
      const running = all[h]!.filter((c) => c.running).map((c) => c.version);
      assert.deepEqual(running, ['v1'], `${h}: only v1 runs (${running.join(', ')})`);
    }
  });
});

describe('rollout.preboot: kill -9 of a real daemon mid-rollout, then restart', { skip, concurrency: false }, () => {
  const APP = 'precrash';
  let daemon: BedDaemon;
  before(async () => {
    daemon = await startBedDaemon(APP, { port: 3000, env: SLOW_BOOT, healthcheck: { interval: '500ms', max_attempts: 12 }, rollout: { parallelism: 1, preboot: true }, retain_containers: 2 });
  });
  after(async () => {
    await daemon?.close();
  });

  const converged = (revision: number) =>
    waitUntil(`revision ${revision} converged`, async () => {
      const { body } = await daemon.request<{ status: AppStatus | null }>('GET', `/v1/apps/${APP}`).catch(() => ({ body: null }));
      const s = body?.status;
      return s && s.observedRevision === revision && s.phase === 'Complete' ? s : null;
    }, { timeoutMs: 90_000, describe: () => appStory(daemon, APP, revision) });
  const sawEvent = (revision: number, type: string, host: string) =>
    waitUntil(`${type} on ${host}`, async () => {
      const { body } = await daemon.request<{ events: BerthEvent[] }>('GET', `/v1/apps/${APP}/events?limit=1000`);
      return body.events.find((e) => e.revision === revision && e.type === type && e.host === host) ?? null;
    }, { timeoutMs: 60_000, pollMs: 50 });

  it('converges on the release with one container per host, none booted twice, wherever the kill fell', async () => {
    await converged((await daemon.request<{ revision: number }>('POST', `/v1/apps/${APP}/releases`, { version: 'v1' })).body.revision);
    const killPoints: Array<[string, string]> = [
      ['PrebootStarted', 'h3'], // h3 booting beside h1's whole step
      ['ContainerPrebooted', 'h3'], // h3 booted and healthy, its switch two batches away
      ['TrafficSwitched', 'h2'], // h3 pre-booted, h2 just switched
    ];
    for (const [i, [type, host]] of killPoints.entries()) {
      const version = i % 2 === 0 ? 'v2' : 'v3';
      const { body } = await daemon.request<{ revision: number }>('POST', `/v1/apps/${APP}/releases`, { version });
      await sawEvent(body.revision, type, host);
      await daemon.kill9();
      await daemon.restart();
      await converged(body.revision);
      for (const [h, d] of daemon.drivers) {
        const apps = (await d.listContainers({ app: APP })).filter((c) => c.role === 'app');
        const running = apps.filter((c) => c.running);
        assert.deepEqual(running.map((c) => c.version), [version], `${h}: exactly one container runs, of ${version}`);
        // A release of a version run before (v2 again) restarts its retained container: one container per version and config.
        assert.equal(new Set(apps.map((c) => `${c.version}/${c.configHash}`)).size, apps.length, `${h}: none booted twice: ${apps.map((c) => c.name).join(', ')}`);
      }
      console.log(`# preboot: kill -9 after ${type}:${host} -> converged on ${version} (revision ${body.revision})`);
    }
  });
});
