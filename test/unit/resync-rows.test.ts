/**
 * A resync reads every app's pass inputs a page at a time (src/reconciler/resync-rows.ts,
 * src/store/pass-inputs.ts): a page serves ~128 passes with one statement, each app's rows
 * serve one pass, and never one that a write since may have made wrong; rows a pass that
 * wrote nothing kept serve the app's next passes until an event of it. The store is real
 * (SQLite in memory); the hosts are SIMULATED (src/hosts/simulated-driver.ts).
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { simulatedFleet } from '../../src/hosts/simulated-driver.js';
import { ResyncRows } from '../../src/reconciler/resync-rows.js';
import { openStore, type Store } from '../../src/store/index.js';
import { convergedPerTest, resyncNow, seedApps } from '../support/converged.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const name = (i: number) => `app-${String(i).padStart(3, '0')}`;

const seed = (store: Store, count: number, hosts: readonly string[] = ['h1', 'h2', 'h3']) => seedApps(store, count, hosts, name);

/** Counts the store's reads of pass inputs: pages and single apps. */
function countReads(store: Store): { pages: number; ones: number } {
  const counts = { pages: 0, ones: 0 };
  const page = store.passInputs.page.bind(store.passInputs);
  const one = store.passInputs.one.bind(store.passInputs);
  store.passInputs.page = (from) => (counts.pages++, page(from));
  store.passInputs.one = (app) => (counts.ones++, one(app));
  return counts;
}

describe('ResyncRows: when a pass may use rows read for it', () => {
  const store = openStore(':memory:');
  after(() => store.close());
  const names = seed(store, 300);
  const reads = countReads(store);
  let clock = 1_000;
  const rows = new ResyncRows((from) => store.passInputs.page(from), () => clock);

  it('300 apps used in order: 3 reads of 128, 128 and 44 apps; each app gets its own rows, once', async () => {
    rows.take(names, () => false);
    for (const app of names) assert.deepEqual(await rows.use(app), store.passInputs.one(app));
    assert.equal(reads.pages, 3);
    assert.equal(await rows.use(names[0]!), null, 'used once');
    assert.equal(rows.heldApps, 0);
  });

  it('an app whose pass was in flight at the resync, or whose rows were dropped (an event, an operator), gets none', async () => {
    rows.take(names, (app) => app === name(1));
    rows.dropApp(name(2));
    assert.ok(await rows.use(name(0)));
    assert.equal(await rows.use(name(1)), null);
    assert.equal(await rows.use(name(2)), null);
    rows.dropApp(name(3));
    assert.equal(await rows.use(name(3)), null, 'dropped after its page was read');
    assert.ok(await rows.use(name(4)));
  });

  it('rows read more than 5 s before their pass are not used; an app deleted since the resync gets none', async () => {
    rows.take(names, () => false);
    assert.ok(await rows.use(name(0)));
    clock += 5_001;
    assert.equal(await rows.use(name(1)), null);
    rows.take(names, () => false);
    store.apps.deleteApp(name(0), 'test');
    assert.equal(await rows.use(name(0)), null);
    assert.ok(await rows.use(name(1)));
  });

  it('standing by forgets everything', async () => {
    rows.take(names, () => false);
    assert.ok(await rows.use(name(1)));
    rows.clear();
    assert.equal(rows.heldApps, 0);
    assert.equal(await rows.use(name(2)), null);
  });
});

describe('ResyncRows: rows a pass kept (an informer\'s cache between resyncs)', () => {
  const store = openStore(':memory:');
  after(() => store.close());
  const names = seed(store, 10);
  const reads = countReads(store);
  let clock = 1_000;
  const rows = new ResyncRows((from) => store.passInputs.page(from), () => clock);
  /** A pass's read as pass.ts makes it. */
  const passRead = async (app: string) => (await rows.use(app)) ?? store.passInputs.one(app)!;

  it('kept rows serve the next passes without a read, frozen; a resync does not read them either', async () => {
    const used = await passRead(name(0));
    rows.keep(name(0), used);
    reads.pages = reads.ones = 0;
    for (let k = 0; k < 3; k += 1) {
      const again = await passRead(name(0));
      assert.equal(again, used, 'the same rows');
      rows.keep(name(0), again);
    }
    rows.take(names, () => false);
    assert.equal(await rows.use(name(0)), used);
    assert.deepEqual(reads, { pages: 0, ones: 0 });
    assert.ok(Object.isFrozen(used) && Object.isFrozen(used.latest!.spec.hosts));
    assert.throws(() => (used.latest!.spec.hosts as string[]).push('h9'), TypeError);
  });

  it('an event of the app drops them, also one that comes while its pass runs (that pass keeps nothing)', async () => {
    rows.clear();
    rows.keep(name(0), await passRead(name(0)));
    rows.keep(name(1), await passRead(name(1)));
    rows.dropApp(name(1));
    reads.pages = reads.ones = 0;
    const fresh = await passRead(name(1));
    assert.equal(reads.ones, 1, 'read again');
    rows.dropApp(name(1)); // an event while this pass runs
    rows.keep(name(1), fresh);
    assert.equal(rows.keptApps, 1, 'only app-000 is kept');
    assert.notEqual(await passRead(name(1)), fresh);
    assert.equal(reads.ones, 2);
  });

  it('a pass that does not keep them (it wrote) leaves nothing kept', async () => {
    rows.keep(name(2), await passRead(name(2)));
    await passRead(name(2));
    reads.ones = 0;
    await passRead(name(2));
    assert.equal(reads.ones, 1);
  });

  it('kept rows are read again 10 minutes after they were first kept, however often kept since', async () => {
    const first = await passRead(name(3));
    rows.keep(name(3), first);
    clock += 5 * 60_000;
    rows.keep(name(3), await passRead(name(3)));
    clock += 5 * 60_000;
    assert.equal(await passRead(name(3)), first, 'at 10 minutes still kept');
    rows.keep(name(3), first);
    clock += 1;
    reads.ones = 0;
    assert.notEqual(await passRead(name(3)), first);
    assert.equal(reads.ones, 1);
  });

  it('standing by forgets them', async () => {
    rows.keep(name(4), await passRead(name(4)));
    rows.clear();
    assert.equal(rows.keptApps, 0);
  });
});

