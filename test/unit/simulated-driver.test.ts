/**
 * The SIMULATED host driver (src/hosts/simulated-driver.ts), and a real Controller
 * driving a v1 -> v2 rollout over three simulated hosts.
 *
 * This is a planner/controller test: it shows the reconcile loop converges and keeps
 * start-first ordering when hosts answer like the simulation does. It is not evidence
 * that deploys work; only the tests against real Docker hosts (test/integration) are.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { pino } from 'pino';
import type { AppStatus } from '../../src/domain/release.js';
import { HOST_ERROR_CODES, HostError } from '../../src/domain/errors.js';
import { LABELS } from '../../src/domain/labels.js';
import type { DockerEvent } from '../../src/hosts/host-driver.js';
import { SimulatedHostDriver, simulatedFleet, type SimulatedCall } from '../../src/hosts/simulated-driver.js';
import { BerthMetrics } from '../../src/metrics/registry.js';
import { directTraffic } from '../../src/proxy/traffic.js';
import { Controller } from '../../src/reconciler/controller.js';
import { openStore, type Store } from '../../src/store/index.js';
import { makeSpec } from '../support/fixtures.js';
import { NO_SECRETS } from '../support/secrets.js';

const quiet = pino({ level: 'silent' });
const IMAGE = 'registry.test:5000/web';

function appLabels(app: string, revision: number, version: string): Record<string, string> {
  return { [LABELS.app]: app, [LABELS.revision]: String(revision), [LABELS.version]: version, [LABELS.role]: 'app', [LABELS.config]: 'x' };
}

const createOpts = (name: string, image: string, labels: Record<string, string>) => ({ name, image, env: {}, labels, network: 'berth', init: true });

describe('SimulatedHostDriver', () => {
  test('create needs the image; start gives an IP; httpGet reaches only a running container', async () => {
    const d = new SimulatedHostDriver({ name: 'h1', latencyMs: { startContainer: 0, stopContainer: 0 } });
    const ref = `${IMAGE}:v1`;
    await assert.rejects(d.createContainer(createOpts('web-r1', ref, appLabels('web', 1, 'v1'))), (e: unknown) => e instanceof HostError && e.code === 'IMAGE_NOT_FOUND');
    assert.equal(await d.hasImage(ref), false);
    await d.pullImage(ref);
    assert.equal(await d.hasImage(ref), true);

    const id = await d.createContainer(createOpts('web-r1', ref, appLabels('web', 1, 'v1')));
    let c = await d.inspectContainer(id);
    assert.equal(c?.state, 'created');
    assert.equal(c?.ip, null);

    await d.startContainer(id);
    c = await d.inspectContainer(id);
    assert.equal(c?.running, true);
    assert.match(c?.ip ?? '', /^10\.\d+\.\d+\.\d+$/);
    assert.deepEqual(await d.httpGet(c!.ip!, 3000, '/health', 1000), { status: 200, body: 'ok' });
    assert.deepEqual(await d.httpGet(c!.ip!, 3000, '/', 1000), { status: 200, body: 'v1' });

    const listed = await d.listContainers({ app: 'web' });
    assert.equal(listed.length, 1);
    assert.equal(listed[0]?.revision, 1);
    assert.equal(listed[0]?.version, 'v1');
    assert.deepEqual(await d.listContainers({ app: 'other' }), []);

    await d.stopContainer(id, 1000);
    assert.equal((await d.inspectContainer(id))?.running, false);
    await assert.rejects(d.httpGet(c!.ip!, 3000, '/health', 1000), (e: unknown) => e instanceof HostError && e.code === 'HTTP_FAILED');
    await d.stopContainer(id, 1000); // already stopped: the goal holds
    await d.removeContainer(id);
    await d.removeContainer(id); // already gone: the goal holds
    assert.equal(await d.inspectContainer(id), null);
  });

  test('a create whose name exists adopts a container with the same labels and refuses a different one', async () => {
    const d = new SimulatedHostDriver({ name: 'h1', images: [`${IMAGE}:v1`] });
    const first = await d.createContainer(createOpts('web-r1', `${IMAGE}:v1`, appLabels('web', 1, 'v1')));
    assert.equal(await d.createContainer(createOpts('web-r1', `${IMAGE}:v1`, appLabels('web', 1, 'v1'))), first);
    await assert.rejects(
      d.createContainer(createOpts('web-r1', `${IMAGE}:v1`, appLabels('api', 1, 'v1'))),
      (e: unknown) => e instanceof HostError && e.code === 'CONTAINER_NAME_CONFLICT',
    );
    assert.equal(d.containers().length, 1);
  });

  test('watchEvents sees create, start, die, stop and destroy; unsubscribing stops them', async () => {
    const d = new SimulatedHostDriver({ name: 'h1', images: [`${IMAGE}:v1`], latencyMs: { startContainer: 0, stopContainer: 0 }, eventLatencyMs: 0 });
    const seen: DockerEvent[] = [];
    const unwatch = d.watchEvents((e) => seen.push(e));
    const id = await d.createContainer(createOpts('web-r1', `${IMAGE}:v1`, appLabels('web', 1, 'v1')));
    await d.startContainer(id);
    await d.stopContainer(id, 0);
    await d.removeContainer(id);
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(seen.map((e) => e.action), ['create', 'start', 'die', 'stop', 'destroy']);
    assert.ok(seen.every((e) => e.app === 'web' && e.id === id));
    unwatch();
    await d.createContainer(createOpts('web-r2', `${IMAGE}:v1`, appLabels('web', 2, 'v1')));
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(seen.length, 5);
  });

  test('latency is injected; a call slower than its deadline times out; an unreachable host rejects', async () => {
    const d = new SimulatedHostDriver({ name: 'h1', latencyMs: { listContainers: 30, httpGet: 500 } });
    const t0 = performance.now();
    await d.listContainers();
    assert.ok(performance.now() - t0 >= 25, 'listContainers waited its latency');
    await assert.rejects(d.httpGet('10.0.0.1', 3000, '/health', 20), (e: unknown) => e instanceof HostError && e.code === 'HOST_TIMEOUT');
    d.setReachable(false);
    await assert.rejects(d.ping(), (e: unknown) => e instanceof HostError && e.code === 'HOST_UNREACHABLE');
    d.setReachable(true);
    assert.deepEqual(await d.ping(), { dockerVersion: 'simulated' });
    await d.close();
    await assert.rejects(d.ping(), (e: unknown) => e instanceof HostError && e.code === 'HOST_CLOSED');
  });

  test('runOnce exits 0 and leaves no container behind', async () => {
    const d = new SimulatedHostDriver({ name: 'h1', images: [`${IMAGE}:v1`] });
    const r = await d.runOnce({ name: 'web-r1-pre-deploy-0', image: `${IMAGE}:v1`, cmd: ['true'], env: {}, labels: appLabels('web', 1, 'v1'), network: 'berth', timeoutMs: 1000 });
    assert.deepEqual(r, { exitCode: 0, outputTail: '', timedOut: false });
    assert.equal(d.containers().length, 0);
  });
});

describe('Controller over simulated hosts (planner/controller behaviour, not deploy evidence)', () => {
  let store: Store | null = null;
  let controller: Controller | null = null;
  afterEach(async () => {
    await controller?.stop();
    store?.close();
    controller = null;
    store = null;
  });

  async function waitFor(s: Store, pred: (st: AppStatus) => boolean, timeoutMs = 10_000): Promise<AppStatus> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const st = s.status.readStatus('web');
      if (st && pred(st)) return st;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`timed out; last status: ${JSON.stringify(s.status.readStatus('web'))}`);
  }

  test('a v1 -> v2 rollout over 3 simulated hosts converges, start-first on every host', async () => {
    const calls: Array<SimulatedCall & { runningOnHost: number }> = [];
    const drivers = simulatedFleet(3, {
      prefix: 'h',
      latencyMs: { listContainers: 1, createContainer: 1, startContainer: 2, stopContainer: 2, pullImage: 2 },
      jitter: 0.5,
      // Record with each call how many containers run on its host (at a stop, start-first means >= 2).
      onCall: (c) => calls.push({ ...c, runningOnHost: drivers.get(c.host)!.containers().filter((x) => x.state === 'running').length }),
    });
    store = openStore(':memory:');
    const spec = makeSpec({ name: 'web', image: IMAGE, hosts: ['h1', 'h2', 'h3'] });
    store.apps.upsertApp(spec, 'test');
    store.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'test' });
    controller = new Controller({ store, drivers, traffic: directTraffic, metrics: new BerthMetrics('test', { processMetrics: false }), log: quiet, resyncIntervalMs: 60_000, secrets: NO_SECRETS });
    controller.start();

    let st = await waitFor(store, (s) => s.phase === 'Complete' && s.observedRevision === 1);
    assert.deepEqual(st.hosts.map((h) => [h.host, h.version]), [['h1', 'v1'], ['h2', 'v1'], ['h3', 'v1']]);

    store.releases.createRelease({ app: 'web', version: 'v2', reason: 'deploy', actor: 'test' });
    controller.enqueue('web');
    st = await waitFor(store, (s) => s.phase === 'Complete' && s.observedRevision === 2);
    assert.deepEqual(st.hosts.map((h) => [h.host, h.version, h.revision]), [['h1', 'v2', 2], ['h2', 'v2', 2], ['h3', 'v2', 2]]);
    await controller.idle();

    for (const [host, d] of drivers) {
      const cs = await d.listContainers({ app: 'web' });
      const running = cs.filter((c) => c.running);
      assert.deepEqual(running.map((c) => c.version), ['v2'], `${host} runs only v2`);
      assert.deepEqual(cs.filter((c) => !c.running).map((c) => c.version), ['v1'], `${host} keeps v1 stopped (retain_containers)`);
      assert.equal((await d.httpGet(running[0]!.ip!, 3000, '/', 1000)).body, 'v2');

      const onHost = calls.filter((c) => c.host === host);
      const v2Start = onHost.findIndex((c) => c.op === 'startContainer' && c.containerId === running[0]!.id);
      const v1Stop = onHost.findIndex((c) => c.op === 'stopContainer');
      assert.ok(v2Start >= 0 && v1Stop > v2Start, `${host}: v2 started before v1 stopped`);
      assert.ok(onHost[v1Stop]!.runningOnHost >= 2, `${host}: v1 was stopped while v2 already ran`);
    }
    // Hosts are updated one at a time (parallelism 1): h1's v2 starts before h2's, h2's before h3's.
    const starts = calls.filter((c) => c.op === 'createContainer' && c.image === `${IMAGE}:v2`).map((c) => c.host);
    assert.deepEqual(starts, ['h1', 'h2', 'h3']);
    const events = store.events.listEvents('web', { limit: 1000 }).map((e) => `${e.type}@${e.revision}`);
    assert.ok(events.includes('RolloutComplete@1') && events.includes('RolloutComplete@2'), events.join(' '));
    assert.ok(!events.some((e) => e.startsWith('RolloutFailed') || e.startsWith('RollbackStarted')), events.join(' '));
  });

  test('a restarted controller serves the stored rollout gauges before its first pass', async () => {
    const drivers = simulatedFleet(2, { prefix: 'h', latencyMs: { listContainers: 1 } });
    store = openStore(':memory:');
    store.apps.upsertApp(makeSpec({ name: 'web', image: IMAGE, hosts: ['h1', 'h2'] }), 'test');
    store.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'test' });
    controller = new Controller({ store, drivers, traffic: directTraffic, metrics: new BerthMetrics('test', { processMetrics: false }), log: quiet, resyncIntervalMs: 60_000, secrets: NO_SECRETS });
    controller.start();
    await waitFor(store, (s) => s.phase === 'Complete' && s.observedRevision === 1);
    await controller.stop();

    // The new daemon's hosts answer slowly: no pass of it can have finished when it is scraped.
    const slow = simulatedFleet(2, { prefix: 'h', latencyMs: { listContainers: 2_000 } });
    const metrics = new BerthMetrics('test', { processMetrics: false });
    controller = new Controller({ store, drivers: slow, traffic: directTraffic, metrics, log: quiet, resyncIntervalMs: 60_000, secrets: NO_SECRETS });
    controller.start();
    const text = await metrics.text();
    assert.match(text, /^berth_release_desired_revision\{app="web"\} 1$/m);
    assert.match(text, /^berth_release_observed_revision\{app="web"\} 1$/m);
    assert.match(text, /^berth_rollout_phase\{app="web",phase="Complete"\} 1$/m);
    assert.match(text, /^berth_rollout_hosts_updated\{app="web"\} 2$/m);
    assert.equal(store.status.readStatus('web')?.observedRevision, 1);
  });

  test('a failed pull fails the release with a RolloutFailed event carrying the registry\'s message', async () => {
    const drivers = simulatedFleet(2, { prefix: 'h', latencyMs: { listContainers: 1 } });
    const h2 = drivers.get('h2')!;
    h2.pullImage = async (ref: string) => {
      throw new HostError(HOST_ERROR_CODES.imagePullFailed, 'h2', `pull ${ref}: unauthorized: authentication required`);
    };
    store = openStore(':memory:');
    store.apps.upsertApp(makeSpec({ name: 'web', image: IMAGE, hosts: ['h1', 'h2'] }), 'test');
    store.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'test' });
    controller = new Controller({ store, drivers, traffic: directTraffic, metrics: new BerthMetrics('test', { processMetrics: false }), log: quiet, resyncIntervalMs: 60_000, secrets: NO_SECRETS });
    controller.start();
    await waitFor(store, (s) => s.phase === 'Failed');
    const failed = store.events.listEvents('web', { limit: 1000 }).filter((e) => e.type === 'RolloutFailed');
    assert.equal(failed.length, 1, JSON.stringify(store.events.listEvents('web', { limit: 1000 }).map((e) => e.type)));
    assert.equal(failed[0]!.revision, 1);
    assert.match(failed[0]!.message, /h2: .*unauthorized: authentication required/);
  });
});
