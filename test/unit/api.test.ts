/**
 * The HTTP API (README.md, "HTTP API") through app.inject(), plus one real listening server
 * for the SSE stream. The store is a real in-memory SQLite store; the only stand-in
 * is the controller seam, which records the apps the API enqueues.
 */
import assert from 'node:assert/strict';
import { containerConfigHash } from '../../src/domain/config-hash.js';
import type { AddressInfo } from 'node:net';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { ConflictError } from '../../src/domain/errors.js';
import type { AppLogItem } from '../../src/domain/logs.js';
import type { BerthEvent } from '../../src/domain/release.js';
import { createHash } from 'node:crypto';
import { makeSpec } from '../support/fixtures.js';
import { AUTH, TOKEN, appDoc, makeApi, seedApp, snapshotDb, sseClient as sse, type TestApi } from '../support/api.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const json = (res: { body: string }): Json => JSON.parse(res.body) as Json;

let api: TestApi;
beforeEach(() => {
  api = makeApi();
});
afterEach(async () => {
  await api.close();
});

/** The routes of README.md's "HTTP API" table, with the path parameter spelt as in OpenAPI. */
const DESIGN_ROUTES: Array<[string, string]> = [
  ['get', '/healthz'],
  ['get', '/readyz'],
  ['get', '/metrics'],
  ['get', '/v1/apps'],
  ['get', '/v1/apps/{app}'],
  ['put', '/v1/apps/{app}'],
  ['post', '/v1/apps/{app}/releases'],
  ['get', '/v1/apps/{app}/releases'],
  ['post', '/v1/apps/{app}/rollback'],
  ['post', '/v1/apps/{app}/restart'],
  ['post', '/v1/apps/{app}/pause'],
  ['post', '/v1/apps/{app}/resume'],
  ['delete', '/v1/apps/{app}'],
  ['post', '/v1/reload'],
  ['get', '/v1/apps/{app}/events'],
  ['get', '/v1/apps/{app}/logs'],
  ['get', '/v1/hosts'],
];
/** Open by design: probes, the scrape and the API description. */
const OPEN_ROUTES = new Set(['/healthz', '/readyz', '/metrics', '/openapi.json']);

async function openapiOps(t: TestApi): Promise<Array<{ method: string; path: string; op: Json }>> {
  const doc = json(await t.app.inject({ method: 'GET', url: '/openapi.json' }));
  return Object.entries(doc.paths as Record<string, Json>).flatMap(([path, ops]) =>
    Object.entries(ops).map(([method, op]) => ({ method, path, op: op as Json })),
  );
}
const concrete = (path: string) => path.replace('{app}', 'web');

describe('system routes', () => {
  test('GET /healthz answers without a token', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/healthz' });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(json(res), { status: 'ok', version: '0.0.0-test' });
  });

  test('GET /readyz: ready while the DB is open and the loop runs, 503 naming what is not', async () => {
    let res = await api.app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(json(res), { status: 'ready', role: 'leader', daemon: 'this', leader: { daemon: 'this', epoch: null } });

    api.controller.running = false;
    res = await api.app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(res.statusCode, 503);
    assert.equal(json(res).code, 'NOT_READY');
    assert.match(json(res).message, /reconcile loop not running/);

    api.store.close();
    res = await api.app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(res.statusCode, 503);
    assert.match(json(res).message, /database not open; reconcile loop not running/);
  });

  test('GET /metrics: Prometheus text with berth_ series, open without a token', async () => {
    await api.app.inject({ method: 'GET', url: '/healthz' });
    const res = await api.app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    assert.match(res.body, /^berth_build_info\{version="0\.0\.0-test"\} 1$/m);
    assert.match(res.body, /^# TYPE berth_reconcile_total counter$/m);
    assert.match(res.body, /^berth_http_request_duration_seconds_count\{method="GET",route="\/healthz",status="2xx"\} 1$/m);
  });

  test('GET /openapi.json lists every route of the design with its schemas and security', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(res.statusCode, 200);
    const doc = json(res);
    assert.equal(doc.openapi, '3.1.0');
    assert.equal(doc.info.version, '0.0.0-test');
    assert.deepEqual(doc.components.securitySchemes.bearer, { type: 'http', scheme: 'bearer' });
    for (const [method, path] of DESIGN_ROUTES) {
      const op = doc.paths[path]?.[method] as Json | undefined;
      assert.ok(op, `${method.toUpperCase()} ${path} is missing from /openapi.json`);
      assert.equal(typeof op.summary, 'string', `${method} ${path} has a summary`);
      assert.match(op.operationId, /^[a-z][A-Za-z]+$/, `${method} ${path} has a camelCase operationId`);
      const statuses = Object.keys(op.responses);
      assert.ok(statuses.some((s) => s.startsWith('2')), `${method} ${path} documents a success body`);
      assert.equal(op.responses['500'].content['application/json'].schema.$ref, '#/components/schemas/Error', `${method} ${path} documents the error body`);
      if (!OPEN_ROUTES.has(path)) assert.ok(statuses.includes('401'), `${method} ${path} documents 401`);
      if (path.includes('{app}')) {
        const p = (op.parameters as Json[]).find((x) => x.name === 'app');
        assert.equal(p?.in, 'path');
        assert.equal(p?.schema.pattern, '^[a-z][a-z0-9-]{0,62}$');
      }
      const secured = !OPEN_ROUTES.has(path);
      assert.equal(Boolean(op.security), secured, `${method} ${path} security`);
    }
    // Bodies carry their schemas.
    const releaseBody = doc.paths['/v1/apps/{app}/releases'].post.requestBody.content['application/json'].schema;
    assert.deepEqual(releaseBody.required, ['version']);
    assert.equal(releaseBody.additionalProperties, false);
    assert.ok(releaseBody.properties.version.pattern);
    assert.equal(releaseBody.properties.expectedRevision.type, 'integer');
    assert.ok(doc.paths['/v1/apps/{app}/rollback'].post.requestBody.content['application/json'].schema.properties.version);
    assert.equal(doc.paths['/v1/apps/{app}'].put.requestBody.content['application/json'].schema.type, 'object');
    const query = (doc.paths['/v1/apps/{app}/releases'].get.parameters as Json[]).filter((p) => p.in === 'query').map((p) => p.name);
    assert.deepEqual(query.sort(), ['before', 'limit']);
    const eventsQuery = (doc.paths['/v1/apps/{app}/events'].get.parameters as Json[]).filter((p) => p.in === 'query').map((p) => p.name);
    assert.deepEqual(eventsQuery.sort(), ['after', 'limit', 'tail']);
    // Query integers are integers, with bounds.
    const limit = (doc.paths['/v1/apps/{app}/releases'].get.parameters as Json[]).find((p) => p.name === 'limit');
    assert.deepEqual([limit?.schema.type, limit?.schema.minimum, limit?.schema.maximum], ['integer', 1, 1000]);
    // The event stream: its media type, the header it resumes from, the 503 of a full house.
    const events = doc.paths['/v1/apps/{app}/events'].get;
    assert.ok(events.responses['200'].content['text/event-stream'].schema.description.includes('Last-Event-ID'));
    assert.ok(events.responses['200'].content['application/json'].schema.properties.events);
    assert.ok(doc.components.schemas.Error.properties.message);
    assert.ok((events.parameters as Json[]).some((p) => p.in === 'header' && p.name === 'last-event-id'));
    assert.ok(events.responses['503']);
    // A host's errors: 502 when it fails, 504 when it does not answer in time.
    assert.deepEqual(['502', '504'].filter((s) => doc.paths['/v1/apps/{app}/exec'].post.responses[s]), ['502', '504']);
    const ids = (await openapiOps(api)).map((o) => o.op.operationId as string);
    assert.equal(new Set(ids).size, ids.length, `operationIds are unique: ${ids.join(', ')}`);
  });

  test('an unknown route is a JSON 404 naming it', async () => {
    const res = await api.call({ method: 'PATCH', url: '/v1/apps/web?x=1' });
    assert.equal(res.statusCode, 404);
    assert.deepEqual(json(res), { error: 'Not Found', code: 'ROUTE_NOT_FOUND', message: 'no route PATCH /v1/apps/web' });
  });
});

