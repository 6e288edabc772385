/**
 * The status page's login and what its session may do (README.md, "Status page";
 * docs/design.md, "API and security"), through app.inject() on a real in-memory store:
 * the token form sets an HttpOnly, SameSite=Strict cookie; the cookie reads, never
 * writes; logout ends the session on the server. The page itself runs in a real
 * browser in test/e2e/status-page.test.ts.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { PAGE_CSP } from '../../src/api/routes/ui.js';
import { SESSION_TTL_MS, SessionStore } from '../../src/api/session.js';
import { AUTH, TOKEN, makeApi, seedApp, snapshotDb, type TestApi } from '../support/api.js';

const FORM = { 'content-type': 'application/x-www-form-urlencoded' } as const;

let api: TestApi;
beforeEach(async () => {
  api = makeApi();
  await seedApp(api, 'web', ['v1', 'v2']);
});
afterEach(async () => {
  await api.close();
});

const login = (token: string) => api.app.inject({ method: 'POST', url: '/ui/login', headers: FORM, payload: new URLSearchParams({ token }).toString() });

/** The `name=value` part of the response's session cookie. */
function sessionOf(res: LightMyRequestResponse): string {
  const set = String(res.headers['set-cookie'] ?? '');
  const m = /^(berth_session=[A-Za-z0-9_-]{43});/.exec(set);
  assert.ok(m, `a session cookie: ${set}`);
  return m[1]!;
}

describe('status page login', () => {
  test('/ without a session is the login form, under a CSP that allows no inline script', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/' });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/html/);
    assert.equal(res.headers['content-security-policy'], PAGE_CSP);
    assert.match(PAGE_CSP, /script-src 'self';/);
    assert.doesNotMatch(PAGE_CSP, /unsafe-inline/);
    assert.match(res.body, /<form method="post" action="\/ui\/login"/);
    assert.match(res.body, /<label for="token">API token<\/label>/);
    assert.doesNotMatch(res.body, /<script/, 'the login page runs no script');
    assert.doesNotMatch(res.body, /app\.js/, 'and is not the status page');
  });

  test('a wrong token is a 401 page that says so, and sets no cookie', async () => {
    const res = await login('not-the-token');
    assert.equal(res.statusCode, 401);
    assert.match(res.body, /role="alert">That is not the API token/);
    assert.equal(res.headers['set-cookie'], undefined);
    assert.equal(res.headers['content-security-policy'], PAGE_CSP);
    const empty = await login('');
    assert.equal(empty.statusCode, 401);
    assert.match(empty.body, /Enter the API token/);
    assert.match(api.logs(), /status page login refused: wrong token/);
    assert.equal(api.logs().includes('not-the-token'), false, 'the refused token is not logged');
    const none = makeApi({ token: null });
    try {
      const res = await none.app.inject({ method: 'POST', url: '/ui/login', headers: FORM, payload: 'token=anything' });
      assert.equal(res.statusCode, 401);
      assert.match(res.body, /no API token configured; set BERTH_TOKEN or api\.token/);
      assert.equal(res.headers['set-cookie'], undefined);
    } finally {
      await none.close();
    }
  });

  test('the right token sets an HttpOnly, SameSite=Strict session cookie on / (not Secure without TLS) and redirects to the page', async () => {
    const res = await login(TOKEN);
    assert.equal(res.statusCode, 303);
    assert.equal(res.headers.location, '/');
    const set = String(res.headers['set-cookie']);
    const attrs = set.split('; ').slice(1);
    assert.deepEqual(attrs.sort(), ['HttpOnly', `Max-Age=${SESSION_TTL_MS / 1000}`, 'Path=/', 'SameSite=Strict'].sort());
    assert.equal(set.includes(TOKEN), false, 'the cookie is not the token');
    const page = await api.app.inject({ method: 'GET', url: '/', headers: { cookie: sessionOf(res) } });
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /<script type="module" src="\/ui\/app\.js"><\/script>/);
    assert.equal(page.headers['content-security-policy'], PAGE_CSP);
    const js = await api.app.inject({ method: 'GET', url: '/ui/app.js' });
    assert.equal(js.statusCode, 200);
    assert.match(String(js.headers['content-type']), /^text\/javascript/);
  });
});

