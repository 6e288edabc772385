import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HOST_NAME_PATTERN } from '../../domain/naming.js';
import type { ApiDeps } from '../context.js';
import { errorSchema, execResultSchema, notFound } from '../responses.js';
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
        operationId: 'execInApp',
        summary: "Run a one-off command in a container of the app's current release (waits for it)",
        description:
          '409 when the app has no release yet or the host does not run it; 502 when the host answered with an error or cannot be reached, 504 when it did not answer in time (code HOST_*, message naming the host).',
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
        response: { 200: execResultSchema, ...notFound, 409: errorSchema, 502: errorSchema, 504: errorSchema },
      },
    },
    async (req: FastifyRequest<{ Params: { app: string }; Body: { command: string; host?: string } }>) => {
      mustGetApp(deps, req.params.app);
      return deps.controller.exec(req.params.app, req.body.command, req.body.host);
    },
  );
}
