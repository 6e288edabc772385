/**
 * The response schemas of /openapi.json are true: every route is made to answer with
 * every status the document lists for it (and only those), against a real SQLite store;
 * each body validates against the documented schema of its status and media type, and
 * the serialized body holds exactly what the handler sent (fastify serializes with these
 * schemas and drops whatever they do not name, so a missing property would silently
 * vanish from answers). The only stand-in is the controller seam (test/support/api.ts):
 * exec's host errors are the real error classes a host driver throws.
 */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import type { ConfigFileHandle, ReloadResult } from '../../src/api/context.js';
import { ConfigError, ConflictError, HOST_ERROR_CODES, HostError } from '../../src/domain/errors.js';
import type { AppLogItem } from '../../src/domain/logs.js';
import { AUTH, appDoc, makeApi, seedApp, type TestApi } from '../support/api.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

interface Operation {
  id: string;
  method: string;
  path: string;
  op: Json;
}

/** One request and the operation and status it must be answered with. */
interface Case {
  op: string;
  status: number;
  req: InjectOptions;
  /** Runs just before the request (puts the store or the controller in the state the case needs). */
  setup?: () => void;
  /** false: sent without the token. */
  auth?: false;
}

const ajv = new Ajv2020({ allErrors: true, allowUnionTypes: true });

/** A config file declaring the app `filed`; its reload answers `reloadAnswer` (a ConfigError: the file is invalid). */
let reloadAnswer: ReloadResult | ConfigError = { apps: { filed: 'unchanged' }, undeclared: ['web'], restartRequired: ['hosts'] };
const configFile: ConfigFileHandle = {
  path: '/etc/berth/berth.yml',
  declares: (app) => app === 'filed',
  reload: () => {
    if (reloadAnswer instanceof ConfigError) throw reloadAnswer;
    return reloadAnswer;
  },
};

let api: TestApi;
let ops: Map<string, Operation>;
/** components.schemas of the document. */
let named: Record<string, Json> = {};

/** `schema` with its $refs to components.schemas replaced by what they name. */
function deref(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(deref);
  if (schema === null || typeof schema !== 'object') return schema;
  const ref = (schema as Json).$ref as string | undefined;
  if (ref) return deref(named[ref.replace('#/components/schemas/', '')]);
  return Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, deref(v)]));
}
/** What the handler (or error handler) sent, before fastify serialized it; null for text and streams. */
let sent: unknown = null;
/** `operationId status` of every answer checked so far. */
const seen = new Set<string>();

