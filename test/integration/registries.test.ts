import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { bedApp, type BedApp } from '../support/bed-app.js';
import { startBedDaemon, type BedDaemon } from '../support/bed-daemon.js';
import { bedSkipReason, requireTestbed, testbedCommand, type Testbed } from '../support/testbed.js';
import { waitUntil } from '../support/wait.js';

/**
 * A private registry (the bed's second registry, htpasswd auth: docs/testbed.md) through a
 * real daemon on three real hosts (issue #14, item 1). With the password of `registries:` in
 * the registries file, every host pulls the app from it. With a wrong one, the release fails
 * before any host changes: the same containers keep serving the same answers, no container of
 * the release was made, and the failure carries the registry's message. The password (right or
 * wrong) is in no log line, event or API answer. Fixed in the file, the next pull (a one-off
 * exec, then a release) uses it, berth running on.
 */
const skip = bedSkipReason();
const APP = 'priv';
const PORT = 8211;
const PASSWORD_NAME = 'LAN_REGISTRY_PASSWORD';
const WRONG = `wrong-${randomBytes(12).toString('hex')}`;

describe('a private registry on the test hosts', { skip, concurrency: false }, () => {
  let d: BedDaemon;
  let app: BedApp;
  let registry: NonNullable<Testbed['privateRegistry']>;
  let image: string;

  /** Untags the app's private-registry images on every host, so that each release pulls (the layers may stay: the manifest still needs the registry). */
  function removeImages(): void {
    for (const h of d.bed.hosts.slice(0, 3)) {
      const refs = testbedCommand('exec', h.name, 'image', 'ls', '--format', '{{.Repository}}:{{.Tag}}', '--filter', `reference=${image}`).split('\n').filter((l) => l.startsWith(`${image}:`));
      if (refs.length > 0) testbedCommand('exec', h.name, 'rmi', ...refs);
    }
  }

  /** Each host's running app containers: `id image`. */
  async function running(): Promise<Record<string, string[]>> {
    const out: Record<string, string[]> = {};
    for (const [h, cs] of Object.entries(await app.containers())) out[h] = cs.filter((c) => c.running).map((c) => `${c.id} ${c.image}`);
    return out;
  }

  before(async () => {
    const bed = requireTestbed();
    if (!bed.privateRegistry) throw new Error(`${bed.dir}/testbed.json has no privateRegistry: the bed is from before it; bring it up again (test/hosts/testbed down; test/hosts/testbed up 3)`);
    registry = bed.privateRegistry;
    image = `${registry.address}/app`;
    d = await startBedDaemon(
      APP,
      {
        image,
        port: 3000,
        healthcheck: { interval: '300ms', timeout: '1s', max_attempts: 20 },
        rollout: { parallelism: 1 },
        proxy: { port: PORT, drain_timeout: '2s' },
      },
      {
        bed,
        env: { BERTH_LOG_LEVEL: 'debug' },
        config: { registries: { [registry.address]: { username: registry.username, password: PASSWORD_NAME } } },
        registryPasswords: { [PASSWORD_NAME]: registry.password },
      },
    );
    app = bedApp(d, APP, { proxyPort: PORT });
    removeImages();
  });

  after(async () => {
    await d?.close();
  });

  it('with the credentials, every host pulls the app from the private registry and serves it', async () => {
    const revision = await app.deploy('v1');
    const view = await app.settled(revision);
    assert.equal(view.status?.phase, 'Complete', await app.story(revision));
    assert.deepEqual(await app.served(), { h1: 'v1', h2: 'v1', h3: 'v1' });
    for (const [h, cs] of Object.entries(await running())) assert.match(cs.join(), new RegExp(` ${image}:v1$`), `${h} runs the private registry's image`);
  });

  it('a wrong password fails the release before any host changes, with the registry\'s message', async () => {
    const before = await running();
    d.writeRegistryPasswords({ [PASSWORD_NAME]: WRONG });
    const revision = await app.deploy('v2');
    // This release's failure: a failed pull ends a release in the executor's results, which add
    // no event (src/reconciler/results.ts), so the status says it, naming v2's image.
    const view = await waitUntil(`revision ${revision} to fail`, async () => {
      const v = await app.view();
      return v.status?.phase === 'Failed' && v.status.conditions.some((c) => c.type === 'Progressing' && c.message.includes(`pull of ${image}:v2 `)) ? v : null;
    }, { timeoutMs: 60_000, describe: async () => `${JSON.stringify((await app.view()).status)}\n${await app.story(revision)}` });
    const story = await app.story(revision);
    const progressing = view.status?.conditions.find((c) => c.type === 'Progressing');
    assert.equal(progressing?.reason, 'ImagePullFailed', story);
    assert.match(progressing?.message ?? '', new RegExp(`pull of ${image}:v2 failed: .*(unauthorized|authentication required).*\\(sent the credentials of ${registry.username} for ${registry.address}\\)`), story);

    assert.deepEqual(await running(), before, 'the same containers run on every host');
    assert.deepEqual(await app.served(), { h1: 'v1', h2: 'v1', h3: 'v1' }, 'and serve the same answers');
    for (const [h, cs] of Object.entries(await app.containers())) assert.deepEqual(cs.filter((c) => c.version === 'v2').map((c) => c.name), [], `${h}: no container of v2 was made`);
    const steps = (await app.events()).filter((e) => e.revision === revision && ['ContainerStarted', 'HealthCheckPassed', 'TrafficSwitched', 'ContainerStopped', 'RollbackStarted'].includes(e.type));
    assert.deepEqual(steps, [], 'no host step and no rollback');
    assert.equal((await app.view()).desired?.revision, revision, 'no rollback release: nothing to undo');

    // berth exec runs a one-off container of the desired release (v2): its pull is refused the same way.
    const exec = await d.request<{ code: string; message: string }>('POST', `/v1/apps/${APP}/exec`, { command: 'echo "$VERSION"', host: 'h1' });
    assert.notEqual(exec.status, 200, JSON.stringify(exec.body));
    assert.equal(exec.body.code, 'IMAGE_PULL_FAILED', JSON.stringify(exec.body));
    assert.match(exec.body.message, /unauthorized|authentication required/);
  });

  it('the password, right or wrong, is in no log line, event or API answer', async () => {
    const surfaces: Record<string, string> = {
      'daemon log': d.output(),
      events: JSON.stringify((await d.request('GET', `/v1/apps/${APP}/events?limit=1000`)).body),
      'app view': JSON.stringify((await d.request('GET', `/v1/apps/${APP}`)).body),
      apps: JSON.stringify((await d.request('GET', '/v1/apps')).body),
      releases: JSON.stringify((await d.request('GET', `/v1/apps/${APP}/releases`)).body),
      hosts: JSON.stringify((await d.request('GET', '/v1/hosts')).body),
      reload: JSON.stringify((await d.request('POST', '/v1/reload')).body),
      metrics: await fetch(`${d.url}/metrics`).then((r) => r.text()),
    };
    for (const [where, text] of Object.entries(surfaces)) {
      assert.ok(!text.includes(registry.password), `the password leaked into ${where}`);
      assert.ok(!text.includes(WRONG), `the wrong password leaked into ${where}`);
    }
    assert.match(surfaces['daemon log']!, /step failed/, 'the failed pulls were logged (debug level)');
  });

  it('the password put right in the file: the next pull uses it (a one-off exec, then a release), berth running on', async () => {
    d.writeRegistryPasswords({ [PASSWORD_NAME]: registry.password });
    const exec = await d.request<{ exitCode: number; outputTail: string }>('POST', `/v1/apps/${APP}/exec`, { command: 'echo "$VERSION"', host: 'h2' });
    assert.equal(exec.status, 200, JSON.stringify(exec.body));
    assert.equal(exec.body.outputTail.trim(), 'v2');
    const revision = await app.deploy('v3');
    // Not app.settled: until the controller picks v3 up, the status is still v2's Failed.
    await waitUntil(`revision ${revision} complete`, async () => {
      const s = (await app.view()).status;
      return s?.phase === 'Complete' && s.observedRevision === revision ? true : null;
    }, { timeoutMs: 60_000, describe: () => app.story(revision) });
    assert.deepEqual(await app.served(), { h1: 'v3', h2: 'v3', h3: 'v3' });
    assert.equal(d.output().match(/berth is running/g)?.length, 1, 'berth was not restarted');
  });
});
