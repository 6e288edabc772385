import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { ApiDeps } from './context.js';
import './schemas.js';
import { makeAuthCheck } from './auth.js';
import { installErrorHandler } from './errors.js';
import { collectOpenApi } from './openapi.js';
import { appRoutes } from './routes/apps.js';
import { eventRoutes } from './routes/events.js';
import { hostRoutes } from './routes/hosts.js';
import { systemRoutes } from './routes/system.js';

export const BODY_LIMIT_BYTES = 256 * 1024;

/**
 * The HTTP API (DESIGN.md §6). Every body and param is validated by JSON schema;
 * the validator neither coerces types nor drops unknown properties, so a wrong
 * type or a misspelt field is a 400 that names it, and nothing is written.
 */
export function buildApp(deps: ApiDeps): FastifyInstance {
  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger; the cast keeps FastifyInstance's default generic.
    loggerInstance: deps.log.child({ component: 'api' }) as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT_BYTES,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    routerOptions: { maxParamLength: 200 },
  });
  const requireToken = makeAuthCheck(deps.auth.token);
  const openRead = async () => {};
  const guard = { write: requireToken, read: deps.auth.openReads ? openRead : requireToken };
  const openapi = collectOpenApi(app, { version: deps.version, isSecured: (r) => r.preHandler === requireToken });

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
  eventRoutes(app, deps, guard);
  hostRoutes(app, deps, guard);
  app.get('/openapi.json', async () => openapi());
  return app;
}
