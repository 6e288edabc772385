/**
 * The resync's view of where each app runs (src/reconciler/placements.ts): read from the
 * store's change stamps, each spec parsed only when its app's record changed.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { AppPlacements } from '../../src/reconciler/placements.js';
import { openStore } from '../../src/store/index.js';
import { makeSpec } from '../support/fixtures.js';

// updated_at has millisecond resolution: a write after this is a new stamp.
const nextMs = () => new Promise((r) => setTimeout(r, 3));

describe('AppPlacements', () => {
  const store = openStore(':memory:');
  after(() => store.close());
  const reads: string[] = [];
  const placements = new AppPlacements({
    readAppStamps: () => store.apps.readAppStamps(),
    getApp: (name) => (reads.push(name), store.apps.getApp(name)),
  });
  const route = { port: 8080, host: null, drainTimeoutMs: 1000 };

  it('lists every app with its hosts and whether it is routed, in name order', async () => {
    store.apps.upsertApp(makeSpec({ name: 'b', hosts: ['h1', 'h2'] }), 'test');
    store.apps.upsertApp(makeSpec({ name: 'a', hosts: ['h3'], proxy: route }), 'test');
    assert.deepEqual(await placements.read(), [
      { name: 'a', hosts: ['h3'], routed: true },
      { name: 'b', hosts: ['h1', 'h2'], routed: false },
    ]);
    assert.deepEqual(reads.sort(), ['a', 'b']);
  });

  it('reads no spec again while no app changed', async () => {
    reads.length = 0;
    assert.equal((await placements.read()).length, 2);
    assert.deepEqual(reads, []);
  });

  it('reads again only the app whose record changed, and sees its new hosts; a deleted app is gone', async () => {
    await nextMs();
    store.apps.upsertApp(makeSpec({ name: 'b', hosts: ['h4'], proxy: route }), 'test');
    reads.length = 0;
    assert.deepEqual((await placements.read())[1], { name: 'b', hosts: ['h4'], routed: true });
    assert.deepEqual(reads, ['b']);
    store.apps.deleteApp('a', 'test');
    assert.deepEqual((await placements.read()).map((p) => p.name), ['b']);
  });
});
