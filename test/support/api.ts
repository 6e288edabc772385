/**
 * The API under test: buildApp with an in-memory store, a metrics registry, a
 * logger whose output is captured, and a recording controller seam (the API only
 * ever nudges the controller and asks whether it runs; nothing else is faked).
 */
import http, { type IncomingMessage } from 'node:http';
import { Writable } from 'node:stream';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../../src/api/app.js';
import { NO_CONFIG_FILE, type ApiDeps, type ConfigFileHandle, type ControllerHandle, type ExecResult } from '../../src/api/context.js';
import type { AppLogItem } from '../../src/domain/logs.js';
import { BerthMetrics } from '../../src/metrics/registry.js';
import type { AppLogs, AppLogsRequest } from '../../src/reconciler/app-logs.js';
import { openStore, type Store } from '../../src/store/index.js';
import type { EventStreamLimits } from '../../src/api/routes/events.js';
import type { AppSecretFiles } from '../../src/secrets/app-secrets.js';
import { TOKEN } from './daemon.js';
import { NO_SECRETS } from './secrets.js';

export { TOKEN };
export const AUTH = { authorization: `Bearer ${TOKEN}` } as const;

/**
 * Records every enqueue, exec and logs request; `running` answers /readyz. Logs are scripted:
 * `logItems` first, then (followed) what `pushLog` sends until the API closes them. Real execs
 * and logs are tested on the test hosts.
 */
export class RecordingController implements ControllerHandle {
  readonly enqueued: string[] = [];
  readonly execs: Array<{ app: string; command: string; host?: string }> = [];
  readonly logRequests: Array<{ app: string; req: AppLogsRequest }> = [];
  logItems: AppLogItem[] = [];
  /** Thrown by logs() before any item (an app whose secrets cannot be read, a host it does not run on). */
  logsError: Error | null = null;
  /** Logs the API has not closed yet. */
  openLogs = 0;
  /** Items the API has read from every logs stream so far. */
  logsTaken = 0;
  private readonly followers = new Set<(item: AppLogItem) => void>();
  running = true;
  /** Sends `item` to every followed logs stream. */
  pushLog(item: AppLogItem): void {
    for (const f of this.followers) f(item);
  }
  logs(app: string, req: AppLogsRequest): AppLogs {
    this.logRequests.push({ app, req });
    if (this.logsError) throw this.logsError;
    const queue = [...this.logItems];
    let wake: (() => void) | null = null;
    let closed = false;
    const follower = (item: AppLogItem) => {
      queue.push(item);
      wake?.();
    };
    if (req.follow) this.followers.add(follower);
    this.openLogs += 1;
    const taken = () => (this.logsTaken += 1);
    async function* items(): AsyncGenerator<AppLogItem> {
      while (!closed) {
        const next = queue.shift();
        if (next) {
          taken();
          yield next;
        }
        else if (!req.follow) return;
        else await new Promise<void>((resolve) => (wake = resolve));
      }
    }
    return {
      items: items(),
      close: () => {
        if (closed) return;
        closed = true;
        this.openLogs -= 1;
        this.followers.delete(follower);
        wake?.();
      },
    };
  }
  async exec(app: string, command: string, host?: string): Promise<ExecResult> {
    this.execs.push({ app, command, ...(host ? { host } : {}) });
    return { host: host ?? 'h1', version: 'v1', exitCode: 0, outputTail: '', timedOut: false };
  }
  enqueue(app: string): void {
    this.enqueued.push(app);
  }
  isRunning(): boolean {
    return this.running;
  }
}

