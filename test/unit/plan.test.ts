import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ObservedContainer } from '../../src/hosts/host-driver.js';
import { rolloutRecordProblem, type RolloutRecord } from '../../src/domain/rollout.js';
import { rollbackSpec } from '../../src/domain/app-spec.js';
import { newRecord, plan as planPure } from '../../src/reconciler/plan.js';
import { applyResults as applyResultsPure } from '../../src/reconciler/results.js';
import type { Action, ActionResult, HostObservation, HostUpdateAction, Plan, PlanInput } from '../../src/reconciler/types.js';
import { validateAppDocument } from '../../src/config/app.js';
import { desiredRelease } from '../../src/reconciler/context.js';
import { makeContainer, makeDesired, makeSpec, observeHosts as observe, planInput as input, PLAN_NOW } from '../support/fixtures.js';

/**
 * Every record the planner and applyResults produce, in every scenario below, is one the
 * store reads back (src/store/status.ts validates with rolloutRecordProblem): a record
 * the validator refused would be dropped and its rollout started over.
 */
function storable(record: RolloutRecord, where: string): RolloutRecord {
  assert.equal(rolloutRecordProblem(JSON.parse(JSON.stringify(record))), null, `${where} wrote a record the store would refuse`);
  return record;
}
function plan(i: PlanInput): Plan {
  const p = planPure(i);
  if (p.record) storable(p.record, 'plan');
  return p;
}
function applyResults(record: RolloutRecord, results: ActionResult[], now: number): RolloutRecord {
  return storable(applyResultsPure(record, results, now), 'applyResults');
}

/**
 * The planner, scenario by scenario. Each case is a fleet as observed plus the
 * rollout record; the assertions are the actions (and record/status) it decides.
 */
const NOW = PLAN_NOW;


/** A record for revision 2 past pre-pull, with the given hosts switched. */
function record(overrides: Partial<RolloutRecord> = {}): RolloutRecord {
  return { ...newRecord(2, NOW - 1000), pulled: ['h1', 'h2', 'h3'], ...overrides };
}

const types = (actions: Action[]) => actions.map((a) => `${a.type}:${'host' in a ? a.host : ''}`).sort();

describe('plan: steady state', () => {
  it('does nothing without a desired release', () => {
    const p = plan(input({ desired: null }));
    assert.deepEqual(p.actions, []);
    assert.equal(p.status.phase, null);
  });

  it('does nothing when the fleet is converged', () => {
    const c = { h1: makeContainer(2, 'v2'), h2: makeContainer(2, 'v2'), h3: makeContainer(2, 'v2') };
    const rec = record({
      state: 'complete',
      hosts: Object.fromEntries(Object.entries(c).map(([h, x]) => [h, { step: 'switched' as const, containerId: x.id, at: NOW }])),
    });
    const p = plan(input({ record: rec, observed: observe({ h1: [c.h1], h2: [c.h2], h3: [c.h3] }) }));
    assert.deepEqual(p.actions, []);
    assert.equal(p.status.phase, 'Complete');
    assert.equal(p.status.observedRevision, 2);
    assert.equal(p.status.hostsUpdated, 3);
  });

  it('repairs drift after completion: a stopped current container is restarted in place', () => {
    const c = { h1: makeContainer(2, 'v2'), h2: makeContainer(2, 'v2', { running: false }), h3: makeContainer(2, 'v2') };
    const rec = record({
      state: 'complete',
      hosts: Object.fromEntries(Object.entries(c).map(([h, x]) => [h, { step: 'switched' as const, containerId: x.id, at: NOW }])),
    });
    const p = plan(input({ record: rec, observed: observe({ h1: [c.h1], h2: [c.h2], h3: [c.h3] }) }));
    assert.deepEqual(p.actions, [
      // Nothing else serves on h2: a failure there is retried, never fails the host (results.ts).
      { type: 'updateHost', host: 'h2', existingContainerId: c.h2.id, containerName: 'web-r2', pull: false, repair: true },
    ]);
    assert.equal(p.status.phase, 'Progressing');
  });

  it('after completion, a replacement beside the container that serves (a rotated secret) is no repair: it may fail the host', () => {
    const c = { h1: makeContainer(2, 'v2'), h2: makeContainer(2, 'v2'), h3: makeContainer(2, 'v2') };
    const rec = record({
      state: 'complete',
      hosts: Object.fromEntries(Object.entries(c).map(([h, x]) => [h, { step: 'switched' as const, containerId: x.id, at: NOW }])),
    });
    const rotated = { ...makeDesired(2, 'v2'), configHash: 'rotated-secret' };
    const p = plan(input({ desired: rotated, record: rec, observed: observe({ h1: [c.h1], h2: [c.h2], h3: [c.h3] }) }));
    const updates = p.actions.filter((a) => a.type === 'updateHost');
    assert.ok(updates.length > 0);
    for (const a of updates) assert.equal(a.type === 'updateHost' && a.repair, undefined, `${a.host}: its old container keeps serving`);
  });

  it('prunes stopped containers beyond retain_containers, oldest first, never the running one', () => {
    const spec = makeSpec({ hosts: ['h1'], retainContainers: 2 });
    const desired = makeDesired(6, 'v6', spec);
    const old = [1, 2, 3, 4, 5].map((r) => makeContainer(r, `v${r}`, { running: false, createdAt: r, spec }));
    const cur = makeContainer(6, 'v6', { spec, createdAt: 6 });
    const rec = { ...newRecord(6, NOW), state: 'complete' as const, hosts: { h1: { step: 'switched' as const, containerId: cur.id, at: NOW } } };
    const p = plan(input({ desired, record: rec, observed: observe({ h1: [...old, cur] }) }));
    assert.deepEqual(p.actions, [{ type: 'remove', host: 'h1', containerIds: [old[2]!.id, old[1]!.id, old[0]!.id], why: 'prune' }]);
  });

  it('ignores containers that are not app containers (proxy, hooks)', () => {
    const proxy = { ...makeContainer(0, 'caddy', { running: true }), role: 'proxy' as const };
    const p = plan(input({ desired: makeDesired(2, 'v2', makeSpec({ hosts: ['h1'] })), observed: observe({ h1: [proxy] }) }));
    assert.deepEqual(p.actions, [{ type: 'updateHost', host: 'h1', existingContainerId: null, containerName: 'web-r2', pull: true }]);
  });
});