describe('apps', () => {
  test('GET /v1/apps is empty at first', async () => {
    const res = await api.call({ method: 'GET', url: '/v1/apps' });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(json(res), { apps: [], next: null });
  });

  /** `count` apps straight into the store (PUT's validation is not what these tests are about). */
  function manyApps(count: number, over: Record<string, unknown> = {}): string[] {
    const names = Array.from({ length: count }, (_, i) => `app-${String(i).padStart(3, '0')}`);
    // Stored in another order than the names sort in: the page order is by name, not by insertion.
    for (const name of [...names].reverse()) api.store.apps.upsertApp(makeSpec({ name, hosts: ['h1'], ...over }), 'test');
    return names;
  }

  async function walk(limit: number | null): Promise<{ pages: string[][]; names: string[] }> {
    const pages: string[][] = [];
    let after: string | null = null;
    do {
      const query = [limit === null ? null : `limit=${limit}`, after === null ? null : `after=${after}`].filter(Boolean).join('&');
      const res = await api.call({ method: 'GET', url: `/v1/apps${query ? `?${query}` : ''}` });
      assert.equal(res.statusCode, 200, res.body);
      const body = json(res);
      pages.push((body.apps as Json[]).map((a) => a.name as string));
      after = body.next as string | null;
      assert.ok(pages.length <= 100, 'the cursor moves on');
    } while (after !== null);
    return { pages, names: pages.flat() };
  }

  test('GET /v1/apps pages: the cursor walks every app exactly once, in name order; limit bounds a page', async () => {
    const names = manyApps(7);
    const byThree = await walk(3);
    assert.deepEqual(byThree.pages.map((p) => p.length), [3, 3, 1]);
    assert.deepEqual(byThree.names, names);
    assert.deepEqual((await walk(7)).pages, [names], 'a page that holds the rest says next: null');
    assert.deepEqual((await walk(1)).names, names);
  });

  test('GET /v1/apps: a page holds at most 50 apps, whatever limit asks', async () => {
    const names = manyApps(130);
    const { pages, names: seen } = await walk(1000);
    assert.deepEqual(pages.map((p) => p.length), [50, 50, 30]);
    assert.deepEqual(seen, names);
  });

  test('GET /v1/apps without a limit: a page of 50 and a cursor to the rest', async () => {
    const names = manyApps(53);
    const { pages, names: seen } = await walk(null);
    assert.deepEqual(pages.map((p) => p.length), [50, 3]);
    assert.deepEqual(seen, names);
  });

  test('GET /v1/apps: a page of large specs ends early (1 MB of specs), the cursor goes on from there', async () => {
    const names = manyApps(6, { env: { BLOB: 'x'.repeat(300_000) } });
    const { pages, names: seen } = await walk(100);
    assert.deepEqual(pages.map((p) => p.length), [4, 2]);
    assert.deepEqual(seen, names);
  });

  test('GET /v1/apps: a bad limit or cursor is a 400 that names it', async () => {
    manyApps(2);
    for (const [query, message] of [
      ['limit=0', /^querystring\.limit: must be >= 1, got 0$/],
      ['limit=abc', /^querystring\.limit: expected integer, got "abc"$/],
      ['limit=99999', /^querystring\.limit: must be <= 1000, got 99999$/],
      ['after=Web_1', /^querystring\.after: expected an app name.*got "Web_1"$/],
      ['page=2', /^querystring: unknown property "page" \(allowed: limit, after\)$/],
    ] as const) {
      const res = await api.call({ method: 'GET', url: `/v1/apps?${query}` });
      assert.equal(res.statusCode, 400, query);
      assert.match(json(res).message, message, query);
    }
  });

  test('PUT refuses a proxy route another app already owns on a shared host (422, nothing written)', async () => {
    assert.equal((await api.call({ method: 'PUT', url: '/v1/apps/web', payload: appDoc({ proxy: { port: 8080 } }) })).statusCode, 201);
    const before = snapshotDb(api.store);
    const res = await api.call({ method: 'PUT', url: '/v1/apps/api', payload: appDoc({ hosts: ['h2'], proxy: { port: 8080 } }) });
    assert.equal(res.statusCode, 422);
    assert.match(json(res).message as string, /body\.proxy: route port 8080 any host is the same as app "web"'s route \(port 8080 any host\) on host h2/);
    assert.deepEqual(snapshotDb(api.store), before);
    const other = await api.call({ method: 'PUT', url: '/v1/apps/api', payload: appDoc({ hosts: ['h2'], proxy: { port: 8081 } }) });
    assert.equal(other.statusCode, 201, 'another port is fine');
  });

  test('PUT refuses a route that would take requests of another app\'s route: wildcard, path, port-only (422 naming the owner, nothing written)', async () => {
    assert.equal((await api.call({ method: 'PUT', url: '/v1/apps/web', payload: appDoc({ proxy: { port: 80, host: 'app.example.com', path_prefix: '/api' } }) })).statusCode, 201);
    const before = snapshotDb(api.store);
    const refused: Array<[Record<string, unknown>, RegExp]> = [
      // The hijack of the hardening issue: no port (so 80) and a wildcard covering web's host.
      [{ host: '*.example.com' }, /body\.proxy: route port 80 host "\*\.example\.com" covers app "web"'s route \(port 80 host "app\.example\.com" path "\/api"\) on hosts h1, h2/],
      [{ host: 'app.example.com' }, /body\.proxy: route port 80 host "app\.example\.com" any path covers app "web"'s route \(port 80 host "app\.example\.com" path "\/api"\)/],
      [{ host: 'app.example.com', path_prefix: '/api/v2' }, /body\.proxy: route port 80 host "app\.example\.com" path "\/api\/v2" is inside app "web"'s route/],
      [{ port: 80 }, /body\.proxy: route port 80 any host conflicts with app "web"'s route \(port 80 host "app\.example\.com" path "\/api"\) on hosts h1, h2: a route without a host owns its port/],
    ];
    for (const [proxy, message] of refused) {
      const res = await api.call({ method: 'PUT', url: '/v1/apps/blog', payload: appDoc({ proxy }) });
      assert.equal(res.statusCode, 422, JSON.stringify(proxy));
      assert.equal(json(res).code, 'CONFIG_INVALID');
      assert.match(json(res).message as string, message);
      assert.deepEqual((json(res).issues as Array<{ path: string }>).map((i) => i.path), ['body.proxy']);
      assert.deepEqual(snapshotDb(api.store), before, `nothing written for ${JSON.stringify(proxy)}`);
    }
    assert.deepEqual(api.controller.enqueued, ['web'], 'nothing enqueued for a refused PUT');

    const fine = await api.call({ method: 'PUT', url: '/v1/apps/blog', payload: appDoc({ proxy: { host: 'app.example.com', path_prefix: '/admin' } }) });
    assert.equal(fine.statusCode, 201, 'a disjoint path prefix on the same host is fine');
    assert.equal(json(fine).spec.proxy.path_prefix, '/admin');
    const own = await api.call({ method: 'PUT', url: '/v1/apps/web', payload: appDoc({ proxy: { host: 'app.example.com', path_prefix: '/api/v1' } }) });
    assert.equal(own.statusCode, 200, 'an app may narrow its own route');
  });

  test('PUT creates (201), repeats as unchanged (200, nothing written), updates (200)', async () => {
    let res = await api.call({ method: 'PUT', url: '/v1/apps/web', payload: appDoc(), headers: { 'x-berth-actor': 'alice' } });
    assert.equal(res.statusCode, 201);
    let body = json(res);
    assert.equal(body.change, 'created');
    assert.equal(body.name, 'web');
    assert.equal(body.paused, false);
    assert.equal(body.desired, null);
    assert.equal(body.spec.healthcheck.interval, '1s');
    assert.equal(body.spec.healthcheck.timeout, '500ms');
    assert.deepEqual(api.controller.enqueued, ['web']);
    assert.equal(api.store.events.listEvents('web').at(-1)?.actor, 'alice');

    const before = snapshotDb(api.store);
    res = await api.call({ method: 'PUT', url: '/v1/apps/web', payload: appDoc() });
    assert.equal(res.statusCode, 200);
    assert.equal(json(res).change, 'unchanged');
    assert.deepEqual(snapshotDb(api.store), before, 'an unchanged PUT writes nothing');
    assert.deepEqual(api.controller.enqueued, ['web'], 'an unchanged PUT does not enqueue');

    // What GET shows can be PUT back unchanged.
    const shown = json(await api.call({ method: 'GET', url: '/v1/apps/web' }));
    res = await api.call({ method: 'PUT', url: '/v1/apps/web', payload: shown.spec });
    assert.equal(json(res).change, 'unchanged');

    res = await api.call({ method: 'PUT', url: '/v1/apps/web', payload: appDoc({ port: 8080 }) });
    assert.equal(res.statusCode, 200);
    body = json(res);
    assert.equal(body.change, 'updated');
    assert.equal(body.spec.port, 8080);
    assert.deepEqual(api.controller.enqueued, ['web', 'web']);
    assert.deepEqual(
      api.store.events.listEvents('web').map((e) => e.type),
      ['AppCreated', 'AppUpdated'],
    );
  });

  test('GET /v1/apps and /v1/apps/:app show spec, desired release and status', async () => {
    await seedApp(api, 'web', ['v1', 'v2']);
    await seedApp(api, 'api', []);
    const list = json(await api.call({ method: 'GET', url: '/v1/apps' }));
    assert.deepEqual(list.apps.map((a: Json) => a.name), ['api', 'web']);
    const one = json(await api.call({ method: 'GET', url: '/v1/apps/web' }));
    assert.equal(one.desired.revision, 2);
    assert.equal(one.desired.version, 'v2');
    assert.equal(one.desired.reason, 'deploy');
    assert.equal(one.status, null);
    assert.deepEqual(one.spec.hosts, ['h1', 'h2']);
    api.store.status.writeStatus({
      app: 'web',
      phase: 'Progressing',
      observedRevision: 1,
      conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReleaseCreated', message: 'revision 2 (v2) on 0/2 hosts', lastTransitionTime: new Date().toISOString() }],
      hosts: [{ host: 'h1', version: 'v1', revision: 1, containerId: 'abc', health: 'healthy', lastError: null, lastLogs: null }],
      updatedAt: new Date().toISOString(),
    });
    const withStatus = json(await api.call({ method: 'GET', url: '/v1/apps/web' }));
    assert.equal(withStatus.status.phase, 'Progressing');
    assert.equal(withStatus.status.observedRevision, 1);
    assert.equal(withStatus.status.hosts[0].health, 'healthy');
    const missing = await api.call({ method: 'GET', url: '/v1/apps/nope' });
    assert.equal(missing.statusCode, 404);
    assert.match(json(missing).message, /app "nope" not found/);
  });
});

describe('releases', () => {
  test('POST creates the next revision: 202, enqueued, audited with the actor', async () => {
    await seedApp(api);
    api.controller.enqueued.length = 0;
    const res = await api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'v2' }, headers: { 'x-berth-actor': 'bob' } });
    assert.equal(res.statusCode, 202);
    const body = json(res);
    assert.equal(body.app, 'web');
    assert.equal(body.revision, 1);
    assert.equal(body.version, 'v2');
    assert.equal(body.reason, 'deploy');
    assert.match(body.createdAt, /^\d{4}-\d\d-\d\dT/);
    assert.deepEqual(api.controller.enqueued, ['web']);
    const ev = api.store.events.listEvents('web').at(-1)!;
    assert.equal(ev.type, 'ReleaseCreated');
    assert.equal(ev.actor, 'bob');
    assert.equal(ev.revision, 1);
    // A digest is a version too.
    const digest = `sha256:${'ab'.repeat(32)}`;
    const res2 = await api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: digest } });
    assert.equal(res2.statusCode, 202);
    assert.equal(json(res2).version, digest);
  });

  test('20 concurrent POSTs get 20 distinct, contiguous, increasing revisions', async () => {
    await seedApp(api, 'web', ['v0']);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: `v${i + 1}` } })),
    );
    for (const r of results) assert.equal(r.statusCode, 202, r.body);
    const revisions = results.map((r) => json(r).revision as number);
    assert.equal(new Set(revisions).size, 20);
    assert.deepEqual([...revisions].sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 2));
    // Each revision carries the version its request asked for.
    for (const r of results) {
      const b = json(r);
      assert.equal(api.store.releases.getRelease('web', b.revision)?.version, b.version);
    }
  });

  test('expectedRevision: accepted when it is the newest, 409 with both numbers when not', async () => {
    await seedApp(api);
    let res = await api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'v1', expectedRevision: 0 } });
    assert.equal(res.statusCode, 202);
    res = await api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'v2', expectedRevision: 1 } });
    assert.equal(res.statusCode, 202);
    assert.equal(json(res).revision, 2);
    const before = snapshotDb(api.store);
    res = await api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'v3', expectedRevision: 1 } });
    assert.equal(res.statusCode, 409);
    assert.equal(json(res).code, 'CONFLICT');
    assert.match(json(res).message, /expected revision 1 but the newest is 2/);
    assert.deepEqual(snapshotDb(api.store), before);
  });

  test('POST of the version already desired, same spec: 200 unchanged with the current revision, nothing written', async () => {
    await seedApp(api, 'web', ['v1', 'v2']);
    api.controller.enqueued.length = 0;
    const before = snapshotDb(api.store);
    const res = await api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'v2' } });
    assert.equal(res.statusCode, 200, res.body);
    const body = json(res);
    assert.deepEqual([body.revision, body.version, body.unchanged], [2, 'v2', true]);
    assert.deepEqual(snapshotDb(api.store), before, 'no revision, no event');
    assert.deepEqual(api.controller.enqueued, []);
    // expectedRevision is still checked first.
    const stale = await api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'v2', expectedRevision: 1 } });
    assert.equal(stale.statusCode, 409);
    const fresh = await api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'v2', expectedRevision: 2 } });
    assert.equal(fresh.statusCode, 200);
    assert.equal(json(fresh).unchanged, true);
    assert.deepEqual(snapshotDb(api.store), before);
    // A new version is a new release, and says unchanged: false.
    const v3 = await api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'v3' } });
    assert.equal(v3.statusCode, 202);
    assert.deepEqual([json(v3).revision, json(v3).unchanged], [3, false]);
  });

  test('POST of the same version after the app spec changed: a new release (202)', async () => {
    await seedApp(api, 'web', ['v1']);
    await api.call({ method: 'PUT', url: '/v1/apps/web', payload: appDoc({ port: 4000 }) });
    const res = await api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'v1' } });
    assert.equal(res.statusCode, 202, res.body);
    assert.deepEqual([json(res).revision, json(res).unchanged], [2, false]);
    assert.equal(api.store.releases.getRelease('web', 2)!.spec.port, 4000);
    // ...and asking again is then unchanged.
    const again = await api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'v1' } });
    assert.equal(again.statusCode, 200);
    assert.equal(json(again).revision, 2);
  });

  test('restart: a new revision of the same version whose containers differ (config hash), 202; deploying that version again is unchanged; 409 without a release', async () => {
    await seedApp(api, 'web', ['v1', 'v2']);
    api.controller.enqueued.length = 0;
    const res = await api.call({ method: 'POST', url: '/v1/apps/web/restart' });
    assert.equal(res.statusCode, 202, res.body);
    const body = json(res);
    assert.deepEqual([body.revision, body.version, body.reason], [3, 'v2', 'deploy']);
    const [before, after] = [api.store.releases.getRelease('web', 2)!, api.store.releases.getRelease('web', 3)!];
    assert.equal(after.spec.restartedAt, body.restartedAt);
    assert.notEqual(containerConfigHash(after.spec, {}), containerConfigHash(before.spec, {}), 'every host gets a new container');
    assert.deepEqual(api.controller.enqueued, ['web']);
    const again = await api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'v2' } });
    assert.deepEqual([again.statusCode, json(again).revision, json(again).unchanged], [200, 3, true], 'the restart mark is not a change the deploy asked for');
    const second = await api.call({ method: 'POST', url: '/v1/apps/web/restart' });
    assert.deepEqual([second.statusCode, json(second).revision], [202, 4], 'each restart is a new revision');
    await seedApp(api, 'api', []);
    const none = await api.call({ method: 'POST', url: '/v1/apps/api/restart' });
    assert.deepEqual([none.statusCode, json(none).code], [409, 'CONFLICT']);
    assert.match(json(none).message, /no release to restart/);
  });

  test('GET releases: newest first, spec left out, limit and before page through', async () => {
    await seedApp(api, 'web', ['v1', 'v2', 'v3', 'v4', 'v5']);
    let res = await api.call({ method: 'GET', url: '/v1/apps/web/releases' });
    assert.equal(res.statusCode, 200);
    const all = json(res).releases as Json[];
    assert.deepEqual(all.map((r) => r.revision), [5, 4, 3, 2, 1]);
    assert.deepEqual(all.map((r) => r.version), ['v5', 'v4', 'v3', 'v2', 'v1']);
    assert.equal('spec' in all[0]!, false);
    assert.deepEqual(Object.keys(all[0]!).sort(), ['actor', 'app', 'createdAt', 'reason', 'revision', 'version']);

    assert.equal(json(res).next, null);

    res = await api.call({ method: 'GET', url: '/v1/apps/web/releases?limit=2' });
    assert.deepEqual([(json(res).releases as Json[]).map((r) => r.revision), json(res).next], [[5, 4], 4]);
    res = await api.call({ method: 'GET', url: '/v1/apps/web/releases?limit=2&before=4' });
    assert.deepEqual([(json(res).releases as Json[]).map((r) => r.revision), json(res).next], [[3, 2], 2]);
    res = await api.call({ method: 'GET', url: '/v1/apps/web/releases?limit=2&before=2' });
    assert.deepEqual([(json(res).releases as Json[]).map((r) => r.revision), json(res).next], [[1], null]);
    res = await api.call({ method: 'GET', url: '/v1/apps/web/releases?before=1' });
    assert.deepEqual(json(res).releases, []);
  });
});

