/**
 * What the API answers: a JSON schema for every body a route sends, by status.
 * fastify serializes each answer with its schema (fast-json-stringify writes only the
 * properties a schema names), and /openapi.json publishes the same schemas, so a
 * field missing here is missing from the answer too: test/unit/api-responses.test.ts
 * checks every route's real answers against them, field by field.
 */
import type { RouteOptions } from 'fastify';

/** An object whose every property is always present, and nothing else. */
function exact<P extends Record<string, unknown>>(properties: P, description?: string) {
  return {
    type: 'object',
    ...(description ? { description } : {}),
    required: Object.keys(properties),
    additionalProperties: false,
    properties,
  } as const;
}

/** The schema or null (JSON Schema 2020-12 / OpenAPI 3.1 type lists). */
function orNull<S extends { type: string }>(schema: S) {
  return { ...schema, type: [schema.type, 'null'] } as const;
}

const text = { type: 'string' } as const;
const integer = { type: 'integer' } as const;
const bool = { type: 'boolean' } as const;
const timestamp = { type: 'string', description: 'ISO 8601 time (UTC)' } as const;
const strings = { type: 'array', items: text } as const;
const releaseReason = { type: 'string', enum: ['deploy', 'rollback'] } as const;

/** Body of every 4xx/5xx (src/api/errors.ts, ErrorBody). */
export const errorSchema = {
  type: 'object',
  description: 'What went wrong: a stable code and a message a person can act on',
  required: ['error', 'code', 'message'],
  additionalProperties: false,
  properties: {
    error: { type: 'string', description: 'the HTTP reason phrase' },
    code: { type: 'string', description: 'stable, for scripts: INVALID_REQUEST, NOT_FOUND, CONFLICT, CONFIG_INVALID, HOST_UNREACHABLE, ...' },
    message: text,
    issues: { type: 'array', description: 'one per problem of an app document (422)', items: exact({ path: text, message: text }) },
  },
} as const;

/** The container settings of an app or a process document (src/config/container.ts): each only when set. */
const containerSettingsSchema = {
  cmd: strings,
  entrypoint: strings,
  volumes: strings,
  memory: { type: 'integer', description: 'bytes' },
  cpus: { type: 'number' },
  labels: { type: 'object', additionalProperties: text },
  logging: { type: 'object', required: ['driver', 'options'], additionalProperties: false, properties: { driver: text, options: { type: 'object', additionalProperties: text } } },
  stop_signal: text,
  user: text,
  extra_hosts: strings,
  privileged: { type: 'boolean' },
} as const;

const httpHealthcheckSchema = exact({ path: text, port: integer, interval: text, timeout: text, max_attempts: integer, min_healthy: text });

const proxyDocumentSchema = {
  type: 'object',
  required: ['drain_timeout'],
  additionalProperties: false,
  properties: {
    port: integer,
    host: text,
    path_prefix: text,
    drain_timeout: text,
    tls: { description: 'true: an ACME certificate; or the environment variables holding a given one', anyOf: [{ type: 'boolean', const: true }, exact({ certificate: text, private_key: text })] },
  },
} as const;

/** One process, written out resolved (src/config/app-document.ts, ProcessDocument). */
const processDocumentSchema = {
  type: 'object',
  required: ['hosts', 'port', 'env', 'secrets', 'stop_timeout', 'healthcheck'],
  additionalProperties: false,
  properties: {
    hosts: strings,
    port: integer,
    env: { type: 'object', additionalProperties: text },
    secrets: strings,
    stop_timeout: text,
    proxy: proxyDocumentSchema,
    healthcheck: {
      description: "with a proxy, the HTTP check; without, the health command's (cmd only when set)",
      anyOf: [
        httpHealthcheckSchema,
        { type: 'object', required: ['interval', 'timeout', 'max_attempts', 'min_healthy'], additionalProperties: false, properties: { cmd: strings, interval: text, timeout: text, max_attempts: integer, min_healthy: text } },
      ],
    },
    ...containerSettingsSchema,
  },
} as const;

