/**
 * berth_reconcile_total's `result` (src/reconciler/pass.ts, passResult), table-style on
 * the planner's real output: `converged` only when the fleet is on the desired release
 * with nothing left to do; a rollout that cannot move right now (a host unreachable,
 * paused, failed, a delay or backoff to sit out) is `waiting`, never `converged`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RolloutRecord } from '../../src/domain/rollout.js';
import type { ObservedContainer } from '../../src/hosts/host-driver.js';
import { pino } from 'pino';
import { HostReachability } from '../../src/hosts/reachability.js';
import { simulatedFleet } from '../../src/hosts/simulated-driver.js';
import { BerthMetrics } from '../../src/metrics/registry.js';
import { directTraffic } from '../../src/proxy/traffic.js';
import { passResult, reconcilePass, type PassDeps, type PassResult } from '../../src/reconciler/pass.js';
import { openStore } from '../../src/store/index.js';
import { newRecord, plan } from '../../src/reconciler/plan.js';
import type { PlanInput } from '../../src/reconciler/types.js';
import { makeContainer, makeDesired, makeSpec, observeHosts as observe, planInput as input, PLAN_NOW } from '../support/fixtures.js';
import { NO_SECRETS } from '../support/secrets.js';

const NOW = PLAN_NOW;


function record(overrides: Partial<RolloutRecord> = {}): RolloutRecord {
  return { ...newRecord(2, NOW - 1000), pulled: ['h1', 'h2', 'h3'], ...overrides };
}

const switched = (cs: Record<string, ObservedContainer>) =>
  Object.fromEntries(Object.entries(cs).map(([h, c]) => [h, { step: 'switched' as const, containerId: c.id, at: NOW }]));

interface Case {
  name: string;
  input: () => PlanInput;
  /** What the plan looks like (so a case cannot silently test something else). */
  phase: string;
  actions: boolean;
  want: PassResult;
}

const c2 = () => ({ h1: makeContainer(2, 'v2'), h2: makeContainer(2, 'v2'), h3: makeContainer(2, 'v2') });

const CASES: Case[] = [
  {
    name: 'fleet on the desired release, record complete: converged',
    input: () => {
      const c = c2();
      return input({ record: record({ state: 'complete', hosts: switched(c) }), observed: observe({ h1: [c.h1], h2: [c.h2], h3: [c.h3] }) });
    },
    phase: 'Complete',
    actions: false,
    want: 'converged',
  },
  {
    name: 'the pass that completes the rollout: converged',
    input: () => {
      const c = c2();
      return input({ record: record({ hosts: switched(c) }), observed: observe({ h1: [c.h1], h2: [c.h2], h3: [c.h3] }) });
    },
    phase: 'Complete',
    actions: false,
    want: 'converged',
  },
  {
    name: 'a rollback release on the fleet: converged',
    input: () => {
      const c = { h1: makeContainer(3, 'v1'), h2: makeContainer(3, 'v1'), h3: makeContainer(3, 'v1') };
      const rb = makeDesired(3, 'v1', makeSpec(), 'rollback');
      return input({ desired: rb, record: { ...newRecord(3, NOW), state: 'complete', hosts: switched(c) }, observed: observe({ h1: [c.h1], h2: [c.h2], h3: [c.h3] }) });
    },
    phase: 'RolledBack',
    actions: false,
    want: 'converged',
  },
  {
    name: 'a rollout stuck on an unreachable host (the others updated, nothing to do, nothing scheduled): waiting',
    input: () => {
      const c = c2();
      return input({ record: record({ hosts: switched({ h1: c.h1, h2: c.h2 }) }), observed: observe({ h1: [c.h1], h2: [c.h2], h3: 'down' }) });
    },
    phase: 'Progressing',
    actions: false,
    want: 'waiting',
  },
  {
    name: 'a completed rollout whose host went unreachable: waiting',
    input: () => {
      const c = c2();
      return input({ record: record({ state: 'complete', hosts: switched(c) }), observed: observe({ h1: [c.h1], h2: [c.h2], h3: 'down' }) });
    },
    phase: 'Progressing',
    actions: false,
    want: 'waiting',
  },
  {
    name: 'paused by the operator mid-rollout: waiting',
    input: () => input({ paused: true, record: record(), observed: observe({ h1: [makeContainer(1, 'v1')], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] }) }),
    phase: 'Paused',
    actions: false,
    want: 'waiting',
  },
  {
    name: 'a failed rollout (nothing to roll back to) with nothing left to do: waiting',
    input: () =>
      input({
        stable: null,
        record: record({ state: 'failed', failure: { reason: 'HealthCheckFailed', message: 'x' }, finishedAt: NOW, hosts: { h1: { step: 'failed', reason: 'HealthCheckFailed', message: 'x', at: NOW } } }),
        observed: observe({ h1: [makeContainer(1, 'v1')], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] }),
      }),
    phase: 'Failed',
    actions: false,
    want: 'waiting',
  },
  {
    name: 'a host sitting out its start backoff: waiting',
    input: () =>
      input({
        record: record({ hosts: { h1: { step: 'retrying', attempts: 1, notBefore: NOW + 3_000, message: 'proxy not ready', at: NOW } } }),
        observed: observe({ h1: [makeContainer(1, 'v1')], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] }),
      }),
    phase: 'Progressing',
    actions: false,
    want: 'waiting',
  },
  {
    name: 'a new release: acted',
    input: () => input({ observed: observe({ h1: [makeContainer(1, 'v1')], h2: [makeContainer(1, 'v1')], h3: [makeContainer(1, 'v1')] }) }),
    phase: 'Progressing',
    actions: true,
    want: 'acted',
  },
];

