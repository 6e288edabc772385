import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { ROOT, freePort, killDaemon, runCli, spawnDaemon, tempDir, type DaemonChild } from '../support/daemon.js';
import { bedSkipReason, requireTestbed, type Testbed, type TestbedHost } from '../support/testbed.js';
import { waitUntil } from '../support/wait.js';

/**
 * The README's quickstart, run as written on test host h1: the daemon on deploy/berth.yml as
 * shipped (only the `local` host's Docker socket and state directory are h1's), a fresh data
 * directory (the token is the one the daemon generates), then every line of the README's
 * Quickstart block: `npx berth ...` through the CLI, `curl ...` literally. The daemon, the
 * CLI and curl run in h1's network namespace, so "this machine" is h1 (its loopback, its
 * containers' networks, its proxy's ports). The bed's registry serves the Docker Hub names
 * of the file (stefanprodan/podinfo, haproxy:2.6) as the hosts' registry mirror
 * (docs/testbed.md), so the images the README names are the ones pulled.
 */
const skip = bedSkipReason();
const SHIPPED = join(ROOT, 'deploy/berth.yml');
const APP = 'demo';
// The one line the bed changes: `local: true` on this machine's socket becomes h1's Docker.
const LOCAL_HOST_LINE = /^ {2}local: \{ local: true, docker_socket: \/var\/run\/docker\.sock \}$/m;

/** What the test reads of deploy/berth.yml. */
interface ShippedConfig {
  hosts: Record<string, Record<string, unknown>>;
  proxy: { image: string };
  apps: Record<string, { image: string; env: Record<string, string> }>;
}

interface Step {
  argv: string[];
  /** What the README says after `#` on the line. */
  comment: string;
}

/** The lines of the ```sh block of README.md's "## Quickstart", as argv and comment. */
function quickstartSteps(): Step[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf('\n## Quickstart\n');
  assert.ok(at >= 0, 'README.md has a "## Quickstart" section');
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(at, readme.indexOf('\n## ', at + 1)))?.[1];
  assert.ok(block, 'the Quickstart section has a ```sh block');
  return block
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const hash = line.indexOf(' #');
      return { argv: (hash < 0 ? line : line.slice(0, hash)).trim().split(/\s+/), comment: hash < 0 ? '' : line.slice(hash + 2).trim() };
    });
}

/** `docker ARGS...` on a bed host's daemon; the result, failures included. */
function docker(h: TestbedHost, ...args: string[]) {
  return spawnSync('docker', ['-H', `unix://${h.dockerSocket}`, ...args], { encoding: 'utf8' });
}

/** What the quickstart leaves on h1 (the demo's containers, the proxy it created, the images it pulled), removed. */
function clearQuickstart(bed: Testbed, h: TestbedHost): void {
  const ids = docker(h, 'ps', '-aq', '--filter', `label=berth.app=${APP}`).stdout.split('\n').filter(Boolean);
  if (ids.length) docker(h, 'rm', '-f', ...ids);
  docker(h, 'rm', '-f', 'berth-proxy');
  docker(h, 'rmi', ...(bed.images.mirrored ?? []));
}

/** `CMD...` in the host's network namespace. */
function inHost(h: TestbedHost, cmd: string[]) {
  return spawnSync('nsenter', [`--net=/run/netns/${h.netns}`, '--', ...cmd], { encoding: 'utf8', timeout: 10_000 });
}

