/**
 * One source of truth for app specs (issue 16, item 4), through the API with a real
 * in-memory store: apps the config file declares are managed there (PUT/DELETE 409),
 * DELETE tears an API app down (202, then the controller), a reload is all or nothing,
 * and planReload's rules scenario by scenario.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import type { ConfigFileHandle, ReloadResult } from '../../src/api/context.js';
import { validateConfigDocument } from '../../src/config/validate.js';
import { planReload, type StoredAppFacts } from '../../src/config/reload.js';
import type { BerthConfig } from '../../src/domain/app-spec.js';
import { ConfigError } from '../../src/domain/errors.js';
import { makeApi, seedApp, type TestApi } from '../support/api.js';
import { makeSpec } from '../support/fixtures.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const json = (res: { body: string }): Json => JSON.parse(res.body) as Json;

const FILE = '/etc/berth/berth.yml';
const FP = 'SHA256:' + 'A'.repeat(43);

/** A config file declaring `declared`, whose reload answers `reload()` (or throws what it throws). */
function fileDeclaring(declared: string[], reload: () => ReloadResult = () => ({ apps: {}, undeclared: [], restartRequired: [] })): ConfigFileHandle & { reloads: number } {
  const handle = {
    path: FILE,
    reloads: 0,
    declares: (name: string) => declared.includes(name),
    reload: () => {
      handle.reloads++;
      return reload();
    },
  };
  return handle;
}

let api: TestApi | undefined;
afterEach(async () => {
  await api?.close();
  api = undefined;
});

describe('apps the config file declares are managed there', () => {
  test('PUT on a declared app is a 409 naming the file; nothing written', async () => {
    api = makeApi({ configFile: fileDeclaring(['web']) });
    const res = await api.call({ method: 'PUT', url: '/v1/apps/web', payload: { image: 'r/web', hosts: ['h1'], port: 3000 } });
    assert.equal(res.statusCode, 409);
    assert.equal(json(res).code, 'APP_MANAGED_BY_FILE');
    assert.match(json(res).message, /declared in the config file \/etc\/berth\/berth\.yml: change it there, then reload/);
    assert.equal(api.store.apps.getApp('web'), null);
  });

  test('DELETE on a declared app is a 409 naming the file; the app stays', async () => {
    api = makeApi({ configFile: fileDeclaring(['web']) });
    api.store.apps.upsertApp(makeSpec({ name: 'web' }), 'config');
    const res = await api.call({ method: 'DELETE', url: '/v1/apps/web' });
    assert.equal(res.statusCode, 409);
    assert.equal(json(res).code, 'APP_MANAGED_BY_FILE');
    assert.match(json(res).message, /\/etc\/berth\/berth\.yml: remove it there/);
    assert.equal(api.store.apps.getApp('web')?.deletingSince, null);
  });

  test('GET says who manages each app; deploys of a declared app are allowed', async () => {
    api = makeApi({ configFile: fileDeclaring(['web']) });
    api.store.apps.upsertApp(makeSpec({ name: 'web' }), 'config');
    await seedApp(api, 'blog');
    assert.equal(json(await api.call({ method: 'GET', url: '/v1/apps/web' })).managedBy, 'file');
    assert.equal(json(await api.call({ method: 'GET', url: '/v1/apps/blog' })).managedBy, 'api');
    assert.equal((await api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'v1' } })).statusCode, 202);
  });
});