describe('plan: rolling update', () => {
  const fleetV1 = () => ({ h1: [makeContainer(1, 'v1')], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] });

  it('a new release starts a rollout record; the first batch boots while later hosts pre-pull', () => {
    const p = plan(input({ observed: observe(fleetV1()) }));
    assert.deepEqual(types(p.actions), ['pull:h2', 'pull:h3', 'updateHost:h1']);
    assert.equal(p.actions.find((a) => a.type === 'updateHost' && a.pull), p.actions[0], 'h1 pulls inside its update');
    assert.equal(p.record?.revision, 2);
    assert.equal(p.record?.state, 'active');
    assert.equal(p.events[0]?.type, 'NewReleaseCreated');
    assert.equal(p.status.phase, 'Progressing');
    assert.equal(p.status.conditions.find((c) => c.type === 'Progressing')?.reason, 'NewReleaseCreated');
  });

  for (const [parallelism, expected] of [
    [{ kind: 'count', value: 1 }, ['updateHost:h1']],
    [{ kind: 'count', value: 2 }, ['updateHost:h1', 'updateHost:h2']],
    [{ kind: 'count', value: 5 }, ['updateHost:h1', 'updateHost:h2', 'updateHost:h3']],
    [{ kind: 'percent', value: 67 }, ['updateHost:h1', 'updateHost:h2']],
    [{ kind: 'percent', value: 50 }, ['updateHost:h1']],
    [{ kind: 'percent', value: 10 }, ['updateHost:h1']],
    [{ kind: 'percent', value: 100 }, ['updateHost:h1', 'updateHost:h2', 'updateHost:h3']],
  ] as const) {
    it(`parallelism ${parallelism.value}${parallelism.kind === 'percent' ? '%' : ''} puts ${expected.length} host(s) in flight`, () => {
      const spec = makeSpec({ rollout: { ...makeSpec().rollout, parallelism } });
      const p = plan(input({ desired: makeDesired(2, 'v2', spec), record: record(), observed: observe(fleetV1()) }));
      assert.deepEqual(types(p.actions), expected);
    });
  }

  it('never stops the old container before the new one is healthy and switched', () => {
    const old = makeContainer(1, 'v1');
    const fresh = makeContainer(2, 'v2');
    const p = plan(input({ record: record(), observed: observe({ h1: [old, fresh], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] }) }));
    assert.deepEqual(p.actions, [{ type: 'updateHost', host: 'h1', existingContainerId: fresh.id, containerName: 'web-r2', pull: false }]);
  });

  it('retires the old container of a switched host while the next batch starts', () => {
    const old = makeContainer(1, 'v1');
    const fresh = makeContainer(2, 'v2');
    const rec = record({ hosts: { h1: { step: 'switched', containerId: fresh.id, at: NOW } } });
    const p = plan(input({ record: rec, observed: observe({ h1: [old, fresh], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] }) }));
    assert.deepEqual(types(p.actions), ['retire:h1', 'updateHost:h2']);
    assert.deepEqual(p.actions.find((a) => a.type === 'retire'), { type: 'retire', host: 'h1', containerIds: [old.id] });
    assert.equal(p.status.hostsUpdated, 1);
  });

  it('waits `delay` between batches, then goes on', () => {
    const spec = makeSpec({ rollout: { ...makeSpec().rollout, delayMs: 10_000 } });
    const desired = makeDesired(2, 'v2', spec);
    const fresh = makeContainer(2, 'v2', { spec });
    const rec = record({ hosts: { h1: { step: 'switched', containerId: fresh.id, at: NOW } } });
    const observed = observe({ h1: [fresh], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] });
    const first = plan(input({ desired, record: rec, observed }));
    assert.deepEqual(first.actions, []);
    assert.equal(first.requeueAfterMs, 10_000);
    assert.equal(first.record?.batch, 1);
    const later = plan(input({ desired, record: first.record, observed, now: NOW + 10_000 }));
    assert.deepEqual(types(later.actions), ['updateHost:h2']);
  });

  it('completes when every host serves the release, and reports it', () => {
    const c = [makeContainer(2, 'v2'), makeContainer(2, 'v2'), makeContainer(2, 'v2')];
    const rec = record({ hosts: { h1: { step: 'switched', containerId: c[0]!.id, at: NOW }, h2: { step: 'switched', containerId: c[1]!.id, at: NOW }, h3: { step: 'switched', containerId: c[2]!.id, at: NOW } } });
    const p = plan(input({ record: rec, observed: observe({ h1: [c[0]!], h2: [c[1]!], h3: [c[2]!] }) }));
    assert.equal(p.record?.state, 'complete');
    assert.equal(p.record?.finishedAt, NOW);
    assert.equal(p.status.phase, 'Complete');
    assert.equal(p.status.observedRevision, 2);
    assert.ok(p.events.some((e) => e.type === 'RolloutComplete'));
  });

  it('is not complete while an old container still runs next to a switched one', () => {
    const c = [makeContainer(2, 'v2'), makeContainer(2, 'v2'), makeContainer(2, 'v2')];
    const old = makeContainer(1, 'v1');
    const rec = record({ hosts: { h1: { step: 'switched', containerId: c[0]!.id, at: NOW }, h2: { step: 'switched', containerId: c[1]!.id, at: NOW }, h3: { step: 'switched', containerId: c[2]!.id, at: NOW } } });
    const p = plan(input({ record: rec, observed: observe({ h1: [c[0]!], h2: [c[1]!], h3: [c[2]!, old] }) }));
    assert.equal(p.record?.state, 'active');
    assert.deepEqual(p.actions, [{ type: 'retire', host: 'h3', containerIds: [old.id] }]);
    assert.equal(p.status.phase, 'Progressing');
  });

  it('resumes after a crash between create and start: adopts the created container, no duplicate', () => {
    const created = makeContainer(2, 'v2', { running: false, state: 'created' });
    const p = plan(input({ record: record(), observed: observe({ h1: [makeContainer(1, 'v1'), created], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] }) }));
    assert.deepEqual(p.actions, [{ type: 'updateHost', host: 'h1', existingContainerId: created.id, containerName: 'web-r2', pull: false }]);
  });

  it('resumes after a crash that lost the record: re-probes and re-switches running new containers', () => {
    const fresh = makeContainer(2, 'v2');
    const p = plan(input({ record: null, observed: observe({ h1: [makeContainer(1, 'v1', { running: false }), fresh], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] }) }));
    // h1 needs no pull (its target exists) and is re-probed; h2/h3 pull meanwhile.
    assert.deepEqual(types(p.actions), ['pull:h2', 'pull:h3', 'updateHost:h1']);
    assert.deepEqual(p.actions.find((a) => a.type === 'updateHost'), { type: 'updateHost', host: 'h1', existingContainerId: fresh.id, containerName: 'web-r2', pull: false });
  });

  it('skips an unreachable host, keeps going with the others, and does not complete without it', () => {
    const c2 = makeContainer(2, 'v2');
    const c3 = makeContainer(2, 'v2');
    const rec = record({ pulled: ['h2', 'h3'], hosts: { h2: { step: 'switched', containerId: c2.id, at: NOW }, h3: { step: 'switched', containerId: c3.id, at: NOW } } });
    const p = plan(input({ record: rec, observed: observe({ h1: 'down', h2: [c2], h3: [c3] }) }));
    assert.deepEqual(p.actions, []);
    assert.equal(p.record?.state, 'active');
    assert.equal(p.status.phase, 'Progressing');
    assert.equal(p.status.conditions.find((c) => c.type === 'HostsReachable')?.status, 'False');
    assert.match(p.status.hosts[0]!.lastError ?? '', /ETIMEDOUT/);
    const back = plan(input({ record: rec, observed: observe({ h1: [makeContainer(1, 'v1')], h2: [c2], h3: [c3] }) }));
    assert.deepEqual(back.actions, [{ type: 'updateHost', host: 'h1', existingContainerId: null, containerName: 'web-r2', pull: true }]);
  });

  it('Available: true while every reachable host serves; false, saying so, when no host is known to serve', () => {
    const available = (observed: HostObservation[]) => plan(input({ record: record(), observed })).status.conditions.find((c) => c.type === 'Available')!;
    assert.equal(available(observe({ h1: 'down', h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] })).status, 'True');
    const none = available(observe({ h1: 'down', h2: 'down', h3: 'down' }));
    assert.deepEqual([none.status, none.reason], ['False', 'NoHostServes']);
    assert.match(none.message, /3\/3 unreachable/);
    assert.equal(available(observe({ h1: [], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] })).status, 'False', 'a reachable host serving nothing');
  });
});

describe('plan: hooks', () => {
  const hooked = makeSpec({ hooks: { preDeploy: ['migrate'], postDeploy: ['notify'], timeoutMs: 60_000 } });

  it('runs pre_deploy once on the first host after the pull, before any host changes', () => {
    const desired = makeDesired(2, 'v2', hooked);
    const observed = observe({ h1: [makeContainer(1, 'v1', { spec: hooked })], h2: [makeContainer(1, 'v1', { spec: hooked })], h3: [makeContainer(1, 'v1', { spec: hooked })] });
    const p = plan(input({ desired, record: record(), observed }));
    assert.deepEqual(p.actions, [{ type: 'hook', host: 'h1', phase: 'pre_deploy' }]);
    const after = plan(input({ desired, record: record({ preDeployDone: true }), observed }));
    assert.deepEqual(types(after.actions), ['updateHost:h1']);
  });

  it('a failed pre_deploy hook fails the release and touches nothing (no rollback release either)', () => {
    const desired = makeDesired(2, 'v2', hooked);
    const rec = applyResults(
      record(),
      [{ action: { type: 'hook', host: 'h1', phase: 'pre_deploy' }, ok: false, stage: 'other', code: 'HOOK_FAILED', message: 'exit code 1', unreachable: false }],
      NOW,
    );
    const observed = observe({ h1: [makeContainer(1, 'v1', { spec: hooked })], h2: [makeContainer(1, 'v1', { spec: hooked })], h3: [makeContainer(1, 'v1', { spec: hooked })] });
    const p = plan(input({ desired, record: rec, observed }));
    assert.deepEqual(p.actions, []);
    assert.equal(p.status.phase, 'Failed');
    assert.equal(p.status.conditions[0]?.reason, 'HookFailed');
  });

  it('does not run hooks for a rollback release', () => {
    const desired = makeDesired(3, 'v1', hooked, 'rollback');
    const observed = observe({ h1: [makeContainer(2, 'v2', { spec: hooked })], h2: [], h3: [] });
    const p = plan(input({ desired, record: { ...newRecord(3, NOW), pulled: ['h1', 'h2', 'h3'] }, observed, stable: { revision: 2, version: 'v2' } }));
    assert.deepEqual(types(p.actions), ['updateHost:h1']);
  });

  it('runs post_deploy after the last batch, then completes', () => {
    const desired = makeDesired(2, 'v2', hooked);
    const c = [1, 2, 3].map(() => makeContainer(2, 'v2', { spec: hooked }));
    const hosts = { h1: { step: 'switched' as const, containerId: c[0]!.id, at: NOW }, h2: { step: 'switched' as const, containerId: c[1]!.id, at: NOW }, h3: { step: 'switched' as const, containerId: c[2]!.id, at: NOW } };
    const observed = observe({ h1: [c[0]!], h2: [c[1]!], h3: [c[2]!] });
    const p = plan(input({ desired, record: record({ preDeployDone: true, hosts }), observed }));
    assert.deepEqual(p.actions, [{ type: 'hook', host: 'h1', phase: 'post_deploy' }]);
    const done = plan(input({ desired, record: record({ preDeployDone: true, postDeployDone: true, hosts }), observed }));
    assert.equal(done.record?.state, 'complete');
  });
});

