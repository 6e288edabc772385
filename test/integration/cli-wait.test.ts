import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { startBedDaemon, type BedDaemon } from '../support/bed-daemon.js';
import { TOKEN } from '../support/daemon.js';
import { bedSkipReason } from '../support/testbed.js';

/** `berth deploy --wait` against a real daemon on the test hosts: live per-host progress, exit code. */
const skip = bedSkipReason();
const APP = 'cliw';
const ROOT = new URL('../../', import.meta.url).pathname;

describe('berth deploy --wait', { skip, concurrency: false }, () => {
  let daemon: BedDaemon;

  const cli = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/bin.ts', ...args], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, BERTH_URL: daemon.url, BERTH_TOKEN: TOKEN },
    });

  before(async () => {
    daemon = await startBedDaemon(APP, { healthcheck: { interval: '500ms', max_attempts: 3 } });
  });

  after(async () => {
    await daemon?.close();
  });

  it('follows a rollout host by host and exits 0 when it completes', () => {
    const r = cli('deploy', APP, 'v1', '--wait');
    assert.equal(r.status, 0, r.stderr + r.stdout);
    for (const h of ['h1', 'h2', 'h3']) assert.match(r.stdout, new RegExp(`${h}\\s+TrafficSwitched`), `progress line for ${h}`);
    assert.match(r.stdout, /cliw: Complete/);
  });

  it('exits 1 when the release fails (and says it was rolled back)', () => {
    const r = cli('deploy', APP, 'broken', '--wait');
    assert.equal(r.status, 1, r.stdout);
    assert.match(r.stdout, /HealthCheckAttemptFailed/);
    assert.match(r.stdout, /RolloutFailed/);
    assert.match(r.stdout, /RollbackStarted/);
  });
});