describe('DELETE /v1/apps/:app', () => {
  test('202 marks the app for the controller; asking again changes nothing; unknown app 404', async () => {
    api = makeApi();
    await seedApp(api, 'blog', ['v1']);
    const res = await api.call({ method: 'DELETE', url: '/v1/apps/blog' });
    assert.equal(res.statusCode, 202);
    const body = json(res);
    assert.equal(body.app, 'blog');
    assert.deepEqual(body.hosts, ['h1', 'h2']);
    const since = api.store.apps.getApp('blog')?.deletingSince;
    assert.ok(since);
    assert.equal(body.deletingSince, since);
    assert.ok(api.controller.enqueued.includes('blog'));
    const again = await api.call({ method: 'DELETE', url: '/v1/apps/blog' });
    assert.equal(again.statusCode, 202);
    assert.equal(json(again).deletingSince, since);
    const events = api.store.events.listEvents('blog', { limit: 100 }).filter((e) => e.type === 'AppDeleting');
    assert.equal(events.length, 1, 'one AppDeleting event');
    assert.equal((await api.call({ method: 'DELETE', url: '/v1/apps/nope' })).statusCode, 404);
  });

  test('while it is being deleted: new releases, rollbacks, restarts and PUT are 409 APP_DELETING; GET shows it', async () => {
    api = makeApi();
    await seedApp(api, 'blog', ['v1', 'v2']);
    await api.call({ method: 'DELETE', url: '/v1/apps/blog' });
    const writes = [
      { method: 'POST' as const, url: '/v1/apps/blog/releases', payload: { version: 'v3' } },
      { method: 'POST' as const, url: '/v1/apps/blog/rollback', payload: {} },
      { method: 'POST' as const, url: '/v1/apps/blog/restart', payload: {} },
      { method: 'PUT' as const, url: '/v1/apps/blog', payload: { image: 'r/blog', hosts: ['h1'], port: 3000 } },
    ];
    for (const w of writes) {
      const res = await api.call(w);
      assert.equal(res.statusCode, 409, `${w.method} ${w.url}`);
      assert.equal(json(res).code, 'APP_DELETING', `${w.method} ${w.url}`);
    }
    assert.equal(api.store.releases.latestRelease('blog')?.version, 'v2', 'no release written');
    assert.ok(json(await api.call({ method: 'GET', url: '/v1/apps/blog' })).deletingSince);
  });

  test("its route leaves the hosts' wanted routes at once; once deleted, its events stay readable", async () => {
    api = makeApi();
    await seedApp(api, 'blog', ['v1'], { image: 'r/blog', hosts: ['h1'], port: 3000, proxy: { port: 8080 } });
    assert.deepEqual(api.store.apps.proxyRoutesOn('h1').map((r) => r.app), ['blog']);
    await api.call({ method: 'DELETE', url: '/v1/apps/blog' });
    assert.deepEqual(api.store.apps.proxyRoutesOn('h1'), []);
    api.store.apps.deleteApp('blog', 'controller');
    assert.equal((await api.call({ method: 'GET', url: '/v1/apps/blog' })).statusCode, 404);
    const events = await api.call({ method: 'GET', url: '/v1/apps/blog/events' });
    assert.equal(events.statusCode, 200);
    assert.deepEqual(json(events).events.map((e: Json) => e.type).filter((t: string) => t.startsWith('App')), ['AppCreated', 'AppDeleting', 'AppDeleted']);
    assert.equal((await api.call({ method: 'GET', url: '/v1/apps/never/events' })).statusCode, 404);
  });
});

describe('POST /v1/reload', () => {
  test("answers what the daemon's reload did", async () => {
    const file = fileDeclaring([], () => ({ apps: { web: 'updated', blog: 'unchanged' }, undeclared: ['old'], restartRequired: ['hosts'] }));
    api = makeApi({ configFile: file });
    const res = await api.call({ method: 'POST', url: '/v1/reload' });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(json(res), { apps: { web: 'updated', blog: 'unchanged' }, undeclared: ['old'], restartRequired: ['hosts'] });
    assert.equal(file.reloads, 1);
  });

  test('an invalid file is a 422 listing every issue with its key path; needs the token', async () => {
    const file = fileDeclaring([], () => {
      throw new ConfigError([
        { path: 'apps.web.port', message: 'must be an integer 1..65535' },
        { path: 'apps.blog.hosts[0]', message: 'unknown host "h9"' },
      ]);
    });
    api = makeApi({ configFile: file });
    const res = await api.call({ method: 'POST', url: '/v1/reload' });
    assert.equal(res.statusCode, 422);
    assert.deepEqual(json(res).issues.map((i: Json) => i.path), ['apps.web.port', 'apps.blog.hosts[0]']);
    assert.equal((await api.call({ method: 'POST', url: '/v1/reload', auth: false })).statusCode, 401);
    assert.equal(file.reloads, 1, 'the unauthenticated call never reached the reload');
  });
});