describe('plan: failures and rollback', () => {
  const failedH2 = (fresh: ObservedContainer, h1: ObservedContainer) =>
    record({
      hosts: {
        h1: { step: 'switched', containerId: h1.id, at: NOW },
        h2: { step: 'failed', reason: 'HealthCheckFailed', message: 'GET /health: 500 after 10 attempts', at: NOW },
      },
    });

  it('on_failure rollback: fails the release, removes the unhealthy container, creates a rollback release', () => {
    const h1new = makeContainer(2, 'v2');
    const h2new = makeContainer(2, 'v2');
    const observed = observe({ h1: [makeContainer(1, 'v1', { running: false }), h1new], h2: [makeContainer(1, 'v1'), h2new], h3: [makeContainer(1, 'v1')] });
    const p = plan(input({ record: failedH2(h2new, h1new), observed }));
    assert.equal(p.record?.state, 'failed');
    assert.equal(p.status.phase, 'Failed');
    assert.equal(p.status.conditions[0]?.reason, 'HealthCheckFailed');
    assert.deepEqual(p.rollback, { toVersion: 'v1', toRevision: 1, reason: 'health_check_failed' });
    assert.deepEqual(p.actions, [{ type: 'remove', host: 'h2', containerIds: [h2new.id], why: 'failed' }]);
  });

  it('the rollback release reuses the retained stopped container instead of creating one', () => {
    const retained = makeContainer(1, 'v1', { running: false });
    const h1new = makeContainer(2, 'v2');
    const rollback = makeDesired(3, 'v1', makeSpec(), 'rollback');
    const observed = observe({ h1: [retained, h1new], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] });
    const p = plan(input({ desired: rollback, stable: { revision: 1, version: 'v1' }, observed }));
    // No pull anywhere: every host still has a v1 container.
    assert.deepEqual(p.actions, [{ type: 'updateHost', host: 'h1', existingContainerId: retained.id, containerName: 'web-r3', pull: false }]);
  });

  it('a failed rollback release is not rolled back again', () => {
    const rollback = makeDesired(3, 'v1', makeSpec(), 'rollback');
    const rec = { ...newRecord(3, NOW), pulled: ['h1', 'h2', 'h3'], hosts: { h1: { step: 'failed' as const, reason: 'HealthCheckFailed' as const, message: 'down', at: NOW } } };
    const p = plan(input({ desired: rollback, stable: { revision: 1, version: 'v1' }, record: rec, observed: observe({ h1: [], h2: [], h3: [] }) }));
    assert.equal(p.record?.state, 'failed');
    assert.equal(p.rollback, undefined);
  });

  it('the first release has nothing to roll back to: it just fails', () => {
    const rec = record({ hosts: { h1: { step: 'failed', reason: 'HealthCheckFailed', message: 'x', at: NOW } } });
    const p = plan(input({ stable: null, record: rec, observed: observe({ h1: [], h2: [], h3: [] }) }));
    assert.equal(p.status.phase, 'Failed');
    assert.equal(p.rollback, undefined);
  });

  it('on_failure pause: holds the rollout and pauses the app', () => {
    const spec = makeSpec({ rollout: { ...makeSpec().rollout, onFailure: 'pause' } });
    const desired = makeDesired(2, 'v2', spec);
    const rec = record({ hosts: { h1: { step: 'failed', reason: 'HealthCheckFailed', message: 'x', at: NOW } } });
    const p = plan(input({ desired, record: rec, observed: observe({ h1: [makeContainer(1, 'v1', { spec })], h2: [makeContainer(1, 'v1', { spec })], h3: [makeContainer(1, 'v1', { spec })] }) }));
    assert.equal(p.record?.state, 'paused');
    assert.equal(p.pauseApp, true);
    assert.equal(p.status.phase, 'Paused');
    assert.ok(!p.actions.some((a) => a.type === 'updateHost'));
  });

  it('resume after a failure pause retries the failed host', () => {
    const spec = makeSpec({ rollout: { ...makeSpec().rollout, onFailure: 'pause' } });
    const desired = makeDesired(2, 'v2', spec);
    const rec = record({ state: 'paused', failure: { reason: 'HealthCheckFailed', message: 'x' }, hosts: { h1: { step: 'failed', reason: 'HealthCheckFailed', message: 'x', at: NOW } } });
    const observed = observe({ h1: [makeContainer(1, 'v1', { spec })], h2: [makeContainer(1, 'v1', { spec })], h3: [makeContainer(1, 'v1', { spec })] });
    const stillPaused = plan(input({ desired, record: rec, observed, paused: true }));
    assert.deepEqual(stillPaused.actions, []);
    const resumed = plan(input({ desired, record: rec, observed, paused: false }));
    assert.deepEqual(types(resumed.actions), ['updateHost:h1']);
    assert.equal(resumed.record?.state, 'active');
  });

  it('on_failure continue: goes on within max_failure_ratio, fails beyond it', () => {
    const spec = makeSpec({ rollout: { ...makeSpec().rollout, onFailure: 'continue', maxFailureRatio: 0.34 } });
    const desired = makeDesired(2, 'v2', spec);
    const observed = observe({ h1: [makeContainer(1, 'v1', { spec })], h2: [makeContainer(1, 'v1', { spec })], h3: [makeContainer(1, 'v1', { spec })] });
    const oneFailed = record({ hosts: { h1: { step: 'failed', reason: 'HealthCheckFailed', message: 'x', at: NOW } } });
    const p = plan(input({ desired, record: oneFailed, observed }));
    assert.equal(p.record?.state, 'active');
    assert.deepEqual(types(p.actions).filter((t) => t.startsWith('updateHost')), ['updateHost:h2']);
    const twoFailed = record({ hosts: { ...oneFailed.hosts, h2: { step: 'failed', reason: 'HealthCheckFailed', message: 'y', at: NOW } } });
    const q = plan(input({ desired, record: twoFailed, observed }));
    assert.equal(q.record?.state, 'failed');
    assert.equal(q.rollback, undefined);
    assert.ok(!q.actions.some((a) => a.type === 'updateHost'));
  });

  it('progress_deadline exceeded fails the rollout and rolls back', () => {
    const rec = { ...record(), startedAt: NOW - 700_000 };
    const p = plan(input({ record: rec, observed: observe({ h1: [makeContainer(1, 'v1')], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] }) }));
    assert.equal(p.status.conditions[0]?.reason, 'ProgressDeadlineExceeded');
    assert.equal(p.rollback?.reason, 'progress_deadline');
  });

  it('an operator pause holds everything, including cleanup', () => {
    const old = makeContainer(1, 'v1');
    const fresh = makeContainer(2, 'v2');
    const rec = record({ hosts: { h1: { step: 'switched', containerId: fresh.id, at: NOW } } });
    const p = plan(input({ paused: true, record: rec, observed: observe({ h1: [old, fresh], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] }) }));
    assert.deepEqual(p.actions, []);
    assert.equal(p.status.phase, 'Paused');
  });
});

describe('plan: a host retrying a start', () => {
  const retrying = (notBefore: number) => record({ pulled: ['h1', 'h2', 'h3'], hosts: { h1: { step: 'retrying', attempts: 1, notBefore, message: 'proxy not ready', at: NOW } } });
  const observed = () => observe({ h1: [makeContainer(1, 'v1')], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] });

  it('waits for its backoff without failing the release, keeping the serving container, and says why in the status', () => {
    const p = plan(input({ record: retrying(NOW + 3_000), observed: observed() }));
    assert.deepEqual(p.actions, []);
    assert.equal(p.requeueAfterMs, 3_000);
    assert.equal(p.record?.state, 'active');
    assert.equal(p.rollback, undefined);
    assert.match(p.status.hosts[0]!.lastError ?? '', /retrying \(attempt 2\): proxy not ready/);
  });

  it('is updated again once the backoff has passed', () => {
    const p = plan(input({ record: retrying(NOW - 1), observed: observed() }));
    assert.deepEqual(types(p.actions), ['updateHost:h1']);
  });
});

describe('applyResults', () => {
  const upd: Action = { type: 'updateHost', host: 'h1', existingContainerId: null, containerName: 'web-r2', pull: true };

  it('records a switched host with its container', () => {
    const r = applyResults(record(), [{ action: upd, ok: true, containerId: 'abc' }], NOW);
    assert.deepEqual(r.hosts.h1, { step: 'switched', containerId: 'abc', at: NOW });
  });

  it('a failed health check marks the host failed', () => {
    const r = applyResults(record(), [{ action: upd, ok: false, stage: 'health', code: 'HEALTH_CHECK_FAILED', message: '500', unreachable: false }], NOW);
    assert.equal(r.hosts.h1?.step, 'failed');
  });

  it('a start or switch that fails for a passing reason is retried with backoff; the fifth failure fails the host', () => {
    const proxyDown = { action: upd, ok: false as const, stage: 'switch' as const, code: 'PROXY_NOT_READY' as const, message: 'proxy runtime API not answering', unreachable: false };
    let r = applyResults(record(), [proxyDown], NOW);
    assert.deepEqual(r.hosts.h1, { step: 'retrying', attempts: 1, notBefore: NOW + 1_000, message: 'proxy runtime API not answering', at: NOW });
    assert.equal(r.state, 'active');
    const delays: number[] = [];
    for (let i = 0; i < 3; i++) {
      const at = NOW + 100_000 * (i + 1);
      r = applyResults(r, [proxyDown], at);
      delays.push(r.hosts.h1?.step === 'retrying' ? r.hosts.h1.notBefore - at : -1);
    }
    assert.deepEqual(delays, [2_000, 4_000, 8_000]);
    r = applyResults(r, [proxyDown], NOW + 500_000);
    assert.equal(r.hosts.h1?.step, 'failed');
    assert.match(r.hosts.h1?.step === 'failed' ? r.hosts.h1.message : '', /after 5 attempts/);
  });

  it('repair after completion never fails a host (its serving container would be removed): retried, backing off to 30 s, whatever failed', () => {
    const done = record({ state: 'complete', finishedAt: NOW - 1000 });
    const repair: Action = { ...upd, repair: true };
    const failures = [
      { stage: 'switch' as const, code: 'PROXY_NOT_READY' as const },
      { stage: 'health' as const, code: 'HEALTH_CHECK_FAILED' as const },
      { stage: 'start' as const, code: 'CONTAINER_NOT_RUNNING' as const },
      { stage: 'pull' as const, code: 'IMAGE_PULL_FAILED' as const },
    ];
    for (const f of failures) {
      let r = done;
      const delays: number[] = [];
      for (let i = 0; i < 8; i++) {
        const at = NOW + 100_000 * (i + 1);
        r = applyResults(r, [{ action: repair, ok: false, ...f, message: 'x', unreachable: false }], at);
        delays.push(r.hosts.h1?.step === 'retrying' ? r.hosts.h1.notBefore - at : -1);
      }
      assert.equal(r.state, 'complete', f.code);
      assert.deepEqual(delays, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000], f.code);
    }
    // Beside a container that still serves, a failed health check fails the host as in a rollout.
    const beside = applyResults(done, [{ action: upd, ok: false, stage: 'health', code: 'HEALTH_CHECK_FAILED', message: 'x', unreachable: false }], NOW);
    assert.equal(beside.hosts.h1?.step, 'failed');
  });

  it("a start failure that is the release's own fails the host at once (the container exits, a secret is missing)", () => {
    for (const code of ['CONTAINER_NOT_RUNNING', 'SECRET_MISSING'] as const) {
      const r = applyResults(record(), [{ action: upd, ok: false, stage: 'start', code, message: 'x', unreachable: false }], NOW);
      assert.equal(r.hosts.h1?.step, 'failed', code);
    }
  });

  it('an unreachable host is not counted as a failure of the release', () => {
    const r = applyResults(record(), [{ action: upd, ok: false, stage: 'start', code: 'HOST_TIMEOUT', message: 'timeout', unreachable: true }], NOW);
    assert.equal(r.hosts.h1, undefined);
    assert.equal(r.state, 'active');
  });

  it('a pull of a missing image fails the release', () => {
    const r = applyResults(record(), [{ action: { type: 'pull', host: 'h2' }, ok: false, stage: 'pull', code: 'IMAGE_PULL_FAILED', message: 'manifest unknown', unreachable: false }], NOW);
    assert.equal(r.state, 'failed');
    assert.equal(r.failure?.reason, 'ImagePullFailed');
  });
});

