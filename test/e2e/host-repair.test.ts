import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { ProxyRouteSpec } from '../../src/domain/app-spec.js';
import { NETWORK_NAME, PROXY_CONTAINER_NAME } from '../../src/domain/labels.js';
import { PROXY_APP_LABEL } from '../../src/proxy/haproxy-proxy.js';
import { makeSpec } from '../support/fixtures.js';
import { openBedDrivers, startFleet, type Fleet } from '../support/fleet.js';
import { summarizeFailures, type LoadFailure } from '../support/load.js';
import { startLoadProcess, type LoadProcess } from '../support/load-process.js';
import { bedSkipReason, testbedCommand } from '../support/testbed.js';

/**
 * Several apps share each host's proxy and the host's app network. The proxy container
 * and the network removed by hand (the network after disconnecting every container from
 * it), at rest and in the middle of a rollout of every app, under no-retry load: berth
 * recreates both once (not once per app at the same time), reconnects the serving
 * containers instead of removing any, and every rollout completes (a failed step for a
 * reason that is gone is retried, it is not the release's fault).
 *
 * What is fair to fail: removing the proxy drops the connections it held and refuses new
 * ones until it is back, and disconnecting the containers cuts what they were answering.
 * So requests to the apps on THAT host may fail from the removal until the host serves
 * every app again; any other failure (another host, or that host after it recovered) is
 * a failure of berth.
 */
const skip = bedSkipReason();
const route = (app: string): ProxyRouteSpec => ({ port: 80, host: `${app}.test`, pathPrefix: null, drainTimeoutMs: 5_000 });