/** A validated config: hosts h1..h3 unless `hosts` says otherwise, and the given apps. */
function config(apps: Record<string, unknown>, more: Record<string, unknown> = {}): BerthConfig {
  const hosts = Object.fromEntries(['h1', 'h2', 'h3'].map((h) => [h, { address: `10.0.0.${h.slice(1)}`, host_key: FP }]));
  return validateConfigDocument({ hosts, apps, ...more }, { baseDir: '/' });
}
const app = (over: Record<string, unknown> = {}) => ({ image: 'r/web', hosts: ['h1', 'h2'], port: 3000, ...over });
const stored = (entries: Array<[string, Partial<StoredAppFacts> & { hosts?: string[]; proxy?: Record<string, unknown> }]>) =>
  new Map<string, StoredAppFacts>(
    entries.map(([name, f]) => [name, { spec: f.spec ?? config({ [name]: app({ hosts: f.hosts ?? ['h1'], ...(f.proxy ? { proxy: f.proxy } : {}) }) }).apps[name]!, deleting: f.deleting ?? false }]),
  );

describe('planReload', () => {
  const cases: Array<{ name: string; running: BerthConfig; next: BerthConfig; stored: Map<string, StoredAppFacts>; apps?: string[]; undeclared?: string[]; restart?: string[]; issues?: string[] }> = [
    {
      name: 'an app changed and one added: both upserted, nothing else changed',
      running: config({ web: app() }),
      next: config({ web: app({ port: 4000 }), blog: app() }),
      stored: stored([['web', {}]]),
      apps: ['web', 'blog'],
      undeclared: [],
      restart: [],
    },
    {
      name: 'an app left out of the file: it stays, undeclared (managed through the API now)',
      running: config({ web: app(), blog: app() }),
      next: config({ web: app() }),
      stored: stored([['web', {}], ['blog', {}]]),
      apps: ['web'],
      undeclared: ['blog'],
      restart: [],
    },
    {
      name: 'sections read at start are reported, not applied',
      running: config({ web: app() }),
      next: config({ web: app() }, { controller: { resync_interval: '30s' }, proxy: { image: 'haproxy:2.8' } }),
      stored: stored([['web', {}]]),
      apps: ['web'],
      undeclared: [],
      restart: ['proxy', 'controller'],
    },
    {
      name: 'registries are applied live (read at every pull): added, changed or removed, no restart',
      running: config({ web: app() }, { registries: { 'ghcr.io': { username: 'ci', password: 'GHCR_TOKEN' } } }),
      next: config({ web: app() }, { registries: { 'ghcr.io': { username: 'bot', password: 'GHCR_TOKEN_2' }, '10.0.0.5:5000': { username: 'ci', password: 'LAN' } } }),
      stored: stored([['web', {}]]),
      apps: ['web'],
      undeclared: [],
      restart: [],
    },
    {
      name: 'an app on a host the running daemon lacks: refused, naming the key',
      running: config({ web: app() }),
      next: config({ web: app({ hosts: ['h1', 'h4'] }) }, { hosts: Object.fromEntries(['h1', 'h2', 'h3', 'h4'].map((h) => [h, { address: `10.0.0.${h.slice(1)}`, host_key: FP }])) }),
      stored: stored([['web', {}]]),
      issues: ['apps.web.hosts[1]'],
    },
    {
      name: "a route that takes an API app's traffic: refused",
      running: config({ web: app() }),
      next: config({ web: app({ proxy: { port: 80, host: 'a.example.com' } }) }),
      stored: stored([['web', {}], ['shop', { hosts: ['h2'], proxy: { port: 80, host: 'a.example.com' } }]]),
      issues: ['apps.web.proxy'],
    },
    {
      name: 'an app being deleted cannot be declared again until it is gone',
      running: config({}),
      next: config({ blog: app() }),
      stored: stored([['blog', { deleting: true }]]),
      issues: ['apps.blog'],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      if (c.issues) {
        assert.throws(() => planReload(c.running, c.next, c.stored), (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          assert.deepEqual(err.issues.map((i) => i.path), c.issues);
          return true;
        });
        return;
      }
      const plan = planReload(c.running, c.next, c.stored);
      assert.deepEqual(plan.apps.map((a) => a.name), c.apps);
      assert.deepEqual(plan.undeclared, c.undeclared);
      assert.deepEqual(plan.restartRequired, c.restart);
    });
  }
});