before(async () => {
  api = makeApi({
    eventStreams: { maxStreams: 1 },
    configFile,
    proxyStatus: async () => ({ state: 'running', image: 'haproxy:2.6', routes: 2, checkedAt: new Date().toISOString() }),
  });
  api.app.addHook('preSerialization', async (_request, _reply, payload) => {
    sent = payload;
    return payload;
  });
  const doc = JSON.parse((await api.app.inject({ method: 'GET', url: '/openapi.json' })).body) as Json;
  named = doc.components.schemas as Record<string, Json>;
  const all = Object.entries(doc.paths as Record<string, Json>).flatMap(([path, byMethod]) =>
    Object.entries(byMethod).map(([method, op]: [string, Json]): Operation => ({ id: op.operationId as string, method, path, op })),
  );
  // Every route is named for generated clients, once, and documents a success.
  for (const o of all) {
    assert.equal(typeof o.id, 'string', `${o.method} ${o.path} has an operationId`);
    assert.match(o.id, /^[a-z][A-Za-z]+$/, `${o.method} ${o.path}: the operationId ${o.id} is camelCase`);
    assert.ok(Object.keys(o.op.responses).some((s) => s.startsWith('2')), `${o.id} documents a success response`);
  }
  ops = new Map(all.map((o) => [o.id, o]));
  assert.equal(ops.size, all.length, 'operationIds are unique');
  // web: three releases, a status with a failed rollout and a host view; other: a single version; empty: no release.
  await seedApp(api, 'web', ['v1', 'v2', 'v3']);
  await seedApp(api, 'other', ['a1'], appDoc({ port: 4000, proxy: { port: 8081, host: 'other.example' }, env: { MODE: 'x' } }));
  await seedApp(api, 'empty');
  await seedApp(api, 'doomed', ['d1']);
  // The file's app, as the daemon stores it at start.
  api.store.apps.upsertApp({ ...api.store.apps.getApp('web')!.spec, name: 'filed' }, 'config');
  const now = new Date().toISOString();
  api.store.status.writeStatus({
    app: 'web',
    phase: 'Failed',
    observedRevision: 2,
    conditions: [{ type: 'Progressing', status: 'False', reason: 'HealthCheckFailed', message: 'h1: GET /health answered 500: boom', lastTransitionTime: now }],
    hosts: [
      { host: 'h1', version: 'v2', revision: 2, containerId: 'c1', health: 'unhealthy', lastError: 'GET /health answered 500', lastLogs: ['booting', 'db: connection refused'] },
      { host: 'h2', version: null, revision: null, containerId: null, health: 'unknown', lastError: null, lastLogs: null },
    ],
    updatedAt: now,
  });
  api.store.events.appendEvent({ app: 'web', host: 'h1', revision: 3, type: 'FailedContainerLogs', message: 'web-r3 (v3) failed its health check; its last 2 log lines:\nbooting\ndb: connection refused', actor: 'controller' });
  api.store.events.appendEvent({ app: 'web', host: 'h1', revision: 3, type: 'RolloutFailed', message: 'h1: health check failed', actor: 'controller' });
  api.store.hostsStatus.upsert({ host: 'h1', up: true, dockerVersion: '27.5.1', lastError: null });
  // h1 answers: GET /v1/hosts shows its proxy; h2 and h3 are not checked yet (proxy null).
});

after(async () => {
  await api?.close();
});

const opOf = (id: string): Operation => {
  const op = ops.get(id);
  assert.ok(op, `operation ${id} is in /openapi.json`);
  return op;
};
const urlOf = (id: string, app = 'web') => opOf(id).path.replace('{app}', app);
const methodOf = (id: string) => opOf(id).method.toUpperCase() as 'GET';

/** The cases every operation gets from its shape: the errors of src/api/responses.ts, shapeErrorStatuses. */
function shapeCases(o: Operation): Case[] {
  const cases: Case[] = [];
  const method = o.method.toUpperCase() as 'POST';
  const hasBody = Boolean(o.op.requestBody);
  const body = hasBody ? { payload: o.id === 'putApp' ? appDoc() : o.id === 'execInApp' ? { command: 'true' } : o.id === 'createRelease' ? { version: 'v9' } : {} } : {};
  const on = (app: string) => o.path.replace('{app}', app);
  const params = (o.op.parameters ?? []) as Json[];
  if (o.op.security) cases.push({ op: o.id, status: 401, auth: false, req: { method, url: on('web'), ...body } });
  if (params.some((p) => p.in === 'path')) {
    cases.push({ op: o.id, status: 400, req: { method, url: on('Bad_Name'), ...body } });
    if (o.op.responses['404']) cases.push({ op: o.id, status: 404, req: { method, url: on('nope'), ...body } });
    cases.push({ op: o.id, status: 414, req: { method, url: on('a'.repeat(300)), ...body } });
  }
  if (params.some((p) => p.in === 'query')) cases.push({ op: o.id, status: 400, req: { method, url: `${on('web')}?limit=abc` } });
  if (hasBody) {
    const headers = { 'content-type': 'application/json' };
    cases.push({ op: o.id, status: 400, req: { method, url: on('web'), headers, payload: '{"version":' } });
    cases.push({ op: o.id, status: 413, req: { method, url: on('web'), headers, payload: JSON.stringify({ pad: 'x'.repeat(300 * 1024) }) } });
    cases.push({ op: o.id, status: 415, req: { method, url: on('web'), headers: { 'content-type': 'text/plain' }, payload: 'hello' } });
  }
  return cases;
}

