/**
 * The test bed description (`testbed.json`, written by test/hosts/testbed up) and helpers
 * that turn it into product objects. Integration and e2e tests share this reader.
 *
 *   const bed = loadTestbed();            // null when absent
 *   test('...', { skip: bedSkipReason() }, async () => { ... });
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HostSpec } from '../../src/domain/app-spec.js';

export interface TestbedHost {
  name: string;
  netns: string;
  address: string;
  sshPort: number;
  user: string;
  /** `SHA256:...` as ssh-keygen -lf prints it. */
  hostKey: string;
  dockerSocket: string;
  stateDir: string;
}

export interface Testbed {
  /** The directory testbed.json was read from. */
  dir: string;
  bridge: { name?: string; address?: string };
  registry: string;
  /** `proxy`: the Caddy image (the old per-host proxy, kept for migration tests); `haproxy`: the HAProxy image. */
  images: {
    app: string;
    tags: string[];
    proxy: string;
    haproxy: string;
    /** Docker Hub names the hosts pull from the bed's registry (their registry mirror): deploy/berth.yml's images. Absent on a bed from before. */
    mirrored?: string[];
  };
  clientKey: string;
  knownHosts: string;
  hosts: TestbedHost[];
  /**
   * The private registry: the registry's images again, behind htpasswd auth (a new password
   * at every `up`). Absent on a bed from before it: `testbed down; testbed up 3`.
   */
  privateRegistry?: { address: string; username: string; password: string };
}

export function testbedDir(): string {
  return process.env.BERTH_TESTBED_DIR || '/run/berth-testbed';
}

export function testbedRequired(): boolean {
  return process.env.BERTH_TESTBED_REQUIRED === '1';
}

function asString(v: unknown, what: string): string {
  if (typeof v !== 'string' || v === '') throw new Error(`testbed.json: ${what} must be a non-empty string`);
  return v;
}

/** Parses and checks testbed.json; throws when it is malformed, returns null when absent. */
export function loadTestbed(dir = testbedDir()): Testbed | null {
  const file = join(dir, 'testbed.json');
  if (!existsSync(file)) return null;
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  const images = (raw.images ?? {}) as Record<string, unknown>;
  const hosts = raw.hosts;
  if (!Array.isArray(hosts) || hosts.length === 0) throw new Error(`${file}: hosts must be a non-empty list`);
  return {
    dir,
    bridge: (raw.bridge ?? {}) as Testbed['bridge'],
    registry: asString(raw.registry, 'registry'),
    images: {
      app: asString(images.app, 'images.app'),
      tags: Array.isArray(images.tags) ? images.tags.map((t, i) => asString(t, `images.tags[${i}]`)) : [],
      proxy: asString(images.proxy, 'images.proxy'),
      haproxy: asString(images.haproxy, 'images.haproxy'),
      ...(Array.isArray(images.mirrored) ? { mirrored: images.mirrored.map((t, i) => asString(t, `images.mirrored[${i}]`)) } : {}),
    },
    ...(raw.privateRegistry ? { privateRegistry: privateRegistryOf(raw.privateRegistry as Record<string, unknown>) } : {}),
    clientKey: asString(raw.clientKey, 'clientKey'),
    knownHosts: asString(raw.knownHosts, 'knownHosts'),
    hosts: hosts.map((h: Record<string, unknown>, i) => ({
      name: asString(h.name, `hosts[${i}].name`),
      netns: asString(h.netns, `hosts[${i}].netns`),
      address: asString(h.address, `hosts[${i}].address`),
      sshPort: typeof h.sshPort === 'number' ? h.sshPort : 22,
      user: typeof h.user === 'string' ? h.user : 'root',
      hostKey: asString(h.hostKey, `hosts[${i}].hostKey`),
      dockerSocket: asString(h.dockerSocket, `hosts[${i}].dockerSocket`),
      stateDir: asString(h.stateDir, `hosts[${i}].stateDir`),
    })),
  };
}

function privateRegistryOf(raw: Record<string, unknown>): NonNullable<Testbed['privateRegistry']> {
  return {
    address: asString(raw.address, 'privateRegistry.address'),
    username: asString(raw.username, 'privateRegistry.username'),
    password: asString(raw.password, 'privateRegistry.password'),
  };
}

/**
 * Why bed-dependent tests cannot run (a `skip` value for node:test), or false when they can.
 * With BERTH_TESTBED_REQUIRED=1 a missing bed is not a skip: call `requireTestbed` to fail.
 */
export function bedSkipReason(dir = testbedDir()): string | false {
  if (existsSync(join(dir, 'testbed.json'))) return false;
  if (testbedRequired()) return false;
  return `no test bed (${join(dir, 'testbed.json')} missing); run test/hosts/testbed up, or set BERTH_TESTBED_REQUIRED=1 to make this a failure`;
}

