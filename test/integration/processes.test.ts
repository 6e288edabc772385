import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AppStatus, BerthEvent as EventRecord } from '../../src/domain/release.js';
import type { ObservedContainer } from '../../src/hosts/host-driver.js';
import { startBedDaemon, type BedDaemon } from '../support/bed-daemon.js';
import { bedSkipReason, testbedCommand } from '../support/testbed.js';
import { waitUntil } from '../support/wait.js';

/**
 * Processes (issue 14, item 3) on the three real hosts: one app, one image, one release,
 * two processes. `web` serves through the proxy on h1 and h2 (HTTP health); `worker` runs
 * its own cmd on h3, without a proxy, healthy when its health command (Docker exec in its
 * container) exits 0. A release moves both, a rollback moves both back, a release whose
 * worker cannot start fails and rolls both back. The worker keeps a log in a named volume:
 * what v1 wrote, v2 reads, and it survives the rollback; a host directory is mounted
 * read-only into every container of the app.
 */
const skip = bedSkipReason();
const APP = 'procs';
const PORT = 8084;
const VOLUME = 'berth-test-procs';
/**
 * The worker: refuses to run as v3 (a release whose worker crashes); else copies the log
 * the volume holds (what earlier versions wrote) to seen-by-VERSION, appends its version,
 * and stays up. Its health command looks for seen-by-VERSION.
 */
const WORKER_CMD = `sh -c 'test "$VERSION" = v3 && exit 3; cat /data/worker.log > /data/seen-by-$VERSION 2>/dev/null; echo $VERSION >> /data/worker.log; exec sleep 86400'`;

type AppView = { status: AppStatus | null };