describe('rollback', () => {
  test('{} finds the previous version however long the history (1,200 restarts of the current one since)', async () => {
    await seedApp(api, 'web', ['v1', 'v2']);
    const current = api.store.releases.latestRelease('web')!;
    api.store.transaction(() => {
      for (let i = 0; i < 1200; i++) api.store.releases.createRelease({ app: 'web', version: 'v2', spec: { ...current.spec, restartedAt: `t${i}` }, reason: 'deploy', actor: 'a' });
    });
    const res = await api.call({ method: 'POST', url: '/v1/apps/web/rollback', payload: {} });
    assert.equal(res.statusCode, 202, res.body);
    assert.deepEqual([json(res).version, json(res).revision], ['v1', 1203]);
    assert.deepEqual(api.store.releases.getRelease('web', 1203)!.spec, api.store.releases.getRelease('web', 1)!.spec);
  });

  test('to the previous version: a new revision, reason rollback, spec snapshot of the target release', async () => {
    await seedApp(api, 'web', ['v1']);
    // The spec changes between v1 and v2: a rollback must bring back v1's spec too.
    await api.call({ method: 'PUT', url: '/v1/apps/web', payload: appDoc({ port: 4000, env: { MODE: 'new' } }) });
    await api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'v2' } });
    api.controller.enqueued.length = 0;

    const res = await api.call({ method: 'POST', url: '/v1/apps/web/rollback', payload: {}, headers: { 'x-berth-actor': 'carol' } });
    assert.equal(res.statusCode, 202);
    const body = json(res);
    assert.equal(body.revision, 3);
    assert.equal(body.version, 'v1');
    assert.equal(body.reason, 'rollback');
    assert.equal(body.rolledBackFrom, 'v2');
    assert.deepEqual(api.controller.enqueued, ['web']);

    const r1 = api.store.releases.getRelease('web', 1)!;
    const r2 = api.store.releases.getRelease('web', 2)!;
    const r3 = api.store.releases.getRelease('web', 3)!;
    assert.equal(r2.spec.port, 4000);
    assert.deepEqual(r3.spec, r1.spec, 'the rollback release carries the spec of the release it returns to');
    assert.equal(r3.spec.port, 3000);
    assert.equal(r3.actor, 'carol');

    const history = json(await api.call({ method: 'GET', url: '/v1/apps/web/releases' })).releases as Json[];
    assert.deepEqual(history.map((r) => [r.revision, r.version, r.reason]), [[3, 'v1', 'rollback'], [2, 'v2', 'deploy'], [1, 'v1', 'deploy']]);
    assert.match(api.store.events.listEvents('web').at(-1)!.message, /rollback to version v1/);

    // Rolling back again goes to the version before the current one (v2, once its rollout completed), like `kubectl rollout undo`.
    api.store.releases.markCompleted('web', 2, new Date());
    const again = json(await api.call({ method: 'POST', url: '/v1/apps/web/rollback', payload: {} }));
    assert.equal(again.version, 'v2');
    assert.equal(again.revision, 4);
  });

  test('the rollback release keeps the rollout strategy of the release it replaces: an app made recreate goes back without two running', async () => {
    await seedApp(api, 'web', ['v1']);
    await api.call({ method: 'PUT', url: '/v1/apps/web', payload: appDoc({ port: 4000, rollout: { strategy: 'recreate' } }) });
    await api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'v2' } });
    const res = await api.call({ method: 'POST', url: '/v1/apps/web/rollback', payload: {} });
    assert.equal(res.statusCode, 202, res.body);
    const r1 = api.store.releases.getRelease('web', 1)!;
    assert.deepEqual(api.store.releases.getRelease('web', 3)!.spec, { ...r1.spec, rollout: { ...r1.spec.rollout, strategy: 'recreate' } });
    const doc = json(await api.call({ method: 'GET', url: '/v1/apps/web' }));
    assert.equal((doc.spec as { rollout: { strategy: string } }).rollout.strategy, 'recreate', 'GET shows the key');
  });

  test('{} skips versions whose rollout never completed (a broken deploy is not "the previous release")', async () => {
    await seedApp(api, 'web', ['v1', 'v2']);
    for (const version of ['broken', 'v3']) await api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version } });
    // v3 (r4) is desired and did not complete; broken (r3) failed: back to v2.
    let res = await api.call({ method: 'POST', url: '/v1/apps/web/rollback', payload: {} });
    assert.equal(res.statusCode, 202, res.body);
    assert.deepEqual([json(res).version, json(res).revision], ['v2', 5]);
    // Only v2 ever completed besides v1, and v2 is now desired: v1.
    res = await api.call({ method: 'POST', url: '/v1/apps/web/rollback', payload: {} });
    assert.deepEqual([res.statusCode, json(res).version], [202, 'v1']);
  });

  test('without a body it rolls back to the previous version too (curl -X POST)', async () => {
    await seedApp(api, 'web', ['v1', 'v2']);
    const res = await api.call({ method: 'POST', url: '/v1/apps/web/rollback' });
    assert.equal(res.statusCode, 202, res.body);
    assert.equal(json(res).version, 'v1');
  });

  test('to a named version: the newest release of that version', async () => {
    await seedApp(api, 'web', ['v1', 'v2', 'v3']);
    const res = await api.call({ method: 'POST', url: '/v1/apps/web/rollback', payload: { version: 'v1' } });
    assert.equal(res.statusCode, 202);
    assert.equal(json(res).version, 'v1');
    assert.equal(json(res).revision, 4);
    assert.equal(json(res).rolledBackFrom, 'v3');
    assert.deepEqual(api.store.releases.getRelease('web', 4)!.spec, api.store.releases.getRelease('web', 1)!.spec);
  });

  test('to the version already desired: 200 unchanged with the current revision, nothing written', async () => {
    await seedApp(api, 'web', ['v1', 'v2']);
    api.controller.enqueued.length = 0;
    const before = snapshotDb(api.store);
    const res = await api.call({ method: 'POST', url: '/v1/apps/web/rollback', payload: { version: 'v2' } });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual([json(res).revision, json(res).version, json(res).unchanged], [2, 'v2', true]);
    assert.deepEqual(snapshotDb(api.store), before);
    assert.deepEqual(api.controller.enqueued, []);
  });

  test('404 for a version never released, 409 when there is nothing to roll back to', async () => {
    await seedApp(api, 'web', []);
    let before = snapshotDb(api.store);
    let res = await api.call({ method: 'POST', url: '/v1/apps/web/rollback', payload: {} });
    assert.equal(res.statusCode, 409);
    assert.match(json(res).message, /app "web" has no release to roll back from/);
    assert.deepEqual(snapshotDb(api.store), before);

    await seedApp(api, 'web', ['v1']);
    before = snapshotDb(api.store);
    res = await api.call({ method: 'POST', url: '/v1/apps/web/rollback', payload: {} });
    assert.equal(res.statusCode, 409);
    assert.match(json(res).message, /no earlier version than v1 whose rollout completed; name the version to roll back to/);
    res = await api.call({ method: 'POST', url: '/v1/apps/web/rollback', payload: { version: 'v0' } });
    assert.equal(res.statusCode, 404);
    assert.match(json(res).message, /release with version "v0" of app "web" not found/);
    assert.deepEqual(snapshotDb(api.store), before);
  });
});

