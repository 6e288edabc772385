/**
 * Smoke test of the host drivers against the real test hosts (test/hosts/testbed): every
 * host reached through the product's SSH driver pulls, starts and serves the test app, and
 * the failure paths (wrong host key, bad tag, closed port, unreachable host, timeouts) end
 * in HostErrors by their deadlines instead of hangs.
 *
 * Without testbed.json the suite is skipped, unless BERTH_TESTBED_REQUIRED=1 (then it fails).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HostError } from '../../src/domain/errors.js';
import { LABELS } from '../../src/domain/labels.js';
import { createLogger } from '../../src/log.js';
import { createLocalDriver, createSshDriver, type DockerHostDriver } from '../../src/hosts/docker/driver.js';
import type { DockerEvent } from '../../src/hosts/host-driver.js';

/** An HTTP/1.0 request as one line-protocol command: the Docker daemon answers it and closes. */
const PING = 'GET /_ping HTTP/1.0\r\n';
import {
  appImage,
  bedSkipReason,
  hostSpecFor,
  localSpecFor,
  requireTestbed,
  testbedCommand,
  type Testbed,
  type TestbedHost,
} from '../support/testbed.js';

const skip = bedSkipReason();
// Expected failures log warnings; BERTH_LOG_LEVEL=warn (or debug) shows them.
const log = createLogger({ level: process.env.BERTH_LOG_LEVEL ?? 'error', pretty: false });
const APP = 'smoke';
const NET = 'berth';

function labels(revision: number, version: string, role = 'app'): Record<string, string> {
  return {
    [LABELS.managed]: 'true',
    [LABELS.app]: APP,
    [LABELS.revision]: String(revision),
    [LABELS.version]: version,
    [LABELS.role]: role,
  };
}

const secs = (ms: number): string => `${(ms / 1000).toFixed(2)}s`;

async function expectHostError(p: Promise<unknown>, codes: string[]): Promise<HostError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof HostError, `expected a HostError, got ${String(e)}`);
    assert.ok(codes.includes(e.code), `expected code ${codes.join('|')}, got ${e.code}: ${e.message}`);
    return e;
  }
  assert.fail(`expected a HostError ${codes.join('|')}, but the call succeeded`);
}

async function waitFor<T>(what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> {
  const until = Date.now() + ms;
  let last: unknown = null;
  while (Date.now() < until) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`${what}: not within ${ms} ms (last error: ${last instanceof Error ? last.message : String(last)})`);
}

/** Removes what earlier (crashed) runs of this file left on a host. */
async function clean(d: DockerHostDriver): Promise<void> {
  for (const c of await d.listContainers({ app: APP })) await d.removeContainer(c.id);
}

