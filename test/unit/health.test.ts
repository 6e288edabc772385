import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HostError } from '../../src/domain/errors.js';
import type { HostDriver, HttpResult } from '../../src/hosts/host-driver.js';
import { STARTUP_POLL_MS, waitHealthy } from '../../src/reconciler/health.js';

/**
 * The probe schedule, against a scripted container (only httpGet/ping are used: this
 * tests berth's timing rules, not a host; real probes run in the integration tests).
 */
type Answer = number | 'refused';

function scripted(answerAt: (msSinceStart: number, probe: number) => Answer) {
  const start = Date.now();
  const probes: number[] = [];
  const driver = {
    async httpGet(): Promise<HttpResult> {
      const t = Date.now() - start;
      probes.push(t);
      const a = answerAt(t, probes.length);
      if (a === 'refused') throw new HostError('HTTP_FAILED', 'h1', 'GET http://172.18.0.2:3000/health failed (ECONNREFUSED)');
      return { status: a, body: '' };
    },
    async ping() {
      return { dockerVersion: 'test' };
    },
  } as unknown as HostDriver;
  return { driver, probes };
}

const hc = (o: Partial<{ intervalMs: number; maxAttempts: number; minHealthyMs: number }> = {}) => ({
  path: '/health',
  port: 3000,
  timeoutMs: 500,
  intervalMs: 400,
  maxAttempts: 3,
  minHealthyMs: 0,
  ...o,
});

describe('health checks', () => {
  it('passes on the first probe when the app is already up', async () => {
    const { driver, probes } = scripted(() => 200);
    const r = await waitHealthy(driver, '172.18.0.2', hc());
    assert.deepEqual(r, { ok: true, attempts: 1, lastError: null });
    assert.equal(probes.length, 1);
  });

  it('a just-started app that is not listening yet is re-probed quickly within the first interval', async () => {
    const { driver, probes } = scripted((t) => (t < 150 ? 'refused' : 200));
    const t0 = Date.now();
    const r = await waitHealthy(driver, '172.18.0.2', hc({ intervalMs: 1000 }));
    const took = Date.now() - t0;
    assert.equal(r.ok, true);
    assert.equal(r.attempts, 1, 'the startup polls are one attempt');
    assert.ok(took < 400, `promoted ${took} ms after start, not a whole interval later`);
    assert.ok(probes.length >= 2 && probes.length <= Math.ceil(400 / STARTUP_POLL_MS) + 1);
  });

  it('an app that answers with an error is judged at the normal interval, up to max_attempts', async () => {
    const { driver, probes } = scripted(() => 500);
    const r = await waitHealthy(driver, '172.18.0.2', hc({ intervalMs: 200, maxAttempts: 3 }));
    assert.equal(r.ok, false);
    assert.equal(r.attempts, 3);
    assert.match(r.lastError ?? '', /-> 500/);
    assert.equal(probes.length, 3);
    assert.ok(probes[1]! - probes[0]! >= 180 && probes[2]! - probes[1]! >= 180, `spaced by the interval: ${probes.join(', ')}`);
  });

  it('a failing answer\'s detail keeps the start of its body (the probe\'s output), whitespace folded', async () => {
    const driver = {
      async httpGet(): Promise<HttpResult> {
        return { status: 503, body: `database\n  unreachable ${'x'.repeat(500)}` };
      },
    } as unknown as HostDriver;
    const r = await waitHealthy(driver, '172.18.0.2', hc({ intervalMs: 10, maxAttempts: 1 }));
    assert.equal(r.lastError, `GET /health -> 503: database unreachable ${'x'.repeat(200 - 'database unreachable '.length)}`);
  });

  it('a container that never listens fails after max_attempts', async () => {
    const { driver } = scripted(() => 'refused');
    const r = await waitHealthy(driver, '172.18.0.2', hc({ intervalMs: 250, maxAttempts: 2 }));
    assert.equal(r.ok, false);
    assert.equal(r.attempts, 2);
    assert.match(r.lastError ?? '', /ECONNREFUSED/);
  });

  it('min_healthy: a version that fails inside the soak window is not promoted', async () => {
    const { driver } = scripted((_t, n) => (n <= 2 ? 200 : 503));
    const r = await waitHealthy(driver, '172.18.0.2', hc({ intervalMs: 100, maxAttempts: 10, minHealthyMs: 1000 }));
    assert.equal(r.ok, false);
    assert.match(r.lastError ?? '', /min_healthy/);
  });

  it('min_healthy: a version that keeps passing for the whole window is promoted', async () => {
    const { driver, probes } = scripted(() => 200);
    const r = await waitHealthy(driver, '172.18.0.2', hc({ intervalMs: 100, minHealthyMs: 300 }));
    assert.equal(r.ok, true);
    assert.ok(probes.length >= 4, `kept probing through the soak (${probes.length} probes)`);
  });
});
