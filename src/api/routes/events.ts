import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { BerthEvent } from '../../domain/release.js';
import { DEFAULT_LIMIT, MAX_LIMIT } from '../../store/index.js';
import type { ApiDeps } from '../context.js';
import { UnprocessableError } from '../errors.js';
import { RETRY_AFTER_S, type LiveStream, type LiveStreamLimits, type LiveStreams } from '../live-stream.js';
import { errorSchema, eventPageSchema, notFound } from '../responses.js';
import { appParams, pageSize, queryInteger } from '../schemas.js';
import { mustGetApp } from './apps.js';

type EventsReq = FastifyRequest<{ Params: { app: string }; Querystring: { after?: number; limit?: number; tail?: number } }>;

/** Bounds of the live SSE streams (README.md, "HTTP API"); every field has a default. Log streams share them. */
export interface EventStreamLimits {
  /** Concurrent streams over all apps, events and logs together (config `api.max_event_streams`); one more is a 503 with Retry-After. */
  maxStreams: number;
  /** Backlog events read from the store per page while replaying after Last-Event-ID / ?after=. */
  replayPageSize: number;
  /** Live events (frames) held for a stream whose socket is not draining; one more disconnects it. */
  maxQueuedEvents: number;
  /** How long a stream may stay blocked (write() returned false, no 'drain') before it is disconnected. */
  drainTimeoutMs: number;
  heartbeatMs: number;
}

export const DEFAULT_MAX_EVENT_STREAMS = 64;
export const EVENT_STREAM_DEFAULTS: EventStreamLimits = {
  maxStreams: DEFAULT_MAX_EVENT_STREAMS,
  replayPageSize: 500,
  maxQueuedEvents: 1_000,
  drainTimeoutMs: 30_000,
  heartbeatMs: 15_000,
};

/** The defaults with what `given` sets; a replay page no bigger than a store page. */
export function eventStreamLimits(given: Partial<EventStreamLimits> = {}): EventStreamLimits {
  const limits: EventStreamLimits = { ...EVENT_STREAM_DEFAULTS };
  for (const key of Object.keys(limits) as Array<keyof EventStreamLimits>) {
    const v = given[key];
    if (v !== undefined) limits[key] = v;
  }
  // listEvents never returns more than MAX_LIMIT rows: a bigger page would look short and end the replay early.
  limits.replayPageSize = Math.max(1, Math.min(limits.replayPageSize, MAX_LIMIT));
  return limits;
}

/** The live streams' shared bounds (src/api/live-stream.ts) from the event stream limits. */
export function liveStreamLimits(l: EventStreamLimits): LiveStreamLimits {
  return { maxStreams: l.maxStreams, maxQueued: l.maxQueuedEvents, drainTimeoutMs: l.drainTimeoutMs, heartbeatMs: l.heartbeatMs };
}

function sseFrame(e: BerthEvent): string {
  return `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
}

const SSE_EXAMPLE: BerthEvent = { id: 42, app: 'web', host: 'h1', revision: 5, type: 'HostUpdated', message: 'h1 serves v2', actor: 'controller', createdAt: '2026-11-29T08:00:00.000Z' };

/** What bounds every live stream, for /openapi.json (the log stream says the same). */
export const STREAM_BOUNDS_DESCRIPTION = [
  `A comment line \`: keepalive\` comes every ${EVENT_STREAM_DEFAULTS.heartbeatMs / 1000} s.`,
  `Beyond api.max_event_streams open streams (events and logs together) the answer is 503 (TOO_MANY_STREAMS) with Retry-After: ${RETRY_AFTER_S}.`,
  `A client that does not read is disconnected once ${EVENT_STREAM_DEFAULTS.maxQueuedEvents} frames wait for it or its socket has not drained for ${EVENT_STREAM_DEFAULTS.drainTimeoutMs / 1000} s.`,
].join(' ');

/** How the stream is framed, for /openapi.json (a generator cannot type a stream: it gets a string). */
const SSE_DESCRIPTION = [
  'With Accept: text/event-stream the answer is a Server-Sent Events stream that stays open:',
  'first the events after Last-Event-ID (or ?after=, else all) in order, then each new event as it is recorded.',
  'Each event is one frame: `id: <event id>`, `event: <event type>`, `data: <the event as JSON, the Event schema of the JSON page>`, then a blank line.',
  'Reconnect with Last-Event-ID set to the last id received to resume without gaps or repeats.',
  STREAM_BOUNDS_DESCRIPTION,
].join(' ');