/** The answers each handler gives, one case per documented success and route-specific error. */
function handlerCases(): Case[] {
  const call = (op: string, status: number, extra: Partial<InjectOptions> & { app?: string } = {}, setup?: () => void): Case => {
    const { app, ...rest } = extra;
    return { op, status, req: { method: methodOf(op), url: urlOf(op, app), ...rest }, ...(setup ? { setup } : {}) };
  };
  const hostFails = (code: string) => () => {
    api.controller.exec = async () => {
      throw new HostError(code as (typeof HOST_ERROR_CODES)[keyof typeof HOST_ERROR_CODES], 'h1', `docker: ${code}`);
    };
  };
  return [
    call('getHealth', 200),
    call('getReadiness', 200, {}, () => (api.controller.running = true)),
    call('getReadiness', 503, {}, () => (api.controller.running = false)),
    call('getMetrics', 200, {}, () => (api.controller.running = true)),
    call('listApps', 200),
    call('getApp', 200),
    call('getApp', 200, { app: 'other' }),
    call('getApp', 200, { app: 'empty' }),
    call('putApp', 201, { app: 'fresh', payload: appDoc({ hooks: { pre_deploy: ['migrate'] }, secrets: [] }) }),
    call('putApp', 200, { app: 'fresh', payload: appDoc({ port: 3001 }) }),
    call('putApp', 422, { app: 'fresh', payload: appDoc({ port: 70000, hosts: [] }) }),
    call('putApp', 409, { app: 'filed', payload: appDoc() }),
    call('deleteApp', 202, { app: 'doomed' }),
    call('getApp', 200, { app: 'doomed' }),
    call('deleteApp', 409, { app: 'filed' }),
    call('reloadConfig', 200, {}, () => (reloadAnswer = { apps: { filed: 'unchanged' }, undeclared: ['web'], restartRequired: ['hosts'] })),
    call('reloadConfig', 422, {}, () => (reloadAnswer = new ConfigError([{ path: 'apps.filed.port', message: 'expected an integer from 1 to 65535, got 0' }]))),
    call('createRelease', 202, { payload: { version: 'v4' } }),
    call('createRelease', 200, { payload: { version: 'v4' } }),
    call('createRelease', 409, { payload: { version: 'v5', expectedRevision: 1 } }),
    call('listReleases', 200, { url: `${urlOf('listReleases')}?limit=2&before=4` }),
    call('rollbackApp', 202),
    call('rollbackApp', 200, { payload: { version: 'v3' } }),
    call('rollbackApp', 409, { app: 'other' }),
    call('restartApp', 202),
    call('restartApp', 409, { app: 'empty' }),
    call('pauseApp', 200),
    call('resumeApp', 200),
    call('startMaintenance', 200, { app: 'other', payload: { message: 'back soon' } }),
    call('endMaintenance', 200, { app: 'other' }),
    call('execInApp', 200, { payload: { command: 'true', host: 'h2' } }),
    call('execInApp', 409, { payload: { command: 'true' } }, () => {
      api.controller.exec = async () => {
        throw new ConflictError('host "h3" does not run app "web" (hosts: h1, h2)');
      };
    }),
    call('execInApp', 502, { payload: { command: 'true' } }, hostFails(HOST_ERROR_CODES.unreachable)),
    call('execInApp', 504, { payload: { command: 'true' } }, hostFails(HOST_ERROR_CODES.timeout)),
    call('listEvents', 200, { url: `${urlOf('listEvents')}?after=1&limit=3` }),
    call('streamLogs', 200, { url: `${urlOf('streamLogs')}?tail=5&since=10m&host=h1` }, () => {
      api.controller.logsError = null;
      api.controller.logItems = LOG_ITEMS;
    }),
    call('streamLogs', 409, { url: `${urlOf('streamLogs')}?host=h3` }, () => {
      api.controller.logsError = new ConflictError('host "h3" does not run app "web" (hosts: h1, h2)');
    }),
    call('listHosts', 200),
  ];
}

/** What the scripted controller's logs send: a host attaching, a line, a host that cannot be read. */
const LOG_ITEMS: AppLogItem[] = [
  { type: 'host', host: 'h1', state: 'attached', container: 'web-r3', message: 'web-r3 (v3)', code: null },
  { type: 'line', host: 'h1', container: 'web-r3', stream: 'stderr', time: '2026-11-29T09:31:54.745123456Z', text: 'listening' },
  { type: 'host', host: 'h2', state: 'error', container: null, message: 'list containers: docker daemon not reachable', code: 'HOST_UNREACHABLE' },
];

