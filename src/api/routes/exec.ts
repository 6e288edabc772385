import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HOST_NAME_PATTERN } from '../../domain/naming.js';
import type { ApiDeps } from '../context.js';
import { appParams } from '../schemas.js';
import { mustGetApp } from './apps.js';

/**
 * `berth exec APP -- CMD` (Kamal's `app exec`): runs CMD with `sh -c` in a one-off
 * container of the app's current release on one host, waits, returns exit code and
 * the output's tail. The command is not logged or stored (it may carry data).
 */
export function execRoutes(app: FastifyInstance, deps: ApiDeps, guard: { write: unknown }): void {
  app.post(
    '/v1/apps/:app/exec',
    {
      preHandler: guard.write as never,
      schema: {
        summary: "Run a one-off command in a container of the app's current release (waits for it)",
        params: appParams,
        body: {
          type: 'object',
          required: ['command'],
          additionalProperties: false,
          properties: {
            command: { type: 'string', minLength: 1, maxLength: 8192 },
            host: { type: 'string', pattern: HOST_NAME_PATTERN },
          },
        },
      },
    },
    async (req: FastifyRequest<{ Params: { app: string }; Body: { command: string; host?: string } }>) => {
      mustGetApp(deps, req.params.app);
      return deps.controller.exec(req.params.app, req.body.command, req.body.host);
    },
  );
}
