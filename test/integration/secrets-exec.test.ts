import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { AppStatus } from '../../src/domain/release.js';
import { startBedDaemonApps, type BedDaemon } from '../support/bed-daemon.js';
import { bedSkipReason, testbedCommand } from '../support/testbed.js';

/**
 * Secrets come from the app's own secrets file and reach containers through the Docker
 * API only: a canary value from the file is inside the app's containers, and nowhere
 * else: not in logs, events, API responses, /metrics, or any process's command line. A
 * hook or exec that prints it shows `[redacted:NAME]` in the stored event and the API
 * answer. The daemon's environment is no source: a variable of the same name there is
 * not what the app gets, and another app naming one of the daemon's variables gets
 * nothing (422, then a failed step naming the file). Editing the file rotates the value
 * into new containers, berth running on.
 */
const skip = bedSkipReason();
const APP = 'sec';
const CANARY = `canary-${randomBytes(12).toString('hex')}`;
/** In the daemon's environment under the app's secret's name: never what the app gets. */
const ENV_DB_PASSWORD = `env-value-${randomBytes(12).toString('hex')}`;
/** A variable of the daemon's environment (a cloud key, say) that another app names. */
const ENV_ONLY = `cloud-key-${randomBytes(12).toString('hex')}`;
/** The value of the other app's secret in ITS file. */
const THIEF_VALUE = `thief-file-${randomBytes(12).toString('hex')}`;
/** The value an operator rotates the app's secret to. */
const ROTATED = `rotated-${randomBytes(12).toString('hex')}`;
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
    daemon = await startBedDaemonApps(
      {
        [APP]: {
          healthcheck: { interval: '500ms' },
          rollout: { parallelism: 3 },
          hooks: { pre_deploy: ['test -n "$DB_PASSWORD"', 'echo "hook sees pw=$DB_PASSWORD"'] },
          env: { APP_MODE: 'test' },
          secrets: ['DB_PASSWORD'],
        },
        thief: { healthcheck: { interval: '500ms' }, rollout: { parallelism: 3 }, secrets: ['AWS_SECRET_ACCESS_KEY'] },
      },
      {
        env: { DB_PASSWORD: ENV_DB_PASSWORD, AWS_SECRET_ACCESS_KEY: ENV_ONLY, BERTH_LOG_LEVEL: 'debug' },
        secrets: { [APP]: { DB_PASSWORD: CANARY }, thief: { AWS_SECRET_ACCESS_KEY: THIEF_VALUE } },
      },
    );
  });

  type View = { status: AppStatus | null; lastFailure: { message: string } | null };
  /**
   * Deploys `version` of `app` and waits until it is Complete, or (`failed`) until the app
   * is Failed: only for an app with no release before, whose status can only be this one's.
   */
  async function deploy(app: string, version: string, failed = false): Promise<View> {
    const { body } = await daemon.request<{ revision: number }>('POST', `/v1/apps/${app}/releases`, { version });
    const deadline = Date.now() + 60_000;
    for (;;) {
      const view = (await daemon.request<View>('GET', `/v1/apps/${app}`)).body;
      const s = view.status;
      if (failed ? s?.phase === 'Failed' : s?.observedRevision === body.revision && s.phase === 'Complete') return view;
      assert.ok(Date.now() < deadline, `${app} ${version} did not ${failed ? 'fail' : 'complete'}: ${JSON.stringify(view)}`);
      await sleep(200);
    }
  }

  /** DB_PASSWORD as the running app container on `host` has it (docker inspect on the host). */
  async function runningValue(host: string): Promise<{ id: string; value: string | undefined }> {
    const running = (await daemon.drivers.get(host)!.listContainers({ app: APP })).filter((c) => c.role === 'app' && c.running);
    assert.equal(running.length, 1, `${host}: one running container of ${APP}: ${JSON.stringify(running.map((c) => c.name))}`);
    const env = testbedCommand('exec', host, 'inspect', '--format', '{{range .Config.Env}}{{println .}}{{end}}', running[0]!.id).split('\n');
    return { id: running[0]!.id, value: env.find((l) => l.startsWith('DB_PASSWORD='))?.slice('DB_PASSWORD='.length) };
  }

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

    // Inside: the app's containers see the file's value (compared by hash, so the value is never in a command).
    const hash = sha256(CANARY);
    const exec = await daemon.request<{ exitCode: number; outputTail: string; host: string }>('POST', `/v1/apps/${APP}/exec`, {
      command: 'printf %s "$DB_PASSWORD" | sha256sum; echo mode=$APP_MODE',
      host: 'h2',
    });
    assert.equal(exec.status, 200);
    assert.equal(exec.body.exitCode, 0);
    assert.equal(exec.body.host, 'h2');
    assert.match(exec.body.outputTail, new RegExp(hash));
    assert.doesNotMatch(exec.body.outputTail, new RegExp(sha256(ENV_DB_PASSWORD)), "not the daemon's variable of the same name");
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

  it("the daemon's environment is no source: a variable there that the app's file lacks is refused at PUT and fails the step, naming the file", async () => {
    // A new app naming the daemon's cloud key: 422 at its key path, naming the file it would need.
    const put = await daemon.request<{ issues: Array<{ path: string; message: string }> }>('PUT', '/v1/apps/grab', { image: daemon.bed.images.app, hosts: ['h1'], secrets: ['AWS_SECRET_ACCESS_KEY'] });
    assert.equal(put.status, 422, JSON.stringify(put.body));
    assert.deepEqual(put.body.issues.map((i) => i.path), ['body.secrets[0]']);
    assert.match(put.body.issues[0]!.message, /^secret AWS_SECRET_ACCESS_KEY is not in \/.*\/secrets\/grab\.env \(no such file\)/);
    assert.equal((await daemon.request('GET', '/v1/apps/grab')).status, 404);

    // thief names it too, and its file had it; the operator takes it out: the step fails, naming the file.
    daemon.writeSecrets('thief', {});
    const failed = await deploy('thief', 'v1', true);
    assert.match(failed.lastFailure?.message ?? '', /secret AWS_SECRET_ACCESS_KEY is not in \/.*\/secrets\/thief\.env: add a line AWS_SECRET_ACCESS_KEY=<value>/);
    for (const d of daemon.drivers.values()) assert.deepEqual((await d.listContainers({ app: 'thief' })).filter((c) => c.running), [], 'no thief container runs');
    const refused = await daemon.request<{ code: string; message: string }>('POST', '/v1/apps/thief/exec', { command: 'echo "$AWS_SECRET_ACCESS_KEY"' });
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.equal(refused.body.code, 'SECRET_MISSING');
    assert.match(refused.body.message, /^secret AWS_SECRET_ACCESS_KEY is not in \/.*\/secrets\/thief\.env: /);

    // Back in its file: a release rolls out, and the container has the file's value, not the daemon's.
    daemon.writeSecrets('thief', { AWS_SECRET_ACCESS_KEY: THIEF_VALUE });
    await deploy('thief', 'v2');
    const exec = await daemon.request<{ exitCode: number; outputTail: string }>('POST', '/v1/apps/thief/exec', { command: 'printf %s "$AWS_SECRET_ACCESS_KEY" | sha256sum' });
    assert.equal(exec.body.exitCode, 0);
    assert.match(exec.body.outputTail, new RegExp(sha256(THIEF_VALUE)));
    assert.doesNotMatch(exec.body.outputTail, new RegExp(sha256(ENV_ONLY)));

    const surfaces = [daemon.output(), JSON.stringify((await daemon.request('GET', '/v1/apps/thief/events?limit=1000')).body), JSON.stringify((await daemon.request('GET', '/v1/apps')).body)];
    for (const text of surfaces) for (const v of [ENV_ONLY, THIEF_VALUE]) assert.ok(!text.includes(v), 'no value in the log, events or API');
  });

  it('rotation: an edit of the secrets file rolls new containers with the new value on every host, berth running on', async () => {
    const hosts = [...daemon.drivers.keys()];
    const before = await Promise.all(hosts.map(runningValue));
    for (const b of before) assert.equal(b.value, CANARY);
    const revision = (await daemon.request<View>('GET', `/v1/apps/${APP}`)).body.status?.observedRevision;
    const started = Date.now();

    daemon.writeSecrets(APP, { DB_PASSWORD: ROTATED });
    const deadline = Date.now() + 60_000;
    let now = before;
    for (;;) {
      now = await Promise.all(hosts.map((h) => runningValue(h).catch(() => ({ id: '', value: undefined }))));
      const s = (await daemon.request<View>('GET', `/v1/apps/${APP}`)).body.status;
      if (now.every((c) => c.value === ROTATED) && s?.phase === 'Complete') break;
      assert.ok(Date.now() < deadline, `the rotation did not roll out: ${JSON.stringify(now.map((c) => c.value === ROTATED))} ${JSON.stringify(s)}`);
      await sleep(250);
    }
    console.log(`# rotation rolled to ${hosts.length} hosts in ${Date.now() - started} ms (resync 2 s)`);
    for (const [i, c] of now.entries()) assert.notEqual(c.id, before[i]!.id, `${hosts[i]}: a new container`);
    assert.equal((await daemon.request<View>('GET', `/v1/apps/${APP}`)).body.status?.observedRevision, revision, 'the same release: no deploy was needed');
    assert.equal(daemon.output().match(/berth is running/g)?.length, 1, 'berth was not restarted');
    const exec = await daemon.request<{ outputTail: string }>('POST', `/v1/apps/${APP}/exec`, { command: 'printf %s "$DB_PASSWORD" | sha256sum' });
    assert.match(exec.body.outputTail, new RegExp(sha256(ROTATED)));
    assert.ok(!daemon.output().includes(ROTATED), 'the new value is not logged');
  });
});
