import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { registriesFilePath } from '../../src/defaults.js';
import type { BerthEvent } from '../../src/domain/release.js';
import type { HostDriver } from '../../src/hosts/host-driver.js';
import { TOKEN, daemonSandbox, runCli, waitReady, type DaemonSandbox } from '../support/daemon.js';
import { openBedDrivers, type BedDrivers } from '../support/fleet.js';
import { seedKamalProject } from '../support/kamal-seed.js';
import { writeSecretsFile } from '../support/secrets.js';
import { bedSkipReason, requireTestbed, type Testbed } from '../support/testbed.js';

/**
 * Issue #14 item 6, acceptance: the seed's Kamal config — servers web on 3 hosts, Kamal 1's
 * healthcheck (path, port, max_attempts, interval), boot limit 1 / wait 5, a pre-deploy hook
 * that migrates, retain_containers 5, Traefik publishing 80 and 443 — through `berth
 * import-kamal`, then `berth check-config`, then, with what the import leaves to the operator
 * filled in from the bed (the known_hosts file, and each host's Docker socket and state
 * directory, which the bed's hosts keep apart), a real berth daemon on the bed's three hosts:
 * `berth deploy` of a version from the bed's (private) registry serves through the proxy on
 * every host, and the migration ran once, in the new image.
 */
const skip = bedSkipReason();
const APP = 'seed';
const MIGRATE = 'echo "db:migrate to $VERSION"';

describe('import-kamal: the seed\'s Kamal config deploys on the test hosts', { skip, concurrency: false }, () => {
  let bed: Testbed;
  let sandbox: DaemonSandbox;
  let fleet: BedDrivers;
  let drivers: Map<string, HostDriver>;
  let url: string;
  let imported: { yaml: string; notes: string };
  let config: string;

  const request = async <T>(path: string): Promise<T> => (await fetch(url + path, { headers: { authorization: `Bearer ${TOKEN}` } })).json() as Promise<T>;

  before(async () => {
    bed = requireTestbed();
    const registry = bed.privateRegistry;
    if (!registry) throw new Error(`${bed.dir}/testbed.json has no privateRegistry: the bed is from before it; bring it up again`);
    sandbox = daemonSandbox('berth-import-kamal-', TOKEN);
    const project = join(sandbox.path, 'project');
    // The test image is busybox: its "migration" says which version it ran on.
    const files = seedKamalProject({ service: APP, servers: bed.hosts.slice(0, 3).map((h) => h.address), registry: { server: registry.address, username: registry.username }, sshKey: bed.clientKey, migrate: MIGRATE });
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(project, path)), { recursive: true });
      writeFileSync(join(project, path), text, { mode: 0o755 });
    }

    const run = await runCli(['import-kamal', project], {});
    assert.equal(run.code, 0, run.stderr);
    imported = { yaml: run.stdout, notes: run.stderr };
    const raw = sandbox.writeConfig('imported.yml', run.stdout);
    const check = await runCli(['check-config', raw], {});
    assert.equal(check.code, 0, `check-config of the import as printed:\n${check.stderr}\n${run.stdout}`);

    // The operator's part: where each host's key is known, and (the bed's own layout) its Docker socket and state directory.
    const doc = parse(run.stdout) as { hosts: Record<string, Record<string, unknown>>; proxy?: unknown; controller?: unknown };
    for (const [name, host] of Object.entries(doc.hosts)) {
      const h = bed.hosts.find((b) => b.address === host.address);
      assert.ok(h, `host ${name} (${String(host.address)}) is one of the bed's`);
      Object.assign(host, { known_hosts: bed.knownHosts, docker_socket: h.dockerSocket, state_dir: h.stateDir });
    }
    // The bed's proxy image, as every bed test runs (its hosts have it), and a quicker resync.
    doc.proxy = { image: bed.images.haproxy };
    doc.controller = { resync_interval: '2s' };
    config = sandbox.writeConfig('berth.yml', stringify(doc));
    const filled = await runCli(['check-config', config], {});
    assert.equal(filled.code, 0, filled.stderr);
    assert.equal(filled.stdout, `${config}: valid (3 hosts, 1 app)\n`);

    fleet = await openBedDrivers(bed, APP);
    drivers = fleet.drivers;
    const db = join(sandbox.path, 'berth.db');
    writeSecretsFile(registriesFilePath(db), { KAMAL_REGISTRY_PASSWORD: registry.password });
    const daemon = await sandbox.spawn({ config, db, env: { BERTH_LOG_LEVEL: 'info' } });
    url = daemon.url;
    await waitReady(daemon, { probe: '/readyz' });
  });

  after(async () => {
    await sandbox?.cleanup();
    await fleet?.close();
  });

  it('the import maps the seed: one app on the 3 hosts, its health check, batches, hook, retention and route; what Traefik did is noted', () => {
    const doc = parse(imported.yaml) as { apps: Record<string, Record<string, unknown>> };
    assert.deepEqual(doc.apps[APP], {
      image: `${bed.privateRegistry!.address}/app`,
      hosts: bed.hosts.slice(0, 3).map((h) => h.address.replace(/\./g, '-')),
      port: 3000,
      healthcheck: { path: '/health', port: 3000, interval: '5s', max_attempts: 10 },
      rollout: { parallelism: 1, delay: '5s' },
      hooks: { pre_deploy: [MIGRATE] },
      retain_containers: 5,
      proxy: { port: 80 },
      env: { APP_ENV: 'production' },
    });
    assert.match(imported.notes, /^traefik\.options: Traefik published 443/m);
    assert.match(imported.notes, /^builder: berth deploys images you have built/m);
    assert.match(imported.notes, /^\.kamal\/hooks\/pre-deploy:3: now hooks\.pre_deploy/m);
  });

  it('`berth deploy seed v1 --wait` completes; every host serves v1 through its proxy on port 80; the migration ran once, in the new image', async () => {
    const deploy = await runCli(['deploy', APP, 'v1', '--wait'], { BERTH_URL: url, BERTH_TOKEN: TOKEN }, 180_000);
    assert.equal(deploy.code, 0, `${deploy.stdout}\n${deploy.stderr}`);
    const revision = Number(/revision (\d+) asks for v1/.exec(deploy.stdout)?.[1]);

    for (const h of bed.hosts.slice(0, 3)) {
      const res = await fetch(`http://${h.address}:80/`, { signal: AbortSignal.timeout(3000) });
      assert.equal(res.status, 200, `${h.name} through its proxy`);
      assert.equal((await res.text()).trim(), 'v1', `${h.name} serves v1`);
    }
    const { events } = await request<{ events: BerthEvent[] }>(`/v1/apps/${APP}/events?limit=1000`);
    const hooks = events.filter((e) => e.revision === revision && e.type === 'HookOutput');
    assert.equal(hooks.length, 1, hooks.map((e) => e.message).join('\n'));
    assert.match(hooks[0]!.message, /^pre_deploy\[0\] exit 0: db:migrate to v1/);
    for (const [h, d] of drivers) {
      const mine = await d.listContainers({ app: APP });
      assert.deepEqual(mine.filter((c) => c.role === 'hook').map((c) => c.name), [], `${h}: no hook container left`);
      assert.deepEqual(mine.filter((c) => c.role === 'app' && c.running).map((c) => c.version), ['v1'], `${h} runs v1`);
    }
  });
});
