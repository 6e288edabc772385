/**
 * Private registry credentials (`registries:`): which registry an image reference pulls from
 * (Docker's rule), which entry's credentials a pull sends, the password read from the
 * registries file at every pull, the X-Registry-Auth header a real DockerHostDriver sends to
 * a Docker API (a fake dockerd on a Unix socket, answering as dockerd does), the password cut
 * out of what dockerd answers, and the daemon refusing to start or reload without a password.
 * The test hosts' private registry: test/integration/registries.test.ts.
 */
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { registriesFilePath } from '../../src/defaults.js';
import type { RegistryAuth, RegistrySpec } from '../../src/domain/app-spec.js';
import { HostError, SecretMissingError, SecretsFileError } from '../../src/domain/errors.js';
import { registryOf } from '../../src/domain/naming.js';
import { createLocalDriver } from '../../src/hosts/docker/driver.js';
import { RegistryCredentials } from '../../src/secrets/registry-credentials.js';
import { DAEMON_CONFIG, daemonSandbox, killDaemon, tempDir, TOKEN, waitReady } from '../support/daemon.js';
import { secretsFileText } from '../support/secrets.js';

const PASSWORD = 'pa55-w0rd-Zq8#registry';

describe('registryOf: the registry an image reference pulls from, by Docker\'s rule', () => {
  const cases: Array<[string, string]> = [
    ['haproxy:2.6', 'docker.io'],
    ['stefanprodan/podinfo:6.7.0', 'docker.io'],
    ['library/haproxy@sha256:' + 'a'.repeat(64), 'docker.io'],
    ['docker.io/acme/web:v1', 'docker.io'],
    ['index.docker.io/acme/web:v1', 'docker.io'],
    ['ghcr.io/acme/web:v1', 'ghcr.io'],
    ['GHCR.io/acme/web:v1', 'ghcr.io'],
    ['10.77.0.1:5001/app:v1', '10.77.0.1:5001'],
    ['registry:5000/app', 'registry:5000'],
    ['localhost/app:v1', 'localhost'],
    ['Acme/web:v1', 'acme'],
  ];
  for (const [ref, registry] of cases) test(`${ref} -> ${registry}`, () => assert.equal(registryOf(ref), registry));
});

/** A registries file in a scratch data directory (mode 0600), and credentials reading it. */
function credentialsWith(registries: () => Record<string, RegistrySpec>) {
  const dir = tempDir('berth-registries-test-');
  const file = registriesFilePath(join(dir.path, 'berth.db'));
  return {
    file,
    credentials: new RegistryCredentials(file, registries),
    write: (values: Record<string, string>, mode = 0o600) => writeFileSync(file, secretsFileText(values), { mode }),
    remove: () => dir.remove(),
  };
}