describe('passResult: berth_reconcile_total{result}', () => {
  for (const c of CASES) {
    it(c.name, () => {
      const p = plan(c.input());
      assert.equal(p.status.phase, c.phase, 'phase');
      assert.equal(p.actions.length > 0, c.actions, `actions: ${JSON.stringify(p.actions)}`);
      assert.equal(passResult(p), c.want);
    });
  }
});

describe('reconcilePass on simulated hosts: what berth_reconcile_total counts', () => {
  it('a rollout stuck on an unreachable host counts waiting, never converged; converged once the host is back and updated', async () => {
    const store = openStore(':memory:');
    try {
      const drivers = simulatedFleet(2, { prefix: 'h' });
      drivers.get('h2')!.setReachable(false);
      const metrics = new BerthMetrics('test', { processMetrics: false });
      const log = pino({ level: 'silent' });
      const reachability = new HostReachability({
        drivers,
        rows: store.hostsStatus,
        setUp: () => {},
        onBack: () => {},
        onChange: () => {},
        log,
      });
      const deps: PassDeps = { store, drivers, traffic: directTraffic, metrics, log, secrets: NO_SECRETS, now: Date.now, reachability, snapshot: null, rows: null };
      store.apps.upsertApp(makeSpec({ name: 'web', image: 'registry.test:5000/web', hosts: ['h1', 'h2'] }), 'test');
      store.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'test' });
      const counts = async () => {
        const out: Record<string, number> = {};
        for (const v of (await metrics.reconcileTotal.get()).values) out[String(v.labels.result)] = v.value;
        return out;
      };
      /** Passes until one asks for no next pass. */
      const settle = async () => {
        for (let i = 0; i < 100; i++) {
          const again = await reconcilePass(deps, 'web');
          if (again === null) return;
          await new Promise((r) => setTimeout(r, Math.min(again, 50)));
        }
        assert.fail('the app did not settle in 100 passes');
      };

      await settle();
      assert.equal(store.status.readStatus('web')?.phase, 'Progressing', 'h2 is still to do');
      await reconcilePass(deps, 'web'); // a resync's pass: nothing to do, nothing scheduled
      const stuck = await counts();
      assert.equal(stuck.converged, undefined, `no pass of a stuck rollout counts converged: ${JSON.stringify(stuck)}`);
      assert.ok((stuck.waiting ?? 0) >= 2, `the stuck passes count waiting: ${JSON.stringify(stuck)}`);

      drivers.get('h2')!.setReachable(true);
      await reachability.pingAll();
      await settle();
      assert.equal(store.status.readStatus('web')?.phase, 'Complete');
      await reconcilePass(deps, 'web');
      assert.ok(((await counts()).converged ?? 0) >= 1, 'a converged app counts converged');
    } finally {
      store.close();
    }
  });
});
