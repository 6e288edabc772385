/**
 * rollout.strategy: recreate through whole reconcile passes (planner, executor, fold, the
 * rollback release) on simulated hosts: at every start of an app container a driver sees,
 * nothing else of the app runs on that host. The order inside a host's step is the
 * executor's (create, then withdraw and stop the old one, then start), which the planner's
 * table tests cannot see. Real hosts, the proxy and a kill -9: test/integration/recreate.test.ts.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { rollbackSpec, type AppSpec } from '../../src/domain/app-spec.js';
import type { AppStatus } from '../../src/domain/release.js';
import { LABELS } from '../../src/domain/labels.js';
import { HostReachability } from '../../src/hosts/reachability.js';
import { simulatedFleet, type SimulatedHostDriver } from '../../src/hosts/simulated-driver.js';
import { BerthMetrics } from '../../src/metrics/registry.js';
import { directTraffic } from '../../src/proxy/traffic.js';
import { reconcilePass, type PassDeps } from '../../src/reconciler/pass.js';
import { openStore, type Store } from '../../src/store/index.js';
import { makeSpec } from '../support/fixtures.js';
import { NO_SECRETS } from '../support/secrets.js';

const APP = 'web';
/** Healthy on h1, never healthy on h2 (the failed deploy that catches a host after another was switched). */
const SPOTTY = 'spotty';

interface Harness {
  store: Store;
  /** The app's spec with these rollout settings (on h1, h2; health checks every 100 ms, 2 attempts). */
  spec(rollout: Partial<AppSpec['rollout']>, over?: Partial<AppSpec>): AppSpec;
  /** Creates a release and runs passes until one asks for no next pass. */
  release(version: string, opts?: { spec?: AppSpec; reason?: 'deploy' | 'rollback' }): Promise<AppStatus>;
  /** The versions of the app's running containers, per host. */
  running(): Record<string, string[]>;
  /** Each start of a stopped or created app container as `host:version`, and those that found another one running on their host. */
  starts: string[];
  violations: string[];
}

function harness(): Harness {
  const store = openStore(':memory:');
  const starts: string[] = [];
  const violations: string[] = [];
  const appContainers = (host: string) => fleet.get(host)!.containers().filter((c) => c.labels[LABELS.app] === APP && c.labels[LABELS.role] === 'app');
  const fleet: Map<string, SimulatedHostDriver> = simulatedFleet(2, {
    prefix: 'h',
    perHost: (name) => ({
      httpHandler: (c, path) => (name === 'h2' && path === '/health' && c.image.endsWith(`:${SPOTTY}`) ? { status: 404, body: 'no' } : null),
    }),
    // At the start of every call, before its latency: the host as it is when the start is asked for.
    onCall: (call) => {
      if (call.op !== 'startContainer' || call.app !== APP) return;
      const all = appContainers(call.host);
      const starting = all.find((c) => c.id === call.containerId);
      if (starting?.state === 'running') return; // Docker's 304: a re-probe of a running container starts nothing
      starts.push(`${call.host}:${starting?.labels[LABELS.version]}`);
      const beside = all.filter((c) => c.state === 'running' && c.id !== call.containerId);
      if (beside.length > 0) violations.push(`${call.host}: ${starting?.name} started beside ${beside.map((c) => c.name).join(', ')}`);
    },
  });
  const log = pino({ level: 'silent' });
  const reachability = new HostReachability({ drivers: fleet, rows: store.hostsStatus, setUp: () => {}, onBack: () => {}, onChange: () => {}, log });
  const deps: PassDeps = { store, drivers: fleet, traffic: directTraffic, metrics: new BerthMetrics('test', { processMetrics: false }), log, secrets: NO_SECRETS, now: Date.now, reachability, snapshot: null, rows: null };
  return {
    store,
    starts,
    violations,
    spec(rollout, over = {}) {
      const base = makeSpec({ name: APP, image: 'registry.test:5000/web', hosts: ['h1', 'h2'], healthcheck: { ...makeSpec().healthcheck, intervalMs: 100, maxAttempts: 2 }, ...over });
      return { ...base, rollout: { ...base.rollout, ...rollout } };
    },
    async release(version, opts = {}) {
      store.releases.createRelease({ app: APP, version, reason: opts.reason ?? 'deploy', actor: 'test', ...(opts.spec ? { spec: opts.spec } : {}) });
      for (let i = 0; i < 200; i++) {
        const again = await reconcilePass(deps, APP);
        if (again === null) return store.status.readStatus(APP)!;
        await new Promise((r) => setTimeout(r, Math.min(again, 20)));
      }
      return assert.fail('the app did not settle in 200 passes');
    },
    running: () => Object.fromEntries([...fleet.keys()].map((h) => [h, appContainers(h).filter((c) => c.state === 'running').map((c) => c.labels[LABELS.version]!)])),
  };
}