describe('pause and resume', () => {
  test('pause holds, resume releases; each is audited and enqueues the app', async () => {
    await seedApp(api, 'web', ['v1']);
    api.controller.enqueued.length = 0;
    let res = await api.call({ method: 'POST', url: '/v1/apps/web/pause', payload: {} });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(json(res), { app: 'web', paused: true });
    assert.equal(json(await api.call({ method: 'GET', url: '/v1/apps/web' })).paused, true);
    assert.equal(api.store.apps.getApp('web')!.paused, true);
    // Pausing twice is fine and writes nothing more.
    res = await api.call({ method: 'POST', url: '/v1/apps/web/pause' });
    assert.equal(res.statusCode, 200, res.body);
    res = await api.call({ method: 'POST', url: '/v1/apps/web/resume', payload: {} });
    assert.deepEqual(json(res), { app: 'web', paused: false });
    assert.deepEqual(
      api.store.events.listEvents('web').map((e) => e.type).slice(-2),
      ['AppPaused', 'AppResumed'],
    );
    assert.deepEqual(api.controller.enqueued, ['web', 'web', 'web']);
    res = await api.call({ method: 'POST', url: '/v1/apps/nope/resume', payload: {} });
    assert.equal(res.statusCode, 404);
  });
});

describe('events', () => {
  test('JSON list: oldest first, paged with after/limit and next', async () => {
    await seedApp(api, 'web', ['v1', 'v2', 'v3', 'v4']);
    await seedApp(api, 'other', ['x1']);
    let res = await api.call({ method: 'GET', url: '/v1/apps/web/events' });
    assert.equal(res.statusCode, 200);
    const all = json(res).events as BerthEvent[];
    assert.deepEqual(all.map((e) => e.type), ['AppCreated', 'ReleaseCreated', 'ReleaseCreated', 'ReleaseCreated', 'ReleaseCreated']);
    assert.ok(all.every((e) => e.app === 'web'), 'only this app');
    assert.equal(json(res).next, null);

    const paged: BerthEvent[] = [];
    let after = 0;
    for (let i = 0; i < 10; i++) {
      res = await api.call({ method: 'GET', url: `/v1/apps/web/events?after=${after}&limit=2` });
      const page = json(res);
      paged.push(...(page.events as BerthEvent[]));
      if (page.next === null) break;
      assert.equal(page.events.length, 2);
      after = page.next as number;
    }
    assert.deepEqual(paged, all);
    res = await api.call({ method: 'GET', url: `/v1/apps/web/events?after=${all.at(-1)!.id}` });
    assert.deepEqual(json(res).events, []);
  });

  test('SSE: backlog after Last-Event-ID, then live events as they commit', async (t) => {
    await seedApp(api, 'web', ['v1', 'v2']);
    await seedApp(api, 'other', []);
    const all = api.store.events.listEvents('web');
    await api.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = api.app.server.address() as AddressInfo;

    const client = sse(`http://127.0.0.1:${port}/v1/apps/web/events`, { ...AUTH, accept: 'text/event-stream', 'last-event-id': String(all[0]!.id) });
    t.after(() => client.close());
    const head = await client.response;
    assert.equal(head.statusCode, 200);
    assert.match(String(head.headers['content-type']), /^text\/event-stream/);

    const backlog = await client.next(2);
    assert.deepEqual(backlog.map((f) => f.id), [all[1]!.id, all[2]!.id]);
    assert.deepEqual(backlog.map((f) => f.event), ['ReleaseCreated', 'ReleaseCreated']);
    assert.deepEqual(JSON.parse(backlog[1]!.data), all[2]);

    // Another app's events are not in this stream; this app's new release is, live.
    for (const app of ['other', 'web']) {
      const res = await fetch(`http://127.0.0.1:${port}/v1/apps/${app}/releases`, {
        method: 'POST',
        headers: { ...AUTH, 'content-type': 'application/json' },
        body: JSON.stringify({ version: 'v3' }),
      });
      assert.equal(res.status, 202);
    }
    const [live] = await client.next(1);
    assert.equal(live!.event, 'ReleaseCreated');
    const ev = JSON.parse(live!.data) as BerthEvent;
    assert.equal(ev.revision, 3);
    assert.equal(live!.id, ev.id);
    assert.match(ev.message, /deploy version v3/);

    // Closing the app ends open streams instead of waiting for them.
    const t0 = Date.now();
    await api.app.close();
    assert.ok(Date.now() - t0 < 2000, 'close does not wait for the stream');
    await client.ended;
  });

  test('SSE without Last-Event-ID starts from ?after= (0: the whole history)', async (t) => {
    await seedApp(api, 'web', ['v1']);
    await api.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = api.app.server.address() as AddressInfo;
    const client = sse(`http://127.0.0.1:${port}/v1/apps/web/events?after=0`, { ...AUTH, accept: 'text/event-stream' });
    t.after(() => client.close());
    const frames = await client.next(2);
    assert.deepEqual(frames.map((f) => f.event), ['AppCreated', 'ReleaseCreated']);
    client.close();
  });

  test('SSE needs the token like the JSON list', async () => {
    await seedApp(api, 'web', ['v1']);
    const res = await api.app.inject({ method: 'GET', url: '/v1/apps/web/events', headers: { accept: 'text/event-stream' } });
    assert.equal(res.statusCode, 401);
    assert.match(String(res.headers['content-type']), /application\/json/);
  });
});

