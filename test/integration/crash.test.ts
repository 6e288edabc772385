import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { AppStatus, BerthEvent } from '../../src/domain/release.js';
import { appStory } from '../support/bed-app.js';
import { startBedDaemon, type BedDaemon } from '../support/bed-daemon.js';
import { bedNetworkView, bedSkipReason } from '../support/testbed.js';
import { waitUntil } from '../support/wait.js';

/**
 * kill -9 of a real daemon process in the middle of a rollout, at several moments,
 * then restart: it must converge to the desired release with no duplicate and no
 * orphaned container.
 */
const skip = bedSkipReason();
const APP = 'crash';

type AppView = { status: AppStatus | null; desired: { revision: number } | null };

describe('controller crash mid-rollout', { skip, concurrency: false }, () => {
  let daemon: BedDaemon;

  before(async () => {
    daemon = await startBedDaemon(APP, {
      port: 3000,
      healthcheck: { interval: '1s', max_attempts: 10 },
      rollout: { parallelism: 1 },
      hooks: { pre_deploy: ['echo migrate $VERSION'] },
      retain_containers: 2,
    });
  });

  after(async () => {
    await daemon?.close();
  });

  const converged = (revision: number) =>
    waitUntil(`revision ${revision} converged`, async () => {
      const { body } = await daemon.request<AppView>('GET', `/v1/apps/${APP}`).catch(() => ({ body: null }));
      const s = body?.status;
      return s && s.observedRevision === revision && (s.phase === 'Complete' || s.phase === 'RolledBack') ? s : null;
    }, { timeoutMs: 90_000, describe: async () => `${await appStory(daemon, APP, revision)}\n${bedNetworkView(daemon.bed)}` });


  const sawEvent = (revision: number, type: string, host?: string) =>
    waitUntil(`${type}${host ? ` on ${host}` : ''}`, async () => {
      const { body } = await daemon.request<{ events: BerthEvent[] }>('GET', `/v1/apps/${APP}/events?limit=1000`);
      return body.events.find((e) => e.revision === revision && e.type === type && (!host || e.host === host)) ?? null;
    }, { timeoutMs: 60_000, pollMs: 50 });

  async function assertFleet(version: string, revision: number): Promise<void> {
    for (const [host, d] of daemon.drivers) {
      const cs = await d.listContainers({ app: APP });
      const apps = cs.filter((c) => c.role === 'app');
      const running = apps.filter((c) => c.running);
      assert.equal(running.length, 1, `${host}: exactly one running container (${running.map((c) => c.name).join(', ')})`);
      assert.equal(running[0]!.version, version, `${host} runs ${version}`);
      const body = (await d.httpGet(running[0]!.ip!, 3000, '/', 3000)).body.trim();
      assert.equal(body, version, `${host} serves ${version}`);
      assert.equal(new Set(apps.map((c) => c.revision)).size, apps.length, `${host}: no duplicate container per revision`);
      assert.ok(apps.length <= 3, `${host}: pruned to retain_containers (${apps.length})`);
      assert.equal(cs.filter((c) => c.role === 'hook').length, 0, `${host}: no orphaned hook container`);
    }
    const hooks = (await daemon.request<{ events: BerthEvent[] }>('GET', `/v1/apps/${APP}/events?limit=1000`)).body.events.filter(
      (e) => e.revision === revision && e.type === 'HookOutput' && / exit 0/.test(e.message),
    );
    assert.ok(hooks.length >= 1, 'the pre_deploy hook ran');
  }

  it('converges after kill -9 at each step of a rollout', async () => {
    const first = await daemon.request<{ revision: number }>('POST', `/v1/apps/${APP}/releases`, { version: 'v1' });
    await converged(first.body.revision);

    const killPoints: Array<[string, string | undefined, number]> = [
      ['NewReleaseCreated', undefined, 0], // pulling
      ['HookOutput', 'h1', 0], // right after the hook, before any host
      ['ContainerStarted', 'h1', 0], // health checking h1
      ['TrafficSwitched', 'h1', 0], // retiring h1's old container / starting h2
      ['ContainerStarted', 'h2', 300], // mid health check h2
      ['TrafficSwitched', 'h3', 0], // final retire / prune
    ];
    const versions = ['v2', 'v3'];
    let i = 0;
    for (const [type, host, extraMs] of killPoints) {
      const version = versions[i++ % versions.length]!;
      const { body } = await daemon.request<{ revision: number }>('POST', `/v1/apps/${APP}/releases`, { version });
      await sawEvent(body.revision, type, host);
      if (extraMs) await new Promise((r) => setTimeout(r, extraMs));
      await daemon.kill9();
      await daemon.restart();
      await converged(body.revision);
      await assertFleet(version, body.revision);
      console.log(`# kill -9 after ${type}${host ? `:${host}` : ''} -> converged on ${version} (revision ${body.revision})`);
    }
  });
});
