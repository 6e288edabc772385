/**
 * rollout.preboot for a process without a proxy or a health command (a worker: healthy once
 * it ran min_healthy without a restart), through whole reconcile passes on SIMULATED hosts
 * (src/hosts/simulated-driver.ts models Docker's RestartCount). Its pre-boot proves it ran
 * min_healthy; a crash its restart policy hid between then and its turn must not be promoted
 * on the strength of that old proof. The planner's table: test/unit/plan.test.ts.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { validateAppDocument } from '../../src/config/app.js';
import type { BerthEvent } from '../../src/domain/release.js';
import { LABELS } from '../../src/domain/labels.js';
import { HostReachability } from '../../src/hosts/reachability.js';
import { simulatedFleet } from '../../src/hosts/simulated-driver.js';
import { BerthMetrics } from '../../src/metrics/registry.js';
import { directTraffic } from '../../src/proxy/traffic.js';
import { reconcilePass, type PassDeps } from '../../src/reconciler/pass.js';
import { openStore } from '../../src/store/index.js';
import { NO_SECRETS } from '../support/secrets.js';

const APP = 'jobs';
const UNIT = 'worker@h2';

interface Crashes {
  /** After the pass that pre-boots h2, crash its new container (its restart policy runs it again). */
  afterPreboot: boolean;
  /** When h2's turn starts that container, crash it again this long after. */
  inTurnAfterMs: number | null;
}

/** A worker on h1 and h2, parallelism 1, pre-booting, healthy after 300 ms unrestarted. */
function harness() {
  const store = openStore(':memory:');
  let crashes: Crashes = { afterPreboot: false, inTurnAfterMs: null };
  let crashed = false;
  let turnStarted = false;
  const fleet = simulatedFleet(2, {
    prefix: 'h',
    images: ['registry.test:5000/jobs:v1', 'registry.test:5000/jobs:v2'],
    onCall: (call) => {
      // The turn starts the pre-booted container (Docker's 304: it runs already).
      if (call.op !== 'startContainer' || call.host !== 'h2' || !crashed || turnStarted || crashes.inTurnAfterMs === null) return;
      turnStarted = true;
      setTimeout(() => fleet.get('h2')!.crash(call.containerId!), crashes.inTurnAfterMs);
    },
  });
  const spec = validateAppDocument(
    APP,
    { image: 'registry.test:5000/jobs', rollout: { parallelism: 1, preboot: true }, processes: { worker: { hosts: ['h1', 'h2'], cmd: 'bin/jobs', healthcheck: { min_healthy: '300ms' } } } },
    ['h1', 'h2'],
  );
  store.apps.upsertApp(spec, 'test');
  const log = pino({ level: 'silent' });
  const reachability = new HostReachability({ drivers: fleet, rows: store.hostsStatus, setUp: () => {}, onBack: () => {}, onChange: () => {}, log });
  const deps: PassDeps = { store, drivers: fleet, traffic: directTraffic, metrics: new BerthMetrics('test', { processMetrics: false }), log, secrets: NO_SECRETS, now: Date.now, reachability, snapshot: null, rows: null };
  return {
    store,
    /** Creates a release and runs passes until one asks for no next pass; its status phase and events. */
    async release(version: string, crash: Crashes = { afterPreboot: false, inTurnAfterMs: null }): Promise<{ phase: string | null | undefined; events: BerthEvent[] }> {
      [crashes, crashed, turnStarted] = [crash, false, false];
      const { revision } = store.releases.createRelease({ app: APP, version, reason: 'deploy', actor: 'test' });
      for (let i = 0; i < 200; i++) {
        const again = await reconcilePass(deps, APP);
        const state = store.status.getRollout(APP)?.state.hosts[UNIT];
        if (crashes.afterPreboot && !crashed && state?.step === 'prebooted') {
          fleet.get('h2')!.crash(state.containerId);
          crashed = true;
        }
        if (again === null) return { phase: store.status.readStatus(APP)?.phase, events: store.events.listEvents(APP, { limit: 500 }).filter((e) => e.revision === revision) };
        await new Promise((r) => setTimeout(r, Math.min(again, 20)));
      }
      return assert.fail('the app did not settle in 200 passes');
    },
    running: (host: string) => fleet.get(host)!.containers().filter((c) => c.state === 'running' && c.labels[LABELS.app] === APP).map((c) => c.labels[LABELS.version]),
    close: () => store.close(),
  };
}

describe('rollout.preboot: a worker that restarted between its pre-boot and its turn', () => {
  const opened: Array<{ close(): void }> = [];
  after(() => opened.forEach((h) => h.close()));
  const turnOf = (events: BerthEvent[]) => events.find((e) => e.type === 'HostUpdateStarted' && e.message.includes('pre-booted'))?.message ?? '(no turn)';

  it('is checked again in full at its turn: a crash inside that min_healthy fails the release, which rolls back', async () => {
    const h = harness();
    opened.push(h);
    const v1 = await h.release('v1');
    assert.equal(v1.phase, 'Complete', v1.events.map((e) => `${e.type} ${e.host}: ${e.message}`).join('\n'));
    const { phase, events } = await h.release('v2', { afterPreboot: true, inTurnAfterMs: 100 });
    assert.match(turnOf(events), /it restarted since \(RestartCount 0 -> 1\): checked again in full/);
    assert.ok(
      events.some((e) => e.type === 'HealthCheckAttemptFailed' && /the container restarted \(RestartCount 1 -> 2\)/.test(e.message)),
      events.map((e) => `${e.type}: ${e.message}`).join('\n'),
    );
    assert.notEqual(phase, 'Complete');
    const rolledBack = h.store.releases.latestRelease(APP)!;
    assert.equal(rolledBack.reason, 'rollback');
    assert.deepEqual([h.running('h1'), h.running('h2')], [['v1'], ['v1']], 'both hosts are back on v1');
  });

  it('one restart since, then steady through its min_healthy: promoted after the full check', async () => {
    const h = harness();
    opened.push(h);
    const v1 = await h.release('v1');
    assert.equal(v1.phase, 'Complete', v1.events.map((e) => `${e.type} ${e.host}: ${e.message}`).join('\n'));
    const { phase, events } = await h.release('v2', { afterPreboot: true, inTurnAfterMs: null });
    assert.equal(phase, 'Complete');
    assert.match(turnOf(events), /it restarted since \(RestartCount 0 -> 1\): checked again in full/);
    const turnCheck = events.filter((e) => e.type === 'HealthCheckPassed' && e.host === UNIT).at(-1);
    assert.match(turnCheck?.message ?? '', /^ran 0\.[3-9]s without a restart$/, 'the full 300 ms again');
  });

  it('no restart since: its turn does not sit out min_healthy again', async () => {
    const h = harness();
    opened.push(h);
    const v1 = await h.release('v1');
    assert.equal(v1.phase, 'Complete', v1.events.map((e) => `${e.type} ${e.host}: ${e.message}`).join('\n'));
    const { phase, events } = await h.release('v2');
    assert.equal(phase, 'Complete');
    assert.match(turnOf(events), /\(pre-booted\)/);
    const turnCheck = events.filter((e) => e.type === 'HealthCheckPassed' && e.host === UNIT).at(-1);
    assert.match(turnCheck?.message ?? '', /^ran 0(\.[0-2])?s without a restart$/);
  });
});
