import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HOST_NAME_PATTERN } from '../../domain/naming.js';
import { clampLimit } from '../../store/index.js';
import type { ApiDeps } from '../context.js';
import { pageQuery } from '../schemas.js';

/** A page of hosts when the caller names no size: the hosts come from the config file, so one page is the usual fleet. */
const DEFAULT_HOSTS_LIMIT = 100;

export function hostRoutes(app: FastifyInstance, deps: ApiDeps, guard: { read: unknown }): void {
  app.get(
    '/v1/hosts',
    {
      onRequest: guard.read as never,
      schema: {
        summary: 'Reachability, Docker version and last error of every host, by name, one page at a time: pass next as ?after= for the rest',
        querystring: pageQuery({ after: { type: 'string', pattern: HOST_NAME_PATTERN, description: 'a host name: only hosts after it (by name) are listed' } }),
      },
    },
    async (req: FastifyRequest<{ Querystring: { limit?: string; after?: string } }>) => {
      const limit = clampLimit(req.query.limit === undefined ? undefined : Number(req.query.limit), DEFAULT_HOSTS_LIMIT);
      const after = req.query.after;
      const names = deps.hostNames().filter((n) => after === undefined || n > after).sort();
      const page = names.slice(0, limit);
      const seen = new Map(deps.store.hostsStatus.list().map((h) => [h.host, h]));
      return {
        hosts: page.map((name) => seen.get(name) ?? { host: name, up: false, dockerVersion: null, lastError: 'not checked yet', checkedAt: null }),
        next: names.length > limit ? page[page.length - 1]! : null,
      };
    },
  );
}