/** Checks one answer against the document and counts its status as produced. */
function check(c: Case, res: LightMyRequestResponse, captured: unknown): void {
  seen.add(`${c.op} ${c.status}`);
  const o = opOf(c.op);
  const label = `${c.op} ${c.req.method} ${c.req.url} -> ${res.statusCode}`;
  assert.equal(res.statusCode, c.status, `${label}: ${res.body.slice(0, 300)}`);
  const documented = o.op.responses[String(res.statusCode)] as Json | undefined;
  assert.ok(documented, `${label}: status ${res.statusCode} is documented (has ${Object.keys(o.op.responses).join(', ')})`);
  const mediaType = String(res.headers['content-type']).split(';')[0]!;
  const schema = documented.content?.[mediaType]?.schema as Json | undefined;
  assert.ok(schema, `${label}: ${mediaType} is documented for ${res.statusCode} (has ${Object.keys(documented.content ?? {}).join(', ')})`);
  const body: unknown = mediaType === 'application/json' ? JSON.parse(res.body) : res.body;
  const validate = ajv.compile(deref(schema) as Json);
  assert.ok(validate(body), `${label}: the body fits its documented schema: ${ajv.errorsText(validate.errors)}\n${res.body.slice(0, 500)}`);
  // Nothing the handler sent was dropped or changed by the serializer (JSON round trip: undefined fields aside).
  if (captured !== null) assert.deepEqual(body, JSON.parse(JSON.stringify(captured)), `${label}: the serialized body is what the handler sent`);
}

test('every route answers its documented statuses, each body fits its schema and loses nothing to serialization', async () => {
  const cases = [...handlerCases(), ...[...ops.values()].flatMap(shapeCases)];
  const realExec = api.controller.exec.bind(api.controller);
  for (const c of cases) {
    api.controller.exec = realExec;
    c.setup?.();
    sent = null;
    const res = await api.app.inject({ ...c.req, headers: { ...(c.auth === false ? {} : AUTH), ...(c.req.headers as Record<string, string> | undefined) } });
    check(c, res, sent);
    // Every JSON answer passed through the route's serializer; text (/metrics) does not, nor
    // the router's own answer to an overlong path parameter (414, sent before any route runs).
    if (String(res.headers['content-type']).startsWith('application/json') && c.status !== 414) assert.notEqual(sent, null, `${c.op} ${c.status}: the handler's object was seen before serialization`);
  }
  // Internal errors (500): the store gone under a route.
  const broken = makeApi();
  await seedApp(broken);
  // A daemon without a config file (benchmarks) refuses a reload.
  check({ op: 'reloadConfig', status: 409, req: { method: 'POST', url: '/v1/reload' } }, await broken.app.inject({ method: 'POST', url: '/v1/reload', headers: AUTH }), null);
  broken.store.close();
  const res = await broken.app.inject({ method: 'GET', url: '/v1/apps/web', headers: AUTH });
  check({ op: 'getApp', status: 500, req: { method: 'GET', url: '/v1/apps/web' } }, res, null);
  await broken.app.close();
});

