import type { FastifyInstance, FastifyRequest } from 'fastify';
import { parseSince } from '../../config/duration.js';
import { DEFAULT_LOG_TAIL, MAX_LOG_TAIL, type AppLogItem } from '../../domain/logs.js';
import { APP_NAME_PATTERN, HOST_NAME_PATTERN } from '../../domain/naming.js';
import type { AppLogs } from '../../reconciler/app-logs.js';
import type { ApiDeps } from '../context.js';
import { InvalidRequestError } from '../errors.js';
import type { LiveStream, LiveStreams } from '../live-stream.js';
import { errorSchema, notFound } from '../responses.js';
import { appParams, queryInteger } from '../schemas.js';
import { mustGetApp } from './apps.js';
import { STREAM_BOUNDS_DESCRIPTION } from './events.js';

type LogsReq = FastifyRequest<{ Params: { app: string }; Querystring: { host?: string; process?: string; since?: string; tail?: number; follow?: string } }>;

/** One item as an SSE frame: `line` or `host`, its data exactly the published schema's fields. */
function logFrame(i: AppLogItem): string {
  const data =
    i.type === 'line'
      ? { host: i.host, container: i.container, stream: i.stream, time: i.time, text: i.text }
      : { host: i.host, state: i.state, container: i.container, message: i.message, code: i.code };
  return `event: ${i.type}\ndata: ${JSON.stringify(data)}\n\n`;
}

const EXAMPLES: AppLogItem[] = [
  { type: 'host', host: 'h1', state: 'attached', container: 'web-r4', message: 'web-r4 (v2)', code: null },
  { type: 'line', host: 'h1', container: 'web-r4', stream: 'stdout', time: '2026-11-29T09:31:54.745123456Z', text: 'listening on :3000' },
  { type: 'host', host: 'h3', state: 'error', container: null, message: 'list containers: docker daemon not reachable (ECONNREFUSED): connect ECONNREFUSED', code: 'HOST_UNREACHABLE' },
];

const LOG_STREAM_DESCRIPTION = [
  "A Server-Sent Events stream of the logs of the container that serves the app on each of its hosts (the one its status names, else the newest running one; with none running, the newest one's last lines),",
  'merged by Docker\'s timestamps (a line waits at most 200 ms for the other hosts\' lines to be ordered against).',
  'Frames: `event: line` with `data:` a LogLine (components.schemas), and `event: host` with `data:` a LogHostState when a host\'s stream attaches to a container, detaches (it stopped), finds none, or fails:',
  'a host that cannot be read says so in its frame and never ends the others\' lines. Every text has the app\'s secret values redacted.',
  'Without follow the stream ends after the last lines of every host; with follow=true it stays open with new lines as they are written,',
  "going on with the app's next container on a host when one stops (a rollout), and retrying a host that fails (1 s doubling to 10 s).",
  STREAM_BOUNDS_DESCRIPTION,
].join(' ');

/**
 * `berth logs` (GET /v1/apps/:app/logs): the app's container logs from every host, as
 * SSE. A stream takes one of the live-stream slots the event streams use, and the host
 * streams are read only as fast as the client reads (backpressure reaches Docker).
 */
export function logRoutes(app: FastifyInstance, deps: ApiDeps, guard: { read: unknown }, streams: LiveStreams): void {
  app.get(
    '/v1/apps/:app/logs',
    {
      onRequest: guard.read as never,
      schema: {
        operationId: 'streamLogs',
        summary: "Logs of the app's containers on every host, merged and redacted, as Server-Sent Events; follow=true keeps streaming",
        description: `409 when host is not one of the app's hosts, or process not one of its processes, or when the app's secrets file cannot be read (its lines could not be redacted). ${LOG_STREAM_DESCRIPTION}`,
        params: appParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            host: { type: 'string', pattern: HOST_NAME_PATTERN, description: "one of the app's hosts: only its lines" },
            process: {
              type: 'string',
              pattern: APP_NAME_PATTERN,
              description: "one of the app's processes (an app with processes): only its lines; each frame's host is then the unit key, process@host, as it is for every frame of such an app",
            },
            since: {
              type: 'string',
              maxLength: 64,
              description: 'only lines written after this: a duration before now (10m, 1h30m) or an RFC 3339 date-time (2026-11-29T09:30:00Z)',
            },
            tail: queryInteger(`lines per host before following: 0 to ${MAX_LOG_TAIL} (default ${DEFAULT_LOG_TAIL})`, 0, MAX_LOG_TAIL),
            follow: { type: 'string', enum: ['true', 'false', '1', '0'], description: 'true: keep the stream open with new lines (default false)' },
          },
        },
        response: {
          200: {
            description: 'The logs as a Server-Sent Events stream',
            content: { 'text/event-stream': { schema: { type: 'string', description: LOG_STREAM_DESCRIPTION, examples: [EXAMPLES.map(logFrame).join('')] } } },
          },
          ...notFound,
          409: errorSchema,
          503: errorSchema,
        },
      },
    },
    async (req: LogsReq, reply) => {
      const stored = mustGetApp(deps, req.params.app);
      const name = stored.name;
      // Not ignored: a filter that filters nothing would show every line as if they were the process's.
      if (req.query.process !== undefined && !stored.spec.processes) throw new InvalidRequestError(`querystring.process: app "${name}" has no processes (it runs one, unnamed)`);
      let sinceMs: number | undefined;
      if (req.query.since !== undefined) {
        const at = parseSince(req.query.since, Date.now());
        if (at === null) throw new InvalidRequestError(`querystring.since: expected a duration like 10m or an RFC 3339 date-time like 2026-11-29T09:30:00Z, got ${JSON.stringify(req.query.since)}`);
        sinceMs = at;
      }
      const follow = req.query.follow === 'true' || req.query.follow === '1';
      // Nothing is read from a host before the stream is open: refusing it (below) costs no host a call.
      const logs = deps.controller.logs(name, {
        tail: req.query.tail ?? DEFAULT_LOG_TAIL,
        follow,
        ...(req.query.host !== undefined ? { host: req.query.host } : {}),
        ...(req.query.process !== undefined ? { process: req.query.process } : {}),
        ...(sinceMs !== undefined ? { sinceMs } : {}),
      });
      const s = streams.start(reply, deps.log.child({ component: 'api', app: name }), 'log');
      if (!s) logs.close();
      else void pipe(s, logs, deps);
      return reply;
    },
  );
}

/** Writes the items as the client takes them: the next one is asked for only once the socket has room. */
async function pipe(s: LiveStream, logs: AppLogs, deps: ApiDeps): Promise<void> {
  s.whenEnded(() => logs.close());
  try {
    for await (const item of logs.items) {
      if (s.closed) break;
      if (!s.write(logFrame(item)) && !(await s.writableAgain())) break;
    }
  } catch (err) {
    deps.log.error({ err }, 'log stream failed');
  } finally {
    logs.close();
    s.end();
  }
}
