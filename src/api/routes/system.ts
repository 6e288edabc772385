import type { FastifyInstance } from 'fastify';
import type { Leadership } from '../../cluster/lease.js';
import type { ApiDeps } from '../context.js';
import { errorBody } from '../errors.js';
import { errorSchema, healthSchema, metricsText, readySchema } from '../responses.js';

/** An API built without a daemon's leadership (tests, benches) answers as the only daemon, leading. */
const onlyDaemon: Pick<Leadership, 'daemonId' | 'isLeading' | 'view'> = {
  daemonId: 'this',
  isLeading: () => true,
  view: () => ({ holder: 'this', epoch: null, self: true }),
};

/**
 * Liveness, readiness and the Prometheus scrape: open, never behind the token, and
 * logged only at debug (probes and scrapes every few seconds would drown the log).
 */
export function systemRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const quiet = { logLevel: 'warn' as const };
  app.get('/healthz', { ...quiet, schema: { operationId: 'getHealth', summary: 'Liveness: the process answers', response: { 200: healthSchema } } }, async () => ({ status: 'ok', version: deps.version }));

  const summary = 'Readiness: database open, and the reconcile loop running on the leader (a standby serves the API)';
  app.get('/readyz', { ...quiet, schema: { operationId: 'getReadiness', summary, response: { 200: readySchema, 503: errorSchema } } }, async (_req, reply) => {
    const db = deps.store.ping();
    const leadership = deps.leadership ?? onlyDaemon;
    const leading = leadership.isLeading();
    const loop = !leading || deps.controller.isRunning();
    if (db && loop) {
      const view = leadership.view();
      return {
        status: 'ready',
        role: leading ? 'leader' : 'standby',
        daemon: leadership.daemonId,
        leader: view.holder === null ? null : { daemon: view.holder, epoch: view.epoch },
      };
    }
    const why = [db ? null : 'database not open', loop ? null : 'reconcile loop not running'].filter(Boolean).join('; ');
    return reply.status(503).send(errorBody(503, 'NOT_READY', why));
  });

  // Streamed (chunked): at 10,000 apps the text is some 60 MB, written a chunk per turn of the event loop.
  app.get('/metrics', { ...quiet, schema: { operationId: 'getMetrics', summary: 'Prometheus metrics (text exposition format)', response: { 200: metricsText } } }, async (_req, reply) =>
    reply.type(deps.metrics.registry.contentType).send(deps.metrics.stream()),
  );
}