describe('logs', () => {
  const line = (host: string, text: string): AppLogItem => ({ type: 'line', host, container: 'web-r1', stream: 'stdout', time: '2026-11-29T09:00:00.000000000Z', text });

  test('the query becomes the request to the controller: tail (default 100), since as a duration or a time, follow, host', async () => {
    await seedApp(api, 'web', ['v1']);
    api.controller.logItems = [line('h1', 'hello')];
    const res = await api.call({ method: 'GET', url: '/v1/apps/web/logs' });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/event-stream/);
    assert.equal(res.body, `event: line\ndata: ${JSON.stringify({ host: 'h1', container: 'web-r1', stream: 'stdout', time: '2026-11-29T09:00:00.000000000Z', text: 'hello' })}\n\n`);
    const before = Date.now();
    // A followed stream never ends by itself: this one is refused after its request is recorded.
    api.controller.logsError = new ConflictError('refused after recording the request');
    assert.equal((await api.call({ method: 'GET', url: '/v1/apps/web/logs?tail=0&since=10m&follow=1&host=h2' })).statusCode, 409);
    api.controller.logsError = null;
    await api.call({ method: 'GET', url: '/v1/apps/web/logs?tail=10000&since=2026-11-29T09:30:00.5%2B01:00&follow=false' });
    const [plain, followed, dated] = api.controller.logRequests;
    assert.deepEqual(plain, { app: 'web', req: { tail: 100, follow: false } });
    assert.equal(followed!.req.follow, true);
    assert.equal(followed!.req.tail, 0);
    assert.equal(followed!.req.host, 'h2');
    assert.ok(Math.abs(followed!.req.sinceMs! - (before - 600_000)) < 5_000, `10m ago: ${followed!.req.sinceMs}`);
    assert.deepEqual(dated!.req, { tail: 10_000, follow: false, sinceMs: Date.parse('2026-11-29T08:30:00.500Z') });
  });

  test('a malformed query is a 400 naming the parameter, an unknown app a 404, no token a 401: no logs opened', async () => {
    await seedApp(api, 'web', ['v1']);
    const cases: Array<[string, number, RegExp]> = [
      ['/v1/apps/web/logs?tail=10001', 400, /querystring\.tail/],
      ['/v1/apps/web/logs?tail=-1', 400, /querystring\.tail/],
      ['/v1/apps/web/logs?follow=yes', 400, /querystring\.follow/],
      ['/v1/apps/web/logs?since=yesterday', 400, /querystring\.since: expected a duration like 10m or an RFC 3339 date-time/],
      ['/v1/apps/web/logs?since=5s5s', 400, /querystring\.since/],
      ['/v1/apps/web/logs?since=2026-13-45T99:00:00Z', 400, /querystring\.since/],
      // An app without processes: the parameter is refused, not ignored.
      ['/v1/apps/web/logs?process=web', 400, /process/],
      ['/v1/apps/web/logs?host=no%20such', 400, /querystring\.host/],
      ['/v1/apps/nope/logs', 404, /app "nope" not found/],
    ];
    for (const [url, status, message] of cases) {
      const res = await api.call({ method: 'GET', url });
      assert.equal(res.statusCode, status, `${url}: ${res.body}`);
      assert.match(json(res).message, message, url);
    }
    assert.equal((await api.call({ method: 'GET', url: '/v1/apps/web/logs', auth: false })).statusCode, 401);
    assert.deepEqual(api.controller.logRequests, []);
  });

  test("the controller's refusal (a host the app does not run on, unreadable secrets) is a JSON error, not a stream", async () => {
    await seedApp(api, 'web', ['v1']);
    api.controller.logsError = new ConflictError('host "h3" does not run app "web" (hosts: h1, h2)');
    const res = await api.call({ method: 'GET', url: '/v1/apps/web/logs?host=h3' });
    assert.equal(res.statusCode, 409);
    assert.equal(json(res).code, 'CONFLICT');
  });

  test('followed: lines are sent as they come; closing the API ends the stream and closes the logs', async (t) => {
    await seedApp(api, 'web', ['v1']);
    api.controller.logItems = [{ type: 'host', host: 'h1', state: 'attached', container: 'web-r1', message: 'web-r1 (v1)', code: null }];
    await api.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = api.app.server.address() as AddressInfo;
    const client = sse(`http://127.0.0.1:${port}/v1/apps/web/logs?follow=true&tail=0`, AUTH);
    t.after(() => client.close());
    assert.equal((await client.response).statusCode, 200);
    assert.deepEqual((await client.next(1)).map((f) => [f.event, JSON.parse(f.data).state]), [['host', 'attached']]);
    api.controller.pushLog(line('h2', 'live'));
    const [live] = await client.next(1);
    assert.equal(live!.event, 'line');
    assert.equal(JSON.parse(live!.data).text, 'live');
    assert.equal(api.controller.openLogs, 1);
    const t0 = Date.now();
    await api.app.close();
    assert.ok(Date.now() - t0 < 2000, 'close does not wait for the stream');
    await client.ended;
    assert.equal(api.controller.openLogs, 0);
  });
});

