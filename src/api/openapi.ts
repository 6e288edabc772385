import type { FastifyInstance, RouteOptions } from 'fastify';
import { errorSchema } from './schemas.js';

interface Operation {
  method: string;
  url: string;
  schema: Record<string, unknown>;
  secured: boolean;
}

/**
 * Builds /openapi.json from the routes' own JSON schemas, collected as they are
 * registered, so the document cannot drift from what the server validates.
 */
export function collectOpenApi(app: FastifyInstance, opts: { version: string; isSecured: (route: RouteOptions) => boolean }) {
  const ops: Operation[] = [];
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      // `hide`: the status page's routes (src/api/routes/ui.ts) are not API.
      if (method === 'HEAD' || route.url === '/openapi.json' || route.schema?.hide) continue;
      ops.push({ method: method.toLowerCase(), url: route.url, schema: (route.schema ?? {}) as Record<string, unknown>, secured: opts.isSecured(route) });
    }
  });
  return () => {
    const paths: Record<string, Record<string, unknown>> = {};
    for (const op of ops) {
      const path = op.url.replace(/:([A-Za-z]+)/g, '{$1}');
      const params = op.schema.params as { properties?: Record<string, unknown> } | undefined;
      const query = op.schema.querystring as { properties?: Record<string, unknown> } | undefined;
      const parameters = [
        ...Object.entries(params?.properties ?? {}).map(([name, schema]) => ({ name, in: 'path', required: true, schema })),
        ...Object.entries(query?.properties ?? {}).map(([name, schema]) => ({ name, in: 'query', required: false, schema })),
      ];
      (paths[path] ??= {})[op.method] = {
        summary: op.schema.summary,
        ...(parameters.length ? { parameters } : {}),
        ...(op.schema.body ? { requestBody: { required: true, content: { 'application/json': { schema: op.schema.body } } } } : {}),
        ...(op.secured ? { security: [{ bearer: [] }] } : {}),
        responses: {
          '2XX': { description: 'Success' },
          '4XX': { description: 'What is wrong with the request', content: { 'application/json': { schema: errorSchema } } },
        },
      };
    }
    return {
      openapi: '3.1.0',
      info: { title: 'berth', version: opts.version, description: 'Reconciling zero-downtime deploy controller for Docker hosts over SSH' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      paths,
    };
  };
}