describe('ResyncRows: pages read while passes go on (PostgreSQL answers later)', () => {
  const store = openStore(':memory:');
  after(() => store.close());
  const names = seed(store, 300);
  /** Each page's read waits for the test to answer it. */
  function gatedRows() {
    const asked: Array<{ from: string; answer: () => void; fail: () => void }> = [];
    const rows = new ResyncRows(
      (from) =>
        new Promise((resolve, reject) => {
          asked.push({ from, answer: () => void store.passInputs.page(from).then(resolve), fail: () => reject(new Error('the database does not answer')) });
        }),
      () => 1_000,
    );
    return { rows, asked };
  }
  const settle = () => new Promise((r) => setImmediate(r));

  it('passes waiting together: one read per page, each app gets its own rows', async () => {
    const { rows, asked } = gatedRows();
    rows.take(names, () => false);
    const used = names.map((app) => rows.use(app));
    await settle();
    assert.deepEqual(asked.map((a) => a.from), [name(0)], 'the other passes wait for the page in flight');
    for (let k = 0; k < 3; k += 1) {
      asked[k]!.answer();
      await settle();
    }
    assert.deepEqual(asked.map((a) => a.from), [name(0), name(128), name(256)]);
    const got = await Promise.all(used);
    for (const [i, app] of names.entries()) assert.deepEqual(got[i], store.passInputs.one(app));
  });

  it('an app dropped while its page is read gets none', async () => {
    const { rows, asked } = gatedRows();
    rows.take(names, () => false);
    const first = rows.use(name(0));
    const dropped = rows.use(name(5));
    await settle();
    rows.dropApp(name(5));
    asked[0]!.answer();
    assert.ok(await first);
    assert.equal(await dropped, null);
    assert.equal(rows.heldApps, 126);
  });

  it('a page still being read when the next resync starts is not used', async () => {
    const { rows, asked } = gatedRows();
    rows.take(names, () => false);
    const old = rows.use(name(0));
    await settle();
    rows.take(names, () => false);
    const fresh = rows.use(name(1));
    await settle();
    assert.deepEqual(asked.map((a) => a.from), [name(0), name(1)], 'the new resync reads its own page');
    asked[0]!.answer();
    assert.equal(await old, null, 'read before the new resync began');
    asked[1]!.answer();
    assert.ok(await fresh);
    assert.equal(rows.heldApps, 127, 'only the new page is held');
  });

  it("a page's read fails: its passes read their own", async () => {
    const { rows, asked } = gatedRows();
    rows.take(names, () => false);
    const used = [rows.use(name(0)), rows.use(name(1))];
    await settle();
    asked[0]!.fail();
    assert.deepEqual(await Promise.all(used), [null, null]);
  });
});