test('the event stream: text/event-stream frames carry events of the documented schema; one stream over api.max_event_streams is a documented 503', async () => {
  const o = opOf('listEvents');
  const streamDoc = o.op.responses['200'].content['text/event-stream'].schema as Json;
  assert.match(streamDoc.description, /id: <event id>.*event: <event type>.*data: /);
  const eventSchema = deref(o.op.responses['200'].content['application/json'].schema.properties.events.items) as Json;
  await api.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = api.app.server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}${urlOf('listEvents')}`;
  const aborter = new AbortController();
  const res = await fetch(url, { headers: { ...AUTH, accept: 'text/event-stream', 'last-event-id': '1' }, signal: aborter.signal });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  const reader = res.body!.getReader();
  let textRead = '';
  while (!textRead.includes('\n\n')) textRead += new TextDecoder().decode((await reader.read()).value);
  const frame = /^id: (\d+)\nevent: (\w+)\ndata: (.*)\n\n/.exec(textRead);
  assert.ok(frame, `a frame as documented: ${JSON.stringify(textRead.slice(0, 300))}`);
  const event = JSON.parse(frame[3]!) as Json;
  const validate = ajv.compile(eventSchema);
  assert.ok(validate(event), ajv.errorsText(validate.errors));
  assert.equal(event.id, Number(frame[1]));
  assert.equal(event.id, 2, 'resumed after Last-Event-ID: 1');
  assert.equal(event.type, frame[2]);

  // The one stream allowed is open: the next is refused.
  const refused = await api.app.inject({ method: 'GET', url: urlOf('listEvents'), headers: { ...AUTH, accept: 'text/event-stream' } });
  check({ op: 'listEvents', status: 503, req: { method: 'GET', url: urlOf('listEvents') } }, refused, sent);
  assert.equal(refused.headers['retry-after'], '5');
  aborter.abort();
  await reader.cancel().catch(() => {});
});

test('the log stream: line and host frames carry the documented LogLine and LogHostState; it takes the one stream slot events use too (503)', async () => {
  api.controller.logsError = null;
  api.controller.logItems = LOG_ITEMS;
  if (!api.app.server.listening) await api.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = api.app.server.address() as AddressInfo;
  const aborter = new AbortController();
  // The event stream of the test before may hold the slot until the server sees its close.
  let res = await fetch(`http://127.0.0.1:${port}${urlOf('streamLogs')}?follow=true`, { headers: AUTH, signal: aborter.signal });
  for (let i = 0; i < 100 && res.status === 503; i++) {
    await new Promise((r) => setTimeout(r, 20));
    res = await fetch(`http://127.0.0.1:${port}${urlOf('streamLogs')}?follow=true`, { headers: AUTH, signal: aborter.signal });
  }
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  const reader = res.body!.getReader();
  let textRead = '';
  while (textRead.split('\n\n').length <= LOG_ITEMS.length) textRead += new TextDecoder().decode((await reader.read()).value);
  const frames = textRead.split('\n\n').slice(0, LOG_ITEMS.length).map((f) => /^event: (line|host)\ndata: (.*)$/.exec(f));
  for (const [i, frame] of frames.entries()) {
    assert.ok(frame, `frame ${i} as documented: ${JSON.stringify(textRead.slice(0, 300))}`);
    const validate = ajv.compile(deref(named[frame[1] === 'line' ? 'LogLine' : 'LogHostState']) as Json);
    const data = JSON.parse(frame[2]!) as Json;
    assert.ok(validate(data), ajv.errorsText(validate.errors));
    assert.deepEqual({ type: frame[1], ...data }, LOG_ITEMS[i]);
  }

  // Followed, the stream holds the one slot: another log stream and an event stream are refused.
  const refused = await api.app.inject({ method: 'GET', url: urlOf('streamLogs'), headers: AUTH });
  check({ op: 'streamLogs', status: 503, req: { method: 'GET', url: urlOf('streamLogs') } }, refused, sent);
  assert.equal(refused.headers['retry-after'], '5');
  assert.equal((await api.app.inject({ method: 'GET', url: urlOf('listEvents'), headers: { ...AUTH, accept: 'text/event-stream' } })).statusCode, 503);
  assert.equal(api.controller.openLogs, 1, 'the refused request left no logs open');
  aborter.abort();
  await reader.cancel().catch(() => {});
  for (let i = 0; i < 100 && api.controller.openLogs > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(api.controller.openLogs, 0, "the client's disconnect closed the logs");
});

test('every status the document lists for a route was produced above (500, documented everywhere, once)', () => {
  const missing = [...ops.values()].flatMap((o) => Object.keys(o.op.responses).filter((s) => s !== '500' && !seen.has(`${o.id} ${s}`)).map((s) => `${o.id} ${s}`));
  assert.deepEqual(missing, [], 'documented statuses no request produced');
  assert.ok(seen.has('getApp 500'));
});
