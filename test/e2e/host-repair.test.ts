import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { ProxyRouteSpec } from '../../src/domain/app-spec.js';
import { PROXY_CONTAINER_NAME } from '../../src/domain/labels.js';
import { PROXY_APP_LABEL } from '../../src/proxy/haproxy-proxy.js';
import { makeSpec } from '../support/fixtures.js';
import { openBedDrivers, startFleet, type Fleet } from '../support/fleet.js';
import { bedSkipReason } from '../support/testbed.js';

/**
 * Five apps share each host's proxy. The proxy removed by hand, at rest and in the middle
 * of a rollout of all five: berth recreates it once (not five times at once), no serving
 * container is removed for it, and every rollout completes instead of failing or rolling
 * back (a failed switch is retried, it is not the release's fault).
 */
const skip = bedSkipReason();
const APPS = ['r1', 'r2', 'r3', 'r4', 'r5'];
const route = (app: string): ProxyRouteSpec => ({ port: 80, host: `${app}.test`, pathPrefix: null, drainTimeoutMs: 5_000 });

describe('five apps on one proxy per host: the proxy removed by hand', { skip, concurrency: false }, () => {
  let f: Fleet;
  let addrs: string[];

  const get = (addr: string, host: string) =>
    new Promise<string>((resolve) => {
      http
        .get(`http://${addr}/`, { headers: { host }, agent: false, timeout: 2000 }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve(`${res.statusCode} ${body.trim().slice(0, 20)}`));
        })
        .on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });

  const deployAll = (version: string) =>
    APPS.map((app) => {
      const r = f.store.releases.createRelease({ app, version, reason: 'deploy', actor: 'test' });
      f.controller.enqueue(app);
      return r.revision;
    });

  async function settleAll(revisions: number[], timeoutMs = 120_000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const records = APPS.map((app) => f.store.status.getRollout(app));
      if (records.every((r, i) => r !== null && r.revision === revisions[i] && ['complete', 'failed', 'paused'].includes(r.state.state))) break;
      if (Date.now() > deadline) throw new Error(`not settled: ${JSON.stringify(APPS.map((a) => f.store.status.readStatus(a)?.conditions))}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await f.controller.idle();
    return APPS.map((app) => f.store.status.readStatus(app)?.phase ?? 'none');
  }

  async function serveEverywhere(version: string, timeoutMs: number): Promise<number> {
    const t0 = Date.now();
    for (;;) {
      const seen = await Promise.all(addrs.flatMap((addr) => APPS.map((app) => get(addr, `${app}.test`))));
      if (seen.every((s) => s === `200 ${version}`)) return Date.now() - t0;
      if (Date.now() - t0 > timeoutMs) throw new Error(`not every app serves ${version} on every host: ${seen.join(', ')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const appContainers = async () =>
    Object.fromEntries(await Promise.all([...f.drivers].map(async ([h, d]) => [h, (await d.listContainers()).filter((c) => c.role === 'app' && APPS.includes(c.app) && c.running).map((c) => c.id).sort()] as const)));

  async function removeProxy(host: string): Promise<void> {
    const d = f.drivers.get(host)!;
    const proxy = (await d.listContainers({ app: PROXY_APP_LABEL })).find((c) => c.name === PROXY_CONTAINER_NAME);
    assert.ok(proxy, `${host} runs the proxy`);
    await d.removeContainer(proxy.id);
  }

  before(async () => {
    f = await startFleet(APPS[0]!, { proxy: route(APPS[0]!), healthcheck: { ...makeSpec().healthcheck, intervalMs: 500 }, stopTimeoutMs: 3_000 }, { proxy: true });
    for (const app of APPS.slice(1)) {
      await (await openBedDrivers(f.bed, app)).close();
      f.store.apps.upsertApp(makeSpec({ ...f.spec, name: app, proxy: route(app) }), 'test');
    }
    addrs = f.bed.hosts.slice(0, 3).map((h) => h.address);
    assert.deepEqual(await settleAll(deployAll('v1')), APPS.map(() => 'Complete'));
    await serveEverywhere('v1', 10_000);
  });

  after(async () => {
    for (const app of APPS.slice(1)) await (await openBedDrivers(f.bed, app)).close().catch(() => undefined);
    await f?.stop();
  });

  it('at rest: the proxy comes back with all five routes, and not one serving container is touched', async () => {
    const before = await appContainers();
    await removeProxy('h2');
    const ms = await serveEverywhere('v1', 20_000);
    console.log(`# proxy on h2 removed: all five apps served again after ${ms} ms`);
    assert.deepEqual(await appContainers(), before, 'the same containers serve');
    const proxies = (await f.drivers.get('h2')!.listContainers({ app: PROXY_APP_LABEL })).filter((c) => c.name === PROXY_CONTAINER_NAME);
    assert.equal(proxies.length, 1, 'one proxy');
  });

  it('mid-rollout of all five apps: every rollout completes (none fails or rolls back) and v2 serves everywhere', async () => {
    const revisions = deployAll('v2');
    await new Promise((r) => setTimeout(r, 300));
    await removeProxy('h1');
    const phases = await settleAll(revisions);
    const events = APPS.flatMap((app) => f.store.events.listEvents(app, { limit: 1000 }).filter((e) => e.revision !== null && revisions.includes(e.revision)).map((e) => `${app}:${e.type}`));
    console.log(`# phases ${phases.join(' ')}; ${events.filter((e) => e.endsWith('RolloutFailed') || e.endsWith('RollbackStarted')).length} failures/rollbacks`);
    assert.deepEqual(phases, APPS.map(() => 'Complete'), events.join(' '));
    await serveEverywhere('v2', 20_000);
  });
});