describe('plan: proxy routes and maintenance', () => {
  const proxied = makeSpec({ proxy: { port: 8080, host: null, drainTimeoutMs: 30_000 } });
  const desired = makeDesired(2, 'v2', proxied);
  const routed = (c: ObservedContainer, maintenance: string | null = null) => ({ upstream: `${c.ip}:3000`, maintenance });

  function fleet(route: (h: string, c: ObservedContainer) => { upstream: string | null; maintenance: string | null } | null) {
    const cs = { h1: makeContainer(2, 'v2', { spec: proxied }), h2: makeContainer(2, 'v2', { spec: proxied }), h3: makeContainer(2, 'v2', { spec: proxied }) };
    const rec = record({ state: 'complete', hosts: Object.fromEntries(Object.entries(cs).map(([h, c]) => [h, { step: 'switched' as const, containerId: c.id, at: NOW }])) });
    const observed: HostObservation[] = Object.entries(cs).map(([host, c]) => ({ host, reachable: true, containers: [c], route: route(host, c) }));
    return { cs, rec, observed };
  }

  it('a host whose proxy lost the route (proxy removed by hand) is updated again: re-probe and re-route', () => {
    const { cs, rec, observed } = fleet((h, c) => (h === 'h2' ? { upstream: null, maintenance: null } : routed(c)));
    const p = plan(input({ desired, record: rec, observed }));
    assert.deepEqual(p.actions, [{ type: 'updateHost', host: 'h2', existingContainerId: cs.h2.id, containerName: 'web-r2', pull: false, repair: true }]);
  });

  it('converged when every proxy routes to the target', () => {
    const { rec, observed } = fleet((_h, c) => routed(c));
    assert.deepEqual(plan(input({ desired, record: rec, observed })).actions, []);
  });

  it('maintenance follows the app flag on every routed host, and back', () => {
    const on = fleet((_h, c) => routed(c));
    assert.deepEqual(types(plan(input({ desired, record: on.rec, observed: on.observed, maintenance: 'back soon' })).actions), ['maintenance:h1', 'maintenance:h2', 'maintenance:h3']);
    const off = fleet((h, c) => routed(c, h === 'h3' ? 'back soon' : null));
    assert.deepEqual(plan(input({ desired, record: off.rec, observed: off.observed })).actions, [{ type: 'maintenance', host: 'h3', message: null }]);
  });
});

describe('plan: a failed rollback that superseded a release mid-switch (chaos seed 20261129, op 193)', () => {
  // r3 (v1, a restart) had switched h1 to its new container but not yet stopped the old
  // one when r4, a rollback onto a broken version, superseded it; r4 failed on h1 and a
  // failed rollback is not rolled back again. Nothing then stops h1's old container:
  // two running containers of the app on h1 until the next release.
  it('retires the container the host no longer serves from (no proxy: all but the newest running)', () => {
    const desired = makeDesired(4, 'broken', makeSpec(), 'rollback');
    const serving = makeContainer(3, 'v1', { createdAt: 3 });
    const old = makeContainer(2, 'v1', { createdAt: 2 });
    const rec: RolloutRecord = {
      ...newRecord(4, NOW - 10_000),
      pulled: ['h1', 'h2', 'h3'],
      state: 'failed',
      failure: { reason: 'HealthCheckFailed', message: 'h1: never healthy' },
      finishedAt: NOW - 1000,
      hosts: { h1: { step: 'failed', reason: 'HealthCheckFailed', message: 'never healthy', at: NOW - 1000 } },
    };
    const p = plan(input({ desired, stable: { revision: 2, version: 'v1' }, record: rec, observed: observe({ h1: [serving, old], h2: [makeContainer(2, 'v1')], h3: [makeContainer(2, 'v1')] }) }));
    assert.deepEqual(p.actions.filter((a) => a.type === 'retire'), [{ type: 'retire', host: 'h1', containerIds: [old.id] }], `actions: ${JSON.stringify(p.actions)}`);
  });

  it('with a proxy route: keeps the container the route is on, retires the other; a host with one running container is left alone', () => {
    const spec = makeSpec({ proxy: { port: 80, host: null, pathPrefix: null, drainTimeoutMs: 1000 } });
    const desired = makeDesired(4, 'broken', spec, 'rollback');
    const routed = makeContainer(2, 'v1', { createdAt: 2 });
    const newer = makeContainer(3, 'v1', { createdAt: 3 });
    const h2 = makeContainer(2, 'v1');
    const rec: RolloutRecord = { ...newRecord(4, NOW - 10_000), state: 'failed', failure: { reason: 'HealthCheckFailed', message: 'h1' }, finishedAt: NOW - 1000, hosts: {} };
    const upstream: Record<string, string | null> = { h1: `${routed.ip}:3000`, h2: `${h2.ip}:3000`, h3: null };
    const observed = observe({ h1: [routed, newer], h2: [h2], h3: [] }).map((o) => (o.reachable ? { ...o, route: { upstream: upstream[o.host] ?? null, maintenance: null } } : o));
    const p = plan(input({ desired, stable: { revision: 2, version: 'v1' }, record: rec, observed }));
    assert.deepEqual(p.actions.filter((a) => a.type === 'retire'), [{ type: 'retire', host: 'h1', containerIds: [newer.id] }]);
  });
});

describe('plan: a proxy that lost the route while the rollout does not move the host (chaos seed 906313, op 28)', () => {
  // A failed rollback (broken) left every host on r11 (v2); the proxy on h1 was then
  // recreated without the route, and nothing put h1's traffic back: 503 until the next release.
  const spec = makeSpec({ proxy: { port: 80, host: null, pathPrefix: null, drainTimeoutMs: 1000 } });
  const routedTo = (c: ObservedContainer) => ({ upstream: `${c.ip}:3000`, maintenance: null });
  const lost = { upstream: null, maintenance: null };
  const failedRecord = (revision: number): RolloutRecord => ({
    ...newRecord(revision, NOW - 10_000),
    state: 'failed',
    failure: { reason: 'HealthCheckFailed', message: 'h1: never healthy' },
    finishedAt: NOW - 1000,
    hosts: {},
  });
  const withRoutes = (byHost: Record<string, ObservedContainer[]>, routes: Record<string, { upstream: string | null; maintenance: null }>): HostObservation[] =>
    observe(byHost).map((o) => (o.reachable ? { ...o, route: routes[o.host]! } : o));

  const cases: Array<{ name: string; state: 'failed' | 'paused' | 'active-later-batch' | 'paused-by-operator' }> = [
    { name: 'a failed rollout', state: 'failed' },
    { name: 'a rollout paused by on_failure: pause (the app paused with it)', state: 'paused' },
    { name: 'an app the operator paused', state: 'paused-by-operator' },
    { name: 'a host waiting for a later batch', state: 'active-later-batch' },
  ];
  for (const c of cases) {
    it(`${c.name}: the route goes back on the running container of the stable release`, () => {
      const desired = makeDesired(12, 'broken', spec, 'rollback');
      const stable = makeContainer(11, 'v2', { createdAt: 11 });
      const older = makeContainer(6, 'v2', { createdAt: 6 });
      const h2 = makeContainer(11, 'v2');
      const h3 = makeContainer(11, 'v2');
      const rec = c.state === 'active-later-batch' ? { ...newRecord(12, NOW - 1000), pulled: ['h1', 'h2', 'h3'] } : c.state === 'paused' ? { ...failedRecord(12), state: 'paused' as const, finishedAt: null } : failedRecord(12);
      // A later batch: h2 is the one being updated, h1 waits for the next batch.
      const hosts = c.state === 'active-later-batch' ? { h2: [h2], h1: [stable, older], h3: [h3] } : { h1: [stable, older], h2: [h2], h3: [h3] };
      const observed = withRoutes(hosts, { h1: lost, h2: routedTo(h2), h3: routedTo(h3) });
      const p = plan(input({ desired: { ...desired, spec: { ...spec, hosts: Object.keys(hosts) } }, stable: { revision: 11, version: 'v2' }, record: rec, observed, paused: c.state === 'paused-by-operator' || c.state === 'paused' }));
      const restores = p.actions.filter((a) => a.type === 'restoreTraffic');
      assert.deepEqual(restores, [{ type: 'restoreTraffic', host: 'h1', containerId: stable.id, containerName: 'web-r11' }], `actions: ${JSON.stringify(p.actions)}`);
    });
  }

  it('without a running container of the stable release: the newest running one', () => {
    const desired = makeDesired(12, 'broken', spec, 'rollback');
    const a = makeContainer(9, 'v1', { createdAt: 9 });
    const b = makeContainer(10, 'v3', { createdAt: 10 });
    const p = plan(input({ desired, stable: { revision: 11, version: 'v2' }, record: failedRecord(12), observed: withRoutes({ h1: [a, b], h2: [], h3: [] }, { h1: lost, h2: lost, h3: lost }) }));
    assert.deepEqual(p.actions.filter((x) => x.type === 'restoreTraffic'), [{ type: 'restoreTraffic', host: 'h1', containerId: b.id, containerName: 'web-r10' }]);
  });

  it('never onto the failed target, a stopped container, or a host whose route is on something', () => {
    const desired = makeDesired(12, 'broken', spec, 'rollback');
    const failedTarget = { ...makeContainer(12, 'broken', { spec }), configHash: desired.configHash };
    const stopped = makeContainer(11, 'v2', { running: false });
    const routed = makeContainer(11, 'v2');
    const rec = { ...failedRecord(12), hosts: { h1: { step: 'failed' as const, reason: 'HealthCheckFailed' as const, message: 'never healthy', at: NOW - 1000 } } };
    const p = plan(input({ desired, stable: { revision: 11, version: 'v2' }, record: rec, observed: withRoutes({ h1: [failedTarget, stopped], h2: [routed], h3: [] }, { h1: lost, h2: routedTo(routed), h3: lost }) }));
    assert.deepEqual(p.actions.filter((x) => x.type === 'restoreTraffic'), [], JSON.stringify(p.actions));
  });

  it('a complete rollout re-updates the host itself (its target gets the route), no restore', () => {
    const desired = makeDesired(2, 'v2', spec);
    const cs = { h1: makeContainer(2, 'v2', { spec }), h2: makeContainer(2, 'v2', { spec }), h3: makeContainer(2, 'v2', { spec }) };
    const rec = record({ state: 'complete', hosts: Object.fromEntries(Object.entries(cs).map(([h, x]) => [h, { step: 'switched' as const, containerId: x.id, at: NOW }])) });
    const p = plan(input({ desired, record: rec, observed: withRoutes({ h1: [cs.h1, makeContainer(1, 'v1', { spec })], h2: [cs.h2], h3: [cs.h3] }, { h1: lost, h2: routedTo(cs.h2), h3: routedTo(cs.h3) }) }));
    assert.deepEqual(types(p.actions), ['updateHost:h1']);
  });
});

