/**
 * Fuzzing the HTTP API in process (app.inject) with a real SQLite store: at least
 * 10,000 seeded requests over every route and method of /openapi.json (and wrong
 * methods and unknown paths), bent along every dimension test/support/fuzz.ts
 * knows: bad/truncated/huge/deeply nested JSON, wrong types, null, arrays, unicode,
 * NUL bytes, shell metacharacters, path traversal, overlong names, odd headers and
 * content types, random query strings, edge values, with and without the token.
 *
 * For every response: no 5xx; a 4xx has a JSON body with `code` and `message` and
 * wrote nothing (DB fingerprint, controller nudges and execs unchanged); a guarded
 * route without the right token is a 401; nothing echoes the token. At the end:
 * every stored version is a Docker tag or digest, every app name fits the grammar,
 * the database is intact and the server still answers.
 *
 * Reproduce a run: BERTH_FUZZ_SEED=<seed printed below> [BERTH_FUZZ_CASES=n].
 */
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { APP_NAME_PATTERN, ENV_NAME_PATTERN, IMAGE_REPOSITORY_PATTERN, VERSION_PATTERN } from '../../src/domain/naming.js';
import { DEFAULT_HOSTS, TOKEN, makeApi, seedApp, type TestApi } from '../support/api.js';
import { Rng, Tally, dbFingerprinter, fuzzSeed, generateRequest, isDockerTagOrDigest, operationsOf, type ApiOperation, type FuzzRequest } from '../support/fuzz.js';

const MIN_CASES = 10_000;
const envCases = Number(process.env.BERTH_FUZZ_CASES ?? '');
const CASES = Number.isInteger(envCases) && envCases > 0 ? envCases : 15_000;
const { seed, fromEnv } = fuzzSeed();

const appName = new RegExp(APP_NAME_PATTERN);
const versionRe = new RegExp(VERSION_PATTERN);
const imageRe = new RegExp(IMAGE_REPOSITORY_PATTERN);
const envRe = new RegExp(ENV_NAME_PATTERN);

/** Anything thrown or rejected outside a request's own promise: the process would have crashed. */
const stray: unknown[] = [];
const onStray = (err: unknown) => stray.push(err);

let api: TestApi;
/** The raw request/response of the request in flight (set by an onRequest hook), and its route. */
let current: { req: IncomingMessage; res: ServerResponse; route: string | undefined; method: string } | null = null;

before(async () => {
  process.on('uncaughtException', onStray);
  process.on('unhandledRejection', onStray);
  // A config file that reloads cleanly (and declares no app), so POST /v1/reload can be accepted too.
  api = makeApi({ hosts: DEFAULT_HOSTS, configFile: { path: '/etc/berth/berth.yml', declares: () => false, reload: () => ({ apps: {}, undeclared: [], restartRequired: [] }) } });
  api.app.addHook('onRequest', async (request, reply) => {
    current = { req: request.raw, res: reply.raw, route: request.routeOptions.url, method: request.method };
  });
  await seedApp(api, 'web', ['v1', 'v2', 'v3']);
  await seedApp(api, 'other', ['a1']);
});

after(async () => {
  process.off('uncaughtException', onStray);
  process.off('unhandledRejection', onStray);
  await api?.close();
});

const sleep = (ms: number) => new Promise<null>((r) => setTimeout(() => r(null), ms));
/** `current` read through a function, so TypeScript does not narrow it across awaits. */
const inFlight = () => current;

/**
 * Injects one request. A live event stream (SSE) never ends by itself: once its
 * head is out, the client goes away (the request is destroyed), which ends it.
 * Any other request that takes over 5 s is a hang and fails the run.
 */
async function send(r: FuzzRequest): Promise<{ res: LightMyRequestResponse; streamed: boolean }> {
  current = null;
  const pending = api.app.inject({
    method: r.method as 'GET',
    url: r.url,
    headers: r.headers,
    ...(r.payload !== undefined ? { payload: r.payload } : {}),
  });
  const started = Date.now();
  let streamed = false;
  for (let wait = 1; ; wait = Math.min(wait * 2, 50)) {
    const res = await Promise.race([pending, sleep(wait)]);
    if (res) return { res, streamed };
    const c = inFlight();
    if (c && c.res.headersSent && String(c.res.getHeader('content-type') ?? '').startsWith('text/event-stream')) {
      streamed = true;
      c.req.destroy();
    } else if (Date.now() - started > 5000) {
      throw new Error(`request hung for 5 s: ${describeRequest(r)}`);
    }
  }
}

