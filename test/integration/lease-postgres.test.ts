import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { NotLeaderError, runFenced } from '../../src/cluster/fence.js';
import { PostgresLease } from '../../src/cluster/lease.js';
import { openStore, type Store } from '../../src/store/index.js';
import { makeSpec } from '../support/fixtures.js';
import { freshDatabase, postgresSkipReason, type FreshDatabase } from '../support/postgres.js';

/**
 * The leader lease and its fence on the test bed's PostgreSQL, two daemons' worth (two
 * stores, two leases) in one process, ticked by hand: who leads, the epoch growing at each
 * change of leader, and an old leader's writes refused once a newer epoch exists.
 */
const skip = postgresSkipReason();
const LEASE_MS = 600;
const quiet = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('leader lease on PostgreSQL', { skip }, () => {
  let db: FreshDatabase;
  let storeA: Store;
  let storeB: Store;
  let a: PostgresLease;
  let b: PostgresLease;

  before(async () => {
    db = await freshDatabase('lease');
    storeA = openStore(db.url);
    storeB = openStore(db.url);
    a = new PostgresLease({ sql: storeA.sql, leaseMs: LEASE_MS, log: quiet, daemonId: 'a' });
    b = new PostgresLease({ sql: storeB.sql, leaseMs: LEASE_MS, log: quiet, daemonId: 'b' });
  });

  after(async () => {
    storeA?.close();
    storeB?.close();
    await db?.drop();
  });

  test('the first to ask leads; the other stands by while the lease is renewed; a lapsed lease goes to the other with the next epoch', async () => {
    const changes: string[] = [];
    a.on('change', (leading) => changes.push(`a ${leading}`));
    b.on('change', (leading) => changes.push(`b ${leading}`));
    a.tick();
    b.tick();
    assert.deepEqual([a.isLeading(), b.isLeading()], [true, false]);
    assert.deepEqual(b.view(), { holder: 'a', epoch: 1, self: false });
    // Renewed in time, a keeps it.
    await sleep(LEASE_MS / 2);
    a.tick();
    await sleep(LEASE_MS / 2);
    b.tick();
    assert.equal(b.isLeading(), false, 'a renewed: b still stands by');
    const fenceOfA = a.fence()!;
    storeA.apps.upsertApp(makeSpec({ name: 'before' }), 'a');
    runFenced(fenceOfA, () => storeA.apps.upsertApp(makeSpec({ name: 'by-a' }), 'controller'));

    // a stops renewing (stopped, cut off): by its own clock it stops leading first...
    await sleep(LEASE_MS);
    assert.equal(a.isLeading(), false, 'a lapsed by its own clock');
    assert.throws(() => fenceOfA.beforeRemote(), NotLeaderError);
    // ...then b takes the lapsed lease, with the next epoch.
    b.tick();
    assert.deepEqual(b.view(), { holder: 'b', epoch: 2, self: true });

    // a's work, woken, cannot write: the epoch in the database is no longer its own.
    assert.throws(
      () => runFenced(fenceOfA, () => storeA.apps.upsertApp(makeSpec({ name: 'late' }), 'controller')),
      (err: unknown) => err instanceof NotLeaderError && /epoch 1 was superseded by epoch 2/.test(err.message),
    );
    assert.equal(storeB.apps.getApp('late'), null, 'the refused write left nothing');
    // b's fenced writes go through; unfenced ones (an API request on any daemon) too.
    runFenced(b.fence()!, () => storeB.apps.upsertApp(makeSpec({ name: 'by-b' }), 'controller'));
    storeA.apps.upsertApp(makeSpec({ name: 'api' }), 'alice');
    assert.deepEqual(storeB.apps.listApps().map((x) => x.name), ['api', 'before', 'by-a', 'by-b']);

    // a's next attempt finds b holding it and stands by.
    a.tick();
    assert.deepEqual(a.view(), { holder: 'b', epoch: 2, self: false });
    assert.deepEqual(changes, ['a true', 'a false', 'b true']);
  });

  test('stop hands the lease over: the other takes it at its next attempt, with the next epoch', () => {
    assert.equal(b.isLeading(), true);
    b.stop();
    assert.equal(b.isLeading(), false);
    a.tick();
    assert.deepEqual(a.view(), { holder: 'a', epoch: 3, self: true });
    a.stop();
  });
});