describe('which credentials a pull sends', () => {
  let registries: Record<string, RegistrySpec> = {
    '10.77.0.1:5001': { username: 'berth', password: 'LAN_PASSWORD' },
    'docker.io': { username: 'hub-bot', password: 'HUB_TOKEN' },
  };
  const c = credentialsWith(() => registries);
  after(() => c.remove());

  test('the entry of the image\'s registry, host and port exactly; none for another registry or port', () => {
    c.write({ LAN_PASSWORD: PASSWORD, HUB_TOKEN: 'hub-token-value' });
    assert.deepEqual(c.credentials.authFor('10.77.0.1:5001/app:v1'), { registry: '10.77.0.1:5001', username: 'berth', password: PASSWORD, passwordName: 'LAN_PASSWORD' });
    assert.equal(c.credentials.authFor('10.77.0.1:5000/app:v1'), null, 'the same host on another port is another registry');
    assert.equal(c.credentials.authFor('ghcr.io/acme/web:v1'), null);
    assert.equal(c.credentials.authFor('haproxy:2.6')?.username, 'hub-bot', 'a Docker Hub name is docker.io');
  });

  test('the password is read at every pull: an edited file applies to the next one, as does a reloaded config', () => {
    c.write({ LAN_PASSWORD: 'rotated-password-2', HUB_TOKEN: 'hub-token-value' });
    assert.equal(c.credentials.authFor('10.77.0.1:5001/app:v2')?.password, 'rotated-password-2');
    registries = { '10.77.0.1:5001': { username: 'other', password: 'HUB_TOKEN' } };
    assert.deepEqual(c.credentials.authFor('10.77.0.1:5001/app:v2'), { registry: '10.77.0.1:5001', username: 'other', password: 'hub-token-value', passwordName: 'HUB_TOKEN' });
    assert.equal(c.credentials.authFor('haproxy:2.6'), null, 'docker.io was removed');
  });

  test('a password missing from the file, or a file others can read: the pull fails naming the file, never with a value', () => {
    c.write({ HUB_TOKEN: 'hub-token-value' });
    registries = { '10.77.0.1:5001': { username: 'berth', password: 'LAN_PASSWORD' } };
    assert.throws(() => c.credentials.authFor('10.77.0.1:5001/app:v1'), (e: unknown) => e instanceof SecretMissingError && e.code === 'SECRET_MISSING' && e.message === `secret LAN_PASSWORD is not in ${c.file}: add a line LAN_PASSWORD=<value> to it (mode 0600)`);
    c.write({ LAN_PASSWORD: PASSWORD }, 0o644);
    chmodSync(c.file, 0o644);
    assert.throws(() => c.credentials.authFor('10.77.0.1:5001/app:v1'), (e: unknown) => e instanceof SecretsFileError && e.message.startsWith('UNPROTECTED SECRETS FILE: permissions 0644') && !e.message.includes(PASSWORD));
  });

  test('missingPasswordIssues: one issue per registry whose password the file lacks, at its key path, naming the file', () => {
    chmodSync(c.file, 0o600);
    c.write({ LAN_PASSWORD: PASSWORD });
    const specs = { '10.77.0.1:5001': { username: 'berth', password: 'LAN_PASSWORD' }, 'ghcr.io': { username: 'ci', password: 'GHCR_TOKEN' } };
    assert.deepEqual(c.credentials.missingPasswordIssues(specs), [
      { path: 'registries["ghcr.io"].password', message: `secret GHCR_TOKEN is not in ${c.file}: add a line GHCR_TOKEN=<value> to it (mode 0600)` },
    ]);
    assert.deepEqual(c.credentials.missingPasswordIssues({}), [], 'no registries, no file needed');
  });
});

/** What the fake dockerd answers to POST /images/create. */
type PullAnswer = { status: number; body: unknown } | { stream: unknown[] };

