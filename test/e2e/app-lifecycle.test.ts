import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { AppStatus, BerthEvent } from '../../src/domain/release.js';
import { startBedDaemonApps, type BedDaemon } from '../support/bed-daemon.js';
import { clearApp } from '../support/fleet.js';
import { holdStream, startLoad, summarizeFailures } from '../support/load.js';
import { bedSkipReason } from '../support/testbed.js';
import { waitUntil } from '../support/wait.js';

/**
 * One source of truth for app specs, on the three real hosts with a real daemon: the
 * file's apps are the file's (PUT 409), an API app is deleted under load (its route
 * drained off every proxy, its containers removed, its record gone, its events kept,
 * the other app untouched), and SIGHUP / POST /v1/reload apply the edited file — all of
 * it or, when it is invalid, nothing.
 */
const skip = bedSkipReason();

type AppView = { managedBy: string; deletingSince: string | null; status: AppStatus | null; desired: { revision: number } | null };

const HEALTH = { interval: '300ms', timeout: '1s', max_attempts: 20 };
const WEB = { port: 3000, healthcheck: HEALTH, rollout: { parallelism: 3 }, proxy: { port: 80, host: 'web.test', drain_timeout: '10s' } };
const appDoc = (host: string, hosts: string[], image: string) => ({ image, hosts, port: 3000, healthcheck: HEALTH, rollout: { parallelism: 3 }, proxy: { port: 80, host, drain_timeout: '10s' } });

