import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AppStatus } from '../../src/domain/release.js';
import { startBedDaemon, type BedDaemon } from '../support/bed-daemon.js';
import { bedSkipReason, removeBedVolume, testbedCommand } from '../support/testbed.js';
import { waitUntil } from '../support/wait.js';

/**
 * Container settings on the three real hosts (issue 14, item 2): a named volume whose
 * data v1's hook wrote is read by v2 and survives the rollback, a host directory mounted
 * read-only, a cmd that replaces the image's, and labels, memory and stop signal as
 * Docker reports them. The app's pre_deploy hook runs in a one-off container with the
 * same volumes, so it can write the volume the app serves.
 */
const skip = bedSkipReason();
const APP = 'settings';
const PORT = 8083;
const VOLUME = 'berth-test-settings';

type AppView = { status: AppStatus | null };

describe('container settings on real hosts', { skip, concurrency: false }, () => {
  let d: BedDaemon;
  let addrs: string[];
  let bindDir: string;

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

  async function release(path: string, body: unknown, status = 202): Promise<number> {
    const r = await d.request<{ revision: number }>('POST', `/v1/apps/${APP}/${path}`, body);
    assert.equal(r.status, status, JSON.stringify(r.body));
    await waitUntil(`revision ${r.body.revision} complete`, async () => {
      const s = (await d.request<AppView>('GET', `/v1/apps/${APP}`)).body.status;
      return (s?.phase === 'Complete' || s?.phase === 'RolledBack') && s.observedRevision === r.body.revision ? true : null;
    }, { timeoutMs: 90_000, describe: async () => JSON.stringify((await d.request('GET', `/v1/apps/${APP}`)).body) });
    return r.body.revision;
  }

  /** `docker inspect --format` of the app's running container on a host. */
  async function inspect(host: string, format: string): Promise<string> {
    const [c] = (await d.drivers.get(host)!.listContainers({ app: APP })).filter((x) => x.running && x.role === 'app');
    assert.ok(c, `${host}: a running container`);
    return testbedCommand('exec', host, 'inspect', '--format', format, c.id).trim();
  }

  before(async () => {
    // The bed's hosts share this machine's filesystem (only network and UTS are their own).
    bindDir = mkdtempSync(join(tmpdir(), 'berth-bind-'));
    writeFileSync(join(bindDir, 'motd'), 'from the host\n');
    d = await startBedDaemon(APP, {
      port: 3000,
      healthcheck: { interval: '300ms', timeout: '1s', max_attempts: 20 },
      rollout: { parallelism: 3 },
      proxy: { port: PORT, drain_timeout: '5s' },
      // Appends this release's version: after v2 the file holds v1's line too.
      hooks: { pre_deploy: ['echo "$VERSION" >> /www/data/note'] },
      volumes: [`${VOLUME}:/www/data`, `${bindDir}:/www/conf:ro`],
      cmd: "sh -c 'echo started-by-cmd > /www/cmd.txt; exec /app/start'",
      labels: { 'com.example.team': 'qa' },
      memory: '64m',
      stop_signal: 'SIGINT',
    });
    addrs = d.bed.hosts.slice(0, 3).map((h) => h.address);
    // startBedDaemon removed the app's old containers; nothing of an earlier run stays in the volume.
    removeVolume();
  });

  const removeVolume = () => removeBedVolume(VOLUME);

  after(async () => {
    await d?.close();
    removeVolume();
    if (bindDir) rmSync(bindDir, { recursive: true, force: true });
  });

  it('v1: cmd ran, the hook wrote the volume the app serves, the host directory is visible read-only, Docker has the labels, memory and stop signal', async () => {
    await release('releases', { version: 'v1' });
    for (const addr of addrs) {
      assert.equal(await get(addr, '/cmd.txt'), '200 started-by-cmd', `${addr}: the cmd replaced the image's`);
      assert.equal(await get(addr, '/conf/motd'), '200 from the host', `${addr}: the host directory`);
    }
    // One volume per host; the hook ran on one host (its note is there, v1 once).
    const notes = await Promise.all(addrs.map((addr) => get(addr, '/data/note')));
    assert.equal(notes.filter((n) => n === '200 v1').length, 1, JSON.stringify(notes));
    for (const host of ['h1', 'h2', 'h3']) {
      assert.equal(await inspect(host, '{{index .Config.Labels "com.example.team"}} {{.HostConfig.Memory}} {{.Config.StopSignal}}'), `qa ${64 * 1024 * 1024} SIGINT`, host);
    }
    const exec = await d.request<{ exitCode: number; outputTail: string }>('POST', `/v1/apps/${APP}/exec`, { command: 'touch /www/conf/x', host: 'h1' });
    assert.notEqual(exec.body.exitCode, 0, 'the host directory is read-only');
    assert.match(exec.body.outputTail, /Read-only file system/);
  });

  it("v2 reads what v1 wrote (the volume outlives the container); the rollback to v1 keeps v2's line", async () => {
    await release('releases', { version: 'v2' });
    const withNote = await waitUntil('the hook host', async () => {
      for (const addr of addrs) if ((await get(addr, '/data/note')).startsWith('200 v1')) return addr;
      return null;
    });
    assert.equal(await get(withNote, '/data/note'), '200 v1\nv2', 'v2 appended to v1\'s note');
    assert.equal(await get(withNote, '/'), '200 v2');
    await release('rollback', {});
    assert.equal(await get(withNote, '/'), '200 v1');
    assert.equal(await get(withNote, '/data/note'), '200 v1\nv2', 'the data survived the rollback');
  });
});