describe('recreate on simulated hosts: no app container starts beside a running one', () => {
  const opened: Harness[] = [];
  after(() => opened.forEach((h) => h.store.close()));

  it('through deploys, a deploy that fails on the second host (automatic rollback), and a rollback to a release from before the app was made recreate', async () => {
    const h = harness();
    opened.push(h);
    // v1 start-first, then the app is made recreate: v2 replaces it host by host.
    h.store.apps.upsertApp(h.spec({}), 'test');
    assert.equal((await h.release('v1')).phase, 'Complete');
    h.store.apps.upsertApp(h.spec({ strategy: 'recreate' }), 'test');
    assert.equal((await h.release('v2')).phase, 'Complete');
    assert.deepEqual(h.running(), { h1: ['v2'], h2: ['v2'] });

    // Healthy on h1 (switched), never healthy on h2: h2 goes back on v2's container, and the
    // rollback release stops h1's spotty container before v2's starts again.
    const bad = await h.release(SPOTTY);
    assert.equal(bad.phase, 'RolledBack', JSON.stringify(bad));
    assert.deepEqual(h.running(), { h1: ['v2'], h2: ['v2'] });
    const current = h.store.releases.latestRelease(APP)!;
    assert.equal(current.spec.rollout.strategy, 'recreate', 'the automatic rollback release kept recreate');

    // Back to v1, whose release was start-first, as POST /rollback does it: still recreate.
    const v1 = h.store.releases.rollbackTarget(APP)!;
    assert.equal(v1.version, 'v1');
    await h.release('v1', { spec: rollbackSpec(v1.spec, current.spec), reason: 'rollback' });
    assert.deepEqual(h.running(), { h1: ['v1'], h2: ['v1'] });

    assert.deepEqual(h.violations, [], 'no start beside a running container of the app');
    // Every kind of start was seen: new containers, the revert on h2, retained ones.
    assert.deepEqual(h.starts.filter((s) => s.endsWith(`:${SPOTTY}`)), ['h1:spotty', 'h2:spotty'], h.starts.join(' '));
    assert.ok(h.starts.filter((s) => s === 'h2:v2').length >= 2, `h2's v2 started again by the revert: ${h.starts.join(' ')}`);
  });

  it('a release that cannot create its container (a secret missing) stops nothing: the old one keeps running', async () => {
    const h = harness();
    opened.push(h);
    h.store.apps.upsertApp(h.spec({ strategy: 'recreate' }), 'test');
    assert.equal((await h.release('v1')).phase, 'Complete');
    const status = await h.release('v2', { spec: h.spec({ strategy: 'recreate' }, { secrets: ['DATABASE_URL'] }) });
    assert.notEqual(status.phase, 'Complete', JSON.stringify(status));
    assert.deepEqual(h.running(), { h1: ['v1'], h2: ['v1'] });
    assert.deepEqual(h.starts, ['h1:v1', 'h2:v1'], 'v1 never stopped, so never started again; v2 never started');
  });
});