/** An app as written in berth.yml and PUT (src/config/app-document.ts, AppDocument). */
const appDocumentSchema = {
  type: 'object',
  description: 'The app document, in the shape it is written in (berth.yml, PUT /v1/apps/{app}); it can be PUT back unchanged',
  required: ['image', 'hosts', 'port', 'healthcheck', 'rollout', 'hooks', 'retain_containers', 'stop_timeout', 'env', 'secrets'],
  additionalProperties: false,
  properties: {
    image: text,
    hosts: strings,
    port: integer,
    healthcheck: httpHealthcheckSchema,
    rollout: exact({
      parallelism: { type: ['integer', 'string'], description: 'a count, or a percentage like "30%"' },
      delay: text,
      on_failure: text,
      max_failure_ratio: { type: 'number' },
      progress_deadline: text,
      strategy: { type: 'string', enum: ['start-first', 'recreate'] },
      preboot: { type: 'boolean' },
    }),
    hooks: exact({ pre_deploy: strings, post_deploy: strings, timeout: text }),
    retain_containers: integer,
    stop_timeout: text,
    proxy: proxyDocumentSchema,
    env: { type: 'object', additionalProperties: text },
    secrets: strings,
    // Container settings (src/config/container.ts): each only when the app sets it.
    ...containerSettingsSchema,
    processes: { type: 'object', description: 'processes (roles) by name, in declaration order; only for an app that has them', additionalProperties: processDocumentSchema },
  },
} as const;

/** src/domain/release.ts, AppStatus: what the controller observed last. */
const appStatusSchema = exact(
  {
    app: text,
    phase: { type: ['string', 'null'], enum: ['Progressing', 'Complete', 'Failed', 'Paused', 'RolledBack', null] },
    observedRevision: orNull(integer),
    conditions: {
      type: 'array',
      items: exact({ type: text, status: { type: 'string', enum: ['True', 'False', 'Unknown'] }, reason: text, message: text, lastTransitionTime: timestamp }),
    },
    hosts: {
      type: 'array',
      items: {
        type: 'object',
        // Every field always present but `process`, which only the units of an app with processes have.
        required: ['host', 'version', 'revision', 'containerId', 'health', 'lastError', 'lastLogs'],
        additionalProperties: false,
        properties: {
          host: { type: 'string', description: 'the host; for an app with processes, the unit key process@host (web@h1)' },
          process: { type: 'string', description: "the unit's process, for an app with processes" },
          version: orNull(text),
          revision: orNull(integer),
          containerId: orNull(text),
          health: { type: 'string', enum: ['healthy', 'unhealthy', 'unknown'] },
          lastError: orNull(text),
          lastLogs: { ...orNull(strings), description: 'the last log lines of the container that failed on this host in the current rollout, secret values redacted; null when none did' },
        },
      },
    },
    updatedAt: timestamp,
  },
  'The phase, conditions and per-host view the controller observed last; null before its first pass',
);

/** GET /v1/apps/{app}, and each app of GET /v1/apps (src/api/routes/apps.ts, appView). */
export const appSchema = exact({
  name: text,
  paused: bool,
  maintenance: { type: ['string', 'null'], description: 'null when live; else the message the proxies answer with (503)' },
  managedBy: { type: 'string', enum: ['file', 'api'], description: 'file: the config file declares it (edit it there, then reload); api: created through PUT' },
  deletingSince: { ...orNull(timestamp), description: 'when DELETE asked for it to be torn down; null otherwise' },
  spec: appDocumentSchema,
  desired: orNull(exact({ revision: integer, version: text, reason: releaseReason, actor: text, createdAt: timestamp }, 'The newest release; null before the first')),
  status: orNull(appStatusSchema),
  lastFailure: orNull(
    exact(
      {
        reason: text,
        message: text,
        revision: orNull(integer),
        at: timestamp,
        logs: {
          type: 'array',
          description: 'per host, the last log lines of the container of that revision that failed there (its health check, or it stopped running), secret values redacted',
          items: exact({ host: text, lines: strings }),
        },
      },
      'The newest rollout failure with its message (a health check carries the last probe answer) and the failed containers\' last log lines',
    ),
  ),
  updatedAt: timestamp,
});