// Each test carries the skip, so the runner's summary counts them as skipped.
describe('host drivers against the test bed', () => {
  let bed: Testbed;
  const drivers: DockerHostDriver[] = [];
  const ssh = (h: TestbedHost, opts: Parameters<typeof createSshDriver>[2] = {}, keyMode?: 'pinned' | 'knownHosts') => {
    const d = createSshDriver(hostSpecFor(bed, h, keyMode ? { keyMode } : {}), log, opts);
    drivers.push(d);
    return d;
  };
  let main: DockerHostDriver[] = [];
  /** Main driver `i` with the test app's v1 pulled and the berth network in place. */
  const withV1 = async (i: number): Promise<{ d: DockerHostDriver; image: string }> => {
    const d = main[i]!;
    const image = appImage(bed, 'v1');
    await d.pullImage(image);
    await d.ensureNetwork(NET);
    return { d, image };
  };

  before(async () => {
    if (skip) return;
    bed = requireTestbed();
    assert.ok(bed.hosts.length >= 3, `the smoke test wants 3 hosts, the bed has ${bed.hosts.length}`);
    main = bed.hosts.slice(0, 3).map((h) => ssh(h));
    await Promise.all(main.map((d) => clean(d)));
  });

  after(async () => {
    if (skip) return;
    await Promise.all(main.map((d) => clean(d).catch(() => undefined)));
    await Promise.all(drivers.map((d) => d.close()));
  });

  test('every host pulls, starts and serves v1 through the SSH driver', { skip }, async () => {
    const image = appImage(bed, 'v1');
    const lines: string[] = [];
    await Promise.all(
      bed.hosts.slice(0, 3).map(async (h, i) => {
        const d = main[i]!;
        const events: DockerEvent[] = [];
        const t0 = performance.now();
        const info = await d.ping();
        const tConnect = performance.now() - t0;
        assert.match(info.dockerVersion, /^\d+\./);
        const stop = d.watchEvents((e) => events.push(e));
        try {
          await d.ensureNetwork(NET);
          await d.ensureNetwork(NET); // idempotent
          const t1 = performance.now();
          await d.pullImage(image);
          const tPull = performance.now() - t1;
          assert.equal(await d.hasImage(image), true);
          const t2 = performance.now();
          const id = await d.createContainer({
            name: `${APP}-r1`,
            image,
            env: { GREETING: 'hello', SMOKE_SECRET: 'not-in-any-log' },
            labels: labels(1, 'v1'),
            network: NET,
            init: true,
          });
          await d.startContainer(id);
          const tStart = performance.now() - t2;
          const seen = await d.inspectContainer(id);
          assert.ok(seen, 'inspect finds the container');
          assert.equal(seen.running, true);
          assert.equal(seen.app, APP);
          assert.equal(seen.revision, 1);
          assert.equal(seen.version, 'v1');
          assert.equal(seen.role, 'app');
          assert.ok(seen.ip, 'a running container has an IP on the berth network');
          const listed = await d.listContainers({ app: APP });
          assert.deepEqual(
            listed.map((c) => [c.id, c.name, c.ip, c.running]),
            [[id, `${APP}-r1`, seen.ip, true]],
          );
          const ip = seen.ip;
          const t3 = performance.now();
          await waitFor(`${h.name} /health`, 30_000, async () => {
            const r = await d.httpGet(ip, 3000, '/health', 2_000);
            return r.status === 200 ? r : undefined;
          });
          const tHealth = performance.now() - t3;
          const page = await d.httpGet(ip, 3000, '/', 2_000);
          assert.equal(page.status, 200);
          assert.match(page.body, /v1/);
          await waitFor(`${h.name} start event`, 10_000, async () =>
            events.find((e) => e.app === APP && e.action === 'start' && e.id === id) ? true : undefined,
          );
          await d.stopContainer(id, 5_000);
          assert.equal((await d.inspectContainer(id))?.running, false);
          await d.removeContainer(id);
          await d.removeContainer(id); // idempotent
          assert.equal(await d.inspectContainer(id), null);
          lines.push(
            `  ${h.name}: connect+version ${secs(tConnect)}, pull ${secs(tPull)}, create+start ${secs(tStart)}, healthy after ${secs(tHealth)}`,
          );
        } finally {
          stop();
        }
      }),
    );
    const hosts = bed.hosts
      .slice(0, 3)
      .map((h) => `${h.name} ${h.address}`)
      .join(', ');
    console.log(`smoke: 3 real hosts (${hosts}) served v1`);
    for (const l of lines.sort()) console.log(l);
  });

  test('a wrong pinned host key is refused with HOST_KEY_MISMATCH', { skip }, async () => {
    const h = bed.hosts[0]!;
    const wrong = `SHA256:${Buffer.alloc(32, 7).toString('base64').replace(/=+$/, '')}`;
    const d = createSshDriver(hostSpecFor(bed, h, { overrides: { hostKey: wrong } }), log, { timeoutMs: 10_000 });
    drivers.push(d);
    const e = await expectHostError(d.ping(), ['HOST_KEY_MISMATCH']);
    assert.match(e.message, new RegExp(h.hostKey.replace(/[+/]/g, '\\$&')), 'the message names the presented key');
    // The refusal sticks: the next call does not get through either.
    await expectHostError(d.ping(), ['HOST_KEY_MISMATCH']);
  });

  test('known_hosts: the bed file verifies; a file without the host gives HOST_KEY_UNKNOWN', { skip }, async () => {
    const h = bed.hosts[1]!;
    assert.match((await ssh(h, {}, 'knownHosts').ping()).dockerVersion, /^\d+\./);
    const dir = mkdtempSync(join(tmpdir(), 'berth-kh-'));
    const file = join(dir, 'known_hosts');
    writeFileSync(file, '# nothing for this host\n10.99.99.99 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\n');
    const d = createSshDriver(hostSpecFor(bed, h, { keyMode: 'knownHosts', overrides: { knownHostsPath: file } }), log);
    drivers.push(d);
    await expectHostError(d.ping(), ['HOST_KEY_UNKNOWN']);
  });

  test('pulling a tag that does not exist fails with IMAGE_PULL_FAILED naming the image', { skip }, async () => {
    const ref = appImage(bed, 'no-such-tag-0');
    const e = await expectHostError(main[0]!.pullImage(ref), ['IMAGE_PULL_FAILED']);
    assert.ok(e.message.includes(ref), e.message);
  });

  test('creating a container twice under one name returns the same id (adopt)', { skip }, async () => {
    const { d, image } = await withV1(0);
    const opts = { name: `${APP}-r2`, image, env: {}, labels: labels(2, 'v1'), network: NET, init: true };
    const a = await d.createContainer(opts);
    const b = await d.createContainer(opts);
    assert.equal(b, a);
    // Same name, other owner labels: refused, never adopted.
    await expectHostError(d.createContainer({ ...opts, labels: labels(3, 'v1') }), ['CONTAINER_NAME_CONFLICT']);
    await d.removeContainer(a);
  });

  test('httpGet to a closed port fails with a HostError, quickly; a silent server by its deadline', { skip }, async () => {
    const { d, image } = await withV1(1);
    // Port 3000 accepts connections and never answers (nc, its stdin held open); 3999 is closed.
    const id = await d.createContainer({
      name: `${APP}-r4`,
      image,
      cmd: ['sh', '-c', 'while true; do sleep 3600 | nc -l -p 3000 >/dev/null; done'],
      env: {},
      labels: labels(4, 'v1'),
      network: NET,
      init: true,
    });
    try {
      await d.startContainer(id);
      const ip = (await d.inspectContainer(id))?.ip;
      assert.ok(ip);
      const t0 = performance.now();
      await expectHostError(d.httpGet(ip, 3999, '/health', 5_000), ['HTTP_FAILED']);
      assert.ok(performance.now() - t0 < 4_000, 'refused, not timed out');
      await new Promise((r) => setTimeout(r, 300)); // let nc start listening
      const t1 = performance.now();
      await expectHostError(d.httpGet(ip, 3000, '/', 1_500), ['HOST_TIMEOUT']);
      const took = performance.now() - t1;
      assert.ok(took >= 1_400 && took < 3_000, `a 1.5 s probe took ${took} ms`);
      // The connection survives a timed-out probe.
      assert.match(await d.unixCommand(bed.hosts[1]!.dockerSocket, PING, 5_000), /^HTTP\/1\.0 200 OK/);
    } finally {
      await d.removeContainer(id);
    }
  });

  test('runOnce returns the exit code and the output tail, and kills a run past its timeout', { skip }, async () => {
    const { d, image } = await withV1(2);
    const r = await d.runOnce({
      name: `${APP}-r5-hook`,
      image,
      cmd: ['sh', '-c', 'i=0; while [ $i -lt 1000 ]; do echo "line $i"; i=$((i+1)); done; sleep 0.3; echo "to stderr: $HOOK_VAR" >&2; exit 3'],
      env: { HOOK_VAR: 'from-env' },
      labels: labels(5, 'v1', 'hook'),
      network: NET,
      timeoutMs: 30_000,
    });
    assert.equal(r.exitCode, 3);
    assert.equal(r.timedOut, false);
    // stdout and stderr are copied separately by dockerd: the sleep keeps their order certain.
    assert.match(r.outputTail, /line 999\n/);
    assert.match(r.outputTail, /to stderr: from-env/);
    assert.ok(!r.outputTail.includes('line 0\n'), 'only the tail is kept');
    assert.ok(Buffer.byteLength(r.outputTail) <= 4096);
    assert.equal(await d.inspectContainer(`${APP}-r5-hook`), null, 'the one-off container is removed');

    const t0 = performance.now();
    const slow = await d.runOnce({
      name: `${APP}-r6-hook`,
      image,
      cmd: ['sh', '-c', 'echo started; sleep 60'],
      env: {},
      labels: labels(6, 'v1', 'hook'),
      network: NET,
      timeoutMs: 1_500,
    });
    const took = performance.now() - t0;
    assert.equal(slow.timedOut, true);
    assert.notEqual(slow.exitCode, 0);
    assert.match(slow.outputTail, /started/);
    assert.ok(took < 10_000, `timed-out run took ${took} ms`);
    assert.equal(await d.inspectContainer(`${APP}-r6-hook`), null);
  });

  test('entrypoint, files copied in before start, and the host network', { skip }, async () => {
    const d = main[2]!;
    const image = appImage(bed, 'v1');
    await d.pullImage(image);
    const r = await d.runOnce({
      name: `${APP}-r7-hook`,
      image,
      entrypoint: ['sh', '-c'],
      cmd: ['cat /opt/berth-smoke/hello.txt; ls -l /opt/berth-smoke/run.sh; ip -o -4 addr show | grep -c 10.77.0 || true'],
      files: [
        { path: '/opt/berth-smoke/hello.txt', content: 'hi from a file\n' },
        { path: '/opt/berth-smoke/run.sh', content: '#!/bin/sh\n', mode: 0o755 },
      ],
      env: {},
      labels: labels(7, 'v1', 'hook'),
      network: 'host',
      timeoutMs: 20_000,
    });
    assert.equal(r.exitCode, 0, r.outputTail);
    assert.match(r.outputTail, /hi from a file/);
    assert.match(r.outputTail, /-rwxr-xr-x .* \/opt\/berth-smoke\/run\.sh/);
    assert.match(r.outputTail, /^1$/m, 'on the host network the host address is visible');
  });

  test('unixCommand: one exchange with a Unix socket on the host, read until it closes (an HTTP/1.0 GET /_ping to the Docker socket)', { skip }, async () => {
    const h = bed.hosts[0]!;
    const answer = await main[0]!.unixCommand(h.dockerSocket, PING, 5_000);
    assert.match(answer, /^HTTP\/1\.0 200 OK\r\n/);
    assert.match(answer, /\r\n\r\nOK$/);
    await expectHostError(main[0]!.unixCommand('/run/no-such-socket.sock', 'show info', 5_000), ['HTTP_FAILED']);
  });

  test('a Docker socket that is not there is HOST_UNREACHABLE, naming the socket', { skip }, async () => {
    const h = bed.hosts[0]!;
    const d = createSshDriver(hostSpecFor(bed, h, { overrides: { dockerSocket: '/run/no-such-docker.sock' } }), log);
    drivers.push(d);
    const e = await expectHostError(d.ping(), ['HOST_UNREACHABLE']);
    assert.match(e.message, /\/run\/no-such-docker\.sock/);
  });

  test('the local driver talks to the same daemon through its socket', { skip }, async () => {
    const h = bed.hosts[0]!;
    const d = createLocalDriver(localSpecFor(h), log);
    drivers.push(d);
    const [local, remote] = await Promise.all([d.ping(), main[0]!.ping()]);
    assert.equal(local.dockerVersion, remote.dockerVersion);
    assert.match(await d.unixCommand(h.dockerSocket, PING, 5_000), /^HTTP\/1\.0 200 OK/);
    assert.deepEqual(await d.listContainers({ app: APP }), await main[0]!.listContainers({ app: APP }));
  });

  test('an unreachable host fails by the call deadline, and the driver recovers after', { skip }, async () => {
    const h = bed.hosts[2]!;
    const ops: Array<[string, boolean]> = [];
    const d = ssh(h, { timeoutMs: 2_000, onOperation: (op, _s, ok) => ops.push([op, ok]) });
    await d.ping(); // connected before the cut
    testbedCommand('netdown', h.name);
    try {
      const t0 = performance.now();
      const e1 = await expectHostError(d.ping(), ['HOST_TIMEOUT', 'HOST_UNREACHABLE']);
      const took = performance.now() - t0;
      assert.ok(took < 3_000, `a 2 s deadline took ${took} ms`);

      const fresh = ssh(h, { timeoutMs: 2_000 });
      const t1 = performance.now();
      const e2 = await expectHostError(fresh.ping(), ['HOST_TIMEOUT', 'HOST_UNREACHABLE']);
      const took2 = performance.now() - t1;
      assert.ok(took2 < 3_000, `a 2 s deadline took ${took2} ms`);
      console.log(`  ${h.name} cut off: connected driver ${e1.code} after ${secs(took)}, new driver ${e2.code} after ${secs(took2)}`);

      // Other hosts do not notice.
      await main[0]!.ping();
    } finally {
      testbedCommand('netup', h.name);
    }
    const t2 = performance.now();
    await waitFor(`${h.name} back`, 45_000, () => d.ping());
    console.log(`  ${h.name}: reachable again ${secs(performance.now() - t2)} after netup`);
    assert.ok(ops.some(([op, ok]) => op === 'ping' && !ok));
    assert.ok(ops.some(([op, ok]) => op === 'connect' && ok));
  });
});
