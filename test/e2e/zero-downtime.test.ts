import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PROXY_CONTAINER_NAME } from '../../src/domain/labels.js';
import { makeSpec } from '../support/fixtures.js';
import { startFleet, type Fleet } from '../support/fleet.js';
import { percentile, startLoad, summarizeFailures, type LoadReport } from '../support/load.js';
import { bedSkipReason } from '../support/testbed.js';

/**
 * Zero downtime, proven under continuous load: every host's real HAProxy takes
 * requests from the load checker while berth rolls, fails and rolls back releases.
 */
const skip = bedSkipReason();
const PORT = 8080;
const base = makeSpec();

function summary(name: string, before: LoadReport, during: LoadReport): string {
  return `# ${name}: ${during.requests} requests, ${summarizeFailures(during.failures)}, ${during.socketsReused} on reused keep-alive sockets (no retries), slow ${during.slow.completed}/${during.slow.started} (${during.slow.posts} POSTs); p50/p99 ${percentile(before.latenciesMs, 50).toFixed(1)}/${percentile(before.latenciesMs, 99).toFixed(1)} ms before, ${percentile(during.latenciesMs, 50).toFixed(1)}/${percentile(during.latenciesMs, 99).toFixed(1)} ms during`;
}

describe('zero-downtime traffic through the per-host proxy', { skip, concurrency: false }, () => {
  let f: Fleet;
  let targets: string[];

  /** Load for a quiet second (the baseline), then during `action` until it settles. */
  async function underLoad(action: () => Promise<void>): Promise<{ before: LoadReport; during: LoadReport }> {
    const baseline = startLoad({ targets, clientsPerTarget: 3, slowClientsPerTarget: 0, maxDurationMs: 10_000 });
    await new Promise((r) => setTimeout(r, 1000));
    const before = await baseline.stop();
    const load = startLoad({ targets, clientsPerTarget: 3, slowClientsPerTarget: 1, maxDurationMs: 120_000 });
    await action();
    const during = await load.stop();
    return { before, during };
  }

  before(async () => {
    f = await startFleet('zdt', { healthcheck: { ...base.healthcheck, intervalMs: 500, maxAttempts: 6 }, proxy: { port: PORT, host: null, drainTimeoutMs: 15_000 }, stopTimeoutMs: 5_000 }, { proxy: true });
    targets = f.bed.hosts.slice(0, 3).map((h) => `http://${h.address}:${PORT}`);
    const r = f.deploy('v1');
    assert.equal((await f.settle(r)).phase, 'Complete');
  });

  after(async () => {
    await f?.stop();
  });

  it('v1 -> v2 under load: zero failed requests, slow requests finish, then every response is v2', async () => {
    const { before, during } = await underLoad(async () => {
      assert.equal((await f.settle(f.deploy('v2'))).phase, 'Complete');
    });
    console.log(summary('v1->v2', before, during));
    assert.deepEqual(during.failures, []);
    assert.ok(during.requests > 100, `load ran (${during.requests} requests)`);
    assert.equal(during.slow.failed, 0);
    assert.ok((during.slow.versions.v1 ?? 0) > 0, 'slow requests begun on v1 completed on v1');
    const afterwards = startLoad({ targets, clientsPerTarget: 2, slowClientsPerTarget: 0 });
    await new Promise((r) => setTimeout(r, 500));
    const rep = await afterwards.stop();
    assert.deepEqual(Object.keys(rep.versions), ['v2']);
  });

  it('a broken release under load: zero failed requests and every response stays v2', async () => {
    const { before, during } = await underLoad(async () => {
      const bad = f.deploy('broken');
      await f.waitFor((s, desired) => desired > bad && s.observedRevision === desired, 90_000);
      await f.controller.idle();
    });
    console.log(summary('broken', before, during));
    assert.deepEqual(during.failures, []);
    assert.deepEqual(Object.keys(during.versions), ['v2']);
  });

  it('rollback from v2 under load: zero failed requests, then every response is v1', async () => {
    const { before, during } = await underLoad(async () => {
      const r = f.rollback('v1');
      assert.equal((await f.settle(r)).phase, 'RolledBack');
    });
    console.log(summary('rollback', before, during));
    assert.deepEqual(during.failures, []);
    const afterwards = startLoad({ targets, clientsPerTarget: 2, slowClientsPerTarget: 0 });
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(Object.keys((await afterwards.stop()).versions), ['v1']);
  });

  it('maintenance: every proxy answers 503 with the message, then live again', async () => {
    f.store.apps.setMaintenance('zdt', 'Upgrading the database', 'test');
    f.controller.enqueue('zdt');
    const deadline = Date.now() + 15_000;
    const statuses = async () => Promise.all(targets.map((t) => fetch(`${t}/`).then(async (r) => `${r.status} ${(await r.text()).trim()}`)));
    let seen: string[] = [];
    while (Date.now() < deadline) {
      seen = await statuses();
      if (seen.every((x) => x === '503 Upgrading the database')) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(seen, targets.map(() => '503 Upgrading the database'));
    f.store.apps.setMaintenance('zdt', null, 'test');
    f.controller.enqueue('zdt');
    while (Date.now() < deadline + 15_000) {
      seen = await statuses();
      if (seen.every((x) => x === '200 v1')) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(seen, targets.map(() => '200 v1'));
  });

  it("the proxy's admin API is not reachable over the network, only through its Unix socket", async () => {
    const { connect } = await import('node:net');
    for (const h of f.bed.hosts.slice(0, 3)) {
      for (const port of [2019, 2020]) {
        const outcome = await new Promise<string>((resolve) => {
          const sock = connect({ host: h.address, port, timeout: 2000 });
          sock.once('connect', () => (sock.destroy(), resolve('connected')));
          sock.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
          sock.once('timeout', () => (sock.destroy(), resolve('timeout')));
        });
        assert.equal(outcome, 'ECONNREFUSED', `${h.name}:${port}`);
      }
      const info = await f.drivers.get(h.name)!.unixCommand(`${h.stateDir}/proxy/admin.sock`, 'show info', 5000);
      assert.match(info, /^Name: HAProxy$/m, `${h.name}: the runtime API answers on its socket through SSH`);
    }
  });

  it('a proxy container removed by hand is restored with its routes within one resync period', async () => {
    const h2 = f.drivers.get('h2')!;
    const proxy = (await h2.listContainers()).find((c) => c.name === PROXY_CONTAINER_NAME)!;
    assert.ok(proxy, 'h2 runs berth-proxy');
    const removedAt = Date.now();
    await h2.removeContainer(proxy.id);
    const deadline = removedAt + 2_000 + 15_000;
    let body = '';
    while (Date.now() < deadline) {
      body = await fetch(`${targets[1]}/`).then((r) => r.text(), () => '');
      if (body.trim() === 'v1') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(body.trim(), 'v1', 'h2 serves v1 through a new proxy');
    console.log(`# proxy on h2 restored and serving after ${Date.now() - removedAt} ms (resync 2 s)`);
  });
});