describe('hosts', () => {
  test('GET /v1/hosts lists every configured host, with what the controller last saw', async () => {
    let res = await api.call({ method: 'GET', url: '/v1/hosts' });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(
      json(res).hosts.map((h: Json) => [h.host, h.up, h.lastError]),
      [['h1', false, 'not checked yet'], ['h2', false, 'not checked yet'], ['h3', false, 'not checked yet']],
    );
    api.store.hostsStatus.upsert({ host: 'h1', up: true, dockerVersion: '27.5.1' });
    api.store.hostsStatus.upsert({ host: 'h2', up: false, lastError: 'h2: ssh: connect ECONNREFUSED' });
    res = await api.call({ method: 'GET', url: '/v1/hosts' });
    const [h1, h2] = json(res).hosts as Json[];
    assert.equal(h1!.up, true);
    assert.equal(h1!.dockerVersion, '27.5.1');
    assert.equal(h2!.up, false);
    assert.match(h2!.lastError, /ECONNREFUSED/);
    assert.match(h2!.checkedAt, /^\d{4}-/);
    assert.equal(h1!.proxy, null, 'no proxy status without a proxy');
    assert.equal(json(res).next, null);
  });

  test("each host's proxy state, asked only of hosts that answer; one that fails or is slow is null, not an error", async () => {
    const asked: string[] = [];
    const t = makeApi({
      proxyStatus: async (host) => {
        asked.push(host);
        if (host === 'h2') throw new Error('h2: ssh: connect ECONNREFUSED');
        if (host === 'h3') await new Promise((r) => setTimeout(r, 5_000));
        return { state: 'running', image: 'haproxy:2.6', routes: 2, checkedAt: '2026-11-29T00:00:00.000Z' };
      },
    });
    try {
      for (const host of ['h1', 'h2', 'h3']) t.store.hostsStatus.upsert({ host, up: true, dockerVersion: '27.5.1' });
      const started = Date.now();
      const hosts = json(await t.call({ method: 'GET', url: '/v1/hosts' })).hosts as Json[];
      assert.ok(Date.now() - started < 4_000, 'a slow host does not hold the list');
      assert.deepEqual(hosts.map((h) => h.proxy), [{ state: 'running', image: 'haproxy:2.6', routes: 2, checkedAt: '2026-11-29T00:00:00.000Z' }, null, null]);
      t.store.hostsStatus.upsert({ host: 'h1', up: false, lastError: 'gone' });
      asked.length = 0;
      await t.call({ method: 'GET', url: '/v1/hosts' });
      assert.deepEqual(asked, ['h2', 'h3'], 'a host that is down is not asked');
    } finally {
      await t.close();
    }
  });

  test('GET /v1/hosts pages by name: limit and after walk every host once; a bad cursor is a 400', async () => {
    const t = makeApi({ hosts: ['h3', 'h1', 'h4', 'h2'] });
    try {
      const seen: string[][] = [];
      let after: string | null = null;
      do {
        const res = await t.call({ method: 'GET', url: `/v1/hosts?limit=3${after ? `&after=${after}` : ''}` });
        assert.equal(res.statusCode, 200, res.body);
        seen.push((json(res).hosts as Json[]).map((h) => h.host as string));
        after = json(res).next as string | null;
      } while (after !== null && seen.length < 10);
      assert.deepEqual(seen, [['h1', 'h2', 'h3'], ['h4']]);
      const bad = await t.call({ method: 'GET', url: '/v1/hosts?after=bad%20name' });
      assert.equal(bad.statusCode, 400);
      assert.match(json(bad).message, /^querystring\.after: expected a host name/);
    } finally {
      await t.close();
    }
  });
});

describe('auth', () => {
  test('every non-GET route of the route table refuses without a token, or with a wrong one, and writes nothing', async () => {
    await seedApp(api, 'web', ['v1', 'v2']);
    const ops = await openapiOps(api);
    const writes = ops.filter((o) => o.method !== 'get');
    assert.ok(writes.length >= 5, `found the mutating routes: ${writes.map((o) => o.path).join(', ')}`);
    // The table is complete: no method answers on a documented path unless it is documented.
    for (const { path } of ops) {
      for (const method of ['POST', 'PUT', 'PATCH', 'DELETE'] as const) {
        const documented = ops.some((o) => o.path === path && o.method === method.toLowerCase());
        assert.equal(api.app.hasRoute({ method, url: path.replace('{app}', ':app') }), documented, `${method} ${path}`);
      }
    }
    const before = snapshotDb(api.store);
    const enqueued = api.controller.enqueued.length;
    const variants: Array<[string, Record<string, string>, RegExp]> = [
      ['no header', {}, /missing Authorization: Bearer <token> header/],
      ['wrong token', { authorization: 'Bearer not-the-token' }, /invalid bearer token/],
      ['token prefix', { authorization: `Bearer ${TOKEN.slice(0, -1)}` }, /invalid bearer token/],
      ['basic auth', { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` }, /invalid bearer token/],
      ['bare token', { authorization: TOKEN }, /invalid bearer token/],
      ['empty bearer', { authorization: 'Bearer ' }, /invalid bearer token/],
    ];
    for (const { method, path, op } of writes) {
      assert.deepEqual(op.security, [{ bearer: [] }], `${method} ${path} is documented as secured`);
      for (const [what, headers, message] of variants) {
        // No body at all: authentication must come before body parsing and validation.
        const res = await api.app.inject({ method: method.toUpperCase() as 'POST', url: concrete(path), headers });
        assert.equal(res.statusCode, 401, `${method.toUpperCase()} ${path} (${what}): ${res.body}`);
        assert.equal(json(res).code, 'UNAUTHORIZED');
        assert.match(json(res).message, message);
        // A valid body does not help either.
        const withBody = await api.app.inject({
          method: method.toUpperCase() as 'POST',
          url: concrete(path),
          headers,
          payload: method === 'put' ? appDoc({ port: 9999 }) : path.endsWith('/releases') ? { version: 'v9' } : {},
        });
        assert.equal(withBody.statusCode, 401, `${method.toUpperCase()} ${path} (${what}) with a body`);
      }
    }
    assert.deepEqual(snapshotDb(api.store), before, 'nothing written');
    assert.equal(api.controller.enqueued.length, enqueued, 'nothing enqueued');
  });

  test('an unauthenticated client cannot make the server parse a large body', async () => {
    await seedApp(api);
    const res = await api.app.inject({
      method: 'POST',
      url: '/v1/apps/web/releases',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ version: 'v1', pad: 'x'.repeat(300 * 1024) }),
    });
    assert.equal(res.statusCode, 401);
  });

  test('reads need the token unless open_reads; probes, metrics and openapi are always open', async () => {
    await seedApp(api, 'web', ['v1']);
    const ops = await openapiOps(api);
    const reads = ops.filter((o) => o.method === 'get');
    for (const { path, op } of reads) {
      const res = await api.app.inject({ method: 'GET', url: concrete(path) });
      if (OPEN_ROUTES.has(path)) {
        assert.equal(res.statusCode, 200, `GET ${path} is open`);
        assert.equal(op.security, undefined);
      } else {
        assert.equal(res.statusCode, 401, `GET ${path} needs the token`);
        assert.match(json(res).message, /missing Authorization/);
        assert.deepEqual(op.security, [{ bearer: [] }]);
        const ok = await api.app.inject({ method: 'GET', url: concrete(path), headers: AUTH });
        assert.equal(ok.statusCode, 200, `GET ${path} with the token`);
      }
    }
    assert.equal((await api.app.inject({ method: 'GET', url: '/openapi.json' })).statusCode, 200);

    const open = makeApi({ openReads: true });
    try {
      await seedApp(open, 'web', ['v1']);
      for (const { path } of reads) {
        const res = await open.app.inject({ method: 'GET', url: concrete(path) });
        assert.equal(res.statusCode, 200, `open_reads: GET ${path} from loopback`);
      }
      // Only on loopback: a client from elsewhere still needs the token.
      const remote = await open.app.inject({ method: 'GET', url: '/v1/apps', remoteAddress: '10.77.0.99' });
      assert.equal(remote.statusCode, 401, 'open_reads does not open reads to non-loopback clients');
      const v6 = await open.app.inject({ method: 'GET', url: '/v1/apps', remoteAddress: '::1' });
      assert.equal(v6.statusCode, 200);
      // Writes stay closed.
      const write = await open.app.inject({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'v2' } });
      assert.equal(write.statusCode, 401);
    } finally {
      await open.close();
    }
  });

  test('what open_reads shows unauthenticated loopback readers names the actor but nothing derived from the token', async () => {
    const open = makeApi({ openReads: true });
    try {
      await seedApp(open, 'web', ['v1']);
      await open.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'v2' }, headers: { 'x-berth-actor': 'alice' } });
      await open.call({ method: 'POST', url: '/v1/apps/web/pause', headers: { 'x-berth-actor': 'alice' } });
      const digest = createHash('sha256').update(TOKEN).digest('hex');
      const events = await open.app.inject({ method: 'GET', url: '/v1/apps/web/events' });
      assert.equal(events.statusCode, 200);
      const list = json(events).events as Json[];
      assert.deepEqual(list.slice(-2).map((e) => e.actor), ['alice', 'alice']);
      for (const url of ['/v1/apps/web/events', '/v1/apps/web/releases', '/v1/apps/web', '/v1/apps']) {
        const res = await open.app.inject({ method: 'GET', url });
        assert.equal(res.statusCode, 200, url);
        for (const n of [6, 8, 16]) assert.equal(res.body.includes(digest.slice(0, n)), false, `${url}: no ${n}-digit prefix of the token's sha256`);
        assert.doesNotMatch(res.body, /\(token /, url);
      }
      // Nor does the store keep it for a later reader.
      assert.equal(JSON.stringify(snapshotDb(open.store)).includes(digest.slice(0, 8)), false);
    } finally {
      await open.close();
    }
  });

  test('with no token configured every guarded route refuses and says how to set one', async () => {
    const none = makeApi({ token: null });
    try {
      for (const { method, path } of (await openapiOps(none)).filter((o) => !OPEN_ROUTES.has(o.path))) {
        const res = await none.app.inject({ method: method.toUpperCase() as 'GET', url: concrete(path), headers: { authorization: 'Bearer anything' } });
        assert.equal(res.statusCode, 401, `${method} ${path}`);
        assert.match(json(res).message, /no API token configured; set BERTH_TOKEN or api\.token/);
      }
    } finally {
      await none.close();
    }
  });

  test('request logs never contain the Authorization header or the token', async () => {
    await seedApp(api, 'web', ['v1']);
    await api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'v2' } });
    await api.call({ method: 'GET', url: '/v1/apps/web/events' });
    await api.call({ method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'bad;version' } });
    await api.app.inject({ method: 'POST', url: '/v1/apps/web/pause', headers: { authorization: 'Bearer wrong-secret-value-42' } });
    // A 5xx logs the error with its stack: still no token.
    api.store.close();
    const broken = await api.call({ method: 'GET', url: '/v1/apps' });
    assert.equal(broken.statusCode, 500);
    assert.equal(json(broken).message, 'internal error; see the daemon log');
    const logs = api.logs();
    assert.match(logs, /"msg":"incoming request"/, 'request logging is on (the test would be vacuous otherwise)');
    assert.match(logs, /"msg":"request failed"/);
    assert.equal(logs.includes(TOKEN), false, 'the token is not in the logs');
    assert.equal(logs.includes('wrong-secret-value-42'), false, 'a wrong token is not in the logs either');
    assert.equal(/authorization/i.test(logs), false, 'no Authorization header in the logs');
  });
});