describe('the controller: a resync reads the apps’ rows a page at a time, never a stale one', () => {
  const converged = convergedPerTest(name);
  const resync = resyncNow;

  it('300 converged apps: a resync reads their rows in 3 statements, none app by app, and looks at every app', async () => {
    const { store, controller } = await converged(simulatedFleet(5, { prefix: 'h' }), 300);
    const reads = countReads(store);
    const looked = new Set<string>();
    const reconcile = controller.reconcile.bind(controller);
    controller.reconcile = (app) => (looked.add(app), reconcile(app));
    resync(controller);
    await controller.idle();
    assert.equal(looked.size, 300);
    assert.deepEqual(reads, { pages: 3, ones: 0 });
  });

  it('the next resync of those apps reads no rows at all: each pass kept what it used; it still looks at every app on its hosts', async () => {
    const fleet = simulatedFleet(5, { prefix: 'h' });
    const { store, controller } = await converged(fleet, 300);
    resync(controller);
    await controller.idle();
    const reads = countReads(store);
    const lists = () => [...fleet.values()].reduce((n, h) => n + (h.callCounts().listContainers ?? 0), 0);
    const listed = lists();
    resync(controller);
    await controller.idle();
    assert.deepEqual(reads, { pages: 0, ones: 0 });
    assert.equal(lists() - listed, 5, 'one listing per host');
  });

  it('a container removed by hand after its app kept its rows: the pass that uses them puts it back', async () => {
    const fleet = simulatedFleet(3, { prefix: 'h' });
    const { store, controller } = await converged(fleet, 10);
    resync(controller);
    await controller.idle();
    const h2 = fleet.get('h2')!;
    const victim = h2.containers().find((c) => c.labels['berth.app'] === name(4) && c.state === 'running')!;
    // (Its pass starts from the kept rows, frozen: one that changed them would throw here.)
    await h2.removeContainer(victim.id);
    await sleep(50);
    await controller.idle();
    const running = h2.containers().filter((c) => c.labels['berth.app'] === name(4) && c.state === 'running');
    assert.equal(running.length, 1);
    assert.notEqual(running[0]!.id, victim.id);
    assert.equal(store.status.readStatus(name(4))?.phase, 'Complete');
  });

  it('a release created after the app kept its rows: its event drops them, and the pass rolls it out', async () => {
    const fleet = simulatedFleet(3, { prefix: 'h' });
    const { store, controller } = await converged(fleet, 10);
    resync(controller);
    await controller.idle();
    store.releases.createRelease({ app: name(7), version: 'v2', reason: 'deploy', actor: 'test' });
    await sleep(50);
    await controller.idle();
    const running = [...fleet.values()].flatMap((h) => h.containers()).filter((c) => c.labels['berth.app'] === name(7) && c.state === 'running');
    assert.deepEqual(running.map((c) => c.labels['berth.version']), ['v2', 'v2', 'v2']);
  });

  it('a pass that acted keeps nothing, one that only looked keeps its rows (a write need not come with an event)', async () => {
    const acted = new Set<string>();
    const mutating = new Set(['createContainer', 'startContainer', 'stopContainer', 'removeContainer', 'renameContainer', 'pullImage']);
    const fleet = simulatedFleet(3, { prefix: 'h', onCall: (c) => void (c.app && mutating.has(c.op) && acted.add(c.app)) });
    const { store, controller } = await converged(fleet, 3);
    const rows = (controller as unknown as { rows: ResyncRows }).rows;
    const kept = new Set<string>();
    const keep = rows.keep.bind(rows);
    rows.keep = (app, r) => (kept.add(app), keep(app, r));
    const passes: Array<{ acted: boolean; kept: boolean }> = [];
    const reconcile = controller.reconcile.bind(controller);
    controller.reconcile = async (app) => {
      acted.delete(app);
      kept.delete(app);
      try {
        return await reconcile(app);
      } finally {
        if (app === name(1)) passes.push({ acted: acted.has(app), kept: kept.has(app) });
      }
    };
    store.releases.createRelease({ app: name(1), version: 'v2', reason: 'deploy', actor: 'test' });
    await sleep(50);
    await controller.idle();
    resync(controller);
    await controller.idle();
    assert.ok(passes.some((p) => p.acted), 'the deploy acted');
    assert.deepEqual(passes.filter((p) => p.acted && p.kept), [], 'no pass that acted kept its rows');
    assert.deepEqual(passes.at(-1), { acted: false, kept: true }, "the resync's pass only looked");
  });

  it('a release created after the page was read, before the app’s pass: the pass rolls it out (it does not use the rows read before)', async () => {
    const fleet = simulatedFleet(3, { prefix: 'h' });
    const { store, controller } = await converged(fleet, 10);
    const reads = countReads(store);
    // app-005's pass waits at the gate, holding the one worker, after app-000's pass read the page of all ten.
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const reconcile = controller.reconcile.bind(controller);
    controller.reconcile = async (app) => (app === name(5) && (await gate), reconcile(app));
    resync(controller);
    await sleep(30);
    assert.equal(reads.pages, 1, 'the page is read');
    store.releases.createRelease({ app: name(9), version: 'v2', reason: 'deploy', actor: 'test' });
    open();
    await controller.idle();
    const running = [...fleet.values()].flatMap((h) => h.containers()).filter((c) => c.labels['berth.app'] === name(9) && c.state === 'running');
    assert.deepEqual(
      running.map((c) => c.labels['berth.version']),
      ['v2', 'v2', 'v2'],
    );
    assert.equal(store.status.readStatus(name(9))?.observedRevision, 2);
  });
});
