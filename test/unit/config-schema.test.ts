/**
 * deploy/berth.schema.json (the JSON Schema editors use) against berth's own config
 * validator (src/config/validate.ts), which is the truth:
 *  1. every example config in the repo passes both: deploy/berth.yml, each ```yaml block of
 *     README.md and docs/*.md that is a berth config (a top-level `hosts:` or `apps:`; a
 *     block meant as a fragment would be fenced ```yaml fragment and is then not picked up),
 *     and the config fixtures of test/;
 *  2. invalid documents, table-style: both refuse each one, berth at the key path named;
 *     values berth accepts (corners of each grammar): the schema accepts them too; and a
 *     sweep of every key through a pool of values: the schema never refuses what berth
 *     accepts, and refuses what berth refuses but for the rules only berth can check;
 *  3. drift: every key the schema declares is one berth reads (a value of the wrong type is
 *     an issue at that key, never "unknown key"); every key name berth's readers read is,
 *     at every map of the schema, either declared there or unknown to berth there; the keys
 *     of the README's reference table are declared; integer bounds and defaults agree.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Ajv } from 'ajv';
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import { DEFAULT_MAX_EVENT_STREAMS } from '../../src/api/routes/events.js';
import { loadConfig, parseYaml } from '../../src/config/load.js';
import { indexPath, keyPath } from '../../src/config/reader.js';
import { effectiveRoute } from '../../src/config/routes.js';
import { validateConfigDocument } from '../../src/config/validate.js';
import { SEED_DEFAULTS, type BerthConfig } from '../../src/domain/app-spec.js';
import { ConfigError, type ConfigIssue } from '../../src/domain/errors.js';
import { APP_NAME_PATTERN, ENV_NAME_PATTERN, HOST_NAME_PATTERN, IMAGE_REPOSITORY_PATTERN, REGISTRY_HOST_PATTERN, VERSION_PATTERN } from '../../src/domain/naming.js';
import { DAEMON_CONFIG, ROOT, tempDir } from '../support/daemon.js';

const SCHEMA_FILE = join(ROOT, 'deploy/berth.schema.json');
const DEFAULT_CONFIG = join(ROOT, 'deploy/berth.yml');
const OPTS = { homeDir: '/home/op', baseDir: '/etc/berth' };
const FP = 'SHA256:XC9kx/Ie/V+149akmavl6sskiub28AhTh8mgVtEO9f0';

/** A schema node, as far as this test reads one. */
interface Node {
  type?: string | string[];
  title?: string;
  description?: string;
  default?: unknown;
  minimum?: number;
  maximum?: number;
  pattern?: string;
  $ref?: string;
  properties?: Record<string, Node>;
  additionalProperties?: Node | boolean;
}

const schema = JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as Node & { $defs: Record<string, Node> };
// strict: a keyword ajv does not know, or one on a type the node cannot have, is an error in the schema file.
// errorMessage: the message yaml-language-server shows instead of its own ("String does not match the pattern of ...").
const AJV_OPTIONS = { allErrors: true, strict: true, allowUnionTypes: true, keywords: ['errorMessage'] };
const validateSchema = new Ajv2020(AJV_OPTIONS).compile(schema);
// Editors may read it as draft-07: yaml-language-server (VS Code's YAML extension) applied draft-07 rules
// to any schema until it learnt 2019-09 and 2020-12. So the schema uses only what draft-07 has, and
// every verdict below is checked under both readings.
const validateDraft07 = new Ajv(AJV_OPTIONS).compile({ ...schema, $schema: undefined });

/**
 * Keys the schema declares that berth's validator on this branch does not read yet:
 * they land with another change. Each must still be unknown to berth here; once berth
 * reads it, the drift test fails and says to remove it from this list.
 */
const PENDING: ReadonlySet<string> = new Set<string>([]);

type Path = ReadonlyArray<string | number>;
type Doc = Record<string, unknown>;

/** `apps.web.hosts[1]`, as berth's issues spell paths. */
function berthPath(path: Path): string {
  return path.reduce<string>((p, seg) => (typeof seg === 'number' ? indexPath(p, seg) : keyPath(p, seg)), '');
}