// ---- malformed requests: exact status, a message that says what is wrong, nothing written ----

interface Malformed {
  name: string;
  method: 'GET' | 'POST' | 'PUT';
  url: string;
  payload?: unknown;
  /** A raw body (sent as is) instead of JSON. */
  raw?: string;
  headers?: Record<string, string>;
  status: number;
  code?: string;
  message: RegExp;
  /** For 422: issue paths that must be reported. */
  issues?: string[];
}

const JSON_CT = { 'content-type': 'application/json' };
const REL = '/v1/apps/web/releases';

const MALFORMED: Malformed[] = [
  // bodies that are not JSON objects
  { name: 'truncated JSON', method: 'POST', url: REL, raw: '{"version":', headers: JSON_CT, status: 400, message: /not valid JSON/ },
  { name: 'JSON with a trailing comma', method: 'POST', url: REL, raw: '{"version":"v2",}', headers: JSON_CT, status: 400, message: /not valid JSON/ },
  { name: 'empty body with a JSON content-type', method: 'POST', url: REL, raw: '', headers: JSON_CT, status: 400, message: /Body cannot be empty/ },
  { name: 'JSON array body', method: 'POST', url: REL, payload: [{ version: 'v2' }], status: 400, code: 'INVALID_REQUEST', message: /^body: expected object, got a list$/ },
  { name: 'JSON null body', method: 'POST', url: REL, raw: 'null', headers: JSON_CT, status: 400, message: /^body: expected object, got null$/ },
  { name: 'JSON string body', method: 'POST', url: REL, raw: '"v2"', headers: JSON_CT, status: 400, message: /^body: expected object, got "v2"$/ },
  { name: 'no body at all', method: 'POST', url: REL, status: 400, message: /^body: expected object, got (null|nothing)$/ },
  { name: '__proto__ key (prototype poisoning)', method: 'POST', url: REL, raw: '{"__proto__":{"admin":true},"version":"v2"}', headers: JSON_CT, status: 400, message: /JSON/ },
  { name: 'text/plain body', method: 'POST', url: REL, raw: '{"version":"v2"}', headers: { 'content-type': 'text/plain' }, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message: /content-type.*text\/plain.*application\/json/i },
  { name: 'form-encoded body', method: 'POST', url: REL, raw: 'version=v2', headers: { 'content-type': 'application/x-www-form-urlencoded' }, status: 415, message: /application\/x-www-form-urlencoded.*application\/json/ },
  { name: 'body over 256 KiB', method: 'POST', url: REL, raw: JSON.stringify({ version: 'v2', pad: 'x'.repeat(256 * 1024) }), headers: JSON_CT, status: 413, code: 'BODY_TOO_LARGE', message: /too large/ },
  // version
  { name: 'missing version', method: 'POST', url: REL, payload: {}, status: 400, message: /^body: missing required property "version"$/ },
  { name: 'version is a number', method: 'POST', url: REL, payload: { version: 2 }, status: 400, message: /^body\.version: expected string, got 2$/ },
  { name: 'version is null', method: 'POST', url: REL, payload: { version: null }, status: 400, message: /^body\.version: expected string, got null$/ },
  { name: 'version is a list', method: 'POST', url: REL, payload: { version: ['v2'] }, status: 400, message: /^body\.version: expected string, got a list$/ },
  { name: 'empty version', method: 'POST', url: REL, payload: { version: '' }, status: 400, message: /^body\.version: expected an image tag .* or a digest sha256:<64 hex digits>, got ""$/ },
  { name: 'version with shell metacharacters', method: 'POST', url: REL, payload: { version: 'v1;rm -rf /' }, status: 400, message: /^body\.version: expected an image tag.*, got "v1;rm -rf \/"$/ },
  { name: 'version with $(...)', method: 'POST', url: REL, payload: { version: '$(reboot)' }, status: 400, message: /body\.version: expected an image tag/ },
  { name: 'version with a path traversal', method: 'POST', url: REL, payload: { version: '../etc' }, status: 400, message: /body\.version: expected an image tag.*got "\.\.\/etc"/ },
  { name: 'version starting with a dash (an option)', method: 'POST', url: REL, payload: { version: '-rf' }, status: 400, message: /body\.version: expected an image tag/ },
  { name: 'version with unicode', method: 'POST', url: REL, payload: { version: 'vé2' }, status: 400, message: /body\.version: expected an image tag.*got "vé2"/ },
  { name: 'version with a trailing newline', method: 'POST', url: REL, payload: { version: 'v2\n' }, status: 400, message: /body\.version: expected an image tag/ },
  { name: 'version with a NUL byte', method: 'POST', url: REL, payload: { version: 'v2\u0000' }, status: 400, message: /body\.version: expected an image tag/ },
  { name: 'version of 300 characters', method: 'POST', url: REL, payload: { version: 'v'.repeat(300) }, status: 400, message: /^body\.version: must NOT have more than 135 characters, got "v{57}\.\.\."$/ },
  { name: 'version of 129 characters (over the tag limit)', method: 'POST', url: REL, payload: { version: 'v'.repeat(129) }, status: 400, message: /body\.version: expected an image tag/ },
  { name: 'digest of the wrong length', method: 'POST', url: REL, payload: { version: `sha256:${'a'.repeat(63)}` }, status: 400, message: /body\.version: expected an image tag/ },
  { name: 'image reference instead of a version', method: 'POST', url: REL, payload: { version: 'web:v2' }, status: 400, message: /body\.version: expected an image tag/ },
  // other fields
  { name: 'unknown field', method: 'POST', url: REL, payload: { version: 'v2', force: true }, status: 400, message: /^body: unknown property "force" \(allowed: version, expectedRevision\)$/ },
  { name: 'misspelt expectedRevision', method: 'POST', url: REL, payload: { version: 'v2', expected_revision: 2 }, status: 400, message: /unknown property "expected_revision"/ },
  { name: 'negative expectedRevision', method: 'POST', url: REL, payload: { version: 'v2', expectedRevision: -1 }, status: 400, message: /^body\.expectedRevision: must be >= 0, got -1$/ },
  { name: 'fractional expectedRevision', method: 'POST', url: REL, payload: { version: 'v2', expectedRevision: 1.5 }, status: 400, message: /^body\.expectedRevision: expected integer, got 1\.5$/ },
  { name: 'expectedRevision as a string', method: 'POST', url: REL, payload: { version: 'v2', expectedRevision: '2' }, status: 400, message: /^body\.expectedRevision: expected integer, got "2"$/ },
  { name: 'stale expectedRevision', method: 'POST', url: REL, payload: { version: 'v3', expectedRevision: 1 }, status: 409, code: 'CONFLICT', message: /expected revision 1 but the newest is 2/ },
  // path
  { name: 'app name with capitals', method: 'POST', url: '/v1/apps/Web/releases', payload: { version: 'v2' }, status: 400, message: /^params\.app: expected an app name: lowercase letters, digits and "-".*got "Web"$/ },
  { name: 'app name starting with a digit', method: 'POST', url: '/v1/apps/1web/releases', payload: { version: 'v2' }, status: 400, message: /params\.app: expected an app name/ },
  { name: 'app name with an encoded slash', method: 'POST', url: '/v1/apps/..%2Fetc/releases', payload: { version: 'v2' }, status: 400, message: /params\.app: expected an app name.*got "\.\.\/etc"/ },
  { name: 'app name with unicode', method: 'POST', url: `/v1/apps/${encodeURIComponent('wéb')}/releases`, payload: { version: 'v2' }, status: 400, message: /params\.app: expected an app name.*got "wéb"/ },
  { name: 'app name of 64 characters', method: 'POST', url: `/v1/apps/${'a'.repeat(64)}/releases`, payload: { version: 'v2' }, status: 400, message: /params\.app: expected an app name/ },
  { name: 'app name of 300 characters', method: 'POST', url: `/v1/apps/${'a'.repeat(300)}/releases`, payload: { version: 'v2' }, status: 414, code: 'URI_TOO_LONG', message: /path parameter longer than 200 characters/ },
  { name: 'malformed percent-encoding in the path', method: 'GET', url: '/v1/apps/w%ZZeb', status: 400, code: 'BAD_URL', message: /not a valid url component/ },
  { name: 'unknown app', method: 'POST', url: '/v1/apps/nope/releases', payload: { version: 'v2' }, status: 404, code: 'NOT_FOUND', message: /^app "nope" not found$/ },
  // query strings
  { name: 'limit=abc', method: 'GET', url: `${REL}?limit=abc`, status: 400, message: /^querystring\.limit: expected integer, got "abc"$/ },
  { name: 'limit=-1', method: 'GET', url: `${REL}?limit=-1`, status: 400, message: /^querystring\.limit: must be >= 1, got -1$/ },
  { name: 'limit=0', method: 'GET', url: `${REL}?limit=0`, status: 400, message: /^querystring\.limit: must be >= 1, got 0$/ },
  { name: 'limit over the maximum', method: 'GET', url: `${REL}?limit=1001`, status: 400, message: /^querystring\.limit: must be <= 1000, got 1001$/ },
  { name: 'limit in hex', method: 'GET', url: `${REL}?limit=0x10`, status: 400, message: /^querystring\.limit: expected integer, got "0x10"$/ },
  { name: 'limit with a space', method: 'GET', url: `${REL}?limit=%201`, status: 400, message: /^querystring\.limit: expected integer, got " 1"$/ },
  { name: 'limit given twice', method: 'GET', url: `${REL}?limit=1&limit=2`, status: 400, message: /^querystring\.limit: expected integer, got a list$/ },
  { name: 'before=1e3', method: 'GET', url: `${REL}?before=1e3`, status: 400, message: /^querystring\.before: expected integer, got "1e3"$/ },
  { name: 'unknown query parameter', method: 'GET', url: `${REL}?page=2`, status: 400, message: /^querystring: unknown property "page" \(allowed: limit, before\)$/ },
  { name: 'events after=xyz', method: 'GET', url: '/v1/apps/web/events?after=xyz', status: 400, message: /^querystring\.after: expected integer, got "xyz"$/ },
  { name: 'events after a 16-digit id', method: 'GET', url: `/v1/apps/web/events?after=${'9'.repeat(16)}`, status: 400, message: /^querystring\.after: expected integer, got "9{16}"$/ },
  { name: 'events of an unknown app', method: 'GET', url: '/v1/apps/nope/events', status: 404, message: /app "nope" not found/ },
  // rollback, pause
  { name: 'rollback with a bad version', method: 'POST', url: '/v1/apps/web/rollback', payload: { version: 'v1 && curl x' }, status: 400, message: /body\.version: expected an image tag/ },
  { name: 'rollback with an unknown field', method: 'POST', url: '/v1/apps/web/rollback', payload: { to: 'v1' }, status: 400, message: /^body: unknown property "to" \(allowed: version\)$/ },
  { name: 'rollback to an unknown version', method: 'POST', url: '/v1/apps/web/rollback', payload: { version: 'v9' }, status: 404, message: /release with version "v9" of app "web" not found/ },
  { name: 'pause with an unknown field', method: 'POST', url: '/v1/apps/web/pause', payload: { reason: 'x' }, status: 400, message: /^body: unknown property "reason" \(allowed: none\)$/ },
  { name: 'pause with invalid JSON', method: 'POST', url: '/v1/apps/web/pause', raw: 'yes please', headers: JSON_CT, status: 400, message: /not valid JSON/ },
  // PUT app documents
  { name: 'PUT with a bad healthcheck interval', method: 'PUT', url: '/v1/apps/web', payload: appDoc({ healthcheck: { interval: '5 parsecs' } }), status: 422, code: 'CONFIG_INVALID', message: /body\.healthcheck\.interval: expected a duration like "5s", got "5 parsecs"/, issues: ['body.healthcheck.interval'] },
  { name: 'PUT with an unknown host', method: 'PUT', url: '/v1/apps/web', payload: appDoc({ hosts: ['h1', 'h9'] }), status: 422, message: /body\.hosts\[1\]: unknown host "h9" \(known: h1, h2, h3\)/, issues: ['body.hosts[1]'] },
  { name: 'PUT without an image', method: 'PUT', url: '/v1/apps/web', payload: { hosts: ['h1'] }, status: 422, message: /body\.image: required/, issues: ['body.image'] },
  { name: 'PUT with a misspelt key', method: 'PUT', url: '/v1/apps/web', payload: appDoc({ imgae: 'x' }), status: 422, message: /body\.imgae: unknown key \(did you mean image\?\)/, issues: ['body.imgae'] },
  { name: 'PUT with a port out of range', method: 'PUT', url: '/v1/apps/web', payload: appDoc({ port: 70000 }), status: 422, message: /body\.port: expected an integer from 1 to 65535, got 70000/, issues: ['body.port'] },
  { name: 'PUT with a numeric env value', method: 'PUT', url: '/v1/apps/web', payload: appDoc({ env: { PORT: 3000 } }), status: 422, message: /body\.env\.PORT: expected a string, got 3000 \(quote it: "3000"\)/, issues: ['body.env.PORT'] },
  { name: 'PUT with several problems lists them all', method: 'PUT', url: '/v1/apps/web', payload: appDoc({ hosts: [], rollout: { on_failure: 'explode' }, healthcheck: { max_attempts: 0 } }), status: 422, message: /body\.hosts: expected at least one host/, issues: ['body.hosts', 'body.healthcheck.max_attempts', 'body.rollout.on_failure'] },
  { name: 'PUT with an image that carries a shell command', method: 'PUT', url: '/v1/apps/web', payload: appDoc({ image: 'web;reboot' }), status: 422, message: /body\.image: /, issues: ['body.image'] },
  { name: 'PUT with a list body', method: 'PUT', url: '/v1/apps/web', payload: [appDoc()], status: 400, message: /^body: expected object, got a list$/ },
  { name: 'PUT with a bad app name', method: 'PUT', url: '/v1/apps/web_1', payload: appDoc(), status: 400, message: /params\.app: expected an app name.*got "web_1"/ },
  { name: 'PUT over 256 KiB', method: 'PUT', url: '/v1/apps/web', payload: appDoc({ env: { BIG: 'x'.repeat(300 * 1024) } }), status: 413, message: /too large/ },
];

