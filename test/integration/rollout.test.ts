import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { makeSpec } from '../support/fixtures.js';
import { startFleet, type Fleet } from '../support/fleet.js';
import { bedSkipReason } from '../support/testbed.js';

/**
 * Rolling updates on 3 real test hosts (own dockerd + sshd each, real registry),
 * driven by the real controller through the SSH host driver.
 */
const skip = bedSkipReason();
const fast = { intervalMs: 500, timeoutMs: 2000, maxAttempts: 6 };
const base = makeSpec();

function hostsServing(serving: Record<string, string[]>): string[] {
  return Object.keys(serving).sort().map((h) => `${h}=${serving[h]!.join('+')}`);
}

describe('rolling update on 3 real hosts', { skip, concurrency: false }, () => {
  const fleets: Fleet[] = [];
  after(async () => {
    for (const f of fleets) await f.stop();
  });

  it('v1 -> v2: v2 serves everywhere, one host in flight at a time, every step in the events', async () => {
    const f = await startFleet('roll', { healthcheck: { ...base.healthcheck, ...fast } });
    fleets.push(f);
    const r1 = f.deploy('v1');
    assert.equal((await f.settle(r1)).phase, 'Complete');
    assert.deepEqual(hostsServing(await f.serving()), ['h1=v1', 'h2=v1', 'h3=v1']);

    const started = Date.now();
    const r2 = f.deploy('v2');
    const s = await f.settle(r2);
    const wall = Date.now() - started;
    assert.equal(s.phase, 'Complete');
    assert.equal(s.observedRevision, r2);
    assert.deepEqual(hostsServing(await f.serving()), ['h1=v2', 'h2=v2', 'h3=v2']);

    const steps = f.events().filter((e) => e.revision === r2);
    // parallelism 1: a host starts only after the previous one switched its traffic.
    const order = steps.filter((e) => e.type === 'ContainerStarted' || e.type === 'TrafficSwitched').map((e) => `${e.type}:${e.host}`);
    assert.deepEqual(order, ['ContainerStarted:h1', 'TrafficSwitched:h1', 'ContainerStarted:h2', 'TrafficSwitched:h2', 'ContainerStarted:h3', 'TrafficSwitched:h3']);
    for (const type of ['NewReleaseCreated', 'HealthCheckPassed', 'ContainerStopped', 'RolloutComplete']) {
      assert.ok(steps.some((e) => e.type === type), `events include ${type}`);
    }
    // The old containers are stopped and retained for rollback, not removed.
    const all = await f.containers();
    for (const h of ['h1', 'h2', 'h3']) {
      assert.deepEqual(all[h]!.map((c) => `${c.version}:${c.running ? 'up' : 'stopped'}`).sort(), ['v1:stopped', 'v2:up']);
    }
    console.log(`# 3-host v1->v2 rollout (interval 500ms, parallelism 1, delay 0): ${wall} ms`);
  });

  it('restart (a release of the same version marked restartedAt, as POST /restart makes): every host gets a new container of that version, health-gated, the old one stopped', async () => {
    const f = await startFleet('rst', { healthcheck: { ...base.healthcheck, ...fast } });
    fleets.push(f);
    const r1 = f.deploy('v1');
    await f.settle(r1);
    const before = Object.values(await f.containers()).flat().filter((c) => c.running).map((c) => c.id).sort();
    const spec = f.store.releases.getRelease('rst', r1)!.spec;
    const r2 = f.store.releases.createRelease({ app: 'rst', version: 'v1', spec: { ...spec, restartedAt: new Date().toISOString() }, reason: 'deploy', actor: 'test' }).revision;
    f.controller.enqueue('rst');
    assert.equal((await f.settle(r2)).phase, 'Complete');
    assert.deepEqual(hostsServing(await f.serving()), ['h1=v1', 'h2=v1', 'h3=v1']);
    const all = await f.containers();
    const running = Object.values(all).flat().filter((c) => c.running);
    assert.equal(running.length, 3);
    assert.ok(running.every((c) => c.revision === r2 && !before.includes(c.id)), 'new containers, of the restart revision');
    for (const h of ['h1', 'h2', 'h3']) assert.deepEqual(all[h]!.map((c) => `${c.revision}:${c.running ? 'up' : 'stopped'}`).sort(), [`${r1}:stopped`, `${r2}:up`]);
    assert.equal(f.events().filter((e) => e.revision === r2 && e.type === 'HealthCheckPassed').length, 3, 'each new container passed its health check before traffic moved');
  });

  it('parallelism 3 updates all hosts in one batch', async () => {
    const f = await startFleet('para', { healthcheck: { ...base.healthcheck, ...fast }, rollout: { ...base.rollout, parallelism: { kind: 'count', value: 3 } } });
    fleets.push(f);
    await f.settle(f.deploy('v1'));
    const r2 = f.deploy('v2');
    assert.equal((await f.settle(r2)).phase, 'Complete');
    const starts = f.events().filter((e) => e.revision === r2 && e.type === 'HostUpdateStarted').map((e) => e.id);
    const firstSwitch = f.events().find((e) => e.revision === r2 && e.type === 'TrafficSwitched')!.id;
    assert.equal(starts.length, 3);
    assert.ok(starts.every((id) => id < firstSwitch), 'all three hosts began updating before any switched');
  });

  it('a broken release never serves: v1 keeps serving, release fails with HealthCheckFailed and rolls back', async () => {
    const f = await startFleet('brk', { healthcheck: { ...base.healthcheck, ...fast, maxAttempts: 4 } });
    fleets.push(f);
    await f.settle(f.deploy('v1'));
    const v1Ids = Object.values(await f.containers()).flat().map((c) => c.id).sort();
    const bad = f.deploy('broken');
    const s = await f.waitFor((st, desired) => desired > bad && st.observedRevision === desired && st.phase === 'RolledBack');
    assert.equal(s.phase, 'RolledBack');
    assert.deepEqual(hostsServing(await f.serving()), ['h1=v1', 'h2=v1', 'h3=v1']);
    const failed = f.events().find((e) => e.revision === bad && e.type === 'RolloutFailed');
    assert.ok(failed, 'RolloutFailed event for the broken revision');
    assert.match(failed.message, /never healthy after 4 attempts/);
    // The broken container was removed; the v1 containers are the same ones as before.
    const after = Object.values(await f.containers()).flat();
    assert.ok(!after.some((c) => c.version === 'broken'));
    assert.deepEqual(after.map((c) => c.id).sort(), v1Ids);
    const rollbacks = await f.metrics.rollbacksTotal.get();
    assert.equal(rollbacks.values.find((v) => v.labels.reason === 'health_check_failed')?.value, 1);
  });

  it('with on_failure rollback, hosts already switched go back to v1 (retained containers restarted)', async () => {
    const f = await startFleet('back', { healthcheck: { ...base.healthcheck, ...fast } });
    fleets.push(f);
    await f.settle(f.deploy('v1'));
    const before = await f.containers();
    // Sabotage h3 only: a container that berth does not own holds the name of the next revision.
    const next = (f.store.releases.latestRelease('back')?.revision ?? 0) + 1;
    const h3 = f.drivers.get('h3')!;
    const squatter = await h3.createContainer({ name: `back-r${next}`, image: `${f.bed.images.app}:v1`, env: {}, labels: {}, network: 'berth', init: true });
    try {
      const r = f.deploy('v2');
      assert.equal(r, next);
      const s = await f.waitFor((st, desired) => desired > r && st.observedRevision === desired);
      assert.equal(s.phase, 'RolledBack');
      assert.deepEqual(hostsServing(await f.serving()), ['h1=v1', 'h2=v1', 'h3=v1']);
      const switched = f.events().filter((e) => e.revision === r && e.type === 'TrafficSwitched').map((e) => e.host);
      assert.deepEqual(switched, ['h1', 'h2'], 'h1 and h2 had moved to v2 before h3 failed');
      const now = await f.containers();
      for (const h of ['h1', 'h2', 'h3']) {
        const v1Before = before[h]!.find((c) => c.version === 'v1')!.id;
        assert.equal(now[h]!.find((c) => c.running)!.id, v1Before, `${h} serves its original v1 container again`);
      }
    } finally {
      await h3.removeContainer(squatter);
    }
  });

  it('berth rollback returns the fleet to v1 reusing the retained containers', async () => {
    const f = await startFleet('rb', { healthcheck: { ...base.healthcheck, ...fast }, rollout: { ...base.rollout, parallelism: { kind: 'count', value: 3 } } });
    fleets.push(f);
    await f.settle(f.deploy('v1'));
    const v1 = Object.fromEntries(Object.entries(await f.containers()).map(([h, cs]) => [h, cs[0]!.id]));
    await f.settle(f.deploy('v2'));
    const r = f.rollback('v1');
    const s = await f.settle(r);
    assert.equal(s.phase, 'RolledBack');
    assert.deepEqual(hostsServing(await f.serving()), ['h1=v1', 'h2=v1', 'h3=v1']);
    const now = await f.containers();
    for (const h of ['h1', 'h2', 'h3']) {
      assert.equal(now[h]!.length, 2, `${h}: no new container was created`);
      assert.equal(now[h]!.find((c) => c.running)!.id, v1[h]);
    }
    assert.ok(f.events().some((e) => e.revision === r && e.type === 'ContainerStarted' && /reusing a retained container/.test(e.message)));
  });

  it('pre_deploy: a failing hook fails the release with no host touched; a passing one runs once with the new image', async () => {
    const f = await startFleet('hook', { healthcheck: { ...base.healthcheck, ...fast }, hooks: { preDeploy: ['echo migrating $VERSION; exit 1'], postDeploy: [], timeoutMs: 30_000 } });
    fleets.push(f);
    // The first release runs the hook too: make it pass for v1.
    f.store.apps.upsertApp({ ...f.spec, hooks: { ...f.spec.hooks, preDeploy: ['echo ran-$VERSION'] } }, 'test');
    await f.settle(f.deploy('v1'));
    const before = Object.values(await f.containers()).flat().map((c) => `${c.id}:${c.running}`).sort();

    f.store.apps.upsertApp({ ...f.spec, hooks: { ...f.spec.hooks, preDeploy: ['echo migrating $VERSION; exit 1'] } }, 'test');
    const bad = f.deploy('v2');
    const s = await f.settle(bad);
    assert.equal(s.phase, 'Failed');
    assert.equal(s.conditions.find((c) => c.type === 'Progressing')?.reason, 'HookFailed');
    assert.deepEqual(Object.values(await f.containers()).flat().map((c) => `${c.id}:${c.running}`).sort(), before, 'no host touched');
    assert.ok(f.events().some((e) => e.revision === bad && e.type === 'HookOutput' && /migrating v2/.test(e.message)));

    f.store.apps.upsertApp({ ...f.spec, hooks: { ...f.spec.hooks, preDeploy: ['echo ran-$VERSION'] } }, 'test');
    const good = f.deploy('v3');
    assert.equal((await f.settle(good)).phase, 'Complete');
    const outputs = f.events().filter((e) => e.revision === good && e.type === 'HookOutput');
    assert.equal(outputs.length, 1, 'the hook ran exactly once');
    assert.match(outputs[0]!.message, /ran-v3/);
    assert.deepEqual(hostsServing(await f.serving()), ['h1=v3', 'h2=v3', 'h3=v3']);
  });
});
