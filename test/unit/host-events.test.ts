/**
 * Host down/up reaches the operator: a warning log line, the host status row and an
 * event on every app of the host. The hosts are SIMULATED (src/hosts/simulated-driver.ts):
 * this checks the controller's wiring; hosts-faults.test.ts cuts a real host off.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { pino } from 'pino';
import { simulatedFleet } from '../../src/hosts/simulated-driver.js';
import { BerthMetrics } from '../../src/metrics/registry.js';
import { directTraffic } from '../../src/proxy/traffic.js';
import { Controller } from '../../src/reconciler/controller.js';
import { StoreError } from '../../src/domain/errors.js';
import { openStore } from '../../src/store/index.js';
import { makeSpec } from '../support/fixtures.js';
import { NO_SECRETS } from '../support/secrets.js';

const store = openStore(':memory:');
let controller: Controller | undefined;
after(async () => {
  await controller?.stop();
  store.close();
});

async function until(pred: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a host found down at the first check, then back: HostUnreachable and HostRecovered events on each of its apps', async () => {
  const drivers = simulatedFleet(2, { prefix: 'h' });
  drivers.get('h2')!.setReachable(false);
  for (const name of ['web', 'api']) store.apps.upsertApp(makeSpec({ name, image: 'registry.test:5000/web', hosts: name === 'web' ? ['h1', 'h2'] : ['h1'] }), 'test');
  controller = new Controller({ store, drivers, traffic: directTraffic, metrics: new BerthMetrics('test', { processMetrics: false }), log: pino({ level: 'silent' }), resyncIntervalMs: 100, secrets: NO_SECRETS });
  controller.start();
  const types = (app: string) => store.events.listEvents(app, { limit: 100 }).map((e) => `${e.type}@${e.host}`);
  await until(() => types('web').includes('HostUnreachable@h2'), 'HostUnreachable on web');
  const down = store.events.listEvents('web', { limit: 100 }).find((e) => e.type === 'HostUnreachable')!;
  assert.match(down.message, /^host h2 is unreachable: \S/);
  assert.ok(!types('api').some((t) => t.startsWith('Host')), 'api does not run on h2');
  assert.equal(store.hostsStatus.get('h2')?.up, false);

  drivers.get('h2')!.setReachable(true);
  await until(() => types('web').includes('HostRecovered@h2'), 'HostRecovered on web');
  assert.equal(store.hostsStatus.get('h2')?.up, true);
  assert.equal(types('web').filter((t) => t === 'HostUnreachable@h2').length, 1, 'one event per change, not per check');
});

test("the store failing while a host's change is recorded: the pass that saw it goes on, the host keeps its own error, and the failure is logged", async () => {
  const lines: Array<{ level: number; msg: string }> = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) });
  const own = openStore(':memory:');
  const drivers = simulatedFleet(2, { prefix: 'g' });
  own.apps.upsertApp(makeSpec({ name: 'shop', image: 'registry.test:5000/shop', hosts: ['g1', 'g2'] }), 'test');
  own.releases.createRelease({ app: 'shop', version: 'v1', reason: 'deploy', actor: 'test' });
  const c = new Controller({ store: own, drivers, traffic: directTraffic, metrics: new BerthMetrics('test', { processMetrics: false }), log, resyncIntervalMs: 3_600_000, secrets: NO_SECRETS });
  try {
    c.start();
    await until(() => own.status.readStatus('shop')?.phase === 'Complete', 'shop rolled out');
    await c.idle();
    const append = own.events.appendEvent.bind(own.events);
    own.events.appendEvent = (e) => {
      if (e.type === 'HostUnreachable') throw new StoreError('DB_UNAVAILABLE', 'PostgreSQL does not answer; reconnecting');
      return append(e);
    };
    const failed: unknown[] = [];
    const reconcile = c.reconcile.bind(c);
    c.reconcile = (app) => reconcile(app).catch((err: unknown) => (failed.push(err), null));
    drivers.get('g2')!.setReachable(false);
    c.enqueue('shop');
    await until(() => own.hostsStatus.get('g2')?.up === false, 'g2 seen down');
    await c.idle();
    assert.deepEqual(failed, [], 'the pass that saw g2 down did not fail');
    assert.doesNotMatch(own.hostsStatus.get('g2')?.lastError ?? '', /PostgreSQL/, "g2's error is its own, not the store's");
    assert.equal(own.hostsStatus.get('g1')?.up, true);
    await until(() => lines.some((l) => l.msg.startsWith("recording a host's change skipped")), 'the failure logged');
  } finally {
    await c.stop();
    own.close();
  }
});