function describeRequest(r: FuzzRequest): string {
  const body = r.payload === undefined ? '(no body)' : Buffer.isBuffer(r.payload) ? `<${r.payload.length} bytes>` : r.payload.length > 300 ? `${JSON.stringify(r.payload.slice(0, 300))}... (${r.payload.length} chars)` : JSON.stringify(r.payload);
  const url = r.url.length > 300 ? `${r.url.slice(0, 300)}... (${r.url.length} chars)` : r.url;
  return `${r.method} ${url} [${r.tags.join(' ')}] headers=${JSON.stringify(r.headers).slice(0, 400)} body=${body}`;
}

test(`fuzz: ${CASES} seeded requests over every route; no 5xx, JSON errors, rejected requests write nothing`, { timeout: 120_000 }, async (t) => {
  t.diagnostic(`fuzz seed ${seed}${fromEnv ? ' (from BERTH_FUZZ_SEED)' : ''}; replay: BERTH_FUZZ_SEED=${seed} node --import tsx --test test/faults/api-fuzz.test.ts`);
  if (!process.env.BERTH_FUZZ_CASES) assert.ok(CASES >= MIN_CASES);

  const doc = JSON.parse((await api.app.inject({ method: 'GET', url: '/openapi.json' })).body) as unknown;
  const ops = operationsOf(doc);
  const opById = new Map(ops.map((o) => [o.id, o]));
  /** The operation fastify routed a request to (HEAD is answered by the GET route). */
  const routedOp = (method: string, route: string | undefined): ApiOperation | undefined =>
    route === undefined ? undefined : opById.get(`${method === 'HEAD' ? 'GET' : method} ${route.replace(/:([A-Za-z]+)/g, '{$1}')}`);
  assert.ok(ops.length >= 15, `the document lists the routes: ${ops.map((o) => o.id).join(', ')}`);
  // A route that takes a body and has no schema for it cannot refuse a bad one.
  for (const op of ops.filter((o) => ['POST', 'PUT', 'PATCH'].includes(o.method))) {
    assert.ok(op.body, `${op.id} declares a request body schema`);
  }

  const apps = new Set(['web', 'other']);
  const target = { token: TOKEN, hosts: DEFAULT_HOSTS, apps: () => [...apps] };
  const rng = new Rng(seed);
  const fingerprint = dbFingerprinter(api.store.db);

  const tags = new Tally();
  const statuses = new Tally();
  const perOp = new Map<string, Tally>();
  const acceptedVersions = new Set<string>();
  let streams = 0;
  const startedAt = Date.now();

  /** Sends one request and checks every property; returns the status. */
  const check = async (r: FuzzRequest, label: string): Promise<number> => {
    const what = () => `${label} (seed ${seed}): ${describeRequest(r)}`;
    const before = fingerprint();
    const enqueued = api.controller.enqueued.length;
    const execs = api.controller.execs.length;

    let res: LightMyRequestResponse;
    try {
      const sent = await send(r);
      res = sent.res;
      if (sent.streamed) streams++;
    } catch (err) {
      assert.fail(`${what()}\n-> the request failed: ${(err as Error).stack}`);
    }
    const status = res.statusCode;
    const seen = inFlight();
    const routed = seen ? routedOp(seen.method, seen.route) : undefined;
    for (const tag of r.tags) tags.add(tag);
    statuses.add(`status:${status}`);
    const opTally = perOp.get(r.op) ?? perOp.set(r.op, new Tally()).get(r.op)!;
    opTally.add(`${r.op.startsWith(`${r.method} `) || r.op === '(unknown path)' ? '' : 'other-method '}${status}`);

    const got = () => `${what()}\n-> ${status} ${res.body.slice(0, 500)}`;
    assert.ok(status >= 200 && status < 500, `no 5xx (nor 1xx/3xx): ${got()}`);
    assert.equal(res.body.includes(TOKEN), false, `the response does not echo the token: ${got()}`);
    const sentAuth = r.headers.authorization ?? '';
    if (sentAuth.length >= 16) assert.equal(res.body.includes(sentAuth), false, `the response does not echo the Authorization header: ${got()}`);
    if (routed?.secured && !r.validToken) assert.equal(status, 401, `a guarded route without the right token: ${got()}`);

    if (status >= 400) {
      if (r.method !== 'HEAD') {
        assert.match(String(res.headers['content-type']), /^application\/json/, `a JSON error: ${got()}`);
        let body: Record<string, unknown>;
        try {
          body = JSON.parse(res.body) as Record<string, unknown>;
        } catch {
          assert.fail(`the error body is JSON: ${got()}`);
        }
        assert.ok(typeof body.code === 'string' && body.code.length > 0, `the error has a code: ${got()}`);
        assert.ok(typeof body.message === 'string' && body.message.length > 0, `the error has a message: ${got()}`);
      }
      assert.equal(fingerprint(), before, `a rejected request wrote nothing: ${got()}`);
      assert.equal(api.controller.enqueued.length, enqueued, `a rejected request nudged nothing: ${got()}`);
      assert.equal(api.controller.execs.length, execs, `a rejected request ran nothing: ${got()}`);
      return status;
    }

    // Accepted: what was written obeys the grammars.
    assert.ok(r.validToken || !routed?.secured, `only open routes answer without the token: ${got()}`);
    const route = seen?.route;
    if (r.method === 'POST' && (route === '/v1/apps/:app/releases' || route === '/v1/apps/:app/rollback')) {
      const body = JSON.parse(res.body) as { app: string; version: string; revision: number };
      assert.ok(versionRe.test(body.version) && isDockerTagOrDigest(body.version), `an accepted version is a Docker tag or digest: ${got()}`);
      if (route.endsWith('/releases') && r.version !== undefined) assert.equal(body.version, r.version, `the version stored is the one sent: ${got()}`);
      assert.ok(appName.test(body.app), `an accepted app name fits the grammar: ${got()}`);
      acceptedVersions.add(body.version);
    }
    if (r.method === 'PUT' && route === '/v1/apps/:app') {
      const body = JSON.parse(res.body) as { name: string };
      assert.ok(appName.test(body.name), `an accepted app name fits the grammar: ${got()}`);
      assert.equal(body.name, r.app, `the app created is the one named in the path: ${got()}`);
      apps.add(body.name);
    }
    if (r.method === 'DELETE' && route === '/v1/apps/:app') {
      // What the controller does next (teardown, then the record goes), done at once; the app
      // is made again so later requests still find one to roll back, restart or delete.
      api.store.apps.deleteApp(r.app!, 'controller');
      await seedApp(api, r.app!, ['v1', 'v2']);
    }
    return status;
  };

  // Fixed edge probes first, through the same checks: the grammar's exact borders.
  const hex64 = '0123456789abcdef'.repeat(4);
  const edges: Array<[string, boolean]> = [
    ['v'.repeat(128), true],
    [`A_${'.-9'.repeat(42)}`, true],
    [`sha256:${hex64}`, true],
    [`sha256:${'f'.repeat(64)}`, true],
    ['_', true],
    ['0', true],
    ['a.', true],
    ['a-', true],
    ['V1.2.3-rc.1_build', true],
    ['v'.repeat(129), false],
    [`sha256:${hex64.slice(1)}`, false],
    [`sha256:${hex64}0`, false],
    [`sha256:${hex64.toUpperCase()}`, false],
    [`SHA256:${hex64}`, false],
    [`sha512:${hex64}${hex64}`, false],
    ['sha256:', false],
    [`web@sha256:${hex64}`, false],
    ['web:v1', false],
    ['.a', false],
    ['-a', false],
    ['', false],
    ['v1;rm -rf /', false],
    ['$(id)', false],
    ['`id`', false],
    ['v1|id', false],
    ['v1&&id', false],
    ['v1\nv2', false],
    ['v1\u0000', false],
    ['v1 ', false],
    ['../x', false],
    ['v\u202e1', false],
    ['v🚀', false],
  ];
  for (const [i, [version, ok]] of edges.entries()) {
    const r: FuzzRequest = {
      op: 'POST /v1/apps/{app}/releases',
      method: 'POST',
      url: '/v1/apps/web/releases',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ version }),
      tags: ['edge-probe'],
      validToken: true,
      app: 'web',
      version,
    };
    const status = await check(r, `edge probe #${i}`);
    assert.equal(status, ok ? 202 : 400, `version ${JSON.stringify(version)} is ${ok ? 'accepted' : 'refused'}`);
  }

  for (let i = 0; i < CASES; i++) await check(generateRequest(rng, ops, target), `case #${i}`);
  const elapsed = (Date.now() - startedAt) / 1000;

  t.diagnostic(`${CASES} random requests + ${edges.length} edge probes in ${elapsed.toFixed(1)} s (${streams} SSE streams opened and closed), ${acceptedVersions.size} distinct versions accepted, ${apps.size} apps`);
  for (const line of statuses.lines()) t.diagnostic(line);
  for (const line of tags.lines()) t.diagnostic(line);
  for (const op of ops) t.diagnostic(`${op.id}: ${perOp.get(op.id)?.lines().join(' ') ?? 'none'}`);
  if (perOp.has('(unknown path)')) t.diagnostic(`(unknown path): ${perOp.get('(unknown path)')!.lines().join(' ')}`);

  // Coverage (for a full run; a short replay with BERTH_FUZZ_CASES may not reach it all):
  // every route was hit with its own method and accepted some requests; every route
  // that takes any input (token, path, query or body) also refused some.
  if (CASES >= MIN_CASES) for (const op of ops) {
    const tally = perOp.get(op.id);
    assert.ok(tally, `${op.id} was fuzzed`);
    const own = tally.keys().filter((k) => !k.startsWith('other-method'));
    assert.ok(own.some((k) => k.startsWith('2')), `${op.id} accepted at least one request: ${tally.lines().join(' ')}`);
    const takesInput = op.secured || op.body !== null || Object.keys(op.params).length > 0 || Object.keys(op.query).length > 0;
    if (takesInput) assert.ok(own.some((k) => k.startsWith('4')), `${op.id} refused at least one request: ${tally.lines().join(' ')}`);
  }
  if (CASES >= MIN_CASES) for (const dim of ['body:huge', 'body:deep-nesting', 'body:truncated-json', 'body:bad-json', 'body:shell-meta', 'body:unicode', 'body:wrong-type', 'body:null', 'body:array', 'path:traversal', 'path:overlong', 'path:encoded-slash', 'method:other', 'auth:none', 'auth:wrong', 'auth:near-miss', 'query:random', 'headers:random', 'content-type:odd']) {
    assert.ok(tags.get(dim) > 0, `the run covered ${dim}`);
  }

  // Everything the store holds obeys the grammars.
  const db = api.store.db;
  for (const { app, version } of db.prepare('SELECT app, version FROM releases').all() as Array<{ app: string; version: string }>) {
    assert.ok(versionRe.test(version) && isDockerTagOrDigest(version), `stored version ${JSON.stringify(version)} of ${app}`);
  }
  for (const { name, spec } of db.prepare('SELECT name, spec FROM apps').all() as Array<{ name: string; spec: string }>) {
    assert.ok(appName.test(name), `stored app name ${JSON.stringify(name)}`);
    const s = JSON.parse(spec) as { image: string; hosts: string[]; env: Record<string, string>; secrets: string[] };
    assert.ok(imageRe.test(s.image), `stored image ${JSON.stringify(s.image)} of ${name}`);
    for (const h of s.hosts) assert.ok(DEFAULT_HOSTS.includes(h), `stored host ${JSON.stringify(h)} of ${name}`);
    for (const k of [...Object.keys(s.env), ...s.secrets]) assert.ok(envRe.test(k), `stored variable name ${JSON.stringify(k)} of ${name}`);
  }
  assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');

  // The process is fine: nothing escaped, nothing logged as a failure, and it still answers.
  assert.deepEqual(stray, [], 'no uncaught exception or unhandled rejection');
  const logs = api.logs();
  assert.equal(logs.includes('"msg":"request failed"'), false, 'no request failed with a 5xx');
  assert.equal(logs.includes(TOKEN), false, 'the token is not in the logs');
  assert.equal((await api.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
  assert.equal((await api.app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
  const list = await api.call({ method: 'GET', url: '/v1/apps' });
  assert.equal(list.statusCode, 200);
});