describe('processes on real hosts', { skip, concurrency: false }, () => {
  let d: BedDaemon;
  let bindDir: string;
  let web: string[];

  const get = (addr: string, path: string) =>
    new Promise<string>((resolve, reject) => {
      http
        .get(`http://${addr}:${PORT}${path}`, { agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve(`${res.statusCode} ${body.trim()}`));
        })
        .on('error', reject);
    });

  const status = async () => (await d.request<AppView>('GET', `/v1/apps/${APP}`)).body.status;

  /** Asks for a release and waits until the app has settled on `settled` (the revision asked for, unless a rollback follows it). */
  async function release(path: string, body: unknown, settled: (asked: number, s: AppStatus) => boolean): Promise<number> {
    const r = await d.request<{ revision: number }>('POST', `/v1/apps/${APP}/${path}`, body);
    assert.equal(r.status, 202, JSON.stringify(r.body));
    await waitUntil(`revision ${r.body.revision} settled`, async () => {
      const s = await status();
      return s && (s.phase === 'Complete' || s.phase === 'RolledBack') && settled(r.body.revision, s) ? true : null;
    }, { timeoutMs: 120_000, describe: async () => JSON.stringify(await status()) });
    return r.body.revision;
  }
  const converged = (asked: number, s: AppStatus) => s.observedRevision === asked;

  /** The app's running containers on `host`, as Docker lists them. */
  async function runningOn(host: string): Promise<ObservedContainer[]> {
    return (await d.drivers.get(host)!.listContainers({ app: APP })).filter((c) => c.running && c.role === 'app');
  }

  /** The one running container on each host: [name, version] by host. */
  async function layout(): Promise<Record<string, Array<[string, string]>>> {
    const out: Record<string, Array<[string, string]>> = {};
    for (const host of ['h1', 'h2', 'h3']) out[host] = (await runningOn(host)).map((c) => [c.name, c.version]);
    return out;
  }

  const docker = (host: string, ...args: string[]) => testbedCommand('exec', host, ...args).trim();
  const workerId = async () => {
    const [c] = await runningOn('h3');
    assert.ok(c, 'h3 runs the worker');
    return c.id;
  };

  before(async () => {
    // The bed's hosts share this machine's filesystem (only network and UTS are their own).
    bindDir = mkdtempSync(join(tmpdir(), 'berth-procs-'));
    writeFileSync(join(bindDir, 'motd'), 'from the host\n');
    d = await startBedDaemon(APP, {
      hosts: ['h1', 'h2'],
      port: 3000,
      healthcheck: { interval: '300ms', timeout: '1s', max_attempts: 20 },
      rollout: { parallelism: 3 },
      volumes: [`${VOLUME}:/data`, `${bindDir}:/www/conf:ro`],
      processes: {
        web: { proxy: { port: PORT, drain_timeout: '2s' } },
        worker: { hosts: ['h3'], cmd: WORKER_CMD, stop_timeout: '2s', healthcheck: { cmd: 'test -f /data/seen-by-$VERSION', interval: '300ms', max_attempts: 20 } },
      },
    });
    web = d.bed.hosts.slice(0, 2).map((h) => h.address);
    removeVolume();
  });

  /** The named volume off every host (a run cut short may have left it, with its data). */
  const removeVolume = () => {
    for (const host of ['h1', 'h2', 'h3']) {
      try {
        docker(host, 'volume', 'rm', '-f', VOLUME);
      } catch {
        /* the bed may be gone; its down removes volumes too */
      }
    }
  };

  after(async () => {
    await d?.close();
    removeVolume();
    if (bindDir) rmSync(bindDir, { recursive: true, force: true });
  });

  it('v1: web serves through the proxy on h1 and h2, the worker runs its cmd on h3 only; status and events name the units', async () => {
    await release('releases', { version: 'v1' }, converged);
    assert.deepEqual(await layout(), { h1: [['procs-web-r1', 'v1']], h2: [['procs-web-r1', 'v1']], h3: [['procs-worker-r1', 'v1']] });
    for (const addr of web) {
      assert.equal(await get(addr, '/'), '200 v1', `${addr}: web through the proxy`);
      assert.equal(await get(addr, '/conf/motd'), '200 from the host', `${addr}: the host directory`);
    }
    const id = await workerId();
    assert.equal(docker('h3', 'inspect', '--format', '{{json .Config.Cmd}} {{index .Config.Labels "berth.process"}}', id), `${JSON.stringify(['sh', '-c', WORKER_CMD.slice("sh -c '".length, -1)])} worker`);
    assert.equal(docker('h3', 'exec', id, 'cat', '/data/worker.log'), 'v1');
    assert.throws(() => docker('h3', 'exec', id, 'touch', '/www/conf/x'), /Read-only file system/, "the worker sees the host directory read-only");
    assert.equal(docker('h1', 'inspect', '--format', '{{index .Config.Labels "berth.process"}}', (await runningOn('h1'))[0]!.id), 'web');
    const s = (await status())!;
    assert.deepEqual(s.hosts.map((h) => [h.host, h.process, h.version, h.health]), [['web@h1', 'web', 'v1', 'healthy'], ['web@h2', 'web', 'v1', 'healthy'], ['worker@h3', 'worker', 'v1', 'healthy']]);
    const events = (await d.request<{ events: EventRecord[] }>('GET', `/v1/apps/${APP}/events?limit=1000`)).body.events;
    assert.ok(events.some((e) => e.host === 'worker@h3' && e.type === 'HealthCheckPassed'), 'the worker passed its health command');
    assert.ok(events.some((e) => e.host === 'web@h1' && e.type === 'TrafficSwitched'));
    assert.ok(!events.some((e) => e.host === 'worker@h3' && e.type === 'TrafficSwitched'), 'no traffic to move for the worker');
  });

  it("v2 moves both processes; v2's worker read what v1's wrote in the volume", async () => {
    await release('releases', { version: 'v2' }, converged);
    assert.deepEqual(await layout(), { h1: [['procs-web-r2', 'v2']], h2: [['procs-web-r2', 'v2']], h3: [['procs-worker-r2', 'v2']] });
    for (const addr of web) assert.equal(await get(addr, '/'), '200 v2', addr);
    const id = await workerId();
    assert.equal(docker('h3', 'exec', id, 'cat', '/data/seen-by-v2'), 'v1', "v2's worker read v1's line");
    assert.equal(docker('h3', 'exec', id, 'cat', '/data/worker.log'), 'v1\nv2');
  });

  it('a rollback moves both back (their retained containers), and the volume keeps every line', async () => {
    await release('rollback', {}, converged);
    assert.deepEqual(await layout(), { h1: [['procs-web-r1', 'v1']], h2: [['procs-web-r1', 'v1']], h3: [['procs-worker-r1', 'v1']] });
    for (const addr of web) assert.equal(await get(addr, '/'), '200 v1', addr);
    assert.equal(docker('h3', 'exec', await workerId(), 'cat', '/data/worker.log'), 'v1\nv2\nv1', 'the data survived the rollback');
  });

  it("a release whose worker cannot start fails, and on_failure: rollback moves web back too", async () => {
    const stable = (await status())!.observedRevision!;
    const asked = await release('releases', { version: 'v3' }, (asked, s) => s.phase === 'RolledBack' && s.observedRevision! > asked);
    const events = (await d.request<{ events: EventRecord[] }>('GET', `/v1/apps/${APP}/events?limit=1000`)).body.events.filter((e) => e.revision === asked);
    const failed = events.find((e) => e.type === 'RolloutFailed');
    assert.match(failed?.message ?? '', /^worker@h3: /, JSON.stringify(events.map((e) => [e.type, e.host, e.message])));
    assert.ok(events.some((e) => e.host === 'web@h1' && e.type === 'TrafficSwitched'), 'web had moved to v3 before the worker failed');
    assert.deepEqual(await layout(), { h1: [['procs-web-r1', 'v1']], h2: [['procs-web-r1', 'v1']], h3: [['procs-worker-r1', 'v1']] });
    for (const addr of web) assert.equal(await get(addr, '/'), '200 v1', `${addr}: back on the release before v3 (revision ${stable})`);
  });
});
