import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { AppSpec, ProxyRouteSpec } from '../../src/domain/app-spec.js';
import { makeSpec } from '../support/fixtures.js';
import { openBedDrivers, startFleet, type Fleet } from '../support/fleet.js';
import { holdIdleConnection, holdStream, startLoad, summarizeFailures, type LoadReport, type LoadTarget } from '../support/load.js';
import { bedSkipReason } from '../support/testbed.js';

/**
 * Several apps behind each host's one HAProxy: `web` and `blog` share port 80 by Host,
 * `solo` owns port 8081. `web` is deployed, broken, rolled back and joined by a new app
 * (a route-set change: a proxy reload) while a no-retry load runs on every app, `blog`
 * holds a long-lived connection and an idle keep-alive connection. Nothing may fail,
 * and nothing of `blog`'s may be closed.
 */
const skip = bedSkipReason();
const SOLO_PORT = 8081;
const route = (port: number | null, host: string | null): ProxyRouteSpec => ({ port, host, pathPrefix: null, drainTimeoutMs: 15_000 });

describe('one proxy per host, several apps, no connection touched', { skip, concurrency: false }, () => {
  let f: Fleet;
  const extra = ['blog', 'solo', 'news'];
  let hostAddrs: string[];

  const releaseOf = (app: string, version: string, reason: 'deploy' | 'rollback' = 'deploy') => {
    const r = f.store.releases.createRelease({ app, version, reason, actor: 'test' });
    f.controller.enqueue(app);
    return r.revision;
  };

  /** Waits until `app`'s rollout of `revision` is final (or a newer revision took over). */
  async function settle(app: string, revision: number, timeoutMs = 90_000): Promise<string | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const desired = f.store.releases.latestRelease(app)?.revision ?? 0;
      const rec = f.store.status.getRollout(app);
      if (desired > revision) return 'superseded';
      if (rec?.revision === revision && ['complete', 'failed', 'paused'].includes(rec.state.state)) {
        await f.controller.idle();
        return f.store.status.readStatus(app)?.phase ?? null;
      }
      if (Date.now() > deadline) throw new Error(`${app} r${revision} did not settle: ${JSON.stringify(f.store.status.readStatus(app))}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  function addApp(name: string, proxy: ProxyRouteSpec): AppSpec {
    const spec = makeSpec({ ...f.spec, name, proxy });
    f.store.apps.upsertApp(spec, 'test');
    return spec;
  }

  /** `STATUS body` of one GET with this Host header (fetch would not send one). */
  const get = (url: string, host: string) =>
    new Promise<string>((resolve, reject) => {
      http
        .get(url, { headers: { host }, agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (body += d));
          res.on('end', () => resolve(`${res.statusCode} ${body.trim()}`));
        })
        .on('error', reject);
    });

  before(async () => {
    f = await startFleet('web', { healthcheck: { ...makeSpec().healthcheck, intervalMs: 500, maxAttempts: 6 }, proxy: route(80, 'a.test'), stopTimeoutMs: 5_000 }, { proxy: true });
    for (const app of extra) await (await openBedDrivers(f.bed, app)).close();
    hostAddrs = f.bed.hosts.slice(0, 3).map((h) => h.address);
    addApp('blog', route(null, 'b.test'));
    addApp('solo', route(SOLO_PORT, null));
    const revs = [releaseOf('web', 'v1'), releaseOf('blog', 'v3'), releaseOf('solo', 'v2')];
    assert.deepEqual(await Promise.all([settle('web', revs[0]!), settle('blog', revs[1]!), settle('solo', revs[2]!)]), ['Complete', 'Complete', 'Complete']);
  });

  after(async () => {
    for (const app of extra) await (await openBedDrivers(f.bed, app)).close().catch(() => undefined);
    await f?.stop();
  });

  it('routes by Host on a shared port 80, a port-only app on its own port, 404 for an unknown host', async () => {
    for (const addr of hostAddrs) {
      assert.equal(await get(`http://${addr}/`, 'a.test'), '200 v1', `${addr} a.test`);
      assert.equal(await get(`http://${addr}/`, 'B.test:80'), '200 v3', `${addr} b.test (case and port ignored)`);
      assert.equal(await get(`http://${addr}:${SOLO_PORT}/`, 'anything.test'), '200 v2', `${addr}:${SOLO_PORT}`);
      assert.equal(await get(`http://${addr}/`, 'nobody.test'), '404 no app is routed here');
    }
  });

  it("deploys, a broken release, a rollback and a new app's route under no-retry load: 0 failed, blog's connections stay open", async () => {
    const targets: LoadTarget[] = hostAddrs.flatMap((addr, i) => [
      { url: `http://${addr}`, host: 'a.test', name: `web@h${i + 1}` },
      { url: `http://${addr}`, host: 'b.test', name: `blog@h${i + 1}` },
      { url: `http://${addr}:${SOLO_PORT}`, name: `solo@h${i + 1}` },
    ]);
    const load = startLoad({ targets, clientsPerTarget: 3, slowClientsPerTarget: 1, maxDurationMs: 240_000 });
    const stream = holdStream({ url: `http://${hostAddrs[0]}`, host: 'b.test', path: '/cgi-bin/slow?s=45', seconds: 45 });
    const idle = holdIdleConnection({ url: `http://${hostAddrs[1]}`, host: 'b.test', idleMs: 30_000 });
    const steps: string[] = [];
    const t0 = Date.now();
    const step = async (what: string, fn: () => Promise<unknown>) => {
      const result = await fn();
      steps.push(`${what}: ${String(result)} at ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    };
    let during: LoadReport;
    try {
      await step('web v2', () => settle('web', releaseOf('web', 'v2')));
      await step('web broken', async () => {
        const bad = releaseOf('web', 'broken');
        await f.waitFor((s, desired) => desired > bad && s.observedRevision === desired, 90_000);
        await f.controller.idle();
        return f.store.status.readStatus('web')?.phase;
      });
      await step('news added (proxy reload)', async () => {
        addApp('news', route(80, 'c.test'));
        return settle('news', releaseOf('news', 'v1'));
      });
      await step('web rollback to v1', () => settle('web', releaseOf('web', 'v1', 'rollback')));
    } finally {
      during = await load.stop();
    }
    const [streamResult, idleResult] = await Promise.all([stream.done, idle]);
    console.log(`# ${steps.join('; ')}`);
    console.log(
      `# ${during.requests} requests (${during.socketsReused} on reused keep-alive sockets, no retries), ${summarizeFailures(during.failures)}, slow ${during.slow.completed}/${during.slow.started} (${during.slow.posts} POSTs) ${JSON.stringify(during.slow.versions)}; blog stream ${streamResult.status} after ${(streamResult.ms / 1000).toFixed(1)} s, closedEarly ${streamResult.closedEarly}; blog idle connection second request ${idleResult.failed ? `FAILED ${idleResult.error}` : 'ok'}`,
    );
    assert.deepEqual(during.failures, []);
    assert.equal(during.slow.failed, 0);
    assert.ok(during.socketsReused > during.requests / 2, `keep-alive connections were reused (${during.socketsReused}/${during.requests})`);
    assert.ok((during.slow.versions.v1 ?? 0) > 0 && (during.slow.versions.v2 ?? 0) > 0, 'slow requests finished on the version they began on, v1 and v2');
    assert.equal(streamResult.closedEarly, false, `blog's long-lived connection: ${streamResult.error ?? ''}`);
    assert.equal(streamResult.status, 200);
    assert.equal(streamResult.body.trim(), 'v3');
    assert.equal(idleResult.failed, false, `blog's idle keep-alive connection: ${idleResult.error ?? ''}`);
    for (const addr of hostAddrs) assert.equal(await get(`http://${addr}/`, 'c.test'), '200 v1', `${addr}: the new app is routed`);
  });

  it('the check can fail: with draining switched off (test-only), the same deploy cuts slow requests', async () => {
    const traffic = f.traffic as { drain: (...a: unknown[]) => Promise<void> };
    const drain = traffic.drain;
    traffic.drain = async () => undefined;
    const targets: LoadTarget[] = hostAddrs.map((addr, i) => ({ url: `http://${addr}`, host: 'a.test', name: `web@h${i + 1}` }));
    const load = startLoad({ targets, clientsPerTarget: 2, slowClientsPerTarget: 3, slowPath: '/cgi-bin/slow?s=3', maxDurationMs: 120_000 });
    let during: LoadReport;
    try {
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(await settle('web', releaseOf('web', 'v2')), 'Complete');
    } finally {
      traffic.drain = drain;
      during = await load.stop();
    }
    console.log(`# without drain: ${summarizeFailures(during.failures)}; slow ${during.slow.completed}/${during.slow.started}`);
    assert.ok(during.slow.failed > 0, 'slow requests on the stopped containers failed');
  });
});
