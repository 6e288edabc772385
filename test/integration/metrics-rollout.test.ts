import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { makeSpec } from '../support/fixtures.js';
import { startFleet, type Fleet } from '../support/fleet.js';
import { bedSkipReason } from '../support/testbed.js';

/**
 * The Prometheus view of a real 3-host rollout: the scrape text follows the rollout
 * host by host, and a failed release shows up in the failure counters.
 */
const skip = bedSkipReason();
const base = makeSpec();

function sample(text: string, name: string, labels: Record<string, string>): number | null {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (want.every((l) => line.includes(l))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return null;
}

describe('metrics follow a real rollout', { skip, concurrency: false }, () => {
  let f: Fleet;
  after(async () => f?.stop());

  it('hosts_updated climbs 0/3 -> 3/3 and the phase flips Progressing -> Complete; a failed release raises the failure counters', async () => {
    f = await startFleet('metr', { healthcheck: { ...base.healthcheck, intervalMs: 500, maxAttempts: 4 } });
    await f.settle(f.deploy('v1'));
    const seen: string[] = [];
    const scrape = async () => {
      const text = await f.metrics.text();
      const updated = sample(text, 'berth_rollout_hosts_updated', { app: 'metr' });
      const total = sample(text, 'berth_rollout_hosts', { app: 'metr' });
      const phase = ['Progressing', 'Complete', 'Failed', 'Paused', 'RolledBack'].find((p) => sample(text, 'berth_rollout_phase', { app: 'metr', phase: p }) === 1);
      const point = `${updated}/${total} ${phase}`;
      if (seen[seen.length - 1] !== point) seen.push(point);
    };
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        await scrape();
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const r2 = f.deploy('v2');
    await f.settle(r2);
    sampling = false;
    await sampler;
    await scrape(); // the settled state
    // The first point is the converged v1 fleet; from the new release on, the series climbs host by host.
    const rollout = seen.slice(seen.findIndex((p) => p.endsWith('Progressing')));
    // 3/3 may show as Progressing for the moment the last old container is being drained and stopped.
    const expected = ['0/3 Progressing', '1/3 Progressing', '2/3 Progressing', '3/3 Complete'];
    assert.deepEqual(rollout.filter((p) => p !== '3/3 Progressing'), expected, `observed: ${seen.join(' | ')}`);

    const text = await f.metrics.text();
    assert.equal(sample(text, 'berth_release_desired_revision', { app: 'metr' }), r2);
    assert.equal(sample(text, 'berth_release_observed_revision', { app: 'metr' }), r2);
    assert.ok((sample(text, 'berth_health_checks_total', { app: 'metr', host: 'h2', result: 'pass' }) ?? 0) >= 2);
    assert.equal(sample(text, 'berth_rollout_duration_seconds_count', { app: 'metr', result: 'complete' }), 2);
    assert.equal(sample(text, 'berth_host_up', { host: 'h1' }), 1);
    assert.ok((sample(text, 'berth_host_operation_duration_seconds_count', { host: 'h1', op: 'create' }) ?? 0) >= 2);

    const bad = f.deploy('broken');
    await f.waitFor((s, desired) => desired > bad && s.observedRevision === desired);
    await f.controller.idle();
    const failed = await f.metrics.text();
    assert.equal(sample(failed, 'berth_rollout_duration_seconds_count', { app: 'metr', result: 'failed' }), 1);
    assert.equal(sample(failed, 'berth_rollbacks_total', { app: 'metr', reason: 'health_check_failed' }), 1);
    assert.equal(sample(failed, 'berth_health_checks_total', { app: 'metr', host: 'h1', result: 'fail' }), 4);
    assert.equal(sample(failed, 'berth_rollout_phase', { app: 'metr', phase: 'RolledBack' }), 1);
  });
});
