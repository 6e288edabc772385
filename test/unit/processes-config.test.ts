import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { appDocument } from '../../src/config/app-document.js';
import { validateAppDocument } from '../../src/config/app.js';
import { containerConfigHash } from '../../src/domain/config-hash.js';
import { ConfigError } from '../../src/domain/errors.js';
import { appProcesses, routedApp, unitKey } from '../../src/domain/processes.js';
import { openStore } from '../../src/store/index.js';

const known = ['h1', 'h2', 'h3'];

/** web serves through the proxy on h1, h2; worker runs bin/jobs on h3; both inherit the app's env and volumes. */
const DOC = {
  image: '10.77.0.1:5000/app',
  hosts: ['h1', 'h2'],
  env: { MODE: 'prod' },
  volumes: ['data:/data'],
  healthcheck: { path: '/up', interval: '1s' },
  processes: {
    web: { proxy: { port: 8080 } },
    worker: { cmd: 'bin/jobs --queue default', hosts: ['h3'], env: { QUEUE: 'jobs' } },
  },
};

function issuesOf(doc: unknown): string[] {
  try {
    validateAppDocument('app', doc, known);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.path}: ${i.message}`);
    throw err;
  }
  return [];
}

describe('processes: config', () => {
  test('each process resolves over the app: hosts, env merged, container settings, route and health per process', () => {
    const spec = validateAppDocument('app', DOC, known);
    assert.deepEqual(spec.hosts, ['h1', 'h2', 'h3'], 'the app runs where its processes run');
    assert.equal(spec.proxy, null);
    const [web, worker] = spec.processes!;
    assert.equal(web!.name, 'web');
    assert.deepEqual(web!.hosts, ['h1', 'h2']);
    assert.deepEqual(web!.proxy, { port: 8080, host: null, pathPrefix: null, drainTimeoutMs: 30_000 });
    assert.deepEqual(web!.healthcheck, { path: '/up', port: 3000, intervalMs: 1_000, timeoutMs: 2_000, maxAttempts: 10, minHealthyMs: 0 }, "the app's healthcheck is the serving process's default");
    assert.deepEqual(web!.container, { volumes: [{ source: 'data', target: '/data', readOnly: false }] });
    assert.deepEqual(worker!.hosts, ['h3']);
    assert.deepEqual(worker!.env, { MODE: 'prod', QUEUE: 'jobs' });
    assert.deepEqual(worker!.container, { cmd: ['bin/jobs', '--queue', 'default'], volumes: [{ source: 'data', target: '/data', readOnly: false }] });
    assert.equal(worker!.proxy, null);
    assert.deepEqual(worker!.healthcheck, { cmd: null, intervalMs: 5_000, timeoutMs: 2_000, maxAttempts: 10, minHealthyMs: 10_000 }, 'without cmd: running 10s unrestarted');
  });

  test('a health command runs under sh -c as a string, as it is as a list; min_healthy is then a soak that defaults to 0', () => {
    const withCmd = (cmd: unknown) => validateAppDocument('app', { ...DOC, processes: { ...DOC.processes, worker: { hosts: ['h3'], healthcheck: { cmd } } } }, known).processes![1]!.healthcheck;
    assert.deepEqual(withCmd('test -f /tmp/ready && echo ok'), { cmd: ['sh', '-c', 'test -f /tmp/ready && echo ok'], intervalMs: 5_000, timeoutMs: 2_000, maxAttempts: 10, minHealthyMs: 0 });
    assert.deepEqual((withCmd(['/bin/check', '--quick']) as { cmd: string[] }).cmd, ['/bin/check', '--quick']);
  });

  test('mistakes are named by key path, with the fix', () => {
    const issues = issuesOf({ image: 'app', hosts: ['h1'], proxy: { port: 80 }, processes: { web: {} } });
    assert.deepEqual(issues, ['apps.app.proxy: with processes, the route is the process\'s that serves: put it under that process (apps.app.processes.web.proxy, say)']);
    assert.match(issuesOf({ image: 'app', processes: { web: { hosts: ['h1'] }, worker: {} } }).join('\n'), /^apps\.app\.processes\.worker\.hosts: required: the hosts this process runs on, here or for every process at apps\.app\.hosts$/m);
    assert.match(issuesOf({ image: 'app', hosts: ['h1'], processes: { a: { proxy: { port: 80 } }, b: { proxy: { port: 81 } } } }).join('\n'), /apps\.app\.processes\.b\.proxy: only one process of an app serves through the proxy, and a does/);
    assert.match(issuesOf({ image: 'app', hosts: ['h1'], processes: { worker: { healthcheck: { path: '/up' } } } }).join('\n'), /apps\.app\.processes\.worker\.healthcheck\.path: a process without a proxy is not probed over HTTP/);
    assert.match(issuesOf({ image: 'app', hosts: ['h1'], processes: { web: { proxy: { port: 80 }, healthcheck: { cmd: 'true' } } } }).join('\n'), /apps\.app\.processes\.web\.healthcheck\.cmd: unknown key/);
    assert.match(issuesOf({ image: 'app', hosts: ['h1'], processes: {} }).join('\n'), /apps\.app\.processes: expected at least one process/);
    assert.match(issuesOf({ image: 'app', hosts: ['h1'], processes: { Web: {} } }).join('\n'), /apps\.app\.processes\.Web: invalid process name/);
    assert.match(issuesOf({ image: 'app', hosts: ['h1'], processes: { web: { hosts: ['h9'] } } }).join('\n'), /apps\.app\.processes\.web\.hosts\[0\]: unknown host "h9"/);
    assert.match(issuesOf({ image: 'app', hosts: ['h1'], processes: { web: { image: 'other' } } }).join('\n'), /apps\.app\.processes\.web\.image: unknown key/);
  });

  test('appDocument writes processes out resolved, and reads back to the same spec', () => {
    const spec = validateAppDocument('app', DOC, known);
    const doc = appDocument(spec);
    assert.deepEqual(Object.keys(doc.processes!), ['web', 'worker']);
    assert.deepEqual(validateAppDocument('app', JSON.parse(JSON.stringify(doc)), known), spec);
  });

  test('each process has its own config hash, of its effective settings', () => {
    const hashes = (doc: typeof DOC) => appProcesses(validateAppDocument('app', doc, known)).map((p) => containerConfigHash(p.spec, {}));
    const [web, worker] = hashes(DOC);
    assert.notEqual(web, worker);
    const [web2, worker2] = hashes({ ...DOC, processes: { ...DOC.processes, worker: { ...DOC.processes.worker, cmd: 'bin/jobs --queue other' } } });
    assert.equal(web2, web, "a worker's cmd leaves web's containers as they are");
    assert.notEqual(worker2, worker);
  });

  test('the route is the serving process\'s, on its hosts, for route checks and the store alike', () => {
    const spec = validateAppDocument('app', DOC, known);
    assert.deepEqual(routedApp(spec), { name: 'app', hosts: ['h1', 'h2'], proxy: spec.processes![0]!.proxy });
    const store = openStore(':memory:');
    try {
      store.apps.upsertApp(spec, 'test');
      store.apps.upsertApp(validateAppDocument('plain', { image: 'plain', hosts: ['h3'], proxy: { port: 9090 } }, known), 'test');
      store.apps.upsertApp(validateAppDocument('jobs', { image: 'jobs', hosts: ['h3'], processes: { worker: {} } }, known), 'test');
      assert.deepEqual(store.apps.listRoutes().map((r) => [r.name, r.hosts, r.proxy?.port]), [['app', ['h1', 'h2'], 8080], ['plain', ['h3'], 9090]]);
      assert.deepEqual(store.apps.proxyRoutesOn('h3').map((r) => r.app), ['plain'], "a worker's host gets no route of the app");
    } finally {
      store.close();
    }
  });

  test('unit keys: process@host, and the plain host for the implicit process', () => {
    assert.equal(unitKey('worker', 'h3'), 'worker@h3');
    assert.equal(unitKey(null, 'h3'), 'h3');
  });
});