/** PUT /v1/apps/{app}: the app and what the write did. */
export const appWriteSchema = exact({ ...appSchema.properties, change: { type: 'string', enum: ['created', 'updated', 'unchanged'] } });

/** GET /v1/apps. */
export const appListSchema = exact({
  apps: { type: 'array', description: 'by name', items: appSchema },
  next: { type: ['string', 'null'], description: 'pass as ?after= for the next page; null on the last one' },
});

/** A stored release, its spec left out (GET /v1/apps/{app}/releases). */
export const releaseSchema = exact({ app: text, revision: integer, version: text, reason: releaseReason, actor: text, createdAt: timestamp });

export const releaseListSchema = exact({
  releases: { type: 'array', description: 'newest first', items: releaseSchema },
  next: { type: ['integer', 'null'], description: 'pass as ?before= for the next page; null on the last one' },
});

/** POST /v1/apps/{app}/releases: the revision asked for (202), or the one already desired (200, unchanged). */
export const releaseCreatedSchema = exact({ app: text, revision: integer, version: text, reason: releaseReason, createdAt: timestamp, unchanged: bool });

/** POST /v1/apps/{app}/rollback, 200: the named version is already desired; nothing written. */
export const rollbackUnchangedSchema = exact({ app: text, revision: integer, version: text, reason: releaseReason, unchanged: { type: 'boolean', const: true } });

/** POST /v1/apps/{app}/rollback, 202: a new revision of the older version. */
export const rollbackCreatedSchema = exact({ ...rollbackUnchangedSchema.properties, rolledBackFrom: text, unchanged: { type: 'boolean', const: false } });

export const restartSchema = exact({ app: text, revision: integer, version: text, reason: releaseReason, restartedAt: timestamp });

export const pausedSchema = exact({ app: text, paused: bool });

export const maintenanceSchema = exact({ app: text, maintenance: appSchema.properties.maintenance });

/** src/api/context.ts, ExecResult. */
export const execResultSchema = exact({
  host: text,
  version: text,
  exitCode: integer,
  outputTail: { type: 'string', description: 'the last few KiB of stdout and stderr, secret values redacted' },
  timedOut: bool,
});

/** src/domain/release.ts, BerthEvent. */
export const eventSchema = exact({
  id: integer,
  app: orNull(text),
  host: orNull(text),
  revision: orNull(integer),
  type: text,
  message: text,
  actor: orNull(text),
  createdAt: timestamp,
});

export const eventPageSchema = exact({
  events: { type: 'array', description: 'oldest first', items: eventSchema },
  next: { type: ['integer', 'null'], description: 'pass as ?after= for the next page; null on the last one' },
});

/** src/domain/logs.ts, AppLogLine: the data of a log stream's `line` frame. */
export const logLineSchema = exact({
  host: text,
  container: { type: 'string', description: "the container's name, e.g. web-r4" },
  stream: { type: 'string', enum: ['stdout', 'stderr'] },
  time: { ...orNull(text), description: "Docker's timestamp (RFC 3339, nanoseconds, UTC)" },
  text: { type: 'string', description: 'the line without its newline, secret values redacted; a line over 16 KiB is cut there and ends in …' },
});

/** src/domain/logs.ts, AppLogHostState: the data of a log stream's `host` frame. */
export const logHostStateSchema = exact({
  host: text,
  state: {
    type: 'string',
    enum: ['attached', 'detached', 'none', 'error'],
    description: "attached: the container's lines follow; detached: it stopped (a followed stream goes on with the app's next container); none: no container of the app there; error: the host could not be read (the other hosts go on)",
  },
  container: orNull(text),
  message: text,
  code: { ...orNull(text), description: 'for error: its stable code (HOST_UNREACHABLE, ...)' },
});

/** src/proxy/traffic.ts, ProxyStatus. */
const proxyStatusSchema = exact(
  {
    state: { type: 'string', enum: ['running', 'not answering', 'stopped', 'missing'] },
    image: orNull(text),
    routes: { type: 'integer', description: 'apps it routes (when running)' },
    checkedAt: timestamp,
  },
  "The host's proxy as it runs now; null when the host is down, does not answer in time, or the daemon runs no proxy",
);