/**
 * Live events as Server-Sent Events. Resumes after `Last-Event-ID` (or ?after=).
 *
 * Memory per stream is bounded whatever the client does (the queue and the time bounds of
 * src/api/live-stream.ts, and):
 * - the backlog is replayed from the store one page (replayPageSize) at a time, and the
 *   next page is read only once the socket has drained: never the whole backlog at once;
 * - while replaying, live events are not held: they are in the store and a later page reads them;
 * - once live, an event is written straight away unless the socket is blocked; then it
 *   waits in the stream's bounded queue until 'drain'.
 * Everything here runs synchronously with the store's commits (subscribe delivers right
 * after a commit), so switching from replay to live at a short page leaves no gap; ids are
 * de-duplicated against the last one sent.
 */
function stream(deps: ApiDeps, app: string, afterId: number, s: LiveStream, replayPageSize: number): void {
  let lastSent = afterId;
  let replaying = true;
  /** The backlog page being replayed (at most replayPageSize events) and the next one to write. */
  let page: BerthEvent[] = [];
  let pageAt = 0;

  const send = (e: BerthEvent) => {
    if (e.id <= lastSent) return;
    lastSent = e.id;
    s.write(sseFrame(e));
  };
  /** Writes backlog pages until the socket pushes back; queued live events are the stream's to flush. */
  const pump = () => {
    while (replaying && s.writable) {
      // The rest of the current page first (kept across a 'drain'); the next page only once it is all written.
      if (pageAt < page.length) {
        send(page[pageAt++]!);
        continue;
      }
      if (page.length > 0 && page.length < replayPageSize) {
        replaying = false;
        page = [];
        continue;
      }
      page = deps.store.events.listEvents(app, { afterId: lastSent, limit: replayPageSize });
      pageAt = 0;
      if (page.length === 0) replaying = false;
    }
  };
  const onLive = (e: BerthEvent) => {
    if (e.app !== app || replaying) return;
    send(e);
  };
  const unsubscribe = deps.store.events.subscribe(onLive);
  s.whenEnded(() => {
    unsubscribe();
    page = [];
  });
  s.whenWritable(pump);
  pump();
}

export function eventRoutes(app: FastifyInstance, deps: ApiDeps, guard: { read: unknown }, streams: LiveStreams, replayPageSize: number): void {
  app.get(
    '/v1/apps/:app/events',
    {
      onRequest: guard.read as never,
      schema: {
        operationId: 'listEvents',
        summary: 'Audit events of the app, oldest first after ?after=ID; with Accept: text/event-stream, a live SSE stream (Last-Event-ID resumes)',
        description: SSE_DESCRIPTION,
        params: appParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            after: queryInteger('an event id: only events newer than it are listed (a stream replays them first)', 0, Number.MAX_SAFE_INTEGER),
            limit: pageSize,
            tail: { ...pageSize, description: `a count: the newest N events (at most ${MAX_LIMIT}), oldest first; not with after` },
          },
        },
        headers: {
          type: 'object',
          properties: {
            'last-event-id': {
              type: 'string',
              description: 'The id of the last event a stream delivered (EventSource sends it when it reconnects): the stream resumes after it; wins over ?after=; anything but digits is ignored',
            },
          },
        },
        response: {
          200: {
            description: 'A page of events (JSON), or with Accept: text/event-stream a live stream of them',
            content: {
              'application/json': { schema: eventPageSchema },
              'text/event-stream': { schema: { type: 'string', description: SSE_DESCRIPTION, examples: [sseFrame(SSE_EXAMPLE)] } },
            },
          },
          ...notFound,
          503: errorSchema,
        },
      },
    },
    async (req: EventsReq, reply) => {
      // A deleted app's events stay readable (the audit trail outlives it, src/store/apps.ts deleteApp).
      const appName = deps.store.apps.getApp(req.params.app) || deps.store.events.listEvents(req.params.app, { limit: 1 }).length > 0 ? req.params.app : mustGetApp(deps, req.params.app).name;
      const lastEventId = req.headers['last-event-id'];
      const afterId = typeof lastEventId === 'string' && /^[0-9]{1,15}$/.test(lastEventId) ? Number(lastEventId) : (req.query.after ?? 0);
      if ((req.headers.accept ?? '').includes('text/event-stream')) {
        const s = streams.start(reply, deps.log.child({ component: 'api', app: appName }), 'event');
        if (s) stream(deps, appName, afterId, s, replayPageSize);
        return reply;
      }
      // The newest events (the status page's timeline), then a live stream from the last one's id.
      if (req.query.tail !== undefined) {
        if (req.query.after !== undefined) throw new UnprocessableError('querystring: tail (the newest N events) and after (events after an id) cannot be combined');
        return { events: deps.store.events.pageEvents(appName, { limit: req.query.tail }).reverse(), next: null };
      }
      const limit = req.query.limit ?? DEFAULT_LIMIT;
      const events = deps.store.events.listEvents(appName, { afterId, limit });
      return { events, next: events.length === limit ? events[events.length - 1]!.id : null };
    },
  );
}