describe('the README quickstart on deploy/berth.yml as shipped', { skip, concurrency: false }, () => {
  let bed: Testbed;
  let h1: TestbedHost;
  let dir: ReturnType<typeof tempDir>;
  let daemon: DaemonChild | undefined;

  before(() => {
    bed = requireTestbed();
    h1 = bed.hosts[0]!;
    dir = tempDir('berth-quickstart-');
    clearQuickstart(bed, h1);
  });

  after(async () => {
    if (daemon) await killDaemon(daemon);
    if (h1) clearQuickstart(bed, h1);
    dir?.remove();
  });

  test('npm start, then every command of the block: the demo is served and rolled with live progress', async () => {
    const shippedText = readFileSync(SHIPPED, 'utf8');
    assert.match(shippedText, LOCAL_HOST_LINE, 'deploy/berth.yml declares the local host as the test expects');
    const bedText = shippedText.replace(LOCAL_HOST_LINE, `  local: { local: true, docker_socket: ${h1.dockerSocket}, state_dir: ${h1.stateDir} }`);
    const shipped = parseYaml(shippedText) as ShippedConfig;
    const onBed = parseYaml(bedText) as ShippedConfig;
    // Nothing but the local host's socket and state directory (the proxy's sockets, inside the bed) differs.
    assert.deepEqual({ ...onBed, hosts: { ...onBed.hosts, local: shipped.hosts.local } }, shipped);
    assert.deepEqual(onBed.hosts.local, { ...shipped.hosts.local, docker_socket: h1.dockerSocket, state_dir: h1.stateDir });
    const config = join(dir.path, 'berth.yml');
    writeFileSync(config, bedText);

    const steps = quickstartSteps();
    assert.deepEqual(steps[0]?.argv, ['npm', 'start', '&'], 'the block starts the daemon first');
    const image = shipped.apps[APP]!.image;
    const deployed = steps.filter((s) => s.argv[2] === 'deploy').map((s) => `${image}:${s.argv[4]}`);
    assert.ok(deployed.length >= 2, 'the block deploys the demo twice');
    for (const ref of [...deployed, shipped.proxy.image]) {
      assert.ok(bed.images.mirrored?.includes(ref), `the bed serves ${ref} (bring it up again with test/hosts/testbed up: ${JSON.stringify(bed.images.mirrored)})`);
    }

    // `npm start &`: the daemon (npm start runs `berth daemon` once built) with a fresh data directory.
    mkdirSync(join(dir.path, 'data'));
    const db = join(dir.path, 'data', 'berth.db');
    const port = await freePort();
    daemon = spawnDaemon({ config, db, port, netns: h1.netns });
    const d = daemon;
    await waitUntil('the daemon is ready', async () => (inHost(h1, ['curl', '-sf', `${d.url}/readyz`]).status === 0 ? true : null), {
      timeoutMs: 30_000,
      pollMs: 200,
      describe: async () => d.output(),
    });
    const cliEnv = { BERTH_URL: d.url, BERTH_DB: db }; // the token: data/token, as the daemon generated it

    let lastDeployed: string | null = null;
    for (const { argv, comment } of steps.slice(1)) {
      const line = `${argv.join(' ')}  # ${comment}`;
      if (argv[0] === 'npx' && argv[1] === 'berth') {
        const r = await runCli(argv.slice(2), cliEnv, 180_000, { netns: h1.netns });
        assert.equal(r.code, 0, `${line}\n${r.stdout}${r.stderr}\ndaemon:\n${d.output().slice(-4000)}`);
        if (argv[2] !== 'deploy') continue;
        console.log(`  ${argv.join(' ')} -> exit 0 in ${(r.stdoutChunks.at(-1)!.atMs / 1000).toFixed(1)} s:\n${r.stdout.replace(/^/gm, '    ')}`);
        assert.ok(argv.includes('--wait'), `${line}: the quickstart waits for its deploys`);
        assert.match(r.stdout, /local\s+TrafficSwitched/, `${line}: a progress line for the host`);
        assert.match(r.stdout, new RegExp(`${APP}: Complete`), line);
        // Live: the host's first event came out while the rollout ran, well before the end.
        const first = r.stdoutChunks.find((c) => /\blocal\s+[A-Z]\w+:/.test(c.text))!;
        const done = r.stdoutChunks.find((c) => c.text.includes(`${APP}: Complete`))!;
        assert.ok(done.atMs - first.atMs >= 300, `${line}: progress printed live (first host event at ${first.atMs} ms, Complete at ${done.atMs} ms)`);
        lastDeployed = argv[4]!;
      } else if (argv[0] === 'curl') {
        const r = inHost(h1, argv);
        assert.equal(r.status, 0, `${line}: ${r.stderr}`);
        const served = JSON.parse(r.stdout) as { version?: string; message?: string };
        const claimed = /"version": "([^"]+)"/.exec(comment)?.[1];
        assert.ok(claimed, `${line}: the README says which version is served`);
        assert.equal(served.version, claimed, `${line}: served ${r.stdout}`);
        assert.equal(served.version, lastDeployed, `${line}: the version just deployed is served`);
        assert.equal(served.message, shipped.apps[APP]!.env.PODINFO_UI_MESSAGE, 'the app runs with the env of the file');
      } else {
        assert.fail(`${line}: this test does not know how to run it (teach it, or keep the block to npx berth and curl)`);
      }
    }
    assert.equal(lastDeployed, deployed.at(-1)!.split(':').at(-1), 'the block ends serving its last deploy');
  });
});