describe('plan: rollout.strategy recreate (a host never runs two containers of the app)', () => {
  const recreate = makeSpec({ rollout: { ...makeSpec().rollout, strategy: 'recreate' } });
  const proxied = makeSpec({ ...recreate, proxy: { port: 80, host: null, pathPrefix: null, drainTimeoutMs: 1000 } });
  const desired = makeDesired(2, 'v2', recreate);
  const withPolicy = (onFailure: 'rollback' | 'pause' | 'continue') => makeSpec({ rollout: { ...recreate.rollout, onFailure, maxFailureRatio: 0.34 } });

  /**
   * What recreate promises, on any plan: an action that starts a container on a host first
   * stops every other app container observed running there.
   */
  function assertStartsAlone(p: Plan, observed: HostObservation[]): void {
    for (const a of p.actions) {
      if (a.type !== 'updateHost' && a.type !== 'revertHost') continue;
      const obs = observed.find((o) => o.host === a.host);
      const starts = a.type === 'updateHost' ? a.existingContainerId : a.containerId;
      const running = obs?.reachable ? obs.containers.filter((c) => c.role === 'app' && c.running && c.id !== starts).map((c) => c.id) : [];
      assert.deepEqual([...(a.stopFirst ?? [])].sort(), running.sort(), `${a.type} on ${a.host} stops what runs there first: ${JSON.stringify(a)}`);
    }
  }

  it('a host stops its old container first (drained, in the same action), then starts the new one; later hosts pre-pull meanwhile', () => {
    const old = makeContainer(1, 'v1');
    const observed = observe({ h1: [old, makeContainer(0, 'v0', { running: false })], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] });
    const p = plan(input({ desired, observed }));
    assert.deepEqual(types(p.actions), ['pull:h2', 'pull:h3', 'updateHost:h1']);
    assert.deepEqual(p.actions.find((a) => a.type === 'updateHost'), { type: 'updateHost', host: 'h1', existingContainerId: null, containerName: 'web-r2', pull: true, stopFirst: [old.id] });
    assertStartsAlone(p, observed);
    // start-first boots the new one beside the old: no stopFirst at all.
    assert.ok(!('stopFirst' in plan(input({ observed })).actions.find((a) => a.type === 'updateHost')!));
  });

  it('hosts go in batches of `parallelism` (default 1: one host without the app at a time); a recreated host has nothing left to retire', () => {
    const fresh = makeContainer(2, 'v2');
    const observed = observe({ h1: [makeContainer(1, 'v1', { running: false }), fresh], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] });
    const rec = record({ hosts: { h1: { step: 'switched', containerId: fresh.id, at: NOW } } });
    const one = plan(input({ desired, record: rec, observed }));
    assert.deepEqual(types(one.actions), ['updateHost:h2']);
    assertStartsAlone(one, observed);
    const two = makeDesired(2, 'v2', makeSpec({ rollout: { ...recreate.rollout, parallelism: { kind: 'count', value: 2 } } }));
    const both = plan(input({ desired: two, record: record(), observed: observe({ h1: [makeContainer(1, 'v1')], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] }) }));
    assert.deepEqual(types(both.actions), ['updateHost:h1', 'updateHost:h2']);
  });

  // kill -9 of berth anywhere in a host's step: the next pass plans from what the host runs,
  // with or without the record, and still stops whatever runs before anything starts.
  const crashes: Array<{ name: string; h1: () => ObservedContainer[]; starts: number | null; stops: number[] }> = [
    { name: 'after the create, before the old container stopped', h1: () => [makeContainer(1, 'v1'), makeContainer(2, 'v2', { running: false, state: 'created' })], starts: 1, stops: [0] },
    { name: 'after the old one stopped, before the new one started', h1: () => [makeContainer(1, 'v1', { running: false }), makeContainer(2, 'v2', { running: false, state: 'created' })], starts: 1, stops: [] },
    { name: 'during the health check', h1: () => [makeContainer(1, 'v1', { running: false }), makeContainer(2, 'v2')], starts: 1, stops: [] },
    { name: 'before anything was created', h1: () => [makeContainer(1, 'v1')], starts: null, stops: [0] },
    { name: 'a start-first release cut short before this one (two running)', h1: () => [makeContainer(0, 'v0'), makeContainer(1, 'v1')], starts: null, stops: [0, 1] },
    { name: 'the new one running beside an old one (started by hand)', h1: () => [makeContainer(1, 'v1'), makeContainer(2, 'v2')], starts: 1, stops: [0] },
  ];
  for (const c of crashes) {
    for (const rec of [record(), null]) {
      it(`crash ${c.name}${rec ? '' : ', the record lost too'}: the next pass stops what runs before the new one starts`, () => {
        const h1 = c.h1();
        const observed = observe({ h1, h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] });
        const p = plan(input({ desired, record: rec, observed }));
        const update = p.actions.find((a): a is HostUpdateAction => a.type === 'updateHost' && a.host === 'h1');
        assert.deepEqual(update && { existing: update.existingContainerId, stopFirst: update.stopFirst }, { existing: c.starts === null ? null : h1[c.starts]!.id, stopFirst: c.stops.map((i) => h1[i]!.id) });
        assertStartsAlone(p, observed);
      });
    }
  }

  it('crash while the old container drained (the route on nothing): the host is updated again, its traffic is not put back on the old one', () => {
    const old = makeContainer(1, 'v1', { spec: proxied });
    const observed: HostObservation[] = [
      { host: 'h1', reachable: true, containers: [old], route: { upstream: null, maintenance: null } },
      ...observe({ h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] }).map((o) => ({ ...o, route: { upstream: null, maintenance: null } })),
    ];
    const p = plan(input({ desired: makeDesired(2, 'v2', proxied), record: record(), observed }));
    assert.deepEqual(
      p.actions.filter((a) => a.host === 'h1'),
      [{ type: 'updateHost', host: 'h1', existingContainerId: null, containerName: 'web-r2', pull: false, stopFirst: [old.id] }],
    );
  });

  it('a rollback release stops the container of the failed release before it starts the retained one', () => {
    const retained = makeContainer(1, 'v1', { running: false });
    const failedNew = makeContainer(2, 'v2');
    const rollback = makeDesired(3, 'v1', recreate, 'rollback');
    const observed = observe({ h1: [retained, failedNew], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] });
    const p = plan(input({ desired: rollback, stable: { revision: 1, version: 'v1' }, observed }));
    assert.deepEqual(p.actions, [{ type: 'updateHost', host: 'h1', existingContainerId: retained.id, containerName: 'web-r3', pull: false, stopFirst: [failedNew.id] }]);
  });

  it('a rollback release keeps the strategy of the release it replaces, and the rest of the target\'s spec (rollbackSpec)', () => {
    const before = makeSpec({ port: 4000 });
    assert.deepEqual(rollbackSpec(before, recreate), { ...before, rollout: { ...before.rollout, strategy: 'recreate' } });
    assert.deepEqual(rollbackSpec(recreate, before), { ...recreate, rollout: before.rollout });
  });

  // The health check of h1's new container failed; recreate had stopped the old one.
  const failedRecord = record({ hosts: { h1: { step: 'failed', reason: 'HealthCheckFailed', message: 'never healthy', at: NOW } } });
  for (const onFailure of ['rollback', 'pause', 'continue'] as const) {
    it(`on_failure ${onFailure}: the failed host stops the failed container and starts its old one again, before anything else there`, () => {
      const spec = withPolicy(onFailure);
      const old = makeContainer(1, 'v1', { running: false, spec });
      const failedNew = makeContainer(2, 'v2', { spec });
      const observed = observe({ h1: [old, failedNew], h2: [makeContainer(1, 'v1', { spec })], h3: [makeContainer(1, 'v1', { spec })] });
      const p = plan(input({ desired: makeDesired(2, 'v2', spec), record: failedRecord, observed }));
      assert.deepEqual(p.actions.filter((a) => a.host === 'h1'), [{ type: 'revertHost', host: 'h1', containerId: old.id, containerName: 'web-r1', stopFirst: [failedNew.id] }], 'nothing else touches h1 in this pass');
      assertStartsAlone(p, observed);
      if (onFailure === 'rollback') assert.deepEqual(p.rollback, { toVersion: 'v1', toRevision: 1, reason: 'health_check_failed' });
      if (onFailure === 'pause') {
        assert.equal(p.pauseApp, true);
        // The app is paused from the next pass on: the host still goes back.
        const paused = plan(input({ desired: makeDesired(2, 'v2', spec), record: p.record, observed, paused: true }));
        assert.deepEqual(types(paused.actions), ['revertHost:h1']);
      }
      if (onFailure === 'continue') assert.deepEqual(types(p.actions), ['revertHost:h1', 'updateHost:h2']);
    });
  }

  it('with a proxy route and retain_containers 0: the pass that reverts neither prunes the old container nor removes the failed one under it', () => {
    const spec = makeSpec({ ...proxied, retainContainers: 0 });
    const old = makeContainer(1, 'v1', { running: false, spec });
    const failedNew = makeContainer(2, 'v2', { spec });
    const observed: HostObservation[] = [{ host: 'h1', reachable: true, containers: [old, failedNew], route: { upstream: null, maintenance: null } }];
    const p = plan(input({ desired: makeDesired(2, 'v2', { ...spec, hosts: ['h1'] }), record: failedRecord, observed }));
    assert.deepEqual(p.actions, [{ type: 'revertHost', host: 'h1', containerId: old.id, containerName: 'web-r1', stopFirst: [failedNew.id] }]);
  });

  it('the host goes back to the stable release\'s container, not to a newer stopped one', () => {
    const stable = makeContainer(1, 'v1', { running: false, createdAt: 1 });
    const newer = makeContainer(0, 'v0', { running: false, createdAt: 5 });
    const failedNew = makeContainer(2, 'v2', { createdAt: 9 });
    const p = plan(input({ desired, record: failedRecord, observed: observe({ h1: [newer, stable, failedNew], h2: [], h3: [] }) }));
    assert.deepEqual(p.actions.find((a) => a.type === 'revertHost'), { type: 'revertHost', host: 'h1', containerId: stable.id, containerName: 'web-r1', stopFirst: [failedNew.id] });
  });

  it('after the revert: the failed container (stopped) is removed and nothing starts', () => {
    const old = makeContainer(1, 'v1');
    const failedNew = makeContainer(2, 'v2', { running: false });
    const p = plan(input({ desired, record: { ...failedRecord, state: 'failed', failure: { reason: 'HealthCheckFailed', message: 'x' }, finishedAt: NOW }, observed: observe({ h1: [old, failedNew], h2: [], h3: [] }) }));
    assert.deepEqual(p.actions.filter((a) => a.host === 'h1'), [{ type: 'remove', host: 'h1', containerIds: [failedNew.id], why: 'failed' }]);
  });

  it('no revert when the old container still runs (the release failed before it stopped), or when there is none (a first release)', () => {
    const running = plan(input({ desired, record: failedRecord, observed: observe({ h1: [makeContainer(1, 'v1'), makeContainer(2, 'v2', { running: false, state: 'created' })], h2: [], h3: [] }) }));
    assert.ok(!running.actions.some((a) => a.type === 'revertHost' || a.type === 'updateHost'), JSON.stringify(running.actions));
    const first = plan(input({ desired, stable: null, record: failedRecord, observed: observe({ h1: [makeContainer(2, 'v2')], h2: [], h3: [] }) }));
    assert.ok(!first.actions.some((a) => a.type === 'revertHost'), JSON.stringify(first.actions));
  });

  it('start-first never reverts a failed host (its old container was never stopped by berth)', () => {
    const p = plan(input({ record: failedRecord, observed: observe({ h1: [makeContainer(1, 'v1', { running: false }), makeContainer(2, 'v2')], h2: [], h3: [] }) }));
    assert.ok(!p.actions.some((a) => a.type === 'revertHost'));
  });
});

