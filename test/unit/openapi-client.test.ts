/**
 * /openapi.json is usable by a generator: openapi-typescript turns it into types, a
 * small fetch client written against those types compiles under `strict` (a success
 * body typed `never`, a string-typed `limit` or a missing operation fails it), and then
 * runs against the real API: the types describe what the server answers.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import openapiTS, { astToString } from 'openapi-typescript';
import ts from 'typescript';
import { TOKEN, makeApi, seedApp, type TestApi } from '../support/api.js';

/**
 * The client: one function per call through the generated `operations` types, and
 * compile-time checks that the bodies it reads are real types (not `never`) and that
 * query integers are numbers.
 */
const CLIENT = `
import type { components, operations } from './berth-api.js';

type Json<Op extends keyof operations, S extends keyof operations[Op]['responses']> =
  operations[Op]['responses'][S] extends { content: { 'application/json': infer B } } ? B : never;
type IsNever<T> = [T] extends [never] ? true : false;
/** Compiles only when T is not never. */
type Real<T> = IsNever<T> extends true ? 'a body typed never' : T;
const real = <T,>(value: Real<T>): Real<T> => value;

export type ErrorBody = components['schemas']['Error'];

export class Client {
  constructor(private readonly base: string, private readonly token: string) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const res = await fetch(this.base + path, {
      method,
      headers: { authorization: 'Bearer ' + this.token, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as T };
  }

  getApp(app: operations['getApp']['parameters']['path']['app']) {
    return this.call<Json<'getApp', 200> | ErrorBody>('GET', '/v1/apps/' + app);
  }

  createRelease(app: string, body: operations['createRelease']['requestBody']['content']['application/json']) {
    return this.call<Json<'createRelease', 202> | Json<'createRelease', 200> | Json<'createRelease', 409>>('POST', '/v1/apps/' + app + '/releases', body);
  }

  listReleases(app: string, query: NonNullable<operations['listReleases']['parameters']['query']>) {
    const q = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]));
    return this.call<Json<'listReleases', 200>>('GET', '/v1/apps/' + app + '/releases?' + q.toString());
  }
}

const isError = (b: object): b is ErrorBody => 'code' in b && 'message' in b;

/** What the test runs: reads fields through the generated types, returns what it saw. */
export async function scenario(base: string, token: string) {
  const c = new Client(base, token);
  const created = await c.createRelease('web', { version: 'v2', expectedRevision: 1 });
  if (isError(created.body)) throw new Error(created.body.message);
  const revision: number = real<Json<'createRelease', 202>>(created.body).revision;
  const unchanged: boolean = created.body.unchanged;

  const stale = await c.createRelease('web', { version: 'v3', expectedRevision: 1 });
  const staleCode: string = isError(stale.body) ? stale.body.code : 'none';

  const app = await c.getApp('web');
  if (isError(app.body)) throw new Error(app.body.message);
  const got = real<Json<'getApp', 200>>(app.body);
  const desired: number | undefined = got.desired?.revision;
  const image: string = got.spec.image;
  const phase: string | null | undefined = got.status?.phase;
  const host: components['schemas']['AppStatus']['hosts'][number] | undefined = got.status?.hosts[0];

  const page = await c.listReleases('web', { limit: 1 });
  const newest: number | undefined = real<Json<'listReleases', 200>>(page.body).releases[0]?.revision;
  const neverCalled = () => {
    // @ts-expect-error limit is an integer in the document, not a string
    void c.listReleases('web', { limit: '1' });
  };
  // Every operation by the name a client calls it; and a name the document does not have is an error.
  const operationIds: Array<keyof operations> = [
    'getHealth', 'getReadiness', 'getMetrics', 'listApps', 'getApp', 'putApp', 'createRelease', 'listReleases', 'rollbackApp',
    'restartApp', 'pauseApp', 'resumeApp', 'listEvents', 'listHosts', 'startMaintenance', 'endMaintenance', 'execInApp',
    'deleteApp', 'reloadConfig',
  ];
  // @ts-expect-error no such operation
  const missing: keyof operations = 'getAppz';

  // The event stream is documented as text; the exec host errors as Error bodies.
  const stream: operations['listEvents']['responses'][200]['content']['text/event-stream'] = '';
  const hostDown: Json<'execInApp', 502> = { error: 'Bad Gateway', code: 'HOST_UNREACHABLE', message: 'h1: no route' };
  const timedOut: Json<'execInApp', 504>['code'] = 'HOST_TIMEOUT';
  return { neverCalled, operationIds, missing, status: created.status, revision, unchanged, staleCode, desired, image, phase, host, newest, stream, hostDown, timedOut };
}
`;

let api: TestApi;
let dir: string;

before(async () => {
  api = makeApi();
  await seedApp(api, 'web', ['v1']);
  dir = mkdtempSync(join(tmpdir(), 'berth-openapi-client-'));
});

after(async () => {
  await api?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Type-checks `file` (strict, as a Node ES module with fetch) and returns the diagnostics as text. */
function compile(file: string): string[] {
  const program = ts.createProgram([file], {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
    types: [],
  });
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file && d.start !== undefined ? `${d.file.fileName}:${d.file.getLineAndCharacterOfPosition(d.start).line + 1}: ` : '';
    return where + ts.flattenDiagnosticMessageText(d.messageText, '\n');
  });
}

test('openapi-typescript generates types from /openapi.json that a strict client compiles against, and the client runs', async () => {
  const doc = JSON.parse((await api.app.inject({ method: 'GET', url: '/openapi.json' })).body) as Parameters<typeof openapiTS>[0];
  const types = astToString(await openapiTS(doc));
  writeFileSync(join(dir, 'berth-api.d.ts'), types);
  const client = join(dir, 'client.mts');
  writeFileSync(client, CLIENT);
  const errors = compile(client);
  assert.deepEqual(errors, [], `the client compiles against the generated types:\n${errors.join('\n')}`);

  await api.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = api.app.server.address() as AddressInfo;
  const { scenario } = (await import(pathToFileURL(client).href)) as { scenario: (base: string, token: string) => Promise<Record<string, unknown>> };
  const seen = await scenario(`http://127.0.0.1:${port}`, TOKEN);
  assert.deepEqual(
    { status: seen.status, revision: seen.revision, unchanged: seen.unchanged, staleCode: seen.staleCode, desired: seen.desired, newest: seen.newest, image: seen.image },
    { status: 202, revision: 2, unchanged: false, staleCode: 'CONFLICT', desired: 2, newest: 2, image: '10.77.0.1:5000/web' },
  );
});