/** `/apps/web/hosts/1`, as ajv's instancePath spells it. */
function pointer(path: Path): string {
  return path.map((seg) => `/${String(seg).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');
}

/** Where an ajv error points: its instance, or the key it names (unknown, missing, or a bad map key). */
function errorAt(e: ErrorObject): string {
  const p = e.params as { additionalProperty?: string; missingProperty?: string; propertyName?: string };
  const key = p.additionalProperty ?? p.missingProperty ?? p.propertyName;
  return key === undefined ? e.instancePath : pointer([...e.instancePath.split('/').slice(1), key]);
}

function schemaErrors(doc: unknown): string[] {
  const valid = validateSchema(doc);
  assert.equal(validateDraft07(doc), valid, `read as draft-07 the schema ${valid ? 'refuses' : 'accepts'} it, unlike 2020-12`);
  return valid ? [] : (validateSchema.errors ?? []).map((e) => `${errorAt(e)} ${e.message ?? ''}`);
}

function berthIssues(doc: unknown): ConfigIssue[] {
  try {
    validateConfigDocument(doc, OPTS);
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
}

const show = (issues: ConfigIssue[]): string => issues.map((i) => `${i.path}: ${i.message}`).join('\n') || '(none)';
const isUnknownKey = (i: ConfigIssue): boolean => i.message.startsWith('unknown key');

// ---------------------------------------------------------------------------
// A valid document every case starts from: two SSH hosts (host_key, known_hosts), a local
// one, and an app with a route and each section, so every key has a map to live in.

const BASE: Doc = {
  hosts: {
    h1: { address: '10.0.0.11', host_key: FP },
    h2: { address: 'h2.internal', known_hosts: '~/.ssh/known_hosts' },
    local: { local: true },
  },
  proxy: { image: 'haproxy:2.6' },
  acme: { email: 'ops@example.com' },
  api: { listen: '127.0.0.1:7373' },
  controller: { resync_interval: '10s' },
  registries: { 'ghcr.io': { username: 'ci-bot', password: 'GHCR_TOKEN' } },
  apps: {
    web: {
      image: 'registry.example.com/web',
      hosts: ['h1', 'h2'],
      healthcheck: { path: '/health' },
      rollout: { parallelism: 1 },
      hooks: { pre_deploy: ['bin/migrate'] },
      proxy: { host: 'app.example.com' },
      env: { APP_ENV: 'production' },
      secrets: ['DATABASE_URL'],
    },
  },
};

/** BASE with `value` at `path` (maps on the way created as needed). */
function withValue(path: Path, value: unknown, base: Doc = baseFor(path)): Doc {
  const doc = structuredClone(base);
  let node: Record<string | number, unknown> = doc;
  for (const seg of path.slice(0, -1)) {
    const next = node[seg];
    node = (node[seg] = typeof next === 'object' && next !== null ? next : {}) as Record<string | number, unknown>;
  }
  node[path[path.length - 1]!] = value;
  return doc;
}

/**
 * BASE for a value at `path`. Under processes: the route is a process's, so the app's own
 * goes, and the worker process exists; its route's keys and its HTTP health check (path,
 * port, ...) are a serving process's, so for those it has a proxy.
 */
function baseFor(path: Path): Doc {
  const at = 2;
  if (path[0] !== 'apps' || path[at] !== 'processes') return BASE;
  const doc = structuredClone(BASE) as { apps: { web: Record<string, unknown> } };
  delete doc.apps.web.proxy;
  const [, key, leaf] = path.slice(at + 1);
  const worker: Record<string, unknown> = {};
  const route = { port: 8080, host: 'jobs.example.com' };
  if (key === 'proxy' || (key === 'healthcheck' && leaf !== undefined && leaf !== 'cmd')) worker.proxy = route;
  if (key === 'healthcheck' || key === 'logging') worker[key] = key === 'logging' ? { driver: 'json-file' } : {};
  doc.apps.web.processes = { worker };
  return doc as Doc;
}

/** BASE without the key at `path`. */
function without(path: Path): Doc {
  const doc = structuredClone(baseFor(path));
  let node = doc as Record<string | number, unknown>;
  for (const seg of path.slice(0, -1)) node = node[seg] as Record<string | number, unknown>;
  delete node[path[path.length - 1]!];
  return doc;
}

test('the base document of these cases is valid for both', () => {
  assert.deepEqual(berthIssues(BASE), []);
  assert.deepEqual(schemaErrors(BASE), []);
});

// ---------------------------------------------------------------------------
// The keys the schema declares.

/** A node with its $ref followed (the node's own keywords win: title, description, default). */
function resolve(node: Node): Node {
  if (!node.$ref) return node;
  const target = schema.$defs[node.$ref.replace('#/$defs/', '')];
  assert.ok(target, `${node.$ref} exists`);
  return { ...resolve(target), ...node, $ref: undefined };
}

/** Sample names for the maps whose keys are user-chosen (they exist in BASE). */
const SAMPLE_KEY: Record<string, string> = { hosts: 'h1', apps: 'web', env: 'APP_ENV', registries: 'ghcr.io', processes: 'worker' };

interface Declared {
  path: string[];
  node: Node;
}

/** Every key the schema declares, depth first, with map entries under their BASE sample name. */
function declared(node: Node = schema, path: string[] = []): Declared[] {
  const out: Declared[] = [];
  for (const [key, child] of Object.entries(node.properties ?? {})) {
    const resolved = resolve(child);
    out.push({ path: [...path, key], node: resolved }, ...declared(resolved, [...path, key]));
  }
  const entry = node.additionalProperties;
  const sample = SAMPLE_KEY[path[path.length - 1] ?? ''];
  if (typeof entry === 'object' && sample !== undefined) {
    const resolved = resolve(entry);
    out.push({ path: [...path, sample], node: resolved }, ...declared(resolved, [...path, sample]));
  }
  return out;
}

const DECLARED = declared();
const CURRENT = DECLARED.filter((d) => !PENDING.has(d.path.join('.')));

/** The JSON type names a value has, as a schema's `type` spells them. */
function typesOf(value: unknown): string[] {
  if (value === null) return ['null'];
  if (Array.isArray(value)) return ['array'];
  if (Number.isInteger(value)) return ['integer', 'number'];
  return [typeof value];
}

/** A value of a type the node does not allow. */
function wrongType(node: Node): unknown {
  const allowed = [node.type ?? []].flat();
  const candidate = [['a', 'list'], 12345, 'a string', true, { a: 1 }].find((v) => !typesOf(v).some((t) => allowed.includes(t)));
  assert.ok(candidate !== undefined, `a wrong type for ${JSON.stringify(node.type)}`);
  return candidate;
}

// ---------------------------------------------------------------------------
// 1. Every example config in the repo.

/** The ```yaml blocks of a markdown file that are berth configs. */
function configBlocks(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  return [...text.matchAll(/^```yaml\n([\s\S]*?)^```$/gm)].map((m) => m[1]!).filter((b) => /^(?:hosts|apps):/m.test(b));
}

describe('every example config in the repo passes the schema and loads with berth', () => {
  const dir = tempDir('berth-schema-test-');
  after(() => dir.remove());

  /** [what, the file berth loads]: examples that live inside other files are written out first. */
  const examples: Array<[string, string]> = [['deploy/berth.yml', DEFAULT_CONFIG]];
  const inline: Array<[string, string]> = [['test/support/daemon.ts DAEMON_CONFIG', DAEMON_CONFIG]];
  const docs = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  for (const file of docs) configBlocks(file).forEach((block, i) => inline.push([`${file} yaml block ${i + 1}`, block]));
  inline.forEach(([name, text], i) => {
    const file = join(dir.path, `example-${i}.yml`);
    writeFileSync(file, text);
    examples.push([name, file]);
  });

  test('the README reference is among them', () => {
    assert.equal(configBlocks('README.md').length, 1, 'the config reference block in README.md');
  });

  for (const [name, file] of examples) {
    test(name, () => {
      assert.doesNotThrow(() => loadConfig(file, { homeDir: OPTS.homeDir }));
      assert.deepEqual(schemaErrors(parseYaml(readFileSync(file, 'utf8'))), []);
    });
  }

  test('deploy/berth.yml names the schema for editors on its first line', () => {
    const first = readFileSync(DEFAULT_CONFIG, 'utf8').split('\n')[0];
    assert.equal(first, '# yaml-language-server: $schema=./berth.schema.json');
  });
});

// ---------------------------------------------------------------------------
// 2. Agreement on values, table-style.

interface Refused {
  name: string;
  doc: unknown;
  /** Where berth reports it. */
  at: Path;
  /** Where the schema reports it, when a JSON Schema can only say it elsewhere. */
  schemaAt?: Path;
}

const app = (...rest: Path): Path => ['apps', 'web', ...rest];

/** BASE with `value` at `set`, reported by berth at `set` (or `where.berth`) and by the schema there (or at `where.schema`). */
function refuse(name: string, set: Path, value: unknown, where: { berth?: Path; schema?: Path } = {}): Refused {
  return { name, doc: withValue(set, value), at: where.berth ?? set, ...(where.schema ? { schemaAt: where.schema } : {}) };
}

const REFUSED: Refused[] = [
  { name: 'a list as the document', doc: ['hosts'], at: [] },
  refuse('unknown top-level key', ['colour'], 'blue'),
  refuse('unknown app key', app('replicas'), 3),
  refuse('unknown healthcheck key', app('healthcheck', 'retries'), 3),
  refuse('camelCase spelling of a key', app('rollout', 'onFailure'), 'pause'),
  refuse('unknown host key', ['hosts', 'h1', 'password'], 'x'),
  refuse('unknown tls key', app('proxy', 'tls'), { certificate: 'C', private_key: 'K', chain: 'X' }, { berth: app('proxy', 'tls', 'chain') }),
  refuse('port as a string', app('port'), '3000'),
  refuse('port 0', app('port'), 0),
  refuse('port above 65535', ['hosts', 'h1', 'port'], 65536),
  refuse('env value as a number', app('env', 'PORT'), 3000),
  refuse('env name starting with a digit', app('env', '1BAD'), 'x'),
  refuse('duration as a bare number', app('healthcheck', 'interval'), 5),
  refuse('duration without a unit', app('stop_timeout'), '10'),
  refuse('duration with a space', app('rollout', 'delay'), '5 s'),
  refuse('duration units out of order', app('hooks', 'timeout'), '30s1m'),
  refuse('duration unit twice', ['controller', 'resync_interval'], '5s5s'),
  refuse('duration with a sign', app('proxy', 'drain_timeout'), '-5s'),
  refuse('duration in capitals', ['acme', 'renew_before'], '30D'),
  refuse('negative parallelism', app('rollout', 'parallelism'), -1),
  refuse('parallelism 0', app('rollout', 'parallelism'), 0),
  refuse('fractional parallelism', app('rollout', 'parallelism'), 1.5),
  refuse('percentage 0%', app('rollout', 'parallelism'), '0%'),
  refuse('percentage above 100%', app('rollout', 'parallelism'), '101%'),
  refuse('percentage with a space', app('rollout', 'parallelism'), '30 %'),
  refuse('percentage without %', app('rollout', 'parallelism'), '30'),
  refuse('failure ratio above 1', app('rollout', 'max_failure_ratio'), 1.5),
  refuse('unknown failure policy', app('rollout', 'on_failure'), 'retry'),
  refuse('max_attempts 0', app('healthcheck', 'max_attempts'), 0),
  refuse('retain_containers above 100', app('retain_containers'), 101),
  refuse('max_event_streams above 10000', ['api', 'max_event_streams'], 10_001),
  refuse('health check path without /', app('healthcheck', 'path'), 'health'),
  refuse('host name starting with "-"', ['hosts', '-h1'], { address: '10.0.0.9', host_key: FP }),
  refuse('host name with a space', ['hosts', 'h 1'], { address: '10.0.0.9', host_key: FP }),
  refuse('app name in capitals', ['apps', 'Web'], { image: 'web', hosts: ['h1'] }),
  refuse('app name starting with a digit', ['apps', '1web'], { image: 'web', hosts: ['h1'] }),
  refuse('secret reserved by berth', app('secrets', 1), 'BERTH_TOKEN'),
  refuse('secret reserved by berth, lowercase', app('secrets', 1), 'berth_anything'),
  refuse('secret name with a "-"', app('secrets', 1), 'DB-URL'),
  refuse('duplicate secret', app('secrets', 1), 'DATABASE_URL', { schema: app('secrets') }),
  refuse('tls certificate reserved by berth', app('proxy', 'tls'), { certificate: 'BERTH_CERT', private_key: 'K' }, { berth: app('proxy', 'tls', 'certificate') }),
  refuse('tls without private_key', app('proxy', 'tls'), { certificate: 'C' }, { berth: app('proxy', 'tls', 'private_key') }),
  refuse('tls as a string', app('proxy', 'tls'), 'yes'),
  refuse('no hosts for an app', app('hosts'), []),
  refuse('duplicate host for an app', app('hosts', 1), 'h1', { schema: app('hosts') }),
  refuse('app host with a space', app('hosts', 1), 'h 2'),
  { name: 'app without image', doc: without(app('image')), at: app('image') },
  { name: 'app without hosts', doc: without(app('hosts')), at: app('hosts') },
  refuse('image with a tag', app('image'), 'registry.example.com/web:v1'),
  refuse('image in capitals', app('image'), 'registry.example.com/Web'),
  refuse('proxy image with two tags', ['proxy', 'image'], 'haproxy:2.6:x'),
  refuse('proxy image with a short digest', ['proxy', 'image'], 'haproxy@sha256:abc'),
  { name: 'SSH host without address', doc: without(['hosts', 'h1', 'address']), at: ['hosts', 'h1', 'address'] },
  { name: 'SSH host without host_key or known_hosts', doc: without(['hosts', 'h1', 'host_key']), at: ['hosts', 'h1'] },
  refuse('local host with an address', ['hosts', 'local', 'address'], '10.0.0.1'),
  refuse('local host with a user', ['hosts', 'local', 'user'], 'root'),
  refuse('address with a port', ['hosts', 'h1', 'address'], '10.0.0.11:22'),
  refuse('host_key not a fingerprint', ['hosts', 'h1', 'host_key'], 'SHA256:abc'),
  refuse('user with a space', ['hosts', 'h1', 'user'], 'root user'),
  refuse('relative docker_socket', ['hosts', 'h1', 'docker_socket'], 'var/run/docker.sock'),
  refuse('ssh_key under another user\'s ~', ['hosts', 'h1', 'ssh_key'], '~bob/.ssh/id_ed25519'),
  refuse('blank known_hosts', ['hosts', 'h2', 'known_hosts'], '  '),
  refuse('local as a string', ['hosts', 'h1', 'local'], 'yes'),
  refuse('short token', ['api', 'token'], 'changeme'),
  refuse('token with a space', ['api', 'token'], 'a'.repeat(20) + ' ' + 'b'.repeat(20)),
  refuse('listen without a port', ['api', 'listen'], '127.0.0.1'),
  refuse('listen on port 70000', ['api', 'listen'], '127.0.0.1:70000'),
  refuse('open_reads as a string', ['api', 'open_reads'], 'yes'),
  refuse('acme directory over http', ['acme', 'directory'], 'http://acme.example/dir'),
  refuse('acme email without @', ['acme', 'email'], 'ops'),
  refuse('route host with a scheme', app('proxy', 'host'), 'https://app.example.com'),
  refuse('route host with a port', app('proxy', 'host'), 'app.example.com:8080'),
  refuse('route host with an inner wildcard', app('proxy', 'host'), 'a.*.example.com'),
  refuse('path prefix without /', app('proxy', 'path_prefix'), 'api'),
  refuse('path prefix with //', app('proxy', 'path_prefix'), '/a//b'),
  refuse('path prefix with ..', app('proxy', 'path_prefix'), '/a/../b'),
  refuse('path prefix with a space', app('proxy', 'path_prefix'), '/a b'),
  refuse('path prefix with %', app('proxy', 'path_prefix'), '/a%20b'),
  refuse('path prefix with a query', app('proxy', 'path_prefix'), '/a?b=1'),
  refuse('route with neither port nor host', app('proxy'), { drain_timeout: '5s' }),
  refuse('ACME for a wildcard host', app('proxy'), { host: '*.example.com', tls: true }, { berth: app('proxy', 'tls'), schema: app('proxy', 'host') }),
  refuse('ACME on port 8080', app('proxy'), { host: 'app.example.com', port: 8080, tls: true }, { berth: app('proxy', 'port') }),
  refuse('TLS with proxy port 443', app('proxy'), { host: 'app.example.com', port: 443, tls: { certificate: 'C', private_key: 'K' } }, { berth: app('proxy', 'port') }),
  refuse('TLS without a host', app('proxy'), { port: 8080, tls: { certificate: 'C', private_key: 'K' } }, { berth: app('proxy', 'tls'), schema: app('proxy', 'host') }),
  refuse('empty hook command', app('hooks', 'pre_deploy', 0), '  '),
  refuse('hooks as a string', app('hooks', 'post_deploy'), 'bin/notify'),
  refuse('healthcheck as a list', app('healthcheck'), ['/health']),
  refuse('registry key without a dot or a port (a Docker Hub account)', ['registries', 'ghcr'], { username: 'u', password: 'P' }),
  refuse('registry key in capitals', ['registries', 'GHCR.io'], { username: 'u', password: 'P' }),
  refuse('registry key with a scheme', ['registries', 'https://ghcr.io'], { username: 'u', password: 'P' }),
  refuse('registry key with a repository', ['registries', 'ghcr.io/acme'], { username: 'u', password: 'P' }),
  refuse('registry password written as the value', ['registries', 'ghcr.io', 'password'], 's3cret!'),
  refuse('registry user with a ":"', ['registries', 'ghcr.io', 'username'], 'ci:bot'),
  refuse('unknown registry key', ['registries', 'ghcr.io', 'token'], 'x'),
  { name: 'registry without password', doc: without(['registries', 'ghcr.io', 'password']), at: ['registries', 'ghcr.io', 'password'] },
  refuse('registry credentials as null', ['registries', 'ghcr.io'], null, { berth: ['registries', 'ghcr.io', 'username'], schema: ['registries', 'ghcr.io'] }),
];

describe('invalid documents: refused by both, berth at the key path', () => {
  for (const c of REFUSED) {
    test(c.name, () => {
      const issues = berthIssues(c.doc);
      const at = berthPath(c.at) || '(root)';
      assert.ok(issues.some((i) => i.path === at), `berth reports ${at}; it said:\n${show(issues)}`);
      const errors = schemaErrors(c.doc);
      const where = pointer(c.schemaAt ?? c.at);
      assert.ok(errors.some((e) => e.startsWith(`${where} `)), `the schema reports ${where || '(root)'}; it said:\n${errors.join('\n') || '(none)'}`);
    });
  }
});

/** Values berth accepts, at the corners of each grammar: the schema must not refuse them. */
const ACCEPTED: Array<[Path, unknown]> = [
  [app('rollout', 'progress_deadline'), '1h2m3s4ms'],
  [app('rollout', 'delay'), '0.5m'],
  [app('healthcheck', 'interval'), '1.5s'],
  [app('healthcheck', 'timeout'), '100ms'],
  [app('stop_timeout'), '0ms'],
  [['acme', 'renew_before'], '1d12h'],
  [app('rollout', 'parallelism'), '30%'],
  [app('rollout', 'parallelism'), '001%'],
  [app('rollout', 'parallelism'), '100%'],
  [app('rollout', 'parallelism'), 7],
  [app('rollout', 'on_failure'), 'continue'],
  [app('rollout', 'max_failure_ratio'), 0.5],
  [app('proxy', 'host'), '*.example.com'],
  [app('proxy', 'host'), 'APP.Example.com'],
  [app('proxy', 'path_prefix'), '/'],
  [app('proxy', 'path_prefix'), '/api/'],
  [app('proxy', 'path_prefix'), '/a/..b/v1:x@y'],
  [app('proxy'), { port: 443 }],
  [app('proxy'), { port: 80, host: 'app.example.com', tls: true }],
  [app('proxy'), { host: '*.example.com', tls: { certificate: 'SHOP_CRT', private_key: 'SHOP_KEY' } }],
  [app('proxy'), { host: 'app.example.com', tls: false }],
  [app('proxy'), null],
  [app('secrets'), ['db_url', '_X1']],
  [app('env'), {}],
  [app('env', 'EMPTY'), ''],
  [app('hooks', 'pre_deploy'), []],
  [app('image'), '10.77.0.1:5000/my_org/web-app__x'],
  [['proxy', 'image'], `haproxy@sha256:${'a'.repeat(64)}`],
  [['proxy', 'image'], '10.77.0.1:5000/haproxy:2.6-alpine'],
  [['api', 'listen'], '[::1]:7373'],
  [['api', 'listen'], 'localhost:00080'],
  [['api', 'token'], 'x'.repeat(32)],
  [['acme', 'directory'], 'HTTPS://acme.example/dir'],
  [['hosts', 'h1', 'address'], 'fe80::1'],
  [['hosts', 'h1', 'address'], 'h1.example.com'],
  [['hosts', 'h1', 'host_key'], `${FP}=`],
  [['hosts', 'h1', 'ssh_key'], '~'],
  [['hosts', 'h1', 'ssh_key'], 'keys/id_ed25519'],
  [['hosts', 'h1', 'user'], 'deploy.bot-1'],
  [['hosts', 'h1.example.com'], { address: 'h1.example.com', host_key: FP }],
  [['hosts', 'local', 'address'], null],
  // A key with nothing after it (YAML null) is the key left out: the default applies.
  [app('port'), null],
  [app('healthcheck'), null],
  [app('healthcheck', 'interval'), null],
  [app('rollout', 'on_failure'), null],
  [['api', 'token'], null],
  [['apps'], null],
  [['registries'], null],
  [['registries', 'localhost:5000'], { username: 'oauth2accesstoken', password: '_T' }],
  [['registries', 'docker.io'], { username: 'ci.bot+robot@example.com', password: 'HUB' }],
  [['registries', '10.77.0.1:5001'], { username: 'AWS', password: 'berth_lan' }],
];

describe('values berth accepts: the schema accepts them too', () => {
  for (const [path, value] of ACCEPTED) {
    test(`${berthPath(path)}: ${JSON.stringify(value)}`, () => {
      const doc = withValue(path, value);
      assert.deepEqual(berthIssues(doc), [], 'berth accepts it');
      assert.deepEqual(schemaErrors(doc), []);
    });
  }
  test('an empty document', () => {
    assert.deepEqual(berthIssues(null), []);
    assert.deepEqual(schemaErrors(null), []);
  });
});

/**
 * Every declared key (hosts under an SSH and a local host) set to each of these values:
 * what berth accepts the schema accepts, always; what berth refuses the schema refuses,
 * except where only berth can tell (BERTH_ONLY).
 */
const POOL: unknown[] = [
  null, true, false, 0, 1, -1, 0.5, 1.5, 100, 101, 1000, 10_001, 65_535, 65_536, 1e20,
  '', ' ', 'x', 'X', '0', '5', '0s', '5s', '5S', '99ms', '100ms', '1.5s', '2h', '25h', '1d', '0d', '3651d', '0.5ms', '1.0005s',
  '30%', '0%', '100%', '101%', '/', '//', '/health', '/a/', '/a//b', '/a b', '/\u00fc', '/a\tb',
  'haproxy', 'haproxy:2.6', `a@sha256:${'a'.repeat(64)}`, 'web', 'Web', 'a.b', 'a_b', '-a', 'a..b',
  '*.example.com', '*.', 'example.com', 'EXAMPLE.com', '127.0.0.1', '127.0.0.1:7373', '[::1]:80', 'localhost:0', '::1', 'fe80::1%eth0',
  '~', '~/x', '~x', 'relative/p', '/abs', FP, `${FP}=`, 'root', 'BERTH_X', 'DATABASE_URL', 'APP_ENV',
  'https://x.example/dir', 'https:/x', 'https://', 'http://x', 'ops@example.com', 'x'.repeat(31), 'x'.repeat(32), '\u00e9'.repeat(16),
  'rollback', 'pause', 'continue', 'retry',
  [], [''], ['x'], ['h1'], ['h1', 'h1'], ['h2', 'h1'], ['a b'], ['APP_ENV'], ['DATABASE_URL', 'OTHER'],
  {}, { X: 'y' }, { X: 1 }, { port: 8080 }, { host: 'a.example.com', port: 443 }, { certificate: 'C', private_key: 'K' }, { image: 'web', hosts: ['h1'] },
];

/** Refusals a JSON Schema cannot express (the schema's description lists them), by what is refused. */
const BERTH_ONLY: Array<[string, (path: string, value: unknown, node: Node) => boolean]> = [
  ['a duration out of its range, or not a whole number of milliseconds', (_p, _v, node) => node.pattern === schema.$defs.duration!.pattern],
  ["an app's host not declared under hosts", (p) => p === 'apps.web.hosts' || p === 'apps.web.processes.worker.hosts' || p === 'hosts'],
  ['a secret also set in env', (p) => p === 'apps.web.secrets' || p === 'apps.web.processes.worker.secrets'],
  ['an HTTP health check for a process without a proxy', (p) => p.startsWith('apps.web.processes.worker.healthcheck') && !p.endsWith('.cmd')],
  ['an IPv6 address checked in full', (p, v) => p.endsWith('.address') && typeof v === 'string' && v.includes('::')],
  ['a memory size with a unit (a string) below 6m', (p, v) => (p === 'apps.web.memory' || p === 'apps.web.processes.worker.memory') && typeof v === 'string'],
  ['host access the config does not allow (allow_host_access)', (p) => p === 'apps.web.privileged' || p === 'apps.web.processes.worker.privileged'],
];

describe('differential sweep: berth and the schema agree on every key for a pool of values', () => {
  const hostKeys = CURRENT.filter((d) => d.path[0] === 'hosts' && d.path.length === 3);
  const targets = [...CURRENT, ...hostKeys.map((d) => ({ ...d, path: ['hosts', 'local', d.path[2]!] }))];
  test(`${targets.length} keys x ${POOL.length} values`, () => {
    const disagree: string[] = [];
    for (const { path, node } of targets) {
      for (const value of POOL) {
        const doc = withValue(path, value);
        const [byBerth, bySchema] = [berthIssues(doc).length === 0, schemaErrors(doc).length === 0];
        if (byBerth === bySchema) continue;
        const key = path.join('.');
        if (!byBerth && BERTH_ONLY.some(([, allowed]) => allowed(key, value, node))) continue;
        disagree.push(`${key} = ${JSON.stringify(value)}: ${byBerth ? 'only berth accepts it' : 'only the schema accepts it'}`);
      }
    }
    assert.deepEqual(disagree, []);
  });
});

// ---------------------------------------------------------------------------
// 3. Drift.

describe('drift', () => {
  test('the schema declares the keys of every section (sanity of the walk)', () => {
    const paths = new Set(DECLARED.map((d) => d.path.join('.')));
    for (const p of ['hosts.h1.known_hosts', 'apps.web.proxy.tls.private_key', 'apps.web.env.APP_ENV', 'api.max_event_streams', 'controller.resync_interval']) {
      assert.ok(paths.has(p), p);
    }
    assert.ok(DECLARED.length >= 60, `${DECLARED.length} keys`);
  });

  test('every declared key has a title and a description (editors show them)', () => {
    const bare = DECLARED.filter((d) => !d.node.title || !d.node.description).map((d) => d.path.join('.'));
    assert.deepEqual(bare, []);
  });

  test("the name grammars are src/domain/naming.ts's, character for character", () => {
    const at = (pointer: string): string | undefined => {
      let node: unknown = schema;
      for (const key of pointer.split('/').slice(1)) node = (node as Record<string, unknown>)[key];
      return (node as Node).pattern;
    };
    assert.equal(at('#/properties/apps/propertyNames'), APP_NAME_PATTERN);
    assert.equal(at('#/$defs/hostName'), HOST_NAME_PATTERN);
    assert.equal(at('#/$defs/app/properties/image'), IMAGE_REPOSITORY_PATTERN);
    assert.equal(at('#/$defs/app/properties/env/propertyNames'), ENV_NAME_PATTERN);
    assert.equal(at('#/properties/registries/propertyNames'), REGISTRY_HOST_PATTERN);
    assert.equal(at('#/$defs/registry/properties/password'), ENV_NAME_PATTERN);
    assert.equal(at('#/$defs/secretName'), ENV_NAME_PATTERN.replace('^', '^(?![Bb][Ee][Rr][Tt][Hh]_)'));
    // `repo`, `repo:tag` or `repo@sha256:...` (src/config/values.ts isImageReference): the tag is VERSION_PATTERN's first form.
    const tag = VERSION_PATTERN.slice('^(?:'.length, VERSION_PATTERN.indexOf('|'));
    assert.equal(at('#/properties/proxy/properties/image'), `${IMAGE_REPOSITORY_PATTERN.slice(0, -1)}(?::${tag}|@sha256:[a-f0-9]{64})?$`);
  });

  test('every pattern comes with an errorMessage in berth\'s words (editors show it instead of the regex)', () => {
    const bare: string[] = [];
    const walk = (node: unknown, where: string): void => {
      if (typeof node !== 'object' || node === null) return;
      const n = node as Record<string, unknown>;
      if (typeof n.pattern === 'string' && typeof n.errorMessage !== 'string') bare.push(where);
      for (const [k, v] of Object.entries(n)) walk(v, `${where}/${k}`);
    };
    walk(schema, '#');
    assert.deepEqual(bare, []);
  });

  for (const { path, node } of CURRENT) {
    test(`berth reads ${berthPath(path)}: a wrong type is an issue at that key`, () => {
      const value = wrongType(node);
      const issues = berthIssues(withValue(path, value));
      assert.deepEqual(issues.filter(isUnknownKey), [], `berth does not know ${berthPath(path)}`);
      assert.ok(issues.some((i) => i.path === berthPath(path)), `an issue at ${berthPath(path)} for ${JSON.stringify(value)}; berth said:\n${show(issues)}`);
      assert.notDeepEqual(schemaErrors(withValue(path, value)), [], 'the schema refuses it too');
    });
  }

  for (const key of PENDING) {
    test(`${key} is declared ahead of berth's validator, which does not read it yet`, () => {
      const path = key.split('.');
      assert.ok(DECLARED.some((d) => d.path.join('.') === key), `${key} is in the schema`);
      const issues = berthIssues(withValue(path, 1));
      assert.ok(
        issues.some((i) => i.path === berthPath(path) && isUnknownKey(i)),
        `berth reads ${key} now: remove it from PENDING in this file (and check the schema's bounds and default match berth's)`,
      );
    });
  }

  /** Every key name berth's config readers read (f.get('port', ...), top.raw('hosts'), the *_KEYS lists). */
  function keysBerthReads(): Set<string> {
    const names = new Set<string>();
    for (const file of ['validate.ts', 'app.ts', 'host.ts']) {
      const src = readFileSync(join(ROOT, 'src/config', file), 'utf8');
      for (const m of src.matchAll(/\.(?:get|need|raw|has|at)(?:<[^(]*>)?\('([a-z_]+)'/g)) names.add(m[1]!);
      for (const m of src.matchAll(/(?:_KEYS = |readMap\([^;]*?)\[([^\]]*)\]/g)) {
        for (const s of m[1]!.matchAll(/'([a-z_]+)'/g)) names.add(s[1]!);
      }
    }
    return names;
  }

  test('every key berth reads is declared wherever berth knows it (reverse direction, at every map)', () => {
    const names = keysBerthReads();
    assert.ok(names.has('resync_interval') && names.has('private_key') && names.has('hosts'), [...names].join(' '));
    const maps: string[][] = [[], ...CURRENT.filter((d) => d.node.additionalProperties === false).map((d) => d.path)];
    const missing: string[] = [];
    for (const map of maps) {
      const node = map.length === 0 ? schema : CURRENT.find((d) => d.path.join('.') === map.join('.'))!.node;
      for (const name of names) {
        if (node.properties?.[name]) continue;
        const path = [...map, name];
        const issues = berthIssues(withValue(path, wrongType({ type: [] })));
        const known = !issues.some((i) => i.path === berthPath(path) && isUnknownKey(i));
        if (known) missing.push(`${berthPath(path)} (berth said: ${show(issues.filter((i) => i.path === berthPath(path)))})`);
      }
    }
    assert.deepEqual(missing, [], 'keys berth reads that the schema does not declare');
  });

  test("the README's reference table names only declared keys", () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('## HTTP API'));
    const rows = [...section.matchAll(/^\| (`[^|]+) \|/gm)].map((m) => m[1]!);
    assert.ok(rows.length >= 15, `${rows.length} rows`);
    const paths = new Set(DECLARED.map((d) => d.path.join('.')));
    const unknown: string[] = [];
    for (const row of rows) {
      // `healthcheck.interval` / `timeout` / `max_attempts`: the later keys are siblings of the first.
      const [first, ...siblings] = [...row.matchAll(/`([a-z_.]+)`/g)].map((m) => m[1]!);
      const parent = first!.split('.').slice(0, -1);
      for (const key of [first!, ...siblings.map((s) => [...parent, s].join('.'))]) {
        // App keys are documented without their `apps.<name>.` prefix; acme.* is top-level.
        if (!paths.has(`apps.web.${key}`) && !paths.has(key)) unknown.push(key);
      }
    }
    assert.deepEqual(unknown, []);
  });

  const intBounds = CURRENT.filter((d) => [d.node.type].flat().includes('integer') && d.node.minimum !== undefined);
  for (const { path, node } of intBounds) {
    test(`${berthPath(path)}: the bounds ${node.minimum}..${node.maximum} agree`, () => {
      const verdict = (n: number) => [berthIssues(withValue(path, n)).length === 0, schemaErrors(withValue(path, n)).length === 0];
      const [min, max] = [node.minimum!, node.maximum!];
      assert.ok(max !== undefined, 'every integer has a maximum');
      assert.deepEqual(verdict(min), [true, true], `${min} accepted by both`);
      assert.deepEqual(verdict(max), [true, true], `${max} accepted by both`);
      assert.deepEqual(verdict(min - 1), [false, false], `${min - 1} refused by both`);
      assert.deepEqual(verdict(max + 1), [false, false], `${max + 1} refused by both`);
    });
  }

  /**
   * Two keys whose absence is not stored as the default, though it acts as it: a route
   * without a port is kept as null and routed on 80 (src/config/routes.ts), and the API
   * applies its own default stream limit (src/api/routes/events.ts).
   */
  const ACTS_AS: Record<string, (c: BerthConfig) => unknown> = {
    'apps.web.proxy.port': (c) => effectiveRoute(c.apps.web!.proxy!).port,
    'apps.web.processes.worker.proxy.port': (c) => effectiveRoute(c.apps.web!.processes![0]!.proxy!).port,
    'api.max_event_streams': (c) => c.api.maxEventStreams ?? DEFAULT_MAX_EVENT_STREAMS,
    'apps.web.history_limit': (c) => c.apps.web!.historyLimit ?? SEED_DEFAULTS.historyLimit,
  };

  for (const { path, node } of CURRENT.filter((d) => d.node.default !== undefined)) {
    const key = path.join('.');
    test(`${berthPath(path)}: the default ${JSON.stringify(node.default)} is berth's`, () => {
      const set = validateConfigDocument(withValue(path, node.default), OPTS);
      const unset = validateConfigDocument(without(path), OPTS);
      const view = ACTS_AS[key] ?? ((c: BerthConfig) => c);
      assert.deepEqual(view(set), view(unset));
    });
  }
});