describe('app specs: the file, DELETE under load, reload', { skip, concurrency: false }, () => {
  let d: BedDaemon;
  let addrs: string[];
  let hosts: string[];

  const view = async (app: string) => d.request<AppView>('GET', `/v1/apps/${app}`);

  async function deploy(app: string, version: string): Promise<void> {
    const r = await d.request<{ revision: number }>('POST', `/v1/apps/${app}/releases`, { version });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    await waitUntil(`${app} ${version} complete`, async () => {
      const v = (await view(app)).body;
      return v.status?.phase === 'Complete' && v.status.observedRevision === r.body.revision ? true : null;
    }, { timeoutMs: 90_000, describe: async () => JSON.stringify((await view(app)).body.status) });
  }

  /** `STATUS body` of one GET to a host's proxy with this Host header. */
  const get = (addr: string, host: string) =>
    new Promise<string>((resolve, reject) => {
      http
        .get(`http://${addr}/`, { headers: { host }, agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve(`${res.statusCode} ${body.trim()}`));
        })
        .on('error', reject);
    });

  /** Until GET /v1/hosts says every host's proxy runs with `routes` routes (its reads are reused for 5 s). */
  async function proxiesRoute(routes: number): Promise<void> {
    await waitUntil(`every proxy with ${routes} routes`, async () => {
      const { body } = await d.request<{ hosts: Array<{ proxy: { state: string; routes: number; image: string } | null }> }>('GET', '/v1/hosts');
      return body.hosts.length === 3 && body.hosts.every((h) => h.proxy?.state === 'running' && h.proxy.routes === routes && h.proxy.image === d.bed.images.haproxy) ? true : null;
    }, { timeoutMs: 15_000, describe: async () => JSON.stringify((await d.request('GET', '/v1/hosts')).body) });
  }

  before(async () => {
    d = await startBedDaemonApps({ web: WEB });
    addrs = d.bed.hosts.slice(0, 3).map((h) => h.address);
    hosts = [...d.drivers.keys()];
    for (const app of ['extra', 'news']) await clearApp(d.drivers, app);
    await deploy('web', 'v1');
  });

  after(async () => {
    if (!d) return;
    for (const app of ['extra', 'news']) await clearApp(d.drivers, app).catch(() => undefined);
    await d.close();
  });

  it("the file's app cannot be changed through PUT (409 naming the file); an app PUT through the API is created and deployed", async () => {
    const put = await d.request<{ code: string; message: string }>('PUT', '/v1/apps/web', appDoc('web.test', hosts, d.bed.images.app));
    assert.equal(put.status, 409);
    assert.equal(put.body.code, 'APP_MANAGED_BY_FILE');
    assert.match(put.body.message, /declared in the config file \/.*berth\.yml/);
    assert.equal((await view('web')).body.managedBy, 'file');

    const created = await d.request('PUT', '/v1/apps/extra', appDoc('extra.test', hosts, d.bed.images.app));
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await deploy('extra', 'v2');
    for (const addr of addrs) assert.equal(await get(addr, 'extra.test'), '200 v2', `${addr} extra.test`);
    await proxiesRoute(2);
  });

  it("DELETE under load: web loses no request, extra's requests in flight are answered, then its route, containers, record and metrics are gone on every host; its events stay", async () => {
    const load = startLoad({ targets: addrs.map((addr, i) => ({ url: `http://${addr}`, host: 'web.test', name: `web@h${i + 1}` })), clientsPerTarget: 2, slowClientsPerTarget: 1, maxDurationMs: 120_000 });
    // Requests to extra in flight when it is deleted: the proxy must answer them (drain), not cut them.
    const inFlight = addrs.map((addr) => holdStream({ url: `http://${addr}`, host: 'extra.test', path: '/cgi-bin/slow?s=3', seconds: 3 }));
    await new Promise((r) => setTimeout(r, 500));

    const del = await d.request<{ app: string; hosts: string[] }>('DELETE', '/v1/apps/extra');
    assert.equal(del.status, 202, JSON.stringify(del.body));
    assert.deepEqual(del.body.hosts, hosts);
    const refused = await d.request<{ code: string }>('POST', '/v1/apps/extra/releases', { version: 'v3' });
    assert.equal(refused.status, 409);
    assert.equal(refused.body.code, 'APP_DELETING');

    await waitUntil('extra gone', async () => ((await view('extra')).status === 404 ? true : null), { timeoutMs: 60_000 });
    const streams = await Promise.all(inFlight.map((s) => s.done));
    const report = await load.stop();

    streams.forEach((s, i) => assert.deepEqual([s.status, s.closedEarly, s.body.trim()], [200, false, 'v2'], `h${i + 1}: the request in flight on extra was answered: ${s.error ?? ''}`));
    assert.equal(report.failures.length, 0, `web lost requests:\n${summarizeFailures(report.failures)}`);
    assert.ok(report.ok > 100, `web served (${report.ok} ok)`);
    for (const [i, [host, driver]] of [...d.drivers].entries()) {
      assert.deepEqual(await driver.listContainers({ app: 'extra' }), [], `${host}: no container of extra left`);
      const unrouted = await get(addrs[i]!, 'extra.test');
      assert.match(unrouted, /^404 /, `${host}: extra.test is not routed any more`);
      assert.equal(unrouted, await get(addrs[i]!, 'unknown.test'), `${host}: extra.test is answered as an unknown host`);
      assert.equal(await get(addrs[i]!, 'web.test'), '200 v1', `${host}: web still served`);
    }
    const events = await d.request<{ events: BerthEvent[] }>('GET', '/v1/apps/extra/events?limit=1000');
    assert.equal(events.status, 200);
    assert.deepEqual(events.body.events.map((e) => e.type).filter((t) => t === 'AppDeleting' || t === 'AppDeleted'), ['AppDeleting', 'AppDeleted']);
    await proxiesRoute(1);
    const metrics = await (await fetch(`${d.url}/metrics`)).text();
    assert.doesNotMatch(metrics, /app="extra"/, 'no metric series of the deleted app');
    assert.match(metrics, /app="web"/);
  });

  it('SIGHUP applies an edited file; an invalid one changes nothing and says why; an app left out of the file stays, managed through the API', async () => {
    d.rewriteConfig({ web: WEB, news: { ...WEB, proxy: { ...WEB.proxy, host: 'news.test' } } });
    d.signal('SIGHUP');
    const news = await waitUntil('news created by the reload', async () => {
      const v = await view('news');
      return v.status === 200 ? v.body : null;
    });
    assert.equal(news.managedBy, 'file');
    await deploy('news', 'v3');
    for (const addr of addrs) assert.equal(await get(addr, 'news.test'), '200 v3', `${addr} news.test`);

    // Invalid: a misspelt key. The API answers every issue; the signal logs it; nothing changes.
    d.rewriteConfig({ web: { ...WEB, helthcheck: HEALTH } });
    const bad = await d.request<{ issues: Array<{ path: string }> }>('POST', '/v1/reload', {});
    assert.equal(bad.status, 422, JSON.stringify(bad.body));
    assert.deepEqual(bad.body.issues.map((i) => i.path), ['apps.web.helthcheck']);
    const logged = d.output().length;
    d.signal('SIGHUP');
    await waitUntil('the SIGHUP reload logged its issue', async () => (/config not reloaded: .*helthcheck/.test(d.output().slice(logged)) ? true : null));
    assert.equal((await view('news')).body.managedBy, 'file', 'the running config stays');

    d.rewriteConfig({ web: WEB });
    const ok = await d.request<{ undeclared: string[]; apps: Record<string, string> }>('POST', '/v1/reload', {});
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.deepEqual(ok.body, { apps: { web: 'unchanged' }, undeclared: ['news'], restartRequired: [] });
    assert.equal((await view('news')).body.managedBy, 'api');
    for (const addr of addrs) assert.equal(await get(addr, 'news.test'), '200 v3', `${addr}: news keeps serving`);
    assert.equal((await d.request('DELETE', '/v1/apps/news')).status, 202);
    await waitUntil('news gone', async () => ((await view('news')).status === 404 ? true : null), { timeoutMs: 60_000 });
    for (const [host, driver] of d.drivers) assert.deepEqual(await driver.listContainers({ app: 'news' }), [], `${host}: no container of news left`);
  });
});
