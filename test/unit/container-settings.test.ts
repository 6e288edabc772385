/**
 * An app's container settings (issue 14, item 2): what the document may say and how it
 * is refused (key paths), the operator-only host access, the config hash (a change rolls
 * the app out, an app without settings keeps its hash), the document round trip, and
 * the Docker create body they become.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { appDocument } from '../../src/config/app-document.js';
import { validateAppDocument } from '../../src/config/app.js';
import { splitWords } from '../../src/config/container.js';
import { containerConfigHash } from '../../src/domain/config-hash.js';
import { ConfigError } from '../../src/domain/errors.js';
import { createBody } from '../../src/hosts/docker/container-json.js';
import { makeApi } from '../support/api.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const base = { image: 'r/web', hosts: ['h1'], port: 3000 };
const read = (doc: Record<string, unknown>, allowHostAccess = false) => validateAppDocument('web', { ...base, ...doc }, ['h1'], 'apps.web', { allowHostAccess });
const issuesOf = (doc: Record<string, unknown>, allowHostAccess = false): Array<[string, string]> => {
  try {
    read(doc, allowHostAccess);
    return [];
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.issues.map((i) => [i.path, i.message]);
  }
};

describe('container settings in an app document', () => {
  test('every key, as written', () => {
    const spec = read({
      cmd: 'bundle exec sidekiq -q "default high"',
      entrypoint: ['/usr/bin/tini', '--'],
      volumes: ['uploads:/app/uploads', '/srv/web/config:/app/config:ro'],
      memory: '512m',
      cpus: 0.5,
      labels: { 'com.example.team': 'payments' },
      logging: { driver: 'json-file', options: { 'max-size': '10m' } },
      stop_signal: 'SIGQUIT',
      user: '1000:1000',
      extra_hosts: ['db.internal:10.0.0.5', 'gw:host-gateway'],
    });
    assert.deepEqual(spec.container, {
      cmd: ['bundle', 'exec', 'sidekiq', '-q', 'default high'],
      entrypoint: ['/usr/bin/tini', '--'],
      volumes: [
        { source: 'uploads', target: '/app/uploads', readOnly: false },
        { source: '/srv/web/config', target: '/app/config', readOnly: true },
      ],
      memoryBytes: 512 * 1024 * 1024,
      cpus: 0.5,
      labels: { 'com.example.team': 'payments' },
      logging: { driver: 'json-file', options: { 'max-size': '10m' } },
      stopSignal: 'SIGQUIT',
      user: '1000:1000',
      extraHosts: ['db.internal:10.0.0.5', 'gw:host-gateway'],
    });
  });

  test('an app that sets none has no container settings at all', () => {
    assert.equal(read({}).container, undefined);
  });

  const refused: Array<[string, Record<string, unknown>, string, RegExp]> = [
    ['a relative host path', { volumes: ['data/x:/x'] }, 'apps.web.volumes[0]', /volume name .* or an absolute host path/],
    ['a container path that is not absolute', { volumes: ['v:x'] }, 'apps.web.volumes[0]', /absolute path other than "\/"/],
    ['"..", which hides where a mount points', { volumes: ['/srv/../etc:/x'] }, 'apps.web.volumes[0]', /without "\.\."/],
    ['a bad mode', { volumes: ['v:/x:rx'] }, 'apps.web.volumes[0]', /with ":ro"/],
    ['the same target twice', { volumes: ['a:/x', 'b:/x/'] }, 'apps.web.volumes[1]', /mounted twice/],
    ["the host's root", { volumes: ['/:/host'] }, 'apps.web.volumes[0]', /host's root.*allow_host_access: true/],
    ['the Docker socket', { volumes: ['/var/run/docker.sock:/var/run/docker.sock'] }, 'apps.web.volumes[0]', /\/var\/run\/docker\.sock.*allow_host_access/],
    ['below /etc', { volumes: ['/etc/ssh:/x:ro'] }, 'apps.web.volumes[0]', /\(\/etc\).*refused/],
    ['privileged', { privileged: true }, 'apps.web.privileged', /take over its host: refused; .*allow_host_access: true/],
    ['memory below 6m', { memory: '1m' }, 'apps.web.memory', /at least 6m/],
    ['memory without a size', { memory: 'lots' }, 'apps.web.memory', /"512m"/],
    ['zero CPUs', { cpus: 0 }, 'apps.web.cpus', /0\.01 to 1024/],
    ["berth's own labels", { labels: { 'berth.app': 'other' } }, 'apps.web.labels["berth.app"]', /berth's own/],
    ['a label value that is not a string', { labels: { tier: 2 } }, 'apps.web.labels.tier', /quote it/],
    ['a signal that is not one', { stop_signal: 'quit' }, 'apps.web.stop_signal', /SIGQUIT/],
    ['an unbalanced quote', { cmd: 'sh -c "echo' }, 'apps.web.cmd', /unbalanced quote/],
    ['an empty command list', { cmd: [] }, 'apps.web.cmd', /non-empty list/],
    ['an extra host without an address', { extra_hosts: ['db'] }, 'apps.web.extra_hosts[0]', /name:address/],
    ['logging without a driver', { logging: { options: {} } }, 'apps.web.logging.driver', /required/],
    ['a user with a space', { user: 'web user' }, 'apps.web.user', /"user:group"/],
  ];
  for (const [what, doc, path, message] of refused) {
    test(`refused: ${what}`, () => {
      const issues = issuesOf(doc);
      assert.equal(issues.length, 1, JSON.stringify(issues));
      assert.equal(issues[0]![0], path);
      assert.match(issues[0]![1], message);
    });
  }

  test('allow_host_access lets the operator have privileged containers and host mounts', () => {
    const spec = read({ privileged: true, volumes: ['/var/run/docker.sock:/var/run/docker.sock'] }, true);
    assert.equal(spec.container?.privileged, true);
    assert.deepEqual(spec.container?.volumes, [{ source: '/var/run/docker.sock', target: '/var/run/docker.sock', readOnly: false }]);
  });

  test('words as a shell splits them, without expanding anything', () => {
    assert.deepEqual(splitWords(`a "b c" 'd "e"' f\\ g "h\\"i" $HOME *`), ['a', 'b c', 'd "e"', 'f g', 'h"i', '$HOME', '*']);
    assert.deepEqual(splitWords('  '), []);
    assert.deepEqual(splitWords('""'), ['']);
    assert.equal(splitWords("it's"), null);
  });

  test('GET shows the document as written back: PUT of it reads the same spec', () => {
    const spec = read({ cmd: ['bin/jobs'], volumes: ['v:/data:ro'], memory: '1g', cpus: 1.5, labels: { a: 'b' }, logging: { driver: 'local' }, stop_signal: 'SIGINT', user: 'app', extra_hosts: ['x:::1'] });
    assert.deepEqual(validateAppDocument('web', appDocument(spec), ['h1']), spec);
  });
});

describe('the config hash', () => {
  const hash = (doc: Record<string, unknown>) => containerConfigHash(read(doc), {});
  test('an app without settings hashes as before they existed (no container of a running app is replaced by the upgrade)', () => {
    // The hash of this document computed by berth before container settings existed.
    assert.equal(hash({}), '72ed9e35b812682e');
  });
  test('each setting changes it (a new container), and the order keys are written in does not', () => {
    const seen = new Set([hash({})]);
    for (const doc of [{ cmd: 'a' }, { cmd: 'b' }, { volumes: ['v:/x'] }, { volumes: ['v:/x:ro'] }, { memory: '64m' }, { cpus: 2 }, { labels: { a: 'b' } }, { logging: { driver: 'local' } }, { stop_signal: 'SIGINT' }, { user: 'app' }, { extra_hosts: ['a:1.2.3.4'] }]) {
      const h = hash(doc);
      assert.ok(!seen.has(h), `${JSON.stringify(doc)} has a hash of its own`);
      seen.add(h);
    }
    assert.equal(hash({ labels: { a: '1', b: '2' } }), hash({ labels: { b: '2', a: '1' } }));
  });
});

describe('the Docker create body', () => {
  test('settings map to Docker fields; volumes join the binds', () => {
    const body = createBody(
      {
        name: 'web-r1',
        image: 'r/web:v1',
        env: {},
        labels: {},
        network: 'berth',
        init: true,
        binds: ['/state:/state'],
        volumes: [{ source: 'uploads', target: '/u', readOnly: false }, { source: '/srv/c', target: '/c', readOnly: true }],
        memoryBytes: 64 * 1024 * 1024,
        cpus: 0.25,
        logging: { driver: 'json-file', options: { 'max-size': '1m' } },
        stopSignal: 'SIGQUIT',
        extraHosts: ['db:10.0.0.5'],
        privileged: true,
        user: 'app',
      },
      { 'berth.managed': 'true' },
    ) as Json;
    assert.equal(body.StopSignal, 'SIGQUIT');
    assert.equal(body.User, 'app');
    assert.deepEqual(body.HostConfig.Binds, ['/state:/state', 'uploads:/u', '/srv/c:/c:ro']);
    assert.equal(body.HostConfig.Memory, 64 * 1024 * 1024);
    assert.equal(body.HostConfig.NanoCpus, 250_000_000);
    assert.deepEqual(body.HostConfig.LogConfig, { Type: 'json-file', Config: { 'max-size': '1m' } });
    assert.deepEqual(body.HostConfig.ExtraHosts, ['db:10.0.0.5']);
    assert.equal(body.HostConfig.Privileged, true);
  });

  test('without settings, none of those fields is sent', () => {
    const body = createBody({ name: 'web-r1', image: 'r/web:v1', env: {}, labels: {}, network: 'berth', init: true }, {}) as Json;
    for (const key of ['Binds', 'Memory', 'NanoCpus', 'LogConfig', 'ExtraHosts', 'Privileged']) assert.equal(key in body.HostConfig, false, key);
    assert.equal('StopSignal' in body, false);
  });
});

describe('PUT through the API', () => {
  test("privileged is a 422 naming the operator's switch; with allow_host_access it is created", async () => {
    const api = makeApi();
    try {
      const res = await api.call({ method: 'PUT', url: '/v1/apps/web', payload: { ...base, privileged: true } });
      assert.equal(res.statusCode, 422);
      assert.deepEqual((JSON.parse(res.body) as Json).issues.map((i: Json) => i.path), ['body.privileged']);
    } finally {
      await api.close();
    }
    const allowed = makeApi({ appPolicy: () => ({ allowHostAccess: true }) });
    try {
      const doc = { ...base, privileged: true, cmd: ['bin/jobs'], volumes: ['v:/data:ro'], memory: 67108864, cpus: 0.5, labels: { a: 'b' }, logging: { driver: 'local', options: {} }, stop_signal: 'SIGINT', user: 'app', extra_hosts: ['x:10.0.0.1'] };
      assert.equal((await allowed.call({ method: 'PUT', url: '/v1/apps/web', payload: doc })).statusCode, 201);
      // GET answers every setting (a response schema that lacked one would drop it silently).
      const { spec } = JSON.parse((await allowed.call({ method: 'GET', url: '/v1/apps/web' })).body) as Json;
      for (const [key, value] of Object.entries(doc)) assert.deepEqual(spec[key], value, key);
    } finally {
      await allowed.close();
    }
  });
});
