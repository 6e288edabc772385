import type { FastifyInstance, RouteOptions } from 'fastify';
import { statusPhrase } from './errors.js';
import { namedSchemas } from './responses.js';

interface Operation {
  method: string;
  url: string;
  schema: Record<string, unknown>;
  secured: boolean;
}

type Properties = { properties?: Record<string, { description?: string }>; required?: string[] } | undefined;

/**
 * A response schema is a body schema (JSON), or fastify's `{description?, content: {mediaType: {schema}}}`
 * for other media types; a JSON body's own description stays on its schema.
 */
function response(status: string, schema: Record<string, unknown>) {
  if (!schema.content) return { description: statusPhrase(Number(status)), content: { 'application/json': { schema } } };
  return { description: (schema.description as string | undefined) ?? statusPhrase(Number(status)), content: schema.content };
}

/** `value` with every named schema in it (but itself, at the top) replaced by a $ref to components.schemas. */
function withRefs(value: unknown, top = false): unknown {
  if (Array.isArray(value)) return value.map((v) => withRefs(v));
  if (value === null || typeof value !== 'object') return value;
  const name = namedSchemas.get(value);
  if (name && !top) return { $ref: `#/components/schemas/${name}` };
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withRefs(v)]));
}

/** Path, query and header parameters from the route's schemas (header names as the schema spells them). */
function parameters(schema: Record<string, unknown>) {
  const of = (part: string, location: string, required: (name: string, s: Properties) => boolean) => {
    const s = schema[part] as Properties;
    return Object.entries(s?.properties ?? {}).map(([name, p]) => ({
      name,
      in: location,
      required: required(name, s),
      ...(p.description ? { description: p.description } : {}),
      schema: p,
    }));
  };
  const listed = (name: string, s: Properties) => s?.required?.includes(name) ?? false;
  return [...of('params', 'path', () => true), ...of('querystring', 'query', listed), ...of('headers', 'header', listed)];
}

/**
 * Builds /openapi.json from the routes' own JSON schemas, collected as they are
 * registered, so the document cannot drift from what the server validates and
 * serializes: request parts, every response by status (src/api/responses.ts), and
 * each route's operationId (the name a generated client gives it).
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
      const params = parameters(op.schema);
      const responses = Object.entries((op.schema.response ?? {}) as Record<string, Record<string, unknown>>).map(([status, schema]) => [status, response(status, schema)]);
      (paths[path] ??= {})[op.method] = {
        operationId: op.schema.operationId,
        summary: op.schema.summary,
        ...(op.schema.description ? { description: op.schema.description } : {}),
        ...(params.length ? { parameters: params } : {}),
        ...(op.schema.body ? { requestBody: { required: true, content: { 'application/json': { schema: op.schema.body } } } } : {}),
        ...(op.secured ? { security: [{ bearer: [] }] } : {}),
        responses: Object.fromEntries(responses),
      };
    }
    return {
      openapi: '3.1.0',
      info: { title: 'berth', version: opts.version, description: 'Reconciling zero-downtime deploy controller for Docker hosts over SSH' },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
        schemas: Object.fromEntries([...namedSchemas].map(([schema, name]) => [name, withRefs(schema, true)])),
      },
      paths: withRefs(paths),
    };
  };
}
