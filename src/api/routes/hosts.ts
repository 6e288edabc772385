import type { FastifyInstance } from 'fastify';
import type { ApiDeps } from '../context.js';
import { hostListSchema } from '../responses.js';

export function hostRoutes(app: FastifyInstance, deps: ApiDeps, guard: { read: unknown }): void {
  app.get('/v1/hosts', { onRequest: guard.read as never, schema: { operationId: 'listHosts', summary: 'Reachability, Docker version and last error of every host', response: { 200: hostListSchema } } }, async () => {
    const seen = new Map(deps.store.hostsStatus.list().map((h) => [h.host, h]));
    return {
      hosts: deps.hostNames().map((name) => seen.get(name) ?? { host: name, up: false, dockerVersion: null, lastError: 'not checked yet', checkedAt: null }),
    };
  });
}
