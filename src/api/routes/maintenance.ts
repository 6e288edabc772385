import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ApiDeps } from '../context.js';
import { maintenanceSchema, notFound } from '../responses.js';
import { appParams, noFields } from '../schemas.js';
import { actorOf, mustGetApp } from './apps.js';

const DEFAULT_MESSAGE = 'Down for maintenance';

/** Kamal's `app maintenance` / `app live`: every host's proxy answers 503 with the message, and back. */
export function maintenanceRoutes(app: FastifyInstance, deps: ApiDeps, guard: { write: unknown }): void {
  app.post(
    '/v1/apps/:app/maintenance',
    {
      preHandler: guard.write as never,
      schema: {
        operationId: 'startMaintenance',
        summary: "Put the app in maintenance: its proxies answer 503 with the message (needs a proxy route)",
        params: appParams,
        body: {
          type: 'object',
          additionalProperties: false,
          properties: { message: { type: 'string', minLength: 1, maxLength: 500, pattern: '^[^\\u0000-\\u001f]*$' } },
        },
        response: { 200: maintenanceSchema, ...notFound },
      },
    },
    async (req: FastifyRequest<{ Params: { app: string }; Body: { message?: string } | undefined }>) => {
      mustGetApp(deps, req.params.app);
      const updated = deps.store.apps.setMaintenance(req.params.app, req.body?.message ?? DEFAULT_MESSAGE, actorOf(req));
      deps.controller.enqueue(updated.name);
      return { app: updated.name, maintenance: updated.maintenance };
    },
  );

  app.post(
    '/v1/apps/:app/live',
    {
      preHandler: guard.write as never,
      // No fields: a body (if any) must be `{}`, like pause/resume; anything else is a 400 and nothing is written.
      schema: { operationId: 'endMaintenance', summary: 'End maintenance: the proxies route traffic to the app again', params: appParams, body: noFields, response: { 200: maintenanceSchema, ...notFound } },
    },
    async (req: FastifyRequest<{ Params: { app: string } }>) => {
      mustGetApp(deps, req.params.app);
      const updated = deps.store.apps.setMaintenance(req.params.app, null, actorOf(req));
      deps.controller.enqueue(updated.name);
      return { app: updated.name, maintenance: updated.maintenance };
    },
  );
}