/** The bed, or a thrown error saying it is missing (for use inside a test that was not skipped). */
export function requireTestbed(dir = testbedDir()): Testbed {
  const bed = loadTestbed(dir);
  if (!bed) throw new Error(`BERTH_TESTBED_REQUIRED=1 but ${join(dir, 'testbed.json')} is missing: the test hosts are not up`);
  return bed;
}

export type HostKeyMode = 'pinned' | 'knownHosts';

/** The product's HostSpec for a bed host (SSH, pinned host key by default). */
export function hostSpecFor(bed: Testbed, h: TestbedHost, opts: { keyMode?: HostKeyMode; overrides?: Partial<HostSpec> } = {}): HostSpec {
  const mode = opts.keyMode ?? 'pinned';
  const spec = {
    name: h.name,
    local: false,
    address: h.address,
    sshPort: h.sshPort,
    user: h.user,
    sshKeyPath: bed.clientKey,
    hostKey: mode === 'pinned' ? h.hostKey : null,
    knownHostsPath: mode === 'knownHosts' ? bed.knownHosts : null,
    dockerSocket: h.dockerSocket,
    stateDir: h.stateDir,
    ...opts.overrides,
  };
  return spec;
}

/** The HostSpec for the bed host's Docker reached directly through its socket (the local driver). */
export function localSpecFor(h: TestbedHost): HostSpec {
  const spec = {
    name: `${h.name}-local`,
    local: true,
    address: null,
    sshPort: 22,
    user: 'root',
    sshKeyPath: null,
    hostKey: null,
    knownHostsPath: null,
    dockerSocket: h.dockerSocket,
    stateDir: h.stateDir,
  };
  return spec;
}

function runTestbed(args: string[]) {
  const script = new URL('../hosts/testbed', import.meta.url).pathname;
  return spawnSync('bash', [script, ...args], { encoding: 'utf8', env: { ...process.env, BERTH_TESTBED_DIR: testbedDir() } });
}

/** Runs `test/hosts/testbed ARGS...` (e.g. netdown h3); throws on failure. */
export function testbedCommand(...args: string[]): string {
  const res = runTestbed(args);
  if (res.status !== 0) throw new Error(`testbed ${args.join(' ')} failed (${res.status}): ${res.stderr || res.stdout}`);
  return `${res.stdout}${res.stderr}`;
}

/**
 * testbedCommand without blocking the event loop: for a process that also runs load (a
 * spawnSync of a dockerd restart would stop its clients for the whole restart, so they
 * would see nothing of it).
 */
export function testbedCommandAsync(...args: string[]): Promise<string> {
  const script = new URL('../hosts/testbed', import.meta.url).pathname;
  return new Promise((resolve, reject) => {
    execFile('bash', [script, ...args], { encoding: 'utf8', env: { ...process.env, BERTH_TESTBED_DIR: testbedDir() } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`testbed ${args.join(' ')} failed (${err.code ?? err.signal}): ${stderr || stdout}`));
      else resolve(`${stdout}${stderr}`);
    });
  });
}

/**
 * What each host's `berth` network holds, for a failure message: every endpoint's
 * container and address, and the bridge routes of the host's namespace. A health check
 * refused on a container that runs (CI5: every new container on h2 refused, test after
 * test) leaves this to tell an address two endpoints share from a container not listening.
 */
export function bedNetworkView(bed: Testbed): string {
  return bed.hosts
    .map((h) => {
      const endpoints = runTestbed(['exec', h.name, 'network', 'inspect', 'berth', '--format', '{{range .Containers}}{{.Name}}={{.IPv4Address}} {{end}}']);
      const routes = spawnSync('ip', ['-n', h.netns, '-4', 'route'], { encoding: 'utf8' });
      return `${h.name} network berth: ${(endpoints.stdout || endpoints.stderr).trim()}\n${h.name} routes: ${(routes.stdout || routes.stderr).trim().replace(/\n/g, '; ')}`;
    })
    .join('\n');
}

/** A named volume off the bed's hosts (a run cut short may have left it, with its data); a bed that is gone removed it already. */
export function removeBedVolume(volume: string, hosts = ['h1', 'h2', 'h3']): void {
  for (const host of hosts) {
    try {
      testbedCommand('exec', host, 'volume', 'rm', '-f', volume);
    } catch {
      /* the bed may be gone; its down removes volumes too */
    }
  }
}

/** `image:tag` of the bed's test app. */
export function appImage(bed: Testbed, tag: string): string {
  return `${bed.images.app}:${tag}`;
}
