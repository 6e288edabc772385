/**
 * One look at each host per resync (src/reconciler/resync-snapshot.ts): a resync lists
 * each host once whatever the number of apps, and the snapshot is never used where it
 * may be out of date. The hosts are SIMULATED (src/hosts/simulated-driver.ts): this
 * checks the controller's bookkeeping, not Docker; every bed test runs through it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { simulatedFleet, type SimulatedHostDriver } from '../../src/hosts/simulated-driver.js';
import { directTraffic } from '../../src/proxy/traffic.js';
import { ResyncSnapshot, SNAPSHOT_READS_IN_FLIGHT } from '../../src/reconciler/resync-snapshot.js';
import { convergedPerTest, resyncNow } from '../support/converged.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const listings = (fleet: Map<string, SimulatedHostDriver>) => [...fleet.values()].reduce((n, d) => n + (d.callCounts().listContainers ?? 0), 0);

describe('ResyncSnapshot: when a pass may use it', () => {
  const fleet = simulatedFleet(2, { prefix: 'h' });
  let clock = 1_000;
  const snapshot = new ResyncSnapshot({ drivers: fleet, traffic: directTraffic, maxAgeMs: 10_000, now: () => clock });
  const apps = [
    { name: 'a', hosts: ['h1', 'h2'], routed: false },
    { name: 'b', hosts: ['h1'], routed: true },
    { name: 'busy', hosts: ['h1', 'h2'], routed: false },
  ];
  const take = () => snapshot.take(apps, { app: (n) => n === 'busy', host: () => false });

  it('lists each host once for all its apps; each app uses it once; an app whose pass runs gets nothing', async () => {
    const before = listings(fleet);
    await take();
    const a1 = snapshot.use('h1', 'a');
    assert.ok(a1);
    assert.deepEqual(await a1.containers, []);
    assert.equal(snapshot.use('h2', 'a')?.route, null, 'no app on h2 has a proxy route: the proxy is not read');
    const b1 = snapshot.use('h1', 'b');
    assert.ok(b1?.route, 'a routed app gets the route read with the snapshot');
    assert.deepEqual(await b1.route!({ port: 8080, host: null, drainTimeoutMs: 1000 }), { upstream: null, maintenance: null });
    assert.equal(snapshot.use('h1', 'a'), null, 'used once');
    assert.equal(snapshot.use('h1', 'busy'), null, 'in flight when taken');
    assert.equal(listings(fleet) - before, 2, 'one listing per host');
    assert.equal(snapshot.use('h2', 'busy'), null);
  });

  it('a Docker event of the app on the host, of the proxy, or a re-subscription drops what it may have changed', async () => {
    await take();
    snapshot.dropApp('h1', 'a');
    assert.equal(snapshot.use('h1', 'a'), null);
    assert.ok(snapshot.use('h2', 'b') === null && snapshot.use('h2', 'a'), 'the same app on another host is untouched');
    snapshot.dropHost('h1');
    assert.equal(snapshot.use('h1', 'b'), null);
  });

  it("lets go of a host's listing once every app that may use it has, or has been dropped", async () => {
    await take();
    assert.equal(snapshot.heldHosts, 2);
    assert.ok(snapshot.use('h1', 'a'));
    assert.equal(snapshot.heldHosts, 2, 'b has yet to use h1');
    assert.ok(snapshot.use('h1', 'b'));
    assert.equal(snapshot.heldHosts, 1, "h1's listing is gone: a and b used it, busy never may");
    snapshot.dropApp('h2', 'a');
    assert.equal(snapshot.heldHosts, 0, "h2's only user was dropped");
  });

  it("an operator's request for an app: its next pass lists every host itself; the other apps keep the snapshot", async () => {
    await take();
    snapshot.dropAppEverywhere('a');
    assert.equal(snapshot.use('h1', 'a'), null);
    assert.equal(snapshot.use('h2', 'a'), null);
    assert.ok(snapshot.use('h1', 'b'));
  });

  it('older than maxAgeMs: not used', async () => {
    await take();
    clock += 10_001;
    assert.equal(snapshot.use('h2', 'a'), null);
  });
});

describe('ResyncSnapshot: a take of many apps, in turns of the event loop', () => {
  const fleet = simulatedFleet(10, { prefix: 'h' });
  const snapshot = new ResyncSnapshot({ drivers: fleet, traffic: directTraffic, maxAgeMs: 10_000, now: Date.now });
  const apps = Array.from({ length: 5_000 }, (_, i) => ({ name: `app-${i}`, hosts: [`h${(i % 10) + 1}`, `h${((i + 1) % 10) + 1}`], routed: false }));
  const nothingSkipped = { app: () => false, host: () => false };

  it('lets the loop turn between its turns (5,000 apps: an immediate queued after the call runs before it ends)', async () => {
    let turned = false;
    const taking = snapshot.take(apps, nothingSkipped);
    setImmediate(() => (turned = true));
    let turnedBeforeTheEnd = false;
    await taking.then(() => (turnedBeforeTheEnd = turned));
    assert.ok(turnedBeforeTheEnd, 'the take held the loop from start to end');
    assert.ok(snapshot.use('h1', 'app-0'), 'and the apps got their entries');
  });

  it("asks whether an app's pass runs in its last turn, just before the listings start: a pass begun meanwhile gets no entry", async () => {
    const running = new Set<string>();
    const taking = snapshot.take(apps, { app: (name) => running.has(name), host: () => false });
    // (After the take's first turn: the app's hosts were gone through already.)
    setImmediate(() => running.add('app-0'));
    await taking;
    assert.equal(snapshot.use('h1', 'app-0'), null);
    assert.equal(snapshot.use('h2', 'app-0'), null);
    assert.ok(snapshot.use('h1', 'app-9'));
  });

  it(`lists ${SNAPSHOT_READS_IN_FLIGHT} hosts at a time at most, in the order the apps need them`, async () => {
    let inFlight = 0;
    let most = 0;
    const order: string[] = [];
    const hosts = simulatedFleet(40, {
      prefix: 'n',
      latencyMs: { listContainers: 5 },
      onCall: (c) => void (c.op === 'listContainers' && (order.push(c.host), (most = Math.max(most, ++inFlight)))),
      onOperation: (op) => void (op === 'listContainers' && inFlight--),
    });
    const snapshot = new ResyncSnapshot({ drivers: hosts, traffic: directTraffic, maxAgeMs: 10_000, now: () => 1_000 });
    const names = [...hosts.keys()].reverse();
    await snapshot.take(names.map((h, i) => ({ name: `app-${i}`, hosts: [h], routed: false })), { app: () => false, host: () => false });
    await Promise.all(names.map((h, i) => snapshot.use(h, `app-${i}`)!.containers));
    assert.equal(most, SNAPSHOT_READS_IN_FLIGHT);
    assert.deepEqual(order, names);
  });

  it('a host no app is left to use is not listed', async () => {
    const only = [{ name: 'x', hosts: ['h1'], routed: false }, { name: 'y', hosts: ['h1', 'h2'], routed: false }];
    const before = fleet.get('h1')!.callCounts().listContainers ?? 0;
    await snapshot.take(only, { app: (name) => name === 'y' || name === 'x', host: () => false });
    assert.equal(snapshot.heldHosts, 0);
    await sleep(10);
    assert.equal((fleet.get('h1')!.callCounts().listContainers ?? 0) - before, 0);
  });

  it('cleared while it runs (the controller stands by): it ends holding nothing, and lists nothing', async () => {
    const before = listings(fleet);
    const taking = snapshot.take(apps, nothingSkipped);
    snapshot.clear();
    await taking;
    assert.equal(snapshot.heldHosts, 0);
    assert.equal(snapshot.use('h1', 'app-0'), null);
    await sleep(10);
    assert.equal(listings(fleet) - before, 0);
  });
});

describe('the controller: one listing per host per resync, never a stale one', () => {
  const converged = convergedPerTest((i) => `app-${i}`);
  const resync = resyncNow;

  it('20 apps on 5 hosts (3 each): a resync lists 5 times, not 60, and every app is still looked at', async () => {
    const fleet = simulatedFleet(5, { prefix: 'h' });
    const { controller } = await converged(fleet, 20);
    const before = listings(fleet);
    const looked = new Set<string>();
    const reconcile = controller.reconcile.bind(controller);
    controller.reconcile = (app) => (looked.add(app), reconcile(app));
    resync(controller);
    await controller.idle();
    assert.equal(listings(fleet) - before, 5);
    assert.equal(looked.size, 20);
  });

  it('passes served from the snapshot wait on nothing, yet the event loop turns between them (the API and timers are not held up for a whole resync)', async () => {
    const fleet = simulatedFleet(5, { prefix: 'h' });
    const { controller } = await converged(fleet, 120);
    let passes = 0;
    let passesWhenTimerFired: number | null = null;
    const reconcile = controller.reconcile.bind(controller);
    controller.reconcile = (app) => {
      passes += 1;
      // Midway, when every listing is long in: a timer must get its turn before the resync ends.
      if (passes === 40) setTimeout(() => (passesWhenTimerFired = passes), 0);
      return reconcile(app);
    };
    resync(controller);
    await controller.idle();
    assert.equal(passes, 120);
    assert.ok(passesWhenTimerFired !== null && passesWhenTimerFired < 120, `the timer fired after ${passesWhenTimerFired} of 120 passes`);
  });

  for (const when of ['while the resync reads the apps', 'once the resync has queued them'] as const) {
    it(`an operator's request during a resync (a deploy), ${when}: the app's pass lists its hosts itself, once; the other apps use the snapshot`, async () => {
      const own: string[] = [];
      let others = 0;
      const fleet = simulatedFleet(3, {
        prefix: 'h',
        onCall: (c) => {
          if (c.op !== 'listContainers' || c.app === null) return;
          if (c.app === 'app-9') own.push(c.host);
          else others += 1;
        },
      });
      const { controller } = await converged(fleet, 10);
      own.length = 0;
      others = 0;
      let firstPass!: () => void;
      const passesStarted = new Promise<void>((r) => (firstPass = r));
      const reconcile = controller.reconcile.bind(controller);
      controller.reconcile = (app) => (firstPass(), reconcile(app));
      resync(controller);
      if (when === 'once the resync has queued them') await passesStarted;
      controller.enqueue('app-9');
      await controller.idle();
      assert.deepEqual(own.sort(), ['h1', 'h2', 'h3']);
      assert.equal(others, 0);
    });
  }

  it("a container removed by hand after the snapshot was taken, before its app's pass: the pass sees it gone and replaces it", async () => {
    const fleet = simulatedFleet(3, { prefix: 'h' });
    const { controller } = await converged(fleet, 10);
    const h2 = fleet.get('h2')!;
    const victim = h2.containers().find((c) => c.labels['berth.app'] === 'app-9' && c.state === 'running')!;
    assert.ok(victim, 'app-9 runs on h2');
    // app-0's pass waits at the gate, holding the one worker: app-9 waits in line (queued, not running) with its snapshot entry.
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const reconcile = controller.reconcile.bind(controller);
    controller.reconcile = async (app) => (app === 'app-0' && (await gate), reconcile(app));
    resync(controller);
    await sleep(30); // the snapshot's listing of h2 is done: it holds the container
    await h2.removeContainer(victim.id);
    await sleep(30); // and Docker's destroy event has reached the controller
    open();
    await controller.idle();
    const now = h2.containers().filter((c) => c.labels['berth.app'] === 'app-9' && c.state === 'running');
    assert.equal(now.length, 1, 'a new container runs for app-9 on h2');
    assert.notEqual(now[0]!.id, victim.id);
  });
});
