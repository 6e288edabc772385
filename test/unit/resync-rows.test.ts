/**
 * A resync reads every app's pass inputs a page at a time (src/reconciler/resync-rows.ts,
 * src/store/pass-inputs.ts): a page serves ~128 passes with one statement, each app's rows
 * serve one pass, and never one that a write since may have made wrong. The store is real
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