describe('malformed requests: exact status, a message that says what is wrong, and nothing written', () => {
  let shared: TestApi;
  let baseline: Record<string, string[]>;
  before(async () => {
    shared = makeApi();
    await seedApp(shared, 'web', ['v1', 'v2']);
    await seedApp(shared, 'other', ['a1']);
    baseline = snapshotDb(shared.store);
  });
  after(async () => {
    await shared?.close();
  });

  test('the table has at least 30 cases', () => {
    assert.ok(MALFORMED.length >= 30, `${MALFORMED.length} cases`);
    assert.equal(new Set(MALFORMED.map((c) => c.name)).size, MALFORMED.length, 'names are unique');
  });

  for (const c of MALFORMED) {
    test(`${c.method} ${c.name} -> ${c.status}`, async () => {
      const enqueued = shared.controller.enqueued.length;
      const res = await shared.app.inject({
        method: c.method,
        url: c.url,
        headers: { ...AUTH, ...(c.headers ?? {}) },
        ...(c.raw !== undefined ? { payload: c.raw } : c.payload !== undefined ? { payload: c.payload as object } : {}),
      });
      assert.equal(res.statusCode, c.status, res.body.slice(0, 500));
      assert.match(String(res.headers['content-type']), /^application\/json/);
      const body = json(res);
      assert.equal(typeof body.code, 'string');
      assert.equal(typeof body.error, 'string');
      if (c.code) assert.equal(body.code, c.code);
      assert.match(body.message, c.message);
      if (c.issues) {
        const paths = (body.issues as Array<{ path: string }>).map((i) => i.path);
        for (const p of c.issues) assert.ok(paths.includes(p), `issue ${p} in ${paths.join(', ')}`);
      }
      assert.deepEqual(snapshotDb(shared.store), baseline, 'the database is unchanged');
      assert.equal(shared.controller.enqueued.length, enqueued, 'nothing enqueued');
    });
  }
});
