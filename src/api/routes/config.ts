import type { FastifyInstance } from 'fastify';
import type { ApiDeps } from '../context.js';
import { errorSchema, reloadSchema } from '../responses.js';
import { noFields } from '../schemas.js';

/** `berth reload` (and SIGHUP): re-read the config file; all of it valid, or nothing changes (422 with every issue). */
export function configRoutes(app: FastifyInstance, deps: ApiDeps, guard: { write: unknown }): void {
  app.post(
    '/v1/reload',
    {
      onRequest: guard.write as never,
      schema: {
        operationId: 'reloadConfig',
        summary:
          'Re-read the config file and apply its apps (created, updated, unchanged); sections read only at start (hosts, api, proxy, controller, acme) are listed in restartRequired. 422 with every issue and nothing changed when the file is invalid',
        body: noFields,
        response: { 200: reloadSchema, 409: errorSchema, 422: errorSchema },
      },
    },
    async () => deps.configFile.reload(),
  );
}
