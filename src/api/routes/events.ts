import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { BerthEvent } from '../../domain/release.js';
import { DEFAULT_LIMIT, MAX_LIMIT } from '../../store/index.js';
import type { ApiDeps } from '../context.js';
import { appParams, pageSize } from '../schemas.js';
import { mustGetApp } from './apps.js';

type EventsReq = FastifyRequest<{ Params: { app: string }; Querystring: { after?: string; limit?: string } }>;

const HEARTBEAT_MS = 15_000;

function sseFrame(e: BerthEvent): string {
  return `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
}

/**
 * Live events as Server-Sent Events. Resumes after `Last-Event-ID` (or ?after=):
 * the backlog is read first, then new events are pushed as the store commits them;
 * events committed between the two are de-duplicated by id.
 */
function stream(deps: ApiDeps, app: string, afterId: number, request: FastifyRequest, reply: FastifyReply, open: Set<() => void>): void {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  let lastSent = afterId;
  const send = (e: BerthEvent) => {
    if (e.app !== app || e.id <= lastSent) return;
    lastSent = e.id;
    res.write(sseFrame(e));
  };
  const unsubscribe = deps.store.events.subscribe(send);
  for (;;) {
    const backlog = deps.store.events.listEvents(app, { afterId: lastSent, limit: MAX_LIMIT });
    backlog.forEach(send);
    if (backlog.length < MAX_LIMIT) break;
  }
  const heartbeat = setInterval(() => res.write(': keepalive\n\n'), HEARTBEAT_MS);
  heartbeat.unref();
  const end = () => {
    clearInterval(heartbeat);
    unsubscribe();
    open.delete(end);
    res.end();
  };
  open.add(end);
  request.raw.on('close', end);
}

export function eventRoutes(app: FastifyInstance, deps: ApiDeps, guard: { read: unknown }): void {
  // Live streams never end by themselves: close them so shutdown is not held up.
  const open = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const end of [...open]) end();
  });
  app.get(
    '/v1/apps/:app/events',
    {
      onRequest: guard.read as never,
      schema: {
        summary: 'Audit events of the app, oldest first after ?after=ID; with Accept: text/event-stream, a live SSE stream (Last-Event-ID resumes)',
        params: appParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            after: { type: 'string', pattern: '^[0-9]{1,12}$', description: 'an event id: only events newer than it are listed' },
            limit: pageSize,
          },
        },
      },
    },
    async (req: EventsReq, reply) => {
      const appName = mustGetApp(deps, req.params.app).name;
      const lastEventId = req.headers['last-event-id'];
      const afterId = Number(typeof lastEventId === 'string' && /^[0-9]{1,12}$/.test(lastEventId) ? lastEventId : (req.query.after ?? 0));
      if ((req.headers.accept ?? '').includes('text/event-stream')) return stream(deps, appName, afterId, req, reply, open);
      const limit = Math.min(Number(req.query.limit ?? DEFAULT_LIMIT) || DEFAULT_LIMIT, MAX_LIMIT);
      const events = deps.store.events.listEvents(appName, { afterId, limit });
      return { events, next: events.length === limit ? events[events.length - 1]!.id : null };
    },
  );
}