describe('plan: processes (units of process@host)', () => {
  // web serves through the proxy on h1, h2; worker runs bin/jobs on h3 (and, in `shared`, on h1 too).
  const doc = (workerHosts: string[], worker: Record<string, unknown> = {}) => ({
    image: '10.77.0.1:5000/app',
    hosts: ['h1', 'h2'],
    processes: { web: { proxy: { port: 80 } }, worker: { cmd: 'bin/jobs', hosts: workerHosts, ...worker } },
  });
  const specOf = (d: unknown) => validateAppDocument('app', d, ['h1', 'h2', 'h3']);
  const SPEC = specOf(doc(['h3']));
  const desiredAt = (revision: number, version: string, spec = SPEC, reason: 'deploy' | 'rollback' = 'deploy') => desiredRelease({ revision, version, spec, reason }, {});
  const D2 = desiredAt(2, 'v2');
  /** A container of `process` as the host reports it: named and labelled as the executor makes it. */
  const unit = (process: 'web' | 'worker', revision: number, version: string, opts: { running?: boolean; spec?: typeof SPEC; ip?: string } = {}): ObservedContainer => {
    const p = desiredAt(revision, version, opts.spec ?? SPEC).processes!.find((x) => x.name === process)!;
    const running = opts.running ?? true;
    return { ...makeContainer(revision, version, { running }), name: `app-${process}-r${revision}`, app: 'app', process, configHash: p.configHash, ip: running ? (opts.ip ?? `10.0.${revision}.${process === 'web' ? 1 : 2}`) : null };
  };
  const routed = (obs: HostObservation[], to: Record<string, ObservedContainer | null>): HostObservation[] =>
    obs.map((o) => (o.reachable && o.host in to ? { ...o, route: { upstream: to[o.host] ? `${to[o.host]!.ip}:3000` : null, maintenance: null } } : o));
  const switched = (c: ObservedContainer) => ({ step: 'switched' as const, containerId: c.id, at: NOW });
  const base = (overrides: Partial<PlanInput>) => input({ app: 'app', desired: D2, ...overrides });

  it('orders units process by process, host by host; each action names its process; hosts pull once', () => {
    const v1 = { h1: [unit('web', 1, 'v1')], h2: [unit('web', 1, 'v1')], h3: [unit('worker', 1, 'v1')] };
    const p = plan(base({ observed: routed(observe(v1), { h1: v1.h1[0]!, h2: v1.h2[0]! }) }));
    assert.deepEqual(p.actions, [
      { type: 'updateHost', host: 'h1', process: 'web', existingContainerId: null, containerName: 'app-web-r2', pull: true },
      { type: 'pull', host: 'h2' },
      { type: 'pull', host: 'h3' },
    ]);
    assert.match(p.events[0]!.message, /to 3 units \(web@h1, web@h2, worker@h3\)$/);
    assert.deepEqual(p.status.hosts.map((h) => [h.host, h.process, h.version]), [['web@h1', 'web', 'v1'], ['web@h2', 'web', 'v1'], ['worker@h3', 'worker', 'v1']]);
    assert.equal(p.status.hostsTotal, 3);
  });

  it('the worker unit comes after the web units: it replaces its container with no route to move', () => {
    const web = { h1: unit('web', 2, 'v2'), h2: unit('web', 2, 'v2') };
    const rec = record({ revision: 2, hosts: { 'web@h1': switched(web.h1), 'web@h2': switched(web.h2) } });
    const old = unit('worker', 1, 'v1');
    const p = plan(base({ record: rec, observed: routed(observe({ h1: [web.h1], h2: [web.h2], h3: [old] }), web) }));
    assert.deepEqual(p.actions, [{ type: 'updateHost', host: 'h3', process: 'worker', existingContainerId: null, containerName: 'app-worker-r2', pull: false }]);
    assert.equal(p.status.hostsUpdated, 2);
    // Switched (healthy by its own check), the worker's old container is retired and the release completes after.
    const fresh = unit('worker', 2, 'v2');
    const next = plan(base({ record: { ...rec, hosts: { ...rec.hosts, 'worker@h3': switched(fresh) } }, observed: routed(observe({ h1: [web.h1], h2: [web.h2], h3: [old, fresh] }), web) }));
    assert.deepEqual(next.actions, [{ type: 'retire', host: 'h3', process: 'worker', containerIds: [old.id] }]);
    assert.equal(next.status.hostsUpdated, 3);
  });

  it('two processes on one host are two units: each retires only its own old container', () => {
    const spec = specOf(doc(['h1']));
    const desired = desiredAt(2, 'v2', spec);
    const oldWeb = unit('web', 1, 'v1', { spec });
    const oldWorker = unit('worker', 1, 'v1', { spec });
    const newWeb = unit('web', 2, 'v2', { spec });
    const h2 = unit('web', 2, 'v2', { spec });
    const rec = record({ hosts: { 'web@h1': switched(newWeb), 'web@h2': switched(h2) } });
    const p = plan(base({ desired, record: rec, observed: routed(observe({ h1: [oldWeb, oldWorker, newWeb], h2: [h2] }), { h1: newWeb, h2 }) }));
    assert.deepEqual(p.actions, [
      { type: 'updateHost', host: 'h1', process: 'worker', existingContainerId: null, containerName: 'app-worker-r2', pull: false },
      { type: 'retire', host: 'h1', process: 'web', containerIds: [oldWeb.id] },
    ]);
  });

  it("one unit's failure fails the release, and on_failure: rollback moves every process back", () => {
    const web = { h1: unit('web', 2, 'v2'), h2: unit('web', 2, 'v2') };
    const oldWeb = { h1: unit('web', 1, 'v1', { running: false }), h2: unit('web', 1, 'v1', { running: false }) };
    const oldWorker = unit('worker', 1, 'v1');
    const failedWorker = unit('worker', 2, 'v2');
    const rec = record({
      hosts: { 'web@h1': switched(web.h1), 'web@h2': switched(web.h2), 'worker@h3': { step: 'failed', reason: 'HealthCheckFailed', message: 'the container restarted (RestartCount 0 -> 1)', at: NOW } },
    });
    const observed = routed(observe({ h1: [oldWeb.h1, web.h1], h2: [oldWeb.h2, web.h2], h3: [oldWorker, failedWorker] }), web);
    const p = plan(base({ record: rec, observed }));
    assert.equal(p.record?.state, 'failed');
    assert.equal(p.record?.failure?.message, 'worker@h3: the container restarted (RestartCount 0 -> 1)');
    assert.deepEqual(p.rollback, { toVersion: 'v1', toRevision: 1, reason: 'health_check_failed' });
    assert.deepEqual(p.actions, [{ type: 'remove', host: 'h3', process: 'worker', containerIds: [failedWorker.id], why: 'failed' }]);
    // The rollback release (revision 3, v1): every unit goes back on its retained v1 container.
    const back = plan(base({ desired: desiredAt(3, 'v1', SPEC, 'rollback'), stable: { revision: 1, version: 'v1' }, observed: routed(observe({ h1: [oldWeb.h1, web.h1], h2: [oldWeb.h2, web.h2], h3: [oldWorker] }), web) }));
    assert.deepEqual(back.actions, [{ type: 'updateHost', host: 'h1', process: 'web', existingContainerId: oldWeb.h1.id, containerName: 'app-web-r3', pull: false }]);
    const parallel = plan(base({ desired: { ...desiredAt(3, 'v1', SPEC, 'rollback'), spec: { ...SPEC, rollout: { ...SPEC.rollout, parallelism: { kind: 'count', value: 3 } } } }, observed: routed(observe({ h1: [oldWeb.h1, web.h1], h2: [oldWeb.h2, web.h2], h3: [oldWorker] }), web) }));
    assert.deepEqual(types(parallel.actions), ['updateHost:h1', 'updateHost:h2', 'updateHost:h3']);
    assert.equal(parallel.actions.find((a) => a.host === 'h3' && a.type === 'updateHost' && a.existingContainerId === oldWorker.id)?.type, 'updateHost', 'the worker keeps its running v1 container');
  });

  it('a crash between a unit\'s start and its record resumes on the container it made, beside the old one', () => {
    const web = { h1: unit('web', 2, 'v2'), h2: unit('web', 2, 'v2') };
    const old = unit('worker', 1, 'v1');
    const started = unit('worker', 2, 'v2');
    const rec = record({ hosts: { 'web@h1': switched(web.h1), 'web@h2': switched(web.h2) } });
    const p = plan(base({ record: rec, observed: routed(observe({ h1: [web.h1], h2: [web.h2], h3: [old, started] }), web) }));
    assert.deepEqual(p.actions, [{ type: 'updateHost', host: 'h3', process: 'worker', existingContainerId: started.id, containerName: 'app-worker-r2', pull: false }]);
  });

  it('an app that gains processes retires its implicit containers with the unit that takes over the host', () => {
    const implicit = { h1: { ...makeContainer(1, 'v1'), app: 'app', name: 'app-r1', ip: '10.0.9.1' }, h3: { ...makeContainer(1, 'v1'), app: 'app', name: 'app-r1', ip: '10.0.9.3' } };
    const web = { h1: unit('web', 2, 'v2'), h2: unit('web', 2, 'v2') };
    const worker = unit('worker', 2, 'v2');
    const rec = record({ hosts: { 'web@h1': switched(web.h1), 'web@h2': switched(web.h2), 'worker@h3': switched(worker) } });
    const p = plan(base({ record: rec, observed: routed(observe({ h1: [implicit.h1, web.h1], h2: [web.h2], h3: [implicit.h3, worker] }), web) }));
    assert.deepEqual(p.actions, [
      { type: 'retire', host: 'h1', process: 'web', containerIds: [implicit.h1.id] },
      { type: 'retire', host: 'h3', process: 'worker', containerIds: [implicit.h3.id] },
    ]);
  });

  it('maintenance and lost routes concern the serving process only', () => {
    const web = { h1: unit('web', 2, 'v2'), h2: unit('web', 2, 'v2') };
    const worker = unit('worker', 2, 'v2');
    const rec = record({ state: 'complete', hosts: { 'web@h1': switched(web.h1), 'web@h2': switched(web.h2), 'worker@h3': switched(worker) } });
    const observed = routed(observe({ h1: [web.h1], h2: [web.h2], h3: [worker] }), web);
    const p = plan(base({ record: rec, observed, maintenance: 'upgrading' }));
    assert.deepEqual(p.actions, [
      { type: 'maintenance', host: 'h1', process: 'web', message: 'upgrading' },
      { type: 'maintenance', host: 'h2', process: 'web', message: 'upgrading' },
    ]);
    assert.equal(p.status.phase, 'Complete');
    assert.match(p.status.conditions[0]!.message, /serves on 3\/3 units$/);
  });

  it('applyResults keeps a unit under its key', () => {
    const action: HostUpdateAction = { type: 'updateHost', host: 'h3', process: 'worker', existingContainerId: null, containerName: 'app-worker-r2', pull: false };
    const ok = applyResults(record(), [{ action, ok: true, containerId: 'w2' }], NOW);
    assert.deepEqual(ok.hosts['worker@h3'], { step: 'switched', containerId: 'w2', at: NOW });
    const failed = applyResults(record(), [{ action, ok: false, stage: 'health', code: 'HEALTH_CHECK_FAILED', message: 'never healthy', unreachable: false }], NOW);
    assert.equal(failed.hosts['worker@h3']?.step, 'failed');
    assert.equal(failed.hosts.h3, undefined);
  });
});