export interface TestApi {
  app: FastifyInstance;
  store: Store;
  controller: RecordingController;
  metrics: BerthMetrics;
  /** Every log line the app wrote so far (pino JSON, level trace and up). */
  logs(): string;
  /** Shorthand for app.inject with the bearer token (unless `headers.authorization` is given). */
  call(opts: InjectOptions & { auth?: boolean }): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

export interface TestApiOptions {
  token?: string | null;
  openReads?: boolean;
  hosts?: string[];
  eventStreams?: Partial<EventStreamLimits>;
  /** The daemon's config file as the API sees it (default: none, declaring no app). */
  configFile?: ConfigFileHandle;
  /** The hosts' proxy states GET /v1/hosts reports (default: none, as without a proxy). */
  proxyStatus?: ApiDeps['proxyStatus'];
  /** Apps' secrets files (default: none has one). */
  secrets?: AppSecretFiles;
  /** What the config file allows apps (default: nothing beyond the defaults). */
  appPolicy?: ApiDeps['appPolicy'];
}

export const DEFAULT_HOSTS = ['h1', 'h2', 'h3'];

export function makeApi(opts: TestApiOptions = {}): TestApi {
  const store = openStore(':memory:');
  const controller = new RecordingController();
  const metrics = new BerthMetrics('0.0.0-test', { processMetrics: false });
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  const log = pino({ level: 'trace' }, sink);
  const hosts = opts.hosts ?? DEFAULT_HOSTS;
  const app = buildApp({
    store,
    metrics,
    log,
    controller,
    secrets: opts.secrets ?? NO_SECRETS,
    auth: { token: opts.token === undefined ? TOKEN : opts.token, openReads: opts.openReads ?? false },
    hostNames: () => hosts,
    configFile: opts.configFile ?? NO_CONFIG_FILE,
    ...(opts.appPolicy ? { appPolicy: opts.appPolicy } : {}),
    ...(opts.proxyStatus ? { proxyStatus: opts.proxyStatus } : {}),
    version: '0.0.0-test',
    ...(opts.eventStreams ? { eventStreams: opts.eventStreams } : {}),
  });
  return {
    app,
    store,
    controller,
    metrics,
    logs: () => chunks.join(''),
    call: ({ auth = true, headers, ...rest }) =>
      app.inject({ ...rest, headers: { ...(auth ? AUTH : {}), ...(headers ?? {}) } }),
    close: async () => {
      await app.close();
      store.close();
    },
  };
}

/** A valid app document (the PUT /v1/apps/:app body), hosts h1..h2. */
export function appDoc(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    image: '10.77.0.1:5000/web',
    hosts: ['h1', 'h2'],
    port: 3000,
    healthcheck: { path: '/health', interval: '1s', timeout: '500ms', max_attempts: 3 },
    ...over,
  };
}

/**
 * Every row of every table (sqlite_sequence included, so even a rolled-back
 * AUTOINCREMENT shows), as sorted JSON lines: for "nothing was written" assertions.
 */
export function snapshotDb(store: Store): Record<string, string[]> {
  const tables = store.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all() as string[];
  return Object.fromEntries(
    tables.map((t) => [t, (store.db.prepare(`SELECT * FROM "${t}"`).all() as unknown[]).map((r) => JSON.stringify(r)).sort()]),
  );
}

/** Creates app `name` (PUT) and optionally deploys `versions` in order; throws unless each step succeeds. */
export async function seedApp(api: TestApi, name = 'web', versions: string[] = [], doc = appDoc()): Promise<void> {
  const put = await api.call({ method: 'PUT', url: `/v1/apps/${name}`, payload: doc });
  if (put.statusCode !== 201 && put.statusCode !== 200) throw new Error(`seed PUT ${name}: ${put.statusCode} ${put.body}`);
  for (const version of versions) {
    const res = await api.call({ method: 'POST', url: `/v1/apps/${name}/releases`, payload: { version } });
    if (res.statusCode !== 202) throw new Error(`seed release ${name}@${version}: ${res.statusCode} ${res.body}`);
    // Seeded history is history that rolled out: the controller would have marked each release completed.
    api.store.releases.markCompleted(name, (JSON.parse(res.body) as { revision: number }).revision, new Date());
  }
}

export interface SseFrame {
  id: number;
  event: string;
  data: string;
}

export interface SseClient {
  /** The response head (status, headers). */
  response: Promise<IncomingMessage>;
  /** The next `n` frames not yet taken (comments/heartbeats skipped); rejects after `timeoutMs`. */
  next(n: number, timeoutMs?: number): Promise<SseFrame[]>;
  /** Resolves when the server ends the stream. */
  ended: Promise<void>;
  close(): void;
}

/** A minimal text/event-stream reader over node:http, for tests against a real listening server. */
export function sseClient(url: string, headers: Record<string, string>): SseClient {
  const frames: SseFrame[] = [];
  let taken = 0;
  let wake: (() => void) | null = null;
  let buf = '';
  let endedResolve: () => void = () => {};
  const ended = new Promise<void>((r) => (endedResolve = r));
  const req = http.get(url, { headers });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let sep: number;
        while ((sep = buf.indexOf('\n\n')) !== -1) {
          const block = buf.slice(0, sep);
          buf = buf.slice(sep + 2);
          const fields = new Map<string, string>();
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const i = line.indexOf(': ');
            if (i > 0) fields.set(line.slice(0, i), line.slice(i + 2));
          }
          if (fields.has('data')) frames.push({ id: Number(fields.get('id')), event: fields.get('event') ?? 'message', data: fields.get('data')! });
        }
        wake?.();
      });
      res.on('end', endedResolve);
      res.on('close', endedResolve);
      resolve(res);
    });
    req.once('error', (err) => {
      endedResolve();
      reject(err);
    });
  });
  response.catch(() => {});
  return {
    response,
    ended,
    async next(n, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (frames.length - taken < n) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out waiting for ${n} SSE frames; have ${frames.length - taken}: ${JSON.stringify(frames.slice(taken))}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = null;
      }
      const out = frames.slice(taken, taken + n);
      taken += n;
      return out;
    },
    close: () => req.destroy(),
  };
}