describe('what a session may do', () => {
  test('reads: apps, one app, releases, events (JSON and the SSE route) with the cookie alone', async () => {
    const cookie = sessionOf(await login(TOKEN));
    for (const url of ['/v1/apps', '/v1/apps/web', '/v1/apps/web/releases', '/v1/apps/web/events', '/v1/hosts']) {
      assert.equal((await api.app.inject({ method: 'GET', url })).statusCode, 401, `${url} without the cookie`);
      assert.equal((await api.app.inject({ method: 'GET', url, headers: { cookie } })).statusCode, 200, `${url} with the cookie`);
    }
    // A made-up session and a wrong bearer token next to a good cookie are refused.
    const forged = `berth_session=${'A'.repeat(43)}`;
    assert.equal((await api.app.inject({ method: 'GET', url: '/v1/apps', headers: { cookie: forged } })).statusCode, 401);
    const wrong = await api.app.inject({ method: 'GET', url: '/v1/apps', headers: { cookie, authorization: 'Bearer wrong' } });
    assert.equal(wrong.statusCode, 401);
  });

  test('writes with the cookie alone are refused (CSRF) and write nothing; with the token they go through', async () => {
    const cookie = sessionOf(await login(TOKEN));
    const before = snapshotDb(api.store);
    const nudges = api.controller.enqueued.length;
    const writes = [
      { method: 'POST', url: '/v1/apps/web/rollback', payload: { version: 'v1' } },
      { method: 'POST', url: '/v1/apps/web/releases', payload: { version: 'v3' } },
      { method: 'POST', url: '/v1/apps/web/pause', payload: {} },
      { method: 'PUT', url: '/v1/apps/web', payload: { image: 'x' } },
    ] as const;
    for (const w of writes) {
      const res = await api.app.inject({ ...w, headers: { cookie } });
      assert.equal(res.statusCode, 401, `${w.method} ${w.url} with the cookie only`);
      assert.match(res.body, /missing Authorization: Bearer/);
    }
    assert.deepEqual(snapshotDb(api.store), before, 'nothing written');
    assert.equal(api.controller.enqueued.length, nudges);
    const ok = await api.app.inject({ method: 'POST', url: '/v1/apps/web/rollback', payload: { version: 'v1' }, headers: { cookie, ...AUTH } });
    assert.equal(ok.statusCode, 202);
  });

  test('logout ends the session on the server: the old cookie reads nothing any more', async () => {
    const cookie = sessionOf(await login(TOKEN));
    const out = await api.app.inject({ method: 'POST', url: '/ui/logout', headers: { cookie, ...FORM }, payload: '' });
    assert.equal(out.statusCode, 303);
    assert.equal(out.headers.location, '/');
    assert.match(String(out.headers['set-cookie']), /^berth_session=; Path=\/; Max-Age=0; HttpOnly; SameSite=Strict$/);
    assert.equal((await api.app.inject({ method: 'GET', url: '/v1/apps', headers: { cookie } })).statusCode, 401);
    assert.doesNotMatch((await api.app.inject({ method: 'GET', url: '/', headers: { cookie } })).body, /app\.js/);
  });

  test('a session expires after SESSION_TTL_MS; beyond MAX_SESSIONS the oldest goes', () => {
    let now = 1_000_000;
    const sessions = new SessionStore(() => now);
    const { id } = sessions.create();
    now += SESSION_TTL_MS - 1;
    assert.equal(sessions.valid(id), true);
    now += 1;
    assert.equal(sessions.valid(id), false);
    const first = sessions.create().id;
    for (let i = 0; i < 1_000; i++) sessions.create();
    assert.equal(sessions.size, 1_000);
    assert.equal(sessions.valid(first), false, 'the oldest session was dropped');
  });

  test('forms are accepted by the login routes only: the API stays JSON-only', async () => {
    const res = await api.app.inject({ method: 'POST', url: '/v1/apps/web/releases', headers: { ...AUTH, ...FORM }, payload: 'version=v3' });
    assert.equal(res.statusCode, 415);
  });

  test('every file the pages link (script, style, icon) is served with its type', async () => {
    const cookie = sessionOf(await login(TOKEN));
    const pages = [(await api.app.inject({ method: 'GET', url: '/' })).body, (await api.app.inject({ method: 'GET', url: '/', headers: { cookie } })).body];
    const linked = new Set(pages.flatMap((html) => [...html.matchAll(/(?:src|href)="(\/ui\/[^"]+)"/g)].map((m) => m[1]!)));
    assert.deepEqual([...linked].sort(), ['/ui/app.js', '/ui/icon.svg', '/ui/style.css']);
    const types: Record<string, RegExp> = { js: /^text\/javascript/, css: /^text\/css/, svg: /^image\/svg\+xml/ };
    for (const url of linked) {
      const res = await api.app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 200, url);
      assert.match(String(res.headers['content-type']), types[url.split('.').pop()!]!, url);
      assert.equal(res.headers['x-content-type-options'], 'nosniff');
    }
  });

  test('the page routes are not in /openapi.json', async () => {
    const doc = JSON.parse((await api.app.inject({ method: 'GET', url: '/openapi.json' })).body) as { paths: Record<string, unknown> };
    for (const path of ['/', '/ui/login', '/ui/logout', '/ui/app.js', '/ui/style.css', '/ui/icon.svg']) assert.equal(doc.paths[path], undefined, path);
  });
});

describe('events ?tail= (the timeline\'s first read)', () => {
  test('the newest N events, oldest first; not together with after', async () => {
    const all = JSON.parse((await api.call({ method: 'GET', url: '/v1/apps/web/events' })).body).events as Array<{ id: number }>;
    assert.ok(all.length >= 3, `seeded events: ${all.length}`);
    const tail = JSON.parse((await api.call({ method: 'GET', url: '/v1/apps/web/events?tail=2' })).body) as { events: Array<{ id: number }>; next: null };
    assert.deepEqual(tail.events.map((e) => e.id), all.slice(-2).map((e) => e.id));
    assert.equal(tail.next, null);
    const both = await api.call({ method: 'GET', url: '/v1/apps/web/events?tail=2&after=1' });
    assert.equal(both.statusCode, 422);
    assert.match(both.body, /tail .* and after .* cannot be combined/);
  });
});