describe('plan: rollout.preboot (later batches boot early, each batch still switches in its turn)', () => {
  const withRollout = (rollout: Partial<ReturnType<typeof makeSpec>['rollout']>) => makeSpec({ rollout: { ...makeSpec().rollout, ...rollout } });
  const EARLY = withRollout({ preboot: true });
  const fleetV1 = (spec = EARLY): Record<string, ObservedContainer[]> => ({ h1: [makeContainer(1, 'v1', { spec })], h2: [makeContainer(1, 'v1', { spec })], h3: [makeContainer(1, 'v1', { spec })] });
  const prebooted = (c: ObservedContainer) => ({ step: 'prebooted' as const, containerId: c.id, at: NOW });

  /**
   * Carries out a pass's actions on a model fleet without a proxy (a unit's only running
   * container serves) and says what happened, host by host: `boot` (a new container started,
   * health-checked, no switch), `boot+switch`, `switch` (a pre-booted one took the traffic),
   * `retire`, `remove`, `pull`. `fail` lists units whose health check fails.
   */
  function execute(fleet: Record<string, ObservedContainer[]>, actions: Action[], spec: typeof EARLY, fail: string[] = []): { results: ActionResult[]; did: string[] } {
    const did: string[] = [];
    const results = actions.map((a): ActionResult => {
      const cs = fleet[a.host]!;
      if (a.type === 'updateHost') {
        let c = cs.find((x) => x.id === a.existingContainerId);
        const booted = !c?.running;
        if (!c) cs.push((c = makeContainer(2, 'v2', { spec })));
        did.push(`${a.preboot ? 'boot' : booted ? 'boot+switch' : 'switch'} ${a.host}`);
        if (fail.includes(a.host)) return { action: a, ok: false, stage: 'health', code: 'HEALTH_CHECK_FAILED', message: 'GET /health -> 500', unreachable: false };
        return { action: a, ok: true, containerId: c.id };
      }
      did.push(`${a.type} ${a.host}`);
      if (a.type === 'retire') fleet[a.host] = cs.map((x) => (a.containerIds.includes(x.id) ? { ...x, running: false, state: 'exited', ip: null } : x));
      if (a.type === 'remove') fleet[a.host] = cs.filter((x) => !a.containerIds.includes(x.id));
      return { action: a, ok: true };
    });
    return { results, did: did.sort() };
  }

  /** A whole rollout, pass by pass (each pass 1 s after the one before): what each pass did, and the last plan. */
  function rollOut(spec: typeof EARLY, fleet = fleetV1(spec), fail: string[] = []): { passes: string[][]; last: Plan; fleet: Record<string, ObservedContainer[]> } {
    const desired = makeDesired(2, 'v2', spec);
    let rec: RolloutRecord | null = null;
    const passes: string[][] = [];
    for (let i = 0; i < 20; i++) {
      const now = NOW + i * 1000;
      const p = plan(input({ desired, record: rec, observed: observe(fleet), now }));
      if (p.actions.length === 0) return { passes, last: p, fleet };
      const { results, did } = execute(fleet, p.actions, spec, fail);
      passes.push(did);
      rec = applyResults(p.record!, results, now);
    }
    throw new Error(`no end after 20 passes: ${JSON.stringify(passes)}`);
  }

  it('parallelism 1 on 3 hosts: all three boot in the first pass, the switches still go one host per pass', () => {
    const { passes, last } = rollOut(EARLY);
    assert.deepEqual(passes, [
      ['boot h2', 'boot h3', 'boot+switch h1'],
      ['retire h1', 'switch h2'],
      ['retire h2', 'switch h3'],
      ['retire h3'],
    ]);
    assert.equal(last.status.phase, 'Complete');
    assert.equal(last.status.hostsUpdated, 3);
  });

  it('preboot off: one boot per pass, as before (later hosts only pre-pull)', () => {
    const { passes, last } = rollOut(withRollout({}));
    assert.deepEqual(passes, [
      ['boot+switch h1', 'pull h2', 'pull h3'],
      ['boot+switch h2', 'retire h1'],
      ['boot+switch h3', 'retire h2'],
      ['retire h3'],
    ]);
    assert.equal(last.status.phase, 'Complete');
  });

  it('parallelism 2: the second batch boots beside the first; its switch waits for its turn', () => {
    const { passes } = rollOut(withRollout({ preboot: true, parallelism: { kind: 'count', value: 2 } }));
    assert.deepEqual(passes[0], ['boot h3', 'boot+switch h1', 'boot+switch h2']);
    assert.deepEqual(passes[1], ['retire h1', 'retire h2', 'switch h3']);
  });

  it('the first pass: pre-boots pull inside their update (no separate pull), and say so on the action', () => {
    const p = plan(input({ desired: makeDesired(2, 'v2', EARLY), observed: observe(fleetV1()) }));
    assert.deepEqual(p.actions, [
      { type: 'updateHost', host: 'h1', existingContainerId: null, containerName: 'web-r2', pull: true },
      { type: 'updateHost', host: 'h2', existingContainerId: null, containerName: 'web-r2', pull: true, preboot: true },
      { type: 'updateHost', host: 'h3', existingContainerId: null, containerName: 'web-r2', pull: true, preboot: true },
    ]);
  });

  it('a pre-booted unit is not booted again; its turn switches the container it booted (health-checked again, no soak unless it restarted since)', () => {
    const fresh = { h1: makeContainer(2, 'v2', { spec: EARLY }), h2: makeContainer(2, 'v2', { spec: EARLY }), h3: makeContainer(2, 'v2', { spec: EARLY }) };
    const old = fleetV1();
    const observed = observe({ h1: [{ ...old.h1![0]!, running: false }, fresh.h1], h2: [...old.h2!, fresh.h2], h3: [...old.h3!, fresh.h3] });
    const turn = (h2: RolloutRecord['hosts'][string]) =>
      plan(input({ desired: makeDesired(2, 'v2', EARLY), record: record({ hosts: { h1: { step: 'switched', containerId: fresh.h1.id, at: NOW }, h2, h3: prebooted(fresh.h3) } }), observed })).actions;
    // The executor compares the container's RestartCount with the one it passed with (execute.ts).
    assert.deepEqual(turn({ ...prebooted(fresh.h2), restarts: 2 }), [{ type: 'updateHost', host: 'h2', existingContainerId: fresh.h2.id, containerName: 'web-r2', pull: false, prebooted: { restarts: 2 } }]);
    assert.deepEqual(turn(prebooted(fresh.h2)), [{ type: 'updateHost', host: 'h2', existingContainerId: fresh.h2.id, containerName: 'web-r2', pull: false, prebooted: { restarts: null } }], "an older berth's record: not known");
  });

  it('with `delay`, the next batch waits its delay; a pre-boot that waits for a retry goes on meanwhile', () => {
    const spec = withRollout({ preboot: true, delayMs: 30_000 });
    const fresh = { h1: makeContainer(2, 'v2', { spec }), h2: makeContainer(2, 'v2', { spec }) };
    const old = fleetV1(spec);
    const rec = record({
      batch: 0,
      hosts: {
        h1: { step: 'switched', containerId: fresh.h1.id, at: NOW },
        h2: prebooted(fresh.h2),
        h3: { step: 'retrying', attempts: 1, notBefore: NOW + 2_000, message: 'Docker: conflict', at: NOW },
      },
    });
    const observed = observe({ h1: [{ ...old.h1![0]!, running: false }, fresh.h1], h2: [...old.h2!, fresh.h2], h3: old.h3! });
    const desired = makeDesired(2, 'v2', spec);
    const early = plan(input({ desired, record: rec, observed }));
    assert.deepEqual(early.actions, [], 'nothing is due: the delay runs, h3 backs off');
    assert.equal(early.requeueAfterMs, 2_000, 'back when h3 may boot again, before the delay ends');
    const later = plan(input({ desired, record: early.record, observed, now: NOW + 2_000 }));
    assert.deepEqual(later.actions, [{ type: 'updateHost', host: 'h3', existingContainerId: null, containerName: 'web-r2', pull: false, preboot: true }]);
    const turn = plan(input({ desired, record: early.record, observed, now: NOW + 30_000 }));
    assert.deepEqual(types(turn.actions), ['updateHost:h2', 'updateHost:h3']);
    assert.equal(turn.actions.find((a) => a.host === 'h2' && a.type === 'updateHost' && a.prebooted) !== undefined, true, 'h2 switches in its turn');
  });

  it('a pre-booted container failing its health check fails the release: rollback, and the pre-booted ones that never took traffic are removed', () => {
    const { passes, last, fleet } = rollOut(EARLY, fleetV1(), ['h3']);
    assert.deepEqual(passes[0], ['boot h2', 'boot h3', 'boot+switch h1']);
    // The pass that sees h3 failed: the release fails at once (h2 never switches), h2's and h3's
    // new containers go; h1, switched before, retires its old one as any updated host does.
    assert.deepEqual(passes[1], ['remove h2', 'remove h3', 'retire h1']);
    assert.equal(last.status.phase, 'Failed');
    assert.equal(last.record?.failure?.reason, 'HealthCheckFailed');
    assert.deepEqual(
      Object.fromEntries(Object.entries(fleet).map(([h, cs]) => [h, cs.filter((c) => c.running).map((c) => c.version)])),
      { h1: ['v2'], h2: ['v1'], h3: ['v1'] },
      'h1 switched before the failure: the rollback release moves it back; h2 and h3 run only v1',
    );
  });

  it('on the failing pass itself the rollback is decided, and a pre-booted container the record lost (a crash) is removed too', () => {
    const fresh = { h1: makeContainer(2, 'v2', { spec: EARLY }), h2: makeContainer(2, 'v2', { spec: EARLY }), h3: makeContainer(2, 'v2', { spec: EARLY }) };
    const old = fleetV1();
    const rec = record({ hosts: { h1: { step: 'switched', containerId: fresh.h1.id, at: NOW }, h3: { step: 'failed', reason: 'HealthCheckFailed', message: '500', at: NOW } } });
    const observed = observe({ h1: [{ ...old.h1![0]!, running: false }, fresh.h1], h2: [...old.h2!, fresh.h2], h3: [...old.h3!, fresh.h3] });
    const p = plan(input({ desired: makeDesired(2, 'v2', EARLY), record: rec, observed }));
    assert.deepEqual(p.rollback, { toVersion: 'v1', toRevision: 1, reason: 'health_check_failed' });
    assert.deepEqual(p.actions, [
      { type: 'remove', host: 'h2', containerIds: [fresh.h2.id], why: 'failed' },
      { type: 'remove', host: 'h3', containerIds: [fresh.h3.id], why: 'failed' },
    ]);
  });

  it('on_failure pause keeps a pre-booted container (resume switches it); the failed one is removed', () => {
    const spec = withRollout({ preboot: true, onFailure: 'pause' });
    const fresh = { h2: makeContainer(2, 'v2', { spec }), h3: makeContainer(2, 'v2', { spec }) };
    const old = fleetV1(spec);
    const rec = record({ hosts: { h2: prebooted(fresh.h2), h3: { step: 'failed', reason: 'HealthCheckFailed', message: '500', at: NOW } } });
    const p = plan(input({ desired: makeDesired(2, 'v2', spec), record: rec, observed: observe({ h1: old.h1!, h2: [...old.h2!, fresh.h2], h3: [...old.h3!, fresh.h3] }) }));
    assert.equal(p.record?.state, 'paused');
    assert.deepEqual(p.actions, [{ type: 'remove', host: 'h3', containerIds: [fresh.h3.id], why: 'failed' }]);
  });

  it('crash resume with the record lost: the containers already pre-booted are checked again, never booted twice', () => {
    const fresh = { h2: makeContainer(2, 'v2', { spec: EARLY }), h3: makeContainer(2, 'v2', { spec: EARLY }) };
    const old = fleetV1();
    const p = plan(input({ desired: makeDesired(2, 'v2', EARLY), record: null, observed: observe({ h1: old.h1!, h2: [...old.h2!, fresh.h2], h3: [...old.h3!, fresh.h3] }) }));
    assert.deepEqual(p.actions, [
      { type: 'updateHost', host: 'h1', existingContainerId: null, containerName: 'web-r2', pull: true },
      { type: 'updateHost', host: 'h2', existingContainerId: fresh.h2.id, containerName: 'web-r2', pull: false, preboot: true },
      { type: 'updateHost', host: 'h3', existingContainerId: fresh.h3.id, containerName: 'web-r2', pull: false, preboot: true },
    ]);
  });

  it('a record that says prebooted, with the RestartCount it passed with, is one the store reads back (applyResults of a pre-boot)', () => {
    const boot: Action = { type: 'updateHost', host: 'h2', existingContainerId: null, containerName: 'web-r2', pull: true, preboot: true };
    const r = applyResults(record(), [{ action: boot, ok: true, containerId: 'abc', restarts: 0 }], NOW);
    assert.deepEqual(r.hosts.h2, { step: 'prebooted', containerId: 'abc', at: NOW, restarts: 0 });
    assert.equal(rolloutRecordProblem({ ...r, hosts: { h2: { ...r.hosts.h2, restarts: -1 } } }), 'hosts.h2.restarts is not a count');
  });

  it('processes: later units (web@h2, worker@h3) pre-boot with their process named', () => {
    const spec = validateAppDocument('app', { image: '10.77.0.1:5000/app', hosts: ['h1', 'h2'], rollout: { preboot: true }, processes: { web: { proxy: { port: 80 } }, worker: { cmd: 'bin/jobs', hosts: ['h3'] } } }, ['h1', 'h2', 'h3']);
    const desired = desiredRelease({ revision: 2, version: 'v2', spec, reason: 'deploy' }, {});
    const p = plan(input({ app: 'app', desired, observed: observe({ h1: [], h2: [], h3: [] }) }));
    assert.deepEqual(p.actions, [
      { type: 'updateHost', host: 'h1', process: 'web', existingContainerId: null, containerName: 'app-web-r2', pull: true },
      { type: 'updateHost', host: 'h2', process: 'web', existingContainerId: null, containerName: 'app-web-r2', pull: true, preboot: true },
      { type: 'updateHost', host: 'h3', process: 'worker', existingContainerId: null, containerName: 'app-worker-r2', pull: true, preboot: true },
    ]);
  });

  it('a rollback release takes preboot from the release it replaces, with the strategy (rollbackSpec)', () => {
    assert.equal(rollbackSpec(withRollout({}), EARLY).rollout.preboot, true);
    assert.equal(rollbackSpec(EARLY, withRollout({ strategy: 'recreate' })).rollout.preboot, undefined, 'never recreate with preboot');
  });
});
