import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { mulberry32 } from '../../src/domain/prng.js';
import type { AppStatus } from '../../src/domain/release.js';
import { startBedDaemonApps, type BedDaemon } from '../support/bed-daemon.js';
import { holdIdleConnection, holdStream, startLoad, summarizeFailures, type HeldStream, type HoldStreamResult, type IdleConnectionResult, type LoadReport, type LoadTarget } from '../support/load.js';
import { bedSkipReason, requireTestbed, testbedCommand, type Testbed } from '../support/testbed.js';

/**
 * The traffic acceptance run (issue #12): a REAL daemon process on 3 hosts with `web`
 * (Host a.test) and `blog` (Host b.test) sharing port 80 on each host's one HAProxy, and
 * `solo` alone on port 8081. Everything on v1, then under a no-retry load on all nine
 * targets (3 keep-alive clients and 1 slow client each, a third of the slow requests
 * POSTs), `web` goes v1 -> v2 -> v3, a broken release (rolled back automatically), an
 * explicit rollback and v3 again, while the daemon is SIGKILLed twice in each of those
 * five rollouts at random moments and restarted (the pauses before the kills come from
 * mulberry32 with the printed seed; BERTH_FAULT_SEED sets it). `blog` holds a
 * long request open on every host, and idle kept-alive connections, across the whole run.
 *
 * Nothing may fail: not one request, every slow request answered by the version it began
 * on (load.ts checks each against its target's fast answers around its start), `blog`'s
 * connections never closed; every rollout converges; one running `web` container per
 * host, no duplicate per revision; `blog`'s and `solo`'s containers untouched.
 */
const skip = bedSkipReason();
const SOLO_PORT = 8081;
const APPS = ['web', 'blog', 'solo'] as const;
/**
 * Two crashes per rollout, each after a random pause of up to these (the second counted
 * from the restart): a rollout takes ~6 s here (three hosts one by one, each draining a
 * 2 s request), and a restart ~1.5 s, so both land inside it.
 */
const KILL_WINDOWS_MS = [2_500, 2_500] as const;
/**
 * The broken release fails its health check ~3 s after the daemon (re)started (6 probes,
 * 500 ms apart) and is rolled back within ~1 s: the first crash lands in the probes, the
 * second in the probes, the failure or the rollback.
 */
const BROKEN_KILL_WINDOWS_MS = [3_000, 4_000] as const;

type AppView = { status: AppStatus | null; desired: { revision: number; version: string; reason: string } | null };
type Events = { events: Array<{ revision: number | null; host: string | null; type: string; message: string; createdAt: string }> };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `STATUS body` of one GET with this Host header, on its own connection. */
const get = (url: string, host: string) =>
  new Promise<string>((resolve, reject) => {
    http
      .get(url, { headers: { host }, agent: false, timeout: 5_000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve(`${res.statusCode} ${body.trim()}`));
      })
      .on('timeout', function (this: http.ClientRequest) {
        this.destroy(new Error('timeout'));
      })
      .on('error', reject);
  });

/** Long requests held back to back on one target until stopped; a cut one ends the chain. */
function holdStreams(o: { url: string; host: string; seconds: number }) {
  const results: HoldStreamResult[] = [];
  let stopped = false;
  let current: HeldStream | undefined;
  const t0 = Date.now();
  const loop = (async () => {
    while (!stopped) {
      current = holdStream({ url: o.url, host: o.host, path: `/cgi-bin/slow?s=${o.seconds}`, seconds: o.seconds });
      const r = await current.done;
      results.push(r);
      if (r.closedEarly || (!stopped && r.status !== 200)) return;
    }
  })();
  return {
    /** True once any of the chain's requests ended without a complete response. */
    closedEarly: () => results.some((r) => r.closedEarly) || (current?.closedEarly() ?? false),
    async stop(): Promise<{ results: HoldStreamResult[]; heldMs: number }> {
      stopped = true;
      current?.abort();
      await loop;
      return { results, heldMs: Date.now() - t0 };
    },
  };
}

/** Kept-alive connections that sit idle `idleMs` and are used again, one after another until stopped. */
function holdIdleConnections(o: { url: string; host: string; idleMs: number }) {
  const results: IdleConnectionResult[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      try {
        results.push(await holdIdleConnection({ url: o.url, host: o.host, idleMs: o.idleMs }));
      } catch (err) {
        // The first request failed (the load reports that too): a failure, and a pause before the next.
        results.push({ first: { status: 0, body: '' }, second: null, failed: true, closedWhileIdle: false, error: String(err) });
        await sleep(1000);
      }
    }
  })();
  return {
    async stop(): Promise<IdleConnectionResult[]> {
      stopped = true;
      await loop;
      return results;
    },
  };
}