/** GET /v1/hosts (src/store/types.ts, HostReachability; checkedAt null before the first check). */
export const hostListSchema = exact({
  hosts: {
    type: 'array',
    items: exact({ host: text, up: bool, dockerVersion: orNull(text), lastError: orNull(text), checkedAt: orNull(timestamp), proxy: orNull(proxyStatusSchema) }),
  },
  next: { type: ['string', 'null'], description: 'pass as ?after= for the next page; null on the last one' },
});

/** DELETE /v1/apps/{app}, 202: the teardown asked for; the controller does it. */
export const appDeletingSchema = exact({ app: text, deletingSince: timestamp, hosts: { ...strings, description: 'the hosts it is taken off' } });

/** POST /v1/reload (src/api/context.ts, ReloadResult). */
export const reloadSchema = exact({
  apps: { type: 'object', description: 'every app the file declares: what the reload did to it', additionalProperties: { type: 'string', enum: ['created', 'updated', 'unchanged'] } },
  undeclared: { ...strings, description: 'apps the file no longer declares: they keep running, managed through the API' },
  restartRequired: { ...strings, description: 'sections that changed but apply only at the next start' },
});

export const healthSchema = exact({ status: { type: 'string', const: 'ok' }, version: text });

export const readySchema = exact({
  status: { type: 'string', const: 'ready' },
  role: { type: 'string', enum: ['leader', 'standby'], description: 'leader: this daemon reconciles; standby: it serves the API while another leads' },
  daemon: { type: 'string', description: 'this daemon (host/pid/random)' },
  leader: orNull(exact({ daemon: { type: 'string' }, epoch: orNull({ type: 'integer' }) }, 'the daemon that leads, as this one last read the lease (null: none known yet)')),
});

/**
 * The schemas /openapi.json names in components.schemas and refers to by $ref (found by
 * identity where routes use them), so a generated client has a type per entity: App, Release, ...
 */
export const namedSchemas: ReadonlyMap<object, string> = new Map<object, string>([
  [errorSchema, 'Error'],
  [appSchema, 'App'],
  [appDocumentSchema, 'AppDocument'],
  [appStatusSchema, 'AppStatus'],
  [releaseSchema, 'Release'],
  [eventSchema, 'Event'],
  [execResultSchema, 'ExecResult'],
  [logLineSchema, 'LogLine'],
  [logHostStateSchema, 'LogHostState'],
]);

/** The answer of a route whose app (or the release named) does not exist. */
export const notFound = { 404: errorSchema } as const;

/** Prometheus text exposition: not JSON, never serialized by a schema (the handler sends the text). */
export const metricsText = { content: { 'text/plain': { schema: { type: 'string', description: 'Prometheus text exposition format 0.0.4' } } } } as const;

/**
 * The errors a route answers by its shape, whatever its handler does: any route may
 * fail inside (500); a guarded one refuses a missing or wrong token (401); a path
 * parameter may be malformed (400) or too long (414); a query may be malformed (400);
 * a body may be malformed (400), too large (413) or not JSON (415). Routes declare the
 * others themselves (404, 409, 422, 502, 503, 504).
 */
export function shapeErrorStatuses(schema: { params?: unknown; querystring?: unknown; body?: unknown }, guarded: boolean): number[] {
  const statuses = new Set([500]);
  if (guarded) statuses.add(401);
  if (schema.params) for (const s of [400, 414]) statuses.add(s);
  if (schema.querystring) statuses.add(400);
  if (schema.body) for (const s of [400, 413, 415]) statuses.add(s);
  return [...statuses].sort((a, b) => a - b);
}

/** Adds the errors of the route's shape to its response schemas (the route's own declarations win). */
export function declareShapeErrors(route: RouteOptions, guarded: boolean): void {
  if (!route.schema) return;
  const declared = (route.schema.response ?? {}) as Record<string, unknown>;
  const errors = Object.fromEntries(shapeErrorStatuses(route.schema, guarded).map((s) => [s, errorSchema]));
  route.schema = { ...route.schema, response: { ...errors, ...declared } };
}
