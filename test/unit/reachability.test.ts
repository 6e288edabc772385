/**
 * The resync's pings and the host status rows (src/hosts/reachability.ts): every host's
 * check lands in one write, a change in its own at once, and a ping's late write never
 * undoes a change a pass saw meanwhile. The store is real (SQLite in memory); the hosts are
 * SIMULATED (src/hosts/simulated-driver.ts).
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { HostReachability } from '../../src/hosts/reachability.js';
import { simulatedFleet } from '../../src/hosts/simulated-driver.js';
import type { HostDriver } from '../../src/hosts/host-driver.js';
import { openStore } from '../../src/store/index.js';

describe('HostReachability: the resync pings', () => {
  const store = openStore(':memory:');
  after(() => store.close());
  const fleet = simulatedFleet(250, { prefix: 'h', latencyMs: { ping: 5 } });
  const writes = { upserts: 0, refreshes: 0 };
  const rows = {
    get: (host: string) => store.hostsStatus.get(host),
    upsert: (row: Parameters<typeof store.hostsStatus.upsert>[0]) => (writes.upserts++, store.hostsStatus.upsert(row)),
    refresh: (r: Parameters<typeof store.hostsStatus.refresh>[0]) => (writes.refreshes++, store.hostsStatus.refresh(r)),
  };
  const changes: string[] = [];
  const gauge = new Map<string, boolean>();
  let gaugeSets = 0;
  const reachability = new HostReachability({
    drivers: new Map<string, HostDriver>(fleet),
    rows,
    setUp: (host, up) => (gaugeSets++, gauge.set(host, up)),
    onBack: () => {},
    onChange: (host, up) => changes.push(`${host} ${up ? 'up' : 'down'}`),
    log: pino({ level: 'silent' }),
  });

  it('the first pings write each new host at once; later pings of unchanged hosts write all 250 in three writes of at most 100', async () => {
    await reachability.pingAll();
    assert.equal(store.hostsStatus.list().length, 250);
    assert.equal(writes.upserts, 250, 'a host not seen before is a change');
    const checked = store.hostsStatus.get('h7')!.checkedAt;
    await new Promise((r) => setTimeout(r, 5));
    writes.upserts = 0;
    writes.refreshes = 0;
    await reachability.pingAll();
    assert.deepEqual(writes, { upserts: 0, refreshes: 3 });
    assert.ok(store.hostsStatus.get('h7')!.checkedAt > checked, 'the check time moves on');
  });

  it('berth_host_up is set for each host once, then only when it changes (not at every call that reports it)', async () => {
    assert.equal(gauge.size, 250);
    assert.ok([...gauge.values()].every((up) => up));
    gaugeSets = 0;
    await reachability.pingAll();
    for (let i = 0; i < 3; i += 1) reachability.report('h5', true, null);
    assert.equal(gaugeSets, 0, 'nothing changed');
    reachability.report('h5', false, 'connection refused');
    reachability.report('h5', false, 'connection refused');
    assert.deepEqual([gaugeSets, gauge.get('h5')], [1, false]);
    reachability.report('h5', true, null);
    assert.deepEqual([gaugeSets, gauge.get('h5')], [2, true]);
    assert.deepEqual(changes.splice(0), ['h5 down', 'h5 up']);
  });

  it('a host found down is written at once and said', async () => {
    fleet.get('h3')!.setReachable(false);
    writes.upserts = 0;
    await reachability.pingAll();
    assert.deepEqual(changes, ['h3 down']);
    assert.equal(writes.upserts, 1);
    assert.equal(store.hostsStatus.get('h3')!.up, false);
    fleet.get('h3')!.setReachable(true);
  });

  it('a host a pass finds down while the pings are out is not written back up by its earlier ping', async () => {
    // h3 answers last; h9's ping is in (unchanged, waiting for the one write) when a pass's call to h9 fails.
    fleet.get('h3')!.setLatency({ ping: 200 });
    const pings = reachability.pingAll();
    await new Promise((r) => setTimeout(r, 60));
    reachability.report('h9', false, 'connection reset');
    await pings;
    const h9 = store.hostsStatus.get('h9')!;
    assert.deepEqual([h9.up, h9.lastError], [false, 'connection reset']);
    assert.equal(store.hostsStatus.get('h3')!.up, true, 'h3 answered again');
  });
});