describe('kill -9 of the daemon during rollouts on a shared proxy, under no-retry load', { skip, concurrency: false }, () => {
  let bed: Testbed;
  let daemon: BedDaemon;
  let addrs: string[];
  /** Container ids of blog and solo per host after the v1 deploy: nothing may touch them. */
  const untouched = new Map<string, string>();

  async function view(app: string): Promise<AppView | null> {
    return daemon.request<AppView>('GET', `/v1/apps/${app}`).then(
      (r) => r.body,
      () => null,
    );
  }

  async function story(app: string, fromRevision: number): Promise<string> {
    const events = (await daemon.request<Events>('GET', `/v1/apps/${app}/events?limit=1000`)).body.events;
    return events
      .filter((e) => e.revision !== null && e.revision >= fromRevision)
      .map((e) => `r${e.revision} ${e.host ?? '-'} ${e.type}: ${e.message}`)
      .join('\n');
  }

  /**
   * Until `app`'s desired revision is final (Complete or RolledBack): `revision` itself, or,
   * with `rolledBack`, the rollback revision berth created over it. Returns phase and revision.
   */
  async function waitConverged(app: string, revision: number, opts: { rolledBack?: boolean; timeoutMs?: number } = {}): Promise<{ phase: string; revision: number }> {
    const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
    for (;;) {
      const v = await view(app);
      const s = v?.status;
      const desired = v?.desired?.revision ?? 0;
      const wanted = opts.rolledBack ? desired > revision : desired === revision;
      if (s && wanted && s.observedRevision === desired && (s.phase === 'Complete' || s.phase === 'RolledBack')) return { phase: s.phase, revision: desired };
      if (Date.now() > deadline) throw new Error(`${app} r${revision} did not converge: ${JSON.stringify(v)}\n${await story(app, revision)}`);
      await sleep(100);
    }
  }

  async function post(path: string, body: unknown): Promise<{ revision: number }> {
    const { status, body: res } = await daemon.request<{ revision: number }>('POST', path, body);
    assert.equal(status, 202, `${path} ${JSON.stringify(body)}: ${JSON.stringify(res)}`);
    return res;
  }

  /** For each moment: web's last event before it (`r5 h2 TrafficSwitched`), to show where the kills landed. */
  async function lastEventsBefore(moments: number[]): Promise<string[]> {
    const events = await daemon.request<Events>('GET', '/v1/apps/web/events?limit=1000').then(
      (r) => r.body.events,
      () => [],
    );
    return moments.map((t) => {
      // Oldest first: the last one at or before t.
      const e = [...events].reverse().find((x) => Date.parse(x.createdAt) <= t);
      return e ? `r${e.revision} ${e.host ?? '-'} ${e.type}` : '-';
    });
  }

  /** Per host: exactly one running `web` container, of `version`, served on a.test; no duplicate per revision; blog and solo untouched. */
  async function assertFleet(version: string): Promise<void> {
    for (const [i, [host, d]] of [...daemon.drivers].entries()) {
      const web = (await d.listContainers({ app: 'web' })).filter((c) => c.role === 'app');
      assert.deepEqual(web.filter((c) => c.running).map((c) => c.version), [version], `${host}: exactly one running web container, ${version}`);
      assert.equal(new Set(web.map((c) => c.revision)).size, web.length, `${host}: no duplicate web container per revision (${web.map((c) => c.name).join(' ')})`);
      assert.ok(web.length <= 4, `${host}: pruned to retain_containers 3 (+1 running), found ${web.length}`);
      assert.equal(await get(`http://${addrs[i]}/`, 'a.test'), `200 ${version}`, `${host}: the proxy sends a.test to ${version}`);
      for (const app of ['blog', 'solo']) {
        const cs = (await d.listContainers({ app })).filter((c) => c.role === 'app');
        assert.deepEqual(cs.map((c) => `${c.id} ${c.running}`), [`${untouched.get(`${app}@${host}`)} true`], `${host}: ${app}'s one container untouched`);
      }
    }
  }

  before(async () => {
    bed = requireTestbed();
    testbedCommand('live-restore', 'on');
    addrs = bed.hosts.slice(0, 3).map((h) => h.address);
    const common = {
      healthcheck: { interval: '500ms', max_attempts: 6 },
      rollout: { parallelism: 1 },
      retain_containers: 3,
      stop_timeout: '5s',
    };
    daemon = await startBedDaemonApps(
      {
        web: { ...common, proxy: { port: 80, host: 'a.test', drain_timeout: '15s' } },
        blog: { ...common, proxy: { port: 80, host: 'b.test', drain_timeout: '15s' } },
        solo: { ...common, proxy: { port: SOLO_PORT, drain_timeout: '15s' } },
      },
      { bed },
    );
    const revs = await Promise.all(APPS.map((app) => post(`/v1/apps/${app}/releases`, { version: 'v1' })));
    const done = await Promise.all(APPS.map((app, i) => waitConverged(app, revs[i]!.revision)));
    assert.deepEqual(done.map((d) => d.phase), ['Complete', 'Complete', 'Complete']);
    for (const [host, d] of daemon.drivers) {
      for (const app of ['blog', 'solo']) {
        const running = (await d.listContainers({ app })).filter((c) => c.role === 'app' && c.running);
        assert.equal(running.length, 1, `${host}: one ${app} container`);
        untouched.set(`${app}@${host}`, running[0]!.id);
      }
    }
    for (const addr of addrs) {
      assert.equal(await get(`http://${addr}/`, 'a.test'), '200 v1');
      assert.equal(await get(`http://${addr}/`, 'b.test'), '200 v1');
      assert.equal(await get(`http://${addr}:${SOLO_PORT}/`, 'x.test'), '200 v1');
      assert.equal(await get(`http://${addr}/`, 'nobody.test'), '404 no app is routed here');
    }
  });

  after(async () => {
    await daemon?.close();
  });

  it('v2, v3, broken (auto rollback), rollback, v3 with 10 kill -9 at random moments: 0 failed, slow requests answered by the version they began on, blog never cut', async () => {
    const seed = Number(process.env.BERTH_FAULT_SEED ?? Date.now() % 1_000_000);
    const random = mulberry32(seed);
    console.log(`# seed ${seed} (BERTH_FAULT_SEED=${seed} repeats this run)`);
    const t0 = Date.now();
    const targets: LoadTarget[] = addrs.flatMap((addr, i) => [
      { url: `http://${addr}`, host: 'a.test', name: `web@h${i + 1}` },
      { url: `http://${addr}`, host: 'b.test', name: `blog@h${i + 1}` },
      { url: `http://${addr}:${SOLO_PORT}`, name: `solo@h${i + 1}` },
    ]);
    const load = startLoad({ targets, clientsPerTarget: 3, slowClientsPerTarget: 1, slowPath: '/cgi-bin/slow?s=2', maxDurationMs: 600_000 });
    // One long request per host to blog (a request the proxy must not cut for web's sake), 4 min each, back to back.
    const streams = addrs.map((addr) => holdStreams({ url: `http://${addr}`, host: 'b.test', seconds: 240 }));
    const idles = addrs.map((addr) => holdIdleConnections({ url: `http://${addr}`, host: 'b.test', idleMs: 15_000 }));

    const steps: string[] = [];
    let kills = 0;
    /** ms into its rollout, and the wall-clock time, of each kill. */
    const killPoints: number[] = [];
    const killedAt: number[] = [];
    /** One web rollout with two kill -9 of the daemon at random moments, then its convergence. */
    const rollout = async (what: string, start: () => Promise<{ revision: number }>, expect: { version: string; phase: string; rolledBack?: boolean }) => {
      const windows = expect.rolledBack ? BROKEN_KILL_WINDOWS_MS : KILL_WINDOWS_MS;
      const began = Date.now();
      const { revision } = await start();
      for (const window of windows) {
        await sleep(Math.floor(random() * window));
        await daemon.kill9();
        killedAt.push(Date.now());
        kills += 1;
        killPoints.push(Date.now() - began);
        await daemon.restart();
      }
      const done = await waitConverged('web', revision, expect.rolledBack ? { rolledBack: true } : {});
      steps.push(`${what} r${revision}${done.revision !== revision ? `->r${done.revision}` : ''} ${done.phase} ${((Date.now() - began) / 1000).toFixed(1)}s`);
      assert.equal(done.phase, expect.phase, `${what}: ${await story('web', revision)}`);
      const desired = (await view('web'))!.desired!;
      assert.equal(desired.version, expect.version, `${what}: desired version`);
      await assertFleet(expect.version);
      assert.ok(!streams.some((s) => s.closedEarly()), `blog's long request was cut during ${what}`);
      return revision;
    };

    let report: LoadReport | undefined;
    let held: Array<{ results: HoldStreamResult[]; heldMs: number }> = [];
    let idle: IdleConnectionResult[] = [];
    try {
      await rollout('v2', () => post('/v1/apps/web/releases', { version: 'v2' }), { version: 'v2', phase: 'Complete' });
      await rollout('v3', () => post('/v1/apps/web/releases', { version: 'v3' }), { version: 'v3', phase: 'Complete' });
      const broken = await rollout('broken', () => post('/v1/apps/web/releases', { version: 'broken' }), { version: 'v3', phase: 'RolledBack', rolledBack: true });
      const events = (await daemon.request<Events>('GET', '/v1/apps/web/events?limit=1000')).body.events;
      assert.ok(!events.some((e) => e.revision === broken && e.type === 'TrafficSwitched'), 'the broken release never received traffic');
      assert.ok(events.some((e) => e.type === 'RollbackStarted'), 'berth rolled the broken release back');
      await rollout('rollback to v2', () => post('/v1/apps/web/rollback', { version: 'v2' }), { version: 'v2', phase: 'RolledBack' });
      await rollout('v3 again', () => post('/v1/apps/web/releases', { version: 'v3' }), { version: 'v3', phase: 'Complete' });
    } finally {
      // Whatever happened (a rollout's assertion too), stop every client and print the figures.
      report = await load.stop();
      held = await Promise.all(streams.map((s) => s.stop()));
      idle = (await Promise.all(idles.map((s) => s.stop()))).flat();
      const r = report;
      const cut = held.flatMap((h) => h.results.filter((x) => x.closedEarly));
      const idleFailed = idle.filter((x) => x.failed);
      console.log(`# ${steps.join('; ')}`);
      console.log(
        `# crash-shared-proxy: seed ${seed}, ${kills} kill -9 at ${killPoints.map((ms) => (ms / 1000).toFixed(1)).join('/')} s into their rollouts; ` +
          `${r.requests} requests (${r.socketsReused} on reused keep-alive sockets, no retries), ${summarizeFailures(r.failures)}; ` +
          `slow ${r.slow.completed}/${r.slow.started} (${r.slow.posts} POSTs, ${r.slow.failed} failed, ${r.slow.wrongVersion} wrong version) ` +
          `bodies ${JSON.stringify(r.slow.versions)}, began on ${JSON.stringify(r.slow.began)}, ${r.slow.straddled} began during a switch; ` +
          `blog streams held ${held.map((h) => (h.heldMs / 1000).toFixed(0)).join('/')} s (${cut.length} cut), ${idle.length} idle connections (${idleFailed.length} failed); ` +
          `${((Date.now() - t0) / 1000).toFixed(0)} s`,
      );
      console.log(`# each kill came after: ${(await lastEventsBefore(killedAt)).join('; ')}`);
      for (const f of r.failures.slice(0, 20)) console.log(`#   ${f.at} ms ${f.target}: ${f.what}`);
      for (const c of cut) console.log(`#   blog stream cut after ${(c.ms / 1000).toFixed(1)} s: ${c.error}`);
      for (const i of idleFailed.slice(0, 5)) console.log(`#   blog idle connection: ${i.error}`);
    }
    const targetsOf = (app: string) => Object.entries(report.byTarget).filter(([name]) => name.startsWith(`${app}@`));

    assert.deepEqual(report.failures, [], summarizeFailures(report.failures));
    assert.equal(report.slow.failed, 0);
    assert.equal(report.slow.wrongVersion, 0, 'every slow request answered by the version it began on');
    assert.equal(report.slow.unchecked, 0, 'every slow request checked against its target');
    assert.equal(kills, 10);
    assert.ok(report.socketsReused > report.requests / 2, `keep-alive connections were reused (${report.socketsReused}/${report.requests})`);
    assert.ok(report.slow.posts >= report.slow.started / 4, `a third of the slow requests are POSTs (${report.slow.posts}/${report.slow.started})`);
    for (const v of ['v1', 'v2', 'v3']) assert.ok((report.slow.began[v] ?? 0) > 0, `slow requests began on ${v} and were answered by it`);
    assert.ok(!('broken' in report.versions) && !('broken' in report.slow.versions), 'no request reached the broken release');
    for (const [name, t] of [...targetsOf('blog'), ...targetsOf('solo')]) assert.deepEqual(Object.keys(t.versions), ['v1'], `${name} only ever answered v1`);
    for (const [name, t] of targetsOf('web')) assert.deepEqual(Object.keys(t.versions).sort(), ['v1', 'v2', 'v3'], `${name} served v1, v2 and v3`);
    // blog's long requests: never cut; the last of each chain still open (aborted by the test) when the run ended.
    const cut = held.flatMap((h) => h.results.filter((r) => r.closedEarly));
    assert.deepEqual(cut, [], `blog's long-lived connections: ${cut.map((r) => r.error).join('; ')}`);
    for (const h of held) {
      const last = h.results.at(-1)!;
      assert.equal(last.error, 'aborted by the test', `still open at the end: ${JSON.stringify(last)}`);
      for (const r of h.results.slice(0, -1)) assert.deepEqual([r.status, r.body.trim()], [200, 'v1']);
    }
    assert.deepEqual(idle.filter((r) => r.failed), [], "blog's idle kept-alive connections");
    assert.ok(idle.length >= addrs.length, 'idle connections held');
  });
});