/** A Docker API on a Unix socket that records every pull's X-Registry-Auth and answers as told. */
function fakeDockerd(socket: string) {
  const pulls: Array<{ url: string; auth: string | undefined }> = [];
  let answer: PullAnswer = { stream: [{ status: 'Pulling from app' }, { status: 'Status: Downloaded newer image' }] };
  const server = http.createServer((req, res) => {
    req.resume();
    if (req.method !== 'POST' || !req.url?.startsWith('/images/create')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ message: `no route ${req.url}` }));
      return;
    }
    pulls.push({ url: req.url, auth: req.headers['x-registry-auth'] as string | undefined });
    if ('stream' in answer) {
      res.writeHead(200, { 'content-type': 'application/json' });
      for (const line of answer.stream) res.write(`${JSON.stringify(line)}\r\n`);
      res.end();
    } else {
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
    }
  });
  return {
    pulls,
    answer: (a: PullAnswer) => void (answer = a),
    listen: () => new Promise<void>((resolve) => server.listen(socket, resolve)),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('DockerHostDriver.pullImage against a Docker API: the header, and what comes back', () => {
  const dir = tempDir('berth-registries-dockerd-');
  const docker = fakeDockerd(join(dir.path, 'docker.sock'));
  const AUTH: RegistryAuth = { registry: '10.77.0.1:5001', username: 'berth', password: PASSWORD, passwordName: 'LAN_PASSWORD' };
  let authFor: (ref: string) => RegistryAuth | null = (ref) => (registryOf(ref) === AUTH.registry ? AUTH : null);
  const spec = { name: 'fake', local: true, address: null, sshPort: 22, user: 'root', sshKeyPath: null, hostKey: null, knownHostsPath: null, dockerSocket: join(dir.path, 'docker.sock'), stateDir: dir.path };
  const driver = createLocalDriver(spec, pino({ level: 'silent' }), { registryAuth: (ref) => authFor(ref) });
  before(() => docker.listen());
  after(async () => {
    await driver.close();
    await docker.close();
    dir.remove();
  });

  const decode = (header: string | undefined) => JSON.parse(Buffer.from(header ?? '', 'base64url').toString('utf8')) as unknown;

  test("a pull from a configured registry sends its credentials as X-Registry-Auth (base64url JSON), never in the URL; another registry's pull sends none", async () => {
    await driver.pullImage('10.77.0.1:5001/app:v1');
    await driver.pullImage('10.77.0.1:5000/app:v1');
    const [withAuth, anonymous] = docker.pulls.splice(0);
    assert.deepEqual(decode(withAuth!.auth), { username: 'berth', password: PASSWORD, serveraddress: '10.77.0.1:5001' });
    assert.ok(!withAuth!.url.includes('berth') && !withAuth!.url.includes(encodeURIComponent(PASSWORD)), withAuth!.url);
    assert.equal(anonymous!.auth, undefined);
  });

  test('refused (dockerd answers 401 with the registry\'s message): IMAGE_PULL_FAILED with that message, the password cut out, the credentials named, no raw cause', async () => {
    docker.answer({ status: 401, body: { message: `Head "http://10.77.0.1:5001/v2/app/manifests/v9": unauthorized: authentication required (tried berth:${PASSWORD})` } });
    const err = await driver.pullImage('10.77.0.1:5001/app:v9').then(() => null, (e: unknown) => e);
    assert.ok(err instanceof HostError && err.code === 'IMAGE_PULL_FAILED', String(err));
    assert.equal(
      err.message,
      'pull of 10.77.0.1:5001/app:v9 failed: Head "http://10.77.0.1:5001/v2/app/manifests/v9": unauthorized: authentication required (tried berth:[redacted:LAN_PASSWORD]) (sent the credentials of berth for 10.77.0.1:5001)',
    );
    assert.equal(err.cause, undefined, "dockerd's error (its answer unredacted in its fields) is not kept");
    assert.ok(!JSON.stringify(err).includes(PASSWORD) && !String(err.stack).includes(PASSWORD));
  });

  test('refused in the progress stream (an error line after 200): the same', async () => {
    docker.answer({ stream: [{ status: 'Pulling' }, { errorDetail: { message: `denied: ${PASSWORD} is wrong` }, error: `denied: ${PASSWORD} is wrong` }] });
    const err = await driver.pullImage('10.77.0.1:5001/app:v9').then(() => null, (e: unknown) => e);
    assert.ok(err instanceof HostError && err.code === 'IMAGE_PULL_FAILED', String(err));
    assert.equal(err.message, 'pull of 10.77.0.1:5001/app:v9 failed: denied: [redacted:LAN_PASSWORD] is wrong (sent the credentials of berth for 10.77.0.1:5001)');
  });

  test('refused without credentials: the message says berth sent none, naming the registry to configure', async () => {
    docker.answer({ status: 401, body: { message: 'Head "https://ghcr.io/v2/acme/web/manifests/v1": unauthorized' } });
    const err = await driver.pullImage('ghcr.io/acme/web:v1').then(() => null, (e: unknown) => e);
    assert.ok(err instanceof HostError);
    assert.equal(err.message, "pull of ghcr.io/acme/web:v1 failed: Head \"https://ghcr.io/v2/acme/web/manifests/v1\": unauthorized (berth sent no credentials: the config's registries has no entry for ghcr.io)");
  });

  test('a password that cannot be read fails the pull as it is (SECRET_MISSING: a release fault), and no request is made', async () => {
    authFor = () => {
      throw new SecretMissingError('LAN_PASSWORD', '/var/lib/berth/registries.env', true);
    };
    docker.pulls.splice(0);
    const err = await driver.pullImage('10.77.0.1:5001/app:v1').then(() => null, (e: unknown) => e);
    assert.ok(err instanceof SecretMissingError, String(err));
    assert.equal(docker.pulls.length, 0);
  });
});

describe('the daemon: every registry password in the registries file, at start and at reload', () => {
  const sandbox = daemonSandbox('berth-registries-daemon-', TOKEN);
  after(() => sandbox.cleanup());
  const withRegistries = (registries: string) => DAEMON_CONFIG.replace('apps:\n', `registries:\n${registries}apps:\n`);
  const config = sandbox.writeConfig('berth.yml', withRegistries('  10.77.0.1:5001: { username: berth, password: LAN_PASSWORD }\n'));
  const db = join(sandbox.path, 'data', 'berth.db');
  const file = registriesFilePath(db);
  /** The `msg` of each JSON log line (a key path's quotes are escaped in the raw line). */
  const messages = (output: string): string[] => output.split('\n').filter((l) => l.startsWith('{')).map((l) => (JSON.parse(l) as { msg: string }).msg);

  test('missing: exit non-zero naming the key path and the file; a file others can read: refused; 0600: it starts, never logging the value', async () => {
    const d = await sandbox.spawn({ config, db, env: { LAN_PASSWORD: 'from-the-env-123' } });
    assert.notEqual((await d.exit(15_000)).code, 0);
    assert.ok(messages(d.output()).includes(`registries["10.77.0.1:5001"].password: secret LAN_PASSWORD is not in ${file} (no such file): add a line LAN_PASSWORD=<value> to it (mode 0600)`), d.output());

    writeFileSync(file, secretsFileText({ LAN_PASSWORD: PASSWORD }), { mode: 0o644 });
    const loose = await sandbox.spawn({ config, db });
    assert.notEqual((await loose.exit(15_000)).code, 0);
    assert.ok(messages(loose.output()).some((m) => m.startsWith(`registries["10.77.0.1:5001"].password: UNPROTECTED SECRETS FILE: permissions 0644 for ${file} are too open`)), loose.output());

    chmodSync(file, 0o600);
    const good = await sandbox.spawn({ config, db });
    try {
      await waitReady(good);
      assert.ok(!good.output().includes(PASSWORD), 'the value is never logged');
    } finally {
      await killDaemon(good);
    }
  });

  test('reload: a registry whose password the file lacks is refused (422, key path), nothing applied; once it is there, applied live (no restartRequired)', async () => {
    const d = await sandbox.spawn({ config, db });
    try {
      await waitReady(d);
      const reload = async () => {
        const res = await fetch(`${d.url}/v1/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
        return { status: res.status, body: (await res.json()) as { issues?: Array<{ path: string; message: string }>; restartRequired?: string[] } };
      };
      sandbox.writeConfig('berth.yml', withRegistries('  10.77.0.1:5001: { username: berth, password: LAN_PASSWORD }\n  ghcr.io: { username: ci, password: GHCR_TOKEN }\n'));
      const refused = await reload();
      assert.equal(refused.status, 422, JSON.stringify(refused.body));
      assert.deepEqual(refused.body.issues, [{ path: 'registries["ghcr.io"].password', message: `secret GHCR_TOKEN is not in ${file}: add a line GHCR_TOKEN=<value> to it (mode 0600)` }]);

      writeFileSync(file, secretsFileText({ LAN_PASSWORD: PASSWORD, GHCR_TOKEN: 'ghcr-token-value' }), { mode: 0o600 });
      const applied = await reload();
      assert.equal(applied.status, 200, JSON.stringify(applied.body));
      assert.deepEqual(applied.body.restartRequired, []);
      assert.ok(!d.output().includes(PASSWORD) && !d.output().includes('ghcr-token-value'), 'no value in the log');
    } finally {
      await killDaemon(d);
    }
  });
});
