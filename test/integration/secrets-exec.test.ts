import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { AppStatus } from '../../src/domain/release.js';
import { startBedDaemon, type BedDaemon } from '../support/bed-daemon.js';
import { bedSkipReason } from '../support/testbed.js';

/**
 * Secrets reach containers through the Docker API only: a canary value from the
 * daemon's environment is inside the app's containers, and nowhere else: not in
 * logs, events, API responses, /metrics, or any process's command line. A hook or
 * exec that prints it shows `[redacted:NAME]` in the stored event and the API answer.
 */
const skip = bedSkipReason();
const APP = 'sec';
const CANARY = `canary-${randomBytes(12).toString('hex')}`;

function commandLinesContaining(needle: string): string[] {
  const hits: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.includes(needle)) hits.push(`${pid}: ${cmd.replace(/\0/g, ' ')}`);
    } catch {
      // The process ended meanwhile.
    }
  }
  return hits;
}

describe('secrets and berth exec', { skip, concurrency: false }, () => {
  let daemon: BedDaemon;

  before(async () => {
    daemon = await startBedDaemon(
      APP,
      {
        healthcheck: { interval: '500ms' },
        rollout: { parallelism: 3 },
        hooks: { pre_deploy: ['test -n "$DB_PASSWORD"', 'echo "hook sees pw=$DB_PASSWORD"'] },
        env: { APP_MODE: 'test' },
        secrets: ['DB_PASSWORD'],
      },
      { env: { DB_PASSWORD: CANARY, BERTH_LOG_LEVEL: 'debug' } },
    );
  });

  after(async () => {
    await daemon?.close();
  });

  it('the secret is in the containers and in no log, event, API response, metric or command line', async () => {
    const { body } = await daemon.request<{ revision: number }>('POST', `/v1/apps/${APP}/releases`, { version: 'v1' });
    const deadline = Date.now() + 60_000;
    for (;;) {
      const view = (await daemon.request<{ status: AppStatus | null }>('GET', `/v1/apps/${APP}`)).body;
      if (view.status?.observedRevision === body.revision && view.status.phase === 'Complete') break;
      assert.ok(Date.now() < deadline, `rollout did not complete: ${JSON.stringify(view.status)}`);
      await new Promise((r) => setTimeout(r, 200));
    }

    // Inside: the app's containers see it (compared by hash, so the value is never in a command).
    const hash = createHash('sha256').update(CANARY).digest('hex');
    const exec = await daemon.request<{ exitCode: number; outputTail: string; host: string }>('POST', `/v1/apps/${APP}/exec`, {
      command: 'printf %s "$DB_PASSWORD" | sha256sum; echo mode=$APP_MODE',
      host: 'h2',
    });
    assert.equal(exec.status, 200);
    assert.equal(exec.body.exitCode, 0);
    assert.equal(exec.body.host, 'h2');
    assert.match(exec.body.outputTail, new RegExp(hash));
    assert.match(exec.body.outputTail, /mode=test/);

    // Printed on purpose, by a hook and by exec: redacted in the stored event and in the API answer.
    const printed = await daemon.request<{ exitCode: number; outputTail: string }>('POST', `/v1/apps/${APP}/exec`, { command: 'echo "exec sees pw=$DB_PASSWORD"; echo "twice: $DB_PASSWORD$DB_PASSWORD"' });
    assert.equal(printed.body.exitCode, 0);
    assert.equal(printed.body.outputTail, 'exec sees pw=[redacted:DB_PASSWORD]\ntwice: [redacted:DB_PASSWORD][redacted:DB_PASSWORD]\n');
    const hookEvents = (await daemon.request<{ events: Array<{ type: string; message: string }> }>('GET', `/v1/apps/${APP}/events?limit=1000`)).body.events.filter((e) => e.type === 'HookOutput');
    assert.ok(
      hookEvents.some((e) => e.message.includes('hook sees pw=[redacted:DB_PASSWORD]')),
      `the pre_deploy output is stored redacted: ${JSON.stringify(hookEvents)}`,
    );

    // Outside: nowhere.
    const surfaces: Record<string, string> = {
      'daemon log': daemon.output(),
      events: JSON.stringify((await daemon.request('GET', `/v1/apps/${APP}/events?limit=1000`)).body),
      'app view': JSON.stringify((await daemon.request('GET', `/v1/apps/${APP}`)).body),
      releases: JSON.stringify((await daemon.request('GET', `/v1/apps/${APP}/releases`)).body),
      hosts: JSON.stringify((await daemon.request('GET', '/v1/hosts')).body),
      metrics: await fetch(`${daemon.url}/metrics`).then((r) => r.text()),
      exec: JSON.stringify(exec.body),
      'exec that printed it': JSON.stringify(printed.body),
    };
    for (const [where, text] of Object.entries(surfaces)) assert.ok(!text.includes(CANARY), `the secret leaked into ${where}`);
    assert.deepEqual(commandLinesContaining(CANARY), [], 'no process on this machine (hosts included) has the secret on its command line');
    assert.ok(daemon.output().length > 1000, 'the daemon did log (debug level)');
  });

  it('berth exec: exit code and output of a one-off command; a failing command reports its code', async () => {
    const ok = await daemon.request<{ exitCode: number; outputTail: string; version: string }>('POST', `/v1/apps/${APP}/exec`, { command: 'cat /www/cgi-bin/version >/dev/null; echo hello from $VERSION' });
    assert.equal(ok.body.exitCode, 0);
    assert.equal(ok.body.version, 'v1');
    assert.match(ok.body.outputTail, /hello from v1/);
    const bad = await daemon.request<{ exitCode: number }>('POST', `/v1/apps/${APP}/exec`, { command: 'exit 7' });
    assert.equal(bad.body.exitCode, 7);
    const wrongHost = await daemon.request<{ message: string }>('POST', `/v1/apps/${APP}/exec`, { command: 'true', host: 'h9' });
    assert.equal(wrongHost.status, 409);
    assert.match(wrongHost.body.message, /host "h9" does not run app "sec"/);
    // No exec container is left behind.
    for (const d of daemon.drivers.values()) assert.equal((await d.listContainers({ app: APP })).filter((c) => c.role === 'hook').length, 0);
  });
});
