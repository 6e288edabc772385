/**
 * Controller tests on SIMULATED hosts (src/hosts/simulated-driver.ts) that start from a
 * converged fleet: apps seeded in a store, and a one-worker controller that rolled them out.
 */
import { after } from 'node:test';
import { pino } from 'pino';
import type { SimulatedHostDriver } from '../../src/hosts/simulated-driver.js';
import { BerthMetrics } from '../../src/metrics/registry.js';
import { directTraffic } from '../../src/proxy/traffic.js';
import { Controller } from '../../src/reconciler/controller.js';
import { openStore, type Store } from '../../src/store/index.js';
import { makeSpec } from './fixtures.js';
import { NO_SECRETS } from './secrets.js';

/** `count` apps, each on 3 of `hosts` (round-robin) with a first release v1; their names. */
export function seedApps(store: Store, count: number, hosts: readonly string[], name: (i: number) => string): string[] {
  const names = Array.from({ length: count }, (_, i) => name(i));
  for (const [i, app] of names.entries()) {
    store.apps.upsertApp(makeSpec({ name: app, image: `registry.test:5000/${app}`, hosts: [0, 1, 2].map((k) => hosts[(i + k) % hosts.length]!) }), 'test');
    store.releases.createRelease({ app, version: 'v1', reason: 'deploy', actor: 'test' });
  }
  return names;
}

/**
 * A store of `count` apps on `fleet` and a controller that has rolled them all out. One pass
 * at a time, so a test can act between a resync's start and a given app's pass. The
 * periodic resync is an hour away: tests call it by hand (`resyncNow`).
 */
export async function convergedController(fleet: Map<string, SimulatedHostDriver>, count: number, name: (i: number) => string): Promise<{ store: Store; controller: Controller }> {
  const store = openStore(':memory:');
  seedApps(store, count, [...fleet.keys()], name);
  const controller = new Controller({ store, drivers: fleet, traffic: directTraffic, metrics: new BerthMetrics('test', { processMetrics: false }), log: pino({ level: 'silent' }), resyncIntervalMs: 3_600_000, secrets: NO_SECRETS, concurrency: 1 });
  controller.start();
  const deadline = Date.now() + 60_000;
  while (store.status.listStatus().filter((s) => s.phase === 'Complete').length < count) {
    if (Date.now() > deadline) throw new Error('the apps did not converge');
    await new Promise((r) => setTimeout(r, 20));
  }
  await controller.idle();
  return { store, controller };
}

/**
 * For a describe block whose tests each start from a converged fleet: `converged` stops the
 * previous test's controller and closes its store, then makes the next; the block's `after`
 * stops the last.
 */
export function convergedPerTest(name: (i: number) => string): (fleet: Map<string, SimulatedHostDriver>, count: number) => Promise<{ store: Store; controller: Controller }> {
  let current: { store: Store; controller: Controller } | undefined;
  const stop = async () => {
    await current?.controller.stop();
    current?.store.close();
    current = undefined;
  };
  after(stop);
  return async (fleet, count) => {
    await stop();
    current = await convergedController(fleet, count, name);
    return current;
  };
}

/** The periodic resync, by hand. */
export function resyncNow(c: Controller): void {
  (c as unknown as { resync(): void }).resync();
}
