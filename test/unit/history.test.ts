/**
 * History retention in the controller's pass: the revisions of the containers the hosts
 * hold (running, or stopped and retained for rollback) are kept, and nothing is pruned
 * while a host of the app does not answer. The hosts are SIMULATED
 * (src/hosts/simulated-driver.ts): this checks what the pass hands the store; the store's
 * own rules are table-tested in store.test.ts ("history").
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { pino } from 'pino';
import { LABELS } from '../../src/domain/labels.js';
import { simulatedFleet } from '../../src/hosts/simulated-driver.js';
import { BerthMetrics } from '../../src/metrics/registry.js';
import { directTraffic } from '../../src/proxy/traffic.js';
import { Controller } from '../../src/reconciler/controller.js';
import { openStore } from '../../src/store/index.js';
import { NO_SECRETS } from '../support/secrets.js';
import { makeSpec } from '../support/fixtures.js';

const store = openStore(':memory:');
after(() => store.close());

test('a pass prunes beyond history_limit, keeping the revisions of containers on the hosts, and prunes nothing while a host is down', async () => {
  const drivers = simulatedFleet(2, { prefix: 'h' });
  const image = 'registry.test:5000/web';
  // Paused: the pass observes, plans nothing to do, and still looks after history.
  store.apps.upsertApp(makeSpec({ name: 'web', image, hosts: ['h1', 'h2'], historyLimit: 2 }), 'test');
  store.apps.setPaused('web', true, 'test');
  const release = (version: string) => store.releases.createRelease({ app: 'web', version, reason: 'deploy', actor: 'test' });
  for (const v of ['v1', 'v2', 'v3', 'v4', 'v5', 'v6']) release(v);
  const plant = async (host: string, revision: number, start: boolean) => {
    const d = drivers.get(host)!;
    await d.pullImage(`${image}:v${revision}`);
    const id = await d.createContainer({
      name: `web-r${revision}`,
      image: `${image}:v${revision}`,
      env: {},
      labels: { [LABELS.app]: 'web', [LABELS.revision]: String(revision), [LABELS.version]: `v${revision}`, [LABELS.role]: 'app', [LABELS.config]: 'x' },
      network: 'berth',
      init: true,
    });
    if (start) await d.startContainer(id);
  };
  await plant('h1', 1, false); // stopped: retained for a rollback
  await plant('h2', 3, true); // running
  const controllerFor = () =>
    new Controller({ store, drivers, traffic: directTraffic, metrics: new BerthMetrics('test', { processMetrics: false }), log: pino({ level: 'silent' }), resyncIntervalMs: 60_000, secrets: NO_SECRETS });
  const revisions = () => store.releases.listReleases('web', { limit: 1000 }).map((r) => r.revision).reverse();

  await controllerFor().reconcile('web');
  // 5 and 6: the newest two (6 desired, 5 the rollback target); 1 and 3: containers on the hosts.
  assert.deepEqual(revisions(), [1, 3, 5, 6]);

  drivers.get('h2')!.setReachable(false);
  for (const v of ['v7', 'v8', 'v9']) release(v);
  await controllerFor().reconcile('web');
  assert.deepEqual(revisions(), [1, 3, 5, 6, 7, 8, 9], 'h2 did not answer: it could hold any revision');

  drivers.get('h2')!.setReachable(true);
  await controllerFor().reconcile('web');
  assert.deepEqual(revisions(), [1, 3, 8, 9]);
});