function repairSuite(APPS: string[], clientsPerTarget: number): void {
  describe(`${APPS.length} apps on one proxy and network per host: both removed by hand, under load`, { skip, concurrency: false }, () => {
    let f: Fleet;
    let addrs: Map<string, string>;

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

    /** Waits until every app answers 200 (with `version`, if given) on each of `hosts`; the ms it took. */
    async function serving(hosts: string[], version: string | null, timeoutMs: number): Promise<number> {
      const t0 = Date.now();
      for (;;) {
        const seen = await Promise.all(hosts.flatMap((h) => APPS.map((app) => get(addrs.get(h)!, `${app}.test`))));
        if (seen.every((s) => (version ? s === `200 ${version}` : s.startsWith('200 ')))) return Date.now() - t0;
        if (Date.now() - t0 > timeoutMs) {
          // What the controller did about the apps that do not serve: the events say why.
          const off = APPS.filter((_, i) => hosts.some((_h, j) => !seen[j * APPS.length + i]!.startsWith(version ? `200 ${version}` : '200 ')));
          const story = off.map((app) => `${app}:\n  ${f.store.events.listEvents(app, { limit: 1000 }).slice(-12).map((e) => `${e.createdAt} r${e.revision ?? '-'} ${e.host ?? '-'} ${e.type}: ${e.message.slice(0, 160)}`).join('\n  ')}`);
          throw new Error(`not every app serves ${version ?? 'something'} on ${hosts.join(', ')}: ${seen.join(', ')}\n${story.join('\n')}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }

    /** Every app container per host (running or not), as `id:running`. */
    const appContainers = async () =>
      Object.fromEntries(
        await Promise.all(
          [...f.drivers].map(async ([h, d]) => [h, (await d.listContainers()).filter((c) => c.role === 'app' && APPS.includes(c.app)).map((c) => `${c.id}:${c.running}`).sort()] as const),
        ),
      );

    /** The proxy container removed, then every container disconnected from the app network and the network removed. */
    async function removeProxyAndNetwork(host: string): Promise<void> {
      const d = f.drivers.get(host)!;
      const proxy = (await d.listContainers({ app: PROXY_APP_LABEL })).find((c) => c.name === PROXY_CONTAINER_NAME);
      assert.ok(proxy, `${host} runs the proxy`);
      await d.removeContainer(proxy.id);
      // Mid-rollout berth may attach a new container between the disconnects and the rm
      // ("has active endpoints"): as an operator would, disconnect what is attached and try again.
      for (let attempt = 1; ; attempt++) {
        const attached = testbedCommand('exec', host, 'network', 'inspect', NETWORK_NAME, '-f', '{{range $id, $c := .Containers}}{{$id}} {{end}}').trim().split(/\s+/).filter(Boolean);
        for (const id of attached) {
          try {
            testbedCommand('exec', host, 'network', 'disconnect', '-f', NETWORK_NAME, id);
          } catch (err) {
            // A container berth removed meanwhile leaves its endpoint listed ("ep-…") until the network goes.
            if (!/not found|is not connected/.test((err as Error).message)) throw err;
          }
        }
        try {
          testbedCommand('exec', host, 'network', 'rm', NETWORK_NAME);
          return;
        } catch (err) {
          if (attempt >= 5 || !/active endpoints/.test((err as Error).message)) throw err;
        }
      }
    }

    const load = () =>
      startLoadProcess({
        targets: [...addrs].flatMap(([h, addr]) => APPS.map((app) => ({ url: `http://${addr}`, host: `${app}.test`, name: `${h} ${app}` }))),
        clientsPerTarget,
        slowClientsPerTarget: 1,
        slowPath: '/cgi-bin/slow?s=1',
        maxDurationMs: 180_000,
      });

    /** Failures that are not requests to `host` between the removal and its recovery (ms since the load started). */
    function unfair(failures: LoadFailure[], host: string, removedAt: number, recoveredAt: number): LoadFailure[] {
      return failures.filter((x) => !(x.target.startsWith(`${host} `) && x.at >= removedAt - 50 && x.at <= recoveredAt + 50));
    }

    /** Under load: `first`, then the removal on `host`, then (once `host` serves every app again) `then`. */
    async function underLoad(host: string, first: () => Promise<void>, then: () => Promise<void>): Promise<void> {
      const traffic: LoadProcess = await load();
      const loadStart = Date.now();
      let removedAt = 0;
      let recoveredAt = 0;
      let failed = false;
      try {
        await new Promise((r) => setTimeout(r, 1_000));
        await first();
        removedAt = Date.now() - loadStart;
        await removeProxyAndNetwork(host);
        await serving([host], null, 60_000);
        recoveredAt = Date.now() - loadStart;
        await then();
        await new Promise((r) => setTimeout(r, 1_000));
      } catch (e) {
        failed = true;
        throw e;
      } finally {
        const report = await traffic.stop();
        const bad = unfair(report.failures, host, removedAt, recoveredAt);
        const onHost = report.failures.length - bad.length;
        console.log(
          `# ${APPS.length} apps, proxy and network removed on ${host}: ${host} served every app again after ${recoveredAt - removedAt} ms; requests ${report.requests}, failed ${onHost} on ${host} while it was repaired (${summarizeFailures(report.failures.filter((x) => !bad.includes(x)))}), ${bad.length} elsewhere or later`,
        );
        // After an earlier error the load's figures are only printed: that error is the one to see.
        if (!failed) {
          assert.equal(bad.length, 0, `no failed request beyond those to ${host} while it was repaired; ${summarizeFailures(bad)}, first: ${bad.slice(0, 5).map((x) => `${x.target} at ${x.at} ms: ${x.what}`).join('; ')}`);
          assert.equal(report.slow.wrongVersion, 0);
        }
      }
    }

    before(async () => {
      f = await startFleet(APPS[0]!, { proxy: route(APPS[0]!), healthcheck: { ...makeSpec().healthcheck, intervalMs: 500 }, stopTimeoutMs: 3_000 }, { proxy: true });
      for (const app of APPS.slice(1)) {
        await (await openBedDrivers(f.bed, app)).close();
        f.store.apps.upsertApp(makeSpec({ ...f.spec, name: app, proxy: route(app) }), 'test');
      }
      addrs = new Map(f.bed.hosts.slice(0, 3).map((h) => [h.name, h.address]));
      assert.deepEqual(await settleAll(deployAll('v1')), APPS.map(() => 'Complete'));
      await serving([...addrs.keys()], 'v1', 10_000);
    });

    after(async () => {
      for (const app of APPS.slice(1)) await (await openBedDrivers(f.bed, app)).close().catch(() => undefined);
      await f?.stop();
    });

    it('at rest: proxy and network come back once, with every route, and not one container is removed or replaced', async () => {
      const before = await appContainers();
      await underLoad('h2', async () => {}, async () => {});
      await serving([...addrs.keys()], 'v1', 20_000);
      assert.deepEqual(await appContainers(), before, 'the same containers serve');
      const d = f.drivers.get('h2')!;
      assert.equal((await d.listContainers({ app: PROXY_APP_LABEL })).filter((c) => c.name === PROXY_CONTAINER_NAME).length, 1, 'one proxy');
      const nets = testbedCommand('exec', 'h2', 'network', 'ls', '--filter', `name=^${NETWORK_NAME}$`, '-q').trim().split(/\s+/).filter(Boolean);
      assert.equal(nets.length, 1, 'one network');
    });

    it('mid-rollout of every app: every rollout completes (none fails or rolls back), v2 serves everywhere, no container removed', async () => {
      const before = await appContainers();
      let revisions: number[] = [];
      let phases: string[] = [];
      await underLoad(
        'h1',
        async () => {
          revisions = deployAll('v2');
          await new Promise((r) => setTimeout(r, 300));
        },
        async () => {
          phases = await settleAll(revisions);
          await serving([...addrs.keys()], 'v2', 20_000);
        },
      );
      const events = APPS.flatMap((app) => f.store.events.listEvents(app, { limit: 1000 }).filter((e) => e.revision !== null && revisions.includes(e.revision)).map((e) => `${app}:${e.host ?? '-'}:${e.type}`));
      assert.deepEqual(phases, APPS.map(() => 'Complete'), events.join(' '));
      const now = await appContainers();
      for (const h of addrs.keys()) {
        const ids = new Set(now[h]!.map((c) => c.split(':')[0]));
        assert.deepEqual(before[h]!.map((c) => c.split(':')[0]).filter((id) => !ids.has(id)), [], `${h}: no container removed`);
      }
    });

    it('after a failed rollout (a rollback onto a broken version, not rolled back again): the route comes back on the release still serving', async () => {
      const [failing] = APPS;
      const revision = f.store.releases.createRelease({ app: failing!, version: 'broken', reason: 'rollback', actor: 'test' }).revision;
      f.controller.enqueue(failing!);
      const deadline = Date.now() + 60_000;
      while (f.store.status.getRollout(failing!)?.state.state !== 'failed' || f.store.status.getRollout(failing!)?.revision !== revision) {
        assert.ok(Date.now() < deadline, `r${revision} of ${failing} did not fail: ${JSON.stringify(f.store.status.readStatus(failing!)?.conditions)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      await f.controller.idle();
      await serving([...addrs.keys()], 'v2', 20_000);
      // No new release: the failed one stays desired, and every app's traffic comes back on v2.
      await underLoad('h3', async () => {}, async () => {});
      await serving([...addrs.keys()], 'v2', 20_000);
      assert.equal(f.store.releases.latestRelease(failing!)?.revision, revision, 'no new release');
      const restored = f.store.events.listEvents(failing!, { limit: 1000 }).filter((e) => e.type === 'RouteLost' && e.host === 'h3');
      assert.equal(restored.length, 1, 'one RouteLost event on h3 for the failed app');
    });
  });
}

repairSuite(['p1', 'p2'], 2);
repairSuite(['r1', 'r2', 'r3', 'r4', 'r5'], 1);
