import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { ApiDeps } from './context.js';
import './schemas.js';
import { makeAuthChecks } from './auth.js';
import { formatSchemaErrors, frameworkError, installErrorHandler } from './errors.js';
import { LiveStreams } from './live-stream.js';
import { collectOpenApi } from './openapi.js';
import { declareShapeErrors } from './responses.js';
import { appRoutes } from './routes/apps.js';
import { configRoutes } from './routes/config.js';
import { eventRoutes, eventStreamLimits, liveStreamLimits } from './routes/events.js';
import { execRoutes } from './routes/exec.js';
import { logRoutes } from './routes/logs.js';
import { hostRoutes } from './routes/hosts.js';
import { maintenanceRoutes } from './routes/maintenance.js';
import { systemRoutes } from './routes/system.js';
import { uiRoutes } from './routes/ui.js';
import { SessionStore } from './session.js';

export const BODY_LIMIT_BYTES = 256 * 1024;
const MAX_PARAM_LENGTH = 200;

/**
 * Query integers arrive as strings: decimal digits (15 at most, always a safe integer)
 * become a number for the schema to check with its bounds; anything else ("1e3", "0x10",
 * " 1") stays a string, which the schema refuses as not an integer, naming the parameter.
 */
function queryIntegers(request: FastifyRequest): void {
  const props = (request.routeOptions.schema?.querystring as { properties?: Record<string, { type?: unknown }> } | undefined)?.properties;
  if (!props) return;
  const query = request.query as Record<string, unknown>;
  for (const [name, schema] of Object.entries(props)) {
    const value = query[name];
    if (schema.type === 'integer' && typeof value === 'string' && /^-?[0-9]{1,15}$/.test(value)) query[name] = Number(value);
  }
}

/** Loopback peers, IPv4, IPv6 and IPv4-mapped IPv6. */
const isLoopback = (address: string | undefined) => !!address && /^(?:127\.|::1$|::ffff:127\.)/.test(address);

/**
 * The HTTP API (README.md, "HTTP API"). Every body and param is validated by JSON schema;
 * the validator neither coerces types nor drops unknown properties, so a wrong
 * type or a misspelt field is a 400 that names it, and nothing is written.
 */
export function buildApp(deps: ApiDeps): FastifyInstance {
  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger; the cast keeps FastifyInstance's default generic.
    loggerInstance: deps.log.child({ component: 'api' }) as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT_BYTES,
    // verbose: errors carry the offending value and its schema, for messages that name both.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false, verbose: true } },
    schemaErrorFormatter: formatSchemaErrors,
    frameworkErrors: frameworkError(MAX_PARAM_LENGTH),
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
  });
  // JSON only: a text/plain body is a 415, not a string that fails validation later.
  app.removeContentTypeParser('text/plain');
  // The status page's sessions: reads only (src/api/auth.ts).
  const sessions = new SessionStore();
  const auth = makeAuthChecks(deps.auth.token, sessions);
  const { requireToken, requireReader } = auth;
  // open_reads opens reads to loopback peers only; anyone else still needs the token (or a session).
  // deps.auth.openReads is the effective setting: main.ts passes false unless the API
  // listens on loopback (src/config/api.ts), so a 0.0.0.0 listener never opens reads,
  // not even to local peers such as a reverse proxy on the same machine.
  const openRead = async (request: FastifyRequest) => {
    if (!isLoopback(request.socket.remoteAddress)) await requireReader(request);
  };
  const guard = { write: requireToken, read: deps.auth.openReads ? openRead : requireReader };
  // Guards run as onRequest hooks: before the body is read, parsed or validated, so an
  // unauthenticated client gets 401 whatever it sends and costs no parsing. A route that
  // names its guard as a preHandler gets it moved here (registered before the OpenAPI
  // collector, which therefore sees the final route).
  const guards = new Set<unknown>([requireToken, requireReader, openRead]);
  app.addHook('onRoute', (route) => {
    const pre = route.preHandler;
    const list = Array.isArray(pre) ? pre : pre ? [pre] : [];
    const moved = list.filter((h) => guards.has(h));
    if (moved.length === 0) return;
    const rest = list.filter((h) => !guards.has(h));
    const on = route.onRequest;
    route.onRequest = [...(Array.isArray(on) ? on : on ? [on] : []), ...moved] as typeof route.onRequest;
    route.preHandler = rest.length > 0 ? (rest as typeof route.preHandler) : undefined;
  });
  // Every route's response schemas name the errors its shape can answer (src/api/responses.ts).
  app.addHook('onRoute', (route) => declareShapeErrors(route, [route.onRequest].flat().some((h) => guards.has(h))));
  // Query integers become numbers; a body whose schema requires nothing may be left out
  // (`curl -X POST .../pause`): it reads as {}.
  app.addHook('preValidation', async (request: FastifyRequest) => {
    queryIntegers(request);
    const body = request.routeOptions.schema?.body as { type?: string; required?: string[] } | undefined;
    if (request.body === undefined && body?.type === 'object' && !body.required?.length) request.body = {};
  });
  const openapi = collectOpenApi(app, { version: deps.version, isSecured: (r) => [r.onRequest].flat().some((h) => h === requireToken || h === requireReader) });

  installErrorHandler(app);
  app.addHook('onResponse', async (request: FastifyRequest, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    deps.metrics.httpRequestDuration.observe(
      { method: request.method, route, status: `${Math.floor(reply.statusCode / 100)}xx` },
      reply.elapsedTime / 1000,
    );
  });

  systemRoutes(app, deps);
  appRoutes(app, deps, guard);
  configRoutes(app, deps, guard);
  // Event and log streams share one cap and one shutdown: live streams never end by themselves.
  const streamLimits = eventStreamLimits(deps.eventStreams);
  const streams = new LiveStreams(liveStreamLimits(streamLimits));
  app.addHook('preClose', async () => streams.closeAll());
  eventRoutes(app, deps, guard, streams, streamLimits.replayPageSize);
  logRoutes(app, deps, guard, streams);
  hostRoutes(app, deps, guard);
  maintenanceRoutes(app, deps, guard);
  execRoutes(app, deps, guard);
  uiRoutes(app, { sessions, auth, read: guard.read });
  app.get('/openapi.json', async () => openapi());
  return app;
}
