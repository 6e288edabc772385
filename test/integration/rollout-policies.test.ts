import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { BerthEvent } from '../../src/domain/release.js';
import { bedApp, type BedApp } from '../support/bed-app.js';
import { waitUntil } from '../support/wait.js';
import { startBedDaemonApps, type BedDaemon } from '../support/bed-daemon.js';
import { TOKEN, runCli } from '../support/daemon.js';
import { appImage, bedSkipReason, requireTestbed, testbedCommand, type Testbed } from '../support/testbed.js';

/**
 * The rollout settings on 3 real hosts, through a real daemon and each host's proxy:
 * on_failure pause and continue (with max_failure_ratio), progress_deadline, delay,
 * percentage parallelism, post_deploy, pause/resume mid-rollout, a container removed by
 * hand, kill -9 while a hook runs, and pruning down to retain_containers.
 */
const skip = bedSkipReason();
const common = { healthcheck: { interval: '500ms', timeout: '1s', max_attempts: 4 }, stop_timeout: '2s' };
const proxy = (port: number) => ({ port, drain_timeout: '1s' });
const PORTS = { pz: 8201, ct: 8202, dl: 8203, st: 8204, pc: 8205, hk: 8206, pr: 8207 } as const;
type AppName = keyof typeof PORTS;
/** A tag that is v2 on h1 and h2 but the never-healthy image on h3 (tagged on each host, never pushed). */
const SPOTTY = 'spotty';
const HOSTS = ['h1', 'h2', 'h3'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ofRevision = (events: BerthEvent[], revision: number, type?: string) => events.filter((e) => e.revision === revision && (!type || e.type === type));
const hostsOf = (events: BerthEvent[]) => events.map((e) => e.host);
const all = (version: string) => Object.fromEntries(HOSTS.map((h) => [h, version]));

/** Counts the requests a hook makes to it: `/start/VERSION` and `/end/VERSION`. */
async function hookRecorder(address: string): Promise<{ url: string; seen: Map<string, number>; close(): Promise<void> }> {
  const seen = new Map<string, number>();
  const srv = http.createServer((req, res) => {
    seen.set(req.url ?? '', (seen.get(req.url ?? '') ?? 0) + 1);
    res.end('ok\n');
  });
  await new Promise<void>((resolve, reject) => srv.once('error', reject).listen(0, address, resolve));
  const { port } = srv.address() as AddressInfo;
  return { url: `http://${address}:${port}`, seen, close: () => new Promise((resolve) => srv.close(() => resolve())) };
}

describe('rollout settings on 3 real hosts, through a real daemon', { skip, concurrency: false }, () => {
  let bed: Testbed;
  let daemon: BedDaemon;
  let recorder: Awaited<ReturnType<typeof hookRecorder>>;
  const apps = {} as Record<AppName, BedApp>;
  /** The apps' YAML keys in the daemon's config file, as changed so far. */
  let specs: Record<string, Record<string, unknown>>;

  /** The operator edits one app in the config file and reloads (the file's apps are not PUT-able). */
  async function reconfigure(name: AppName, spec: Record<string, unknown>): Promise<void> {
    specs = { ...specs, [name]: spec };
    daemon.rewriteConfig(specs);
    const res = await daemon.request<{ apps: Record<string, string> }>('POST', '/v1/reload', {});
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.apps[name], 'updated');
  }

  before(async () => {
    bed = requireTestbed();
    recorder = await hookRecorder(bed.bridge.address ?? '10.77.0.1');
    const hook = `wget -q -O /dev/null ${recorder.url}/start/$VERSION && sleep 4 && wget -q -O /dev/null ${recorder.url}/end/$VERSION`;
    specs = {
      pz: { ...common, proxy: proxy(PORTS.pz), rollout: { parallelism: 1, on_failure: 'pause' } },
      ct: { ...common, proxy: proxy(PORTS.ct), rollout: { parallelism: 1, on_failure: 'continue', max_failure_ratio: 0.34 } },
      // progress_deadline is set once v1 serves (a deadline of seconds would fail the first rollout).
      dl: { ...common, proxy: proxy(PORTS.dl), healthcheck: { interval: '500ms', max_attempts: 30 }, env: { BOOT_DELAY: '4' }, rollout: { parallelism: 1 } },
      st: { ...common, proxy: proxy(PORTS.st), rollout: { parallelism: 1, delay: '2s' }, hooks: { post_deploy: ['echo post-deploy $VERSION'] } },
      pc: { ...common, proxy: proxy(PORTS.pc), rollout: { parallelism: '67%' } },
      hk: { ...common, proxy: proxy(PORTS.hk), rollout: { parallelism: 3 }, hooks: { pre_deploy: [hook], timeout: '60s' } },
      pr: { ...common, proxy: proxy(PORTS.pr), retain_containers: 1, rollout: { parallelism: 3 } },
    };
    daemon = await startBedDaemonApps(specs, { bed });
    for (const name of Object.keys(PORTS) as AppName[]) apps[name] = bedApp(daemon, name, { proxyPort: PORTS[name] });
    const first = await Promise.all(Object.values(apps).map(async (a) => [a, await a.deploy('v1')] as const));
    for (const [a, r] of first) assert.equal((await a.settled(r, 90_000)).status?.phase, 'Complete', `${a.name} v1`);
  });

  after(async () => {
    await daemon?.close();
    await recorder?.close();
    for (const h of HOSTS) {
      try {
        testbedCommand('exec', h, 'rmi', appImage(bed, SPOTTY));
      } catch {
        // not tagged (the test did not get that far)
      }
    }
  });

  it('on_failure pause: a broken release stops after the first failed host, the others keep serving v1, status Paused; berth resume lets the next good release complete', async () => {
    const pz = apps.pz;
    const bad = await pz.deploy('broken');
    const v = await pz.settled(bad);
    assert.equal(v.status?.phase, 'Paused', await pz.story(bad));
    assert.equal(v.paused, true, 'the app is paused');
    assert.equal(v.status?.conditions.find((c) => c.type === 'Progressing')?.reason, 'HealthCheckFailed');
    const events = await pz.events();
    assert.deepEqual(hostsOf(ofRevision(events, bad, 'HostUpdateStarted')), ['h1'], 'only h1 was tried');
    assert.equal(ofRevision(events, bad, 'RolloutPaused').length, 1);
    assert.equal(ofRevision(events, bad, 'RollbackStarted').length, 0, 'paused, not rolled back');
    assert.deepEqual(await pz.served(), all('v1'));

    // A good release while paused waits for the operator.
    const good = await pz.deploy('v2');
    await sleep(2_000);
    assert.ok(!Object.values(await pz.containers()).flat().some((c) => c.version === 'v2'), 'nothing moves while paused');
    assert.deepEqual(await pz.served(), all('v1'));

    const resumed = await runCli(['resume', 'pz'], { BERTH_URL: daemon.url, BERTH_TOKEN: TOKEN });
    assert.equal(resumed.code, 0, resumed.stderr);
    const done = await pz.settled(good);
    assert.equal(done.status?.phase, 'Complete', await pz.story(good));
    assert.equal(done.paused, false);
    assert.deepEqual(await pz.served(), all('v2'));
    for (const [h, cs] of Object.entries(await pz.containers())) assert.ok(!cs.some((c) => c.version === 'broken' && c.running), `${h}: no broken container runs`);
  });

  it('on_failure continue: one failed host of 3 is tolerated under max_failure_ratio 0.34 (it keeps serving v1), and fails the release under 0.2', async () => {
    const ct = apps.ct;
    for (const h of HOSTS) testbedCommand('exec', h, 'tag', appImage(bed, h === 'h3' ? 'broken' : 'v2'), appImage(bed, SPOTTY));
    const tolerated = await ct.deploy(SPOTTY);
    const v = await ct.settled(tolerated);
    assert.equal(v.status?.phase, 'Complete', await ct.story(tolerated));
    assert.equal(v.status?.hosts.find((h) => h.host === 'h3')?.health, 'unhealthy');
    assert.match(v.status?.conditions.find((c) => c.type === 'Progressing')?.message ?? '', /2\/3 hosts \(1 failed\)/);
    assert.deepEqual(await ct.served(), { h1: 'v2', h2: 'v2', h3: 'v1' });
    assert.equal(ofRevision(await ct.events(), tolerated, 'RolloutFailed').length, 0);

    await reconfigure('ct', { ...specs.ct, rollout: { ...(specs.ct!.rollout as object), max_failure_ratio: 0.2 } });
    const exceeded = await ct.deploy(SPOTTY);
    const w = await ct.settled(exceeded);
    assert.equal(w.status?.phase, 'Failed', await ct.story(exceeded));
    const failed = ofRevision(await ct.events(), exceeded, 'RolloutFailed');
    assert.equal(failed.length, 1);
    assert.match(failed[0]!.message, /h3:/);
    assert.equal(ofRevision(await ct.events(), exceeded, 'RollbackStarted').length, 0, 'continue never rolls back');
    assert.equal((await ct.served()).h3, 'v1', 'the failed host never served the broken image');
  });

  it('progress_deadline: a version that boots slower than the deadline fails the release and the fleet rolls back to v1', async () => {
    const dl = apps.dl;
    await reconfigure('dl', { ...specs.dl, rollout: { ...(specs.dl!.rollout as object), progress_deadline: '3s' } });
    const slow = await dl.deploy('slowboot');
    const v = await dl.settled(slow);
    const events = await dl.events();
    const failed = ofRevision(events, slow, 'RolloutFailed');
    assert.equal(failed.length, 1, await dl.story(slow));
    assert.match(failed[0]!.message, /progress deadline \(3000 ms\)/);
    assert.equal(ofRevision(events, slow, 'RollbackStarted').length, 1);
    assert.ok(!ofRevision(events, slow, 'HostUpdateStarted').some((e) => e.host === 'h3'), 'the release stopped before the last host');
    assert.equal(v.status?.phase, 'RolledBack', await dl.story(slow));
    assert.deepEqual(await dl.served(), all('v1'));
  });

  it('delay: each host starts at least `delay` (2 s) after the previous one switched; post_deploy runs once, after the whole fleet switched, with the new image', async () => {
    const st = apps.st;
    const r = await st.deploy('v2');
    assert.equal((await st.settled(r)).status?.phase, 'Complete', await st.story(r));
    const events = ofRevision(await st.events(), r);
    const at = (type: string, host: string) => Date.parse(events.find((e) => e.type === type && e.host === host)!.createdAt);
    const gaps = [at('HostUpdateStarted', 'h2') - at('TrafficSwitched', 'h1'), at('HostUpdateStarted', 'h3') - at('TrafficSwitched', 'h2')];
    console.log(`# delay 2s: gaps between a switch and the next host's start ${gaps.join(', ')} ms`);
    for (const gap of gaps) assert.ok(gap >= 2_000, `gap ${gap} ms < delay 2000 ms`);

    const hooks = events.filter((e) => e.type === 'HookOutput');
    assert.equal(hooks.length, 1, 'post_deploy ran exactly once');
    assert.match(hooks[0]!.message, /^post_deploy\[0\] exit 0: post-deploy v2/);
    const lastSwitch = Math.max(...events.filter((e) => e.type === 'TrafficSwitched').map((e) => e.id));
    assert.ok(hooks[0]!.id > lastSwitch, 'after the last host switched');
    assert.ok(hooks[0]!.id < events.find((e) => e.type === 'RolloutComplete')!.id, 'before the release is complete');
    assert.deepEqual(await st.served(), all('v2'));
  });

  it('pause mid-rollout holds every further host; resume completes it', async () => {
    const st = apps.st;
    const r = await st.deploy('v3');
    await waitUntil('h1 switched', async () => (ofRevision(await st.events(), r, 'TrafficSwitched').length > 0 ? true : null), { timeoutMs: 30_000, pollMs: 50 });
    // Within the 2 s delay before h2's batch.
    await st.setPaused(true);
    await sleep(4_000);
    const events = await st.events();
    assert.deepEqual(hostsOf(ofRevision(events, r, 'HostUpdateStarted')), ['h1'], 'no host after h1 started while paused');
    assert.equal((await st.view()).status?.phase, 'Paused');
    assert.deepEqual(await st.served(), { h1: 'v3', h2: 'v2', h3: 'v2' });

    await st.setPaused(false);
    assert.equal((await st.settled(r)).status?.phase, 'Complete', await st.story(r));
    assert.deepEqual(await st.served(), all('v3'));
    assert.equal(ofRevision(await st.events(), r, 'HookOutput').length, 1, 'post_deploy once');
  });

  it('a serving container removed by hand is recreated on that host; the other hosts are not touched and no release is made', async () => {
    const st = apps.st;
    const before = await st.containers();
    const desired = (await st.view()).desired?.revision;
    const victim = before.h2!.find((c) => c.running)!;
    const version = victim.version;
    await daemon.drivers.get('h2')!.removeContainer(victim.id);
    const t0 = Date.now();
    await waitUntil(`h2 serves ${version} again`, async () => ((await st.served()).h2 === version ? true : null), { timeoutMs: 30_000, pollMs: 200 });
    console.log(`# container removed by hand on h2: served again after ${Date.now() - t0} ms`);
    const now = await st.containers();
    const running = now.h2!.filter((c) => c.running);
    assert.equal(running.length, 1);
    assert.equal(running[0]!.version, version);
    assert.notEqual(running[0]!.id, victim.id, 'a new container');
    for (const h of ['h1', 'h3']) assert.equal(now[h]!.find((c) => c.running)!.id, before[h]!.find((c) => c.running)!.id, `${h} untouched`);
    assert.equal((await st.view()).desired?.revision, desired, 'no new release');
    assert.deepEqual(await st.served(), all(version));
  });

  it('percentage parallelism: "67%" of 3 hosts moves h1 and h2 together, then h3', async () => {
    const pc = apps.pc;
    const r = await pc.deploy('v2');
    assert.equal((await pc.settled(r)).status?.phase, 'Complete', await pc.story(r));
    const events = ofRevision(await pc.events(), r);
    const started = (h: string) => events.find((e) => e.type === 'HostUpdateStarted' && e.host === h)!.id;
    const switched = (h: string) => events.find((e) => e.type === 'TrafficSwitched' && e.host === h)!.id;
    assert.ok(started('h2') < switched('h1') && started('h1') < switched('h2'), 'h1 and h2 in one batch');
    assert.ok(started('h3') > Math.max(switched('h1'), switched('h2')), 'h3 in the next batch');
    assert.deepEqual(await pc.served(), all('v2'));
  });

  it('kill -9 while the pre_deploy hook runs: after the restart the hook is not run again (exactly one start and one end), and the release completes', async () => {
    const hk = apps.hk;
    const r = await hk.deploy('v2');
    await waitUntil('the hook to start', async () => (recorder.seen.get('/start/v2') ? true : null), { timeoutMs: 30_000, pollMs: 50 });
    await daemon.kill9();
    await daemon.restart();
    assert.equal((await hk.settled(r)).status?.phase, 'Complete', await hk.story(r));
    assert.equal(recorder.seen.get('/start/v2'), 1, 'the hook started once');
    assert.equal(recorder.seen.get('/end/v2'), 1, 'the hook ended once');
    const outputs = ofRevision(await hk.events(), r, 'HookOutput');
    assert.equal(outputs.length, 1, outputs.map((e) => e.message).join('\n'));
    assert.match(outputs[0]!.message, /^pre_deploy\[0\] exit 0/);
    for (const [h, d] of daemon.drivers) assert.equal((await d.listContainers({ app: 'hk' })).filter((c) => c.role === 'hook').length, 0, `${h}: no hook container left`);
    assert.deepEqual(await hk.served(), all('v2'));
  });

  it('retain_containers 1: the stopped containers beyond it are pruned on every host, the newest kept; a rollback restarts the retained one (no create)', async () => {
    const pr = apps.pr;
    for (const v of ['v2', 'v3']) assert.equal((await pr.settled(await pr.deploy(v))).status?.phase, 'Complete');
    let kept: Record<string, string> = {};
    await waitUntil('pruned to one stopped container per host', async () => {
      const cs = await pr.containers();
      const ok = HOSTS.every((h) => cs[h]!.map((c) => `${c.version}:${c.running ? 'up' : 'stopped'}`).sort().join() === 'v2:stopped,v3:up');
      if (ok) kept = Object.fromEntries(HOSTS.map((h) => [h, cs[h]!.find((c) => c.version === 'v2')!.id]));
      return ok ? true : null;
    }, { timeoutMs: 20_000, pollMs: 200 });
    // The event follows the removal's answer: a listing can see the container gone first (seen on h3 in CI).
    const prunedOn = async () => [...new Set(hostsOf((await pr.events()).filter((e) => e.type === 'ContainersPruned')))].sort();
    await waitUntil('a ContainersPruned event on every host', async () => ((await prunedOn()).length === HOSTS.length ? true : null), { timeoutMs: 5_000, pollMs: 100 }).catch(() => undefined);
    assert.deepEqual(await prunedOn(), HOSTS, 'pruned on every host');

    const res = await daemon.request<{ revision: number }>('POST', '/v1/apps/pr/rollback', { version: 'v2' });
    assert.equal(res.status, 202);
    assert.equal((await pr.settled(res.body.revision)).status?.phase, 'RolledBack');
    assert.deepEqual(await pr.served(), all('v2'));
    const cs = await pr.containers();
    for (const h of HOSTS) {
      assert.equal(cs[h]!.find((c) => c.running)?.id, kept[h], `${h}: the retained v2 container serves again`);
      assert.deepEqual(cs[h]!.map((c) => `${c.version}:${c.running ? 'up' : 'stopped'}`).sort(), ['v2:up', 'v3:stopped'], `${h}: no container was created`);
    }
    const events = ofRevision(await pr.events(), res.body.revision, 'ContainerStarted');
    assert.equal(events.length, 3);
    assert.ok(events.every((e) => /reusing a retained container/.test(e.message)), events.map((e) => e.message).join('\n'));
  });
});
