import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ContainerHealthcheckSpec } from '../../src/domain/app-spec.js';
import { LABELS } from '../../src/domain/labels.js';
import { SimulatedHostDriver } from '../../src/hosts/simulated-driver.js';
import { waitContainerHealthy } from '../../src/reconciler/health.js';

/**
 * A process without a proxy (a worker): healthy by its health command, or by running
 * min_healthy without a restart. Against the simulated host (exec and RestartCount
 * modelled); the real Docker exec runs in test/integration/processes.test.ts.
 */
const IMAGE = '10.77.0.1:5000/app:v1';

async function running(exec?: ConstructorParameters<typeof SimulatedHostDriver>[0]['execHandler']) {
  const driver = new SimulatedHostDriver({ name: 'h1', images: [IMAGE], latencyMs: {}, ...(exec ? { execHandler: exec } : {}) });
  await driver.ensureNetwork('berth');
  const id = await driver.createContainer({ name: 'app-worker-r1', image: IMAGE, env: {}, labels: { [LABELS.app]: 'app' }, network: 'berth', init: true });
  await driver.startContainer(id);
  return { driver, id };
}

const check = (o: Partial<ContainerHealthcheckSpec>): ContainerHealthcheckSpec => ({ cmd: null, intervalMs: 50, timeoutMs: 1_000, maxAttempts: 3, minHealthyMs: 300, ...o });

describe('container health (processes without a proxy)', () => {
  it('without cmd: healthy once it ran min_healthy, not before', async () => {
    const { driver, id } = await running();
    const started = Date.now();
    const outcome = await waitContainerHealthy(driver, id, check({ minHealthyMs: 300 }));
    assert.equal(outcome.ok, true);
    assert.ok(Date.now() - started >= 300, `promoted after ${Date.now() - started} ms`);
    assert.match(outcome.detail, /^ran 0\.\ds without a restart$/);
  });

  it('without cmd: a restart inside min_healthy (the restart policy hid a crash) fails at once', async () => {
    const { driver, id } = await running();
    setTimeout(() => driver.crash(id), 100);
    const started = Date.now();
    const outcome = await waitContainerHealthy(driver, id, check({ minHealthyMs: 5_000 }));
    assert.equal(outcome.ok, false);
    assert.equal(outcome.lastError, 'the container restarted (RestartCount 0 -> 1)');
    assert.ok(Date.now() - started < 2_000, 'not after min_healthy');
  });

  it('with cmd: exec until exit 0, each failing answer said', async () => {
    let calls = 0;
    const seen: string[][] = [];
    const { driver, id } = await running((_c, cmd) => {
      seen.push(cmd);
      calls += 1;
      return calls < 3 ? { exitCode: 1, outputTail: 'not ready\n' } : { exitCode: 0, outputTail: '' };
    });
    const details: string[] = [];
    const outcome = await waitContainerHealthy(driver, id, check({ cmd: ['sh', '-c', 'test -f /tmp/ready'], minHealthyMs: 0 }), { onAttempt: (ok, d) => details.push(`${ok} ${d}`) });
    assert.deepEqual([outcome.ok, outcome.attempts], [true, 3]);
    assert.deepEqual(seen[0], ['sh', '-c', 'test -f /tmp/ready']);
    assert.deepEqual(details, ['false test -f /tmp/ready -> exit 1: not ready', 'false test -f /tmp/ready -> exit 1: not ready', 'true test -f /tmp/ready -> exit 0']);
  });

  it('with cmd: max_attempts failures fail the check with the last answer', async () => {
    const { driver, id } = await running(() => ({ exitCode: 2, outputTail: 'queue unreachable' }));
    const outcome = await waitContainerHealthy(driver, id, check({ cmd: ['bin/check'], maxAttempts: 2, minHealthyMs: 0 }));
    assert.deepEqual(outcome, { ok: false, attempts: 2, lastError: 'bin/check -> exit 2: queue unreachable', detail: 'bin/check -> exit 2: queue unreachable' });
  });

  it('a container that is not running is no health failure: attempts 0 (the executor fails the start)', async () => {
    const { driver, id } = await running();
    await driver.stopContainer(id, 0);
    const outcome = await waitContainerHealthy(driver, id, check({}));
    assert.deepEqual([outcome.ok, outcome.attempts, outcome.lastError], [false, 0, 'the container is exited']);
  });
});
