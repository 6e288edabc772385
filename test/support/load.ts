/**
 * The load checker: N concurrent keep-alive clients per target, plus clients that make
 * slow requests (which straddle a traffic switch), until stopped. It proves zero
 * downtime honestly:
 *
 * - Nothing is ever retried. A request that gets a reset, a refused connection, a
 *   timeout or a non-2xx answer is a failure, recorded with what, when, a short `kind`
 *   and whether it went out on a reused (kept-alive) socket.
 * - Keep-alive clients pause between requests (`pauseMs`, with jitter) so their
 *   connections sit idle in the agent's pool: the moment a proxy reload bites.
 *   Connections really are reused (a bounded agent per target); `socketsReused` counts
 *   the requests that went out on one.
 * - A third of the slow requests are POSTs with a small body (not idempotent, so no
 *   client would re-send them either).
 *
 * Targets are only the test hosts' own addresses (or local servers in unit tests); a
 * target may carry a Host header, for apps that share a port and are routed by Host.
 *
 * Also here: `holdStream` (one long request that must not be cut) and
 * `holdIdleConnection` (one kept-alive socket that must survive sitting idle).
 */
import http from 'node:http';
import net from 'node:net';

/** A URL string, or a URL with a Host header to send and a name to report it under. */
export type LoadTarget = string | { url: string; host?: string; name?: string };

export interface LoadOptions {
  targets: LoadTarget[];
  clientsPerTarget?: number;
  slowClientsPerTarget?: number;
  /** Path of the fast requests (default `/`). */
  path?: string;
  /**
   * Path of the slow request (answers after ~2 s with the version); default
   * `/cgi-bin/slow?s=2`. A third of the slow requests are `POST <slowPath>` with a small
   * body, the rest `GET <slowPath>`.
   */
  slowPath?: string;
  /** Socket inactivity timeout per request (default 5 s fast, 10 s slow). */
  timeoutMs?: number;
  /** Hard bound on how long the load runs, whatever happens. */
  maxDurationMs?: number;
  /** Idle time of each client between two requests (default 30 ms)... */
  pauseMs?: number;
  /** ...plus or minus up to this much (default 5 ms). */
  pauseJitterMs?: number;
  /** Connections per target (default: that target's client count, so nothing queues). */
  maxSocketsPerTarget?: number;
}

export type FailureKind = 'reset' | 'refused' | 'timeout' | 'http' | 'other';

export interface LoadFailure {
  /** The target's name (its URL unless named). */
  target: string;
  /** e.g. `GET / on a reused socket: ECONNRESET socket hang up`, `POST /cgi-bin/slow?s=2: HTTP 502: ...`. */
  what: string;
  /** ms since the load started. */
  at: number;
  kind: FailureKind;
  /** The request went out on a kept-alive socket that had served an earlier request. */
  reusedSocket: boolean;
  /** Method and path, e.g. `POST /cgi-bin/slow?s=2`. */
  request: string;
}

export interface TargetTotals {
  requests: number;
  ok: number;
  failures: number;
  /** Versions of this target's fast responses. */
  versions: Record<string, number>;
}

export interface LoadReport {
  requests: number;
  ok: number;
  failures: LoadFailure[];
  /** Requests (fast or slow, ok or not) that went out on a reused kept-alive socket. */
  socketsReused: number;
  /**
   * Kept-alive sockets the server closed while they sat idle in the pool. Not a failure
   * (the next request opens a new connection and nothing is re-sent); reported so a
   * test can see that idle connections were dropped.
   */
  idleSocketsClosedByServer: number;
  slow: { started: number; completed: number; failed: number; posts: number; versions: Record<string, number> };
  /** Versions of the fast responses, all targets together. */
  versions: Record<string, number>;
  /** Version of the last fast response per target name. */
  last: Record<string, string>;
  /** Per target name. */
  byTarget: Record<string, TargetTotals>;
  /** Latencies of the successful fast requests (slow ones sleep on purpose). */
  latenciesMs: number[];
  durationMs: number;
}

export interface LoadRun {
  /** Stops every client after its request in flight and returns the totals. */
  stop(): Promise<LoadReport>;
  snapshot(): LoadReport;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** `3 failed: reset 2 (2 on reused sockets), http 1` — for test output. */
export function summarizeFailures(failures: LoadFailure[]): string {
  if (failures.length === 0) return '0 failed';
  const kinds = new Map<FailureKind, { n: number; reused: number }>();
  for (const f of failures) {
    const k = kinds.get(f.kind) ?? { n: 0, reused: 0 };
    k.n += 1;
    if (f.reusedSocket) k.reused += 1;
    kinds.set(f.kind, k);
  }
  const parts = [...kinds].map(([kind, k]) => `${kind} ${k.n}${k.reused > 0 ? ` (${k.reused} on reused sockets)` : ''}`);
  return `${failures.length} failed: ${parts.join(', ')}`;
}

interface ResolvedTarget {
  name: string;
  url: string;
  host: string | undefined;
}

function resolveTarget(t: LoadTarget): ResolvedTarget {
  if (typeof t === 'string') return { name: t, url: t, host: undefined };
  return { name: t.name ?? (t.host ? `${t.host} via ${t.url}` : t.url), url: t.url, host: t.host };
}

/** Our own timeout (the socket sat silent for `timeoutMs`). */
class RequestTimeout extends Error {
  readonly code = 'LOAD_TIMEOUT';
  constructor(ms: number) {
    super(`timeout after ${ms} ms`);
  }
}

const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE']);

export function classifyError(err: unknown): FailureKind {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'LOAD_TIMEOUT' || code === 'ETIMEDOUT') return 'timeout';
  if (code === 'ECONNREFUSED') return 'refused';
  if (typeof code === 'string' && RESET_CODES.has(code)) return 'reset';
  return 'other';
}

function describeError(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' && e.code !== 'LOAD_TIMEOUT' ? `${e.code} ` : '';
  return `${code}${String(e?.message ?? err)}`;
}

interface RequestSpec {
  url: string;
  host?: string | undefined;
  method?: 'GET' | 'POST';
  body?: string;
  timeoutMs: number;
  agent?: http.Agent | false;
  createConnection?: () => net.Socket;
  headers?: Record<string, string>;
}

interface Answer {
  status: number;
  body: string;
  reusedSocket: boolean;
}

/** One request, never re-sent; rejects with the error annotated with `reusedSocket`. */
function request(s: RequestSpec, onRequest?: (req: http.ClientRequest) => void): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const u = new URL(s.url);
    const headers: Record<string, string> = { ...s.headers };
    if (s.host !== undefined) headers.host = s.host;
    if (s.body !== undefined) {
      headers['content-type'] = 'text/plain';
      headers['content-length'] = String(Buffer.byteLength(s.body));
    }
    const options: http.RequestOptions = {
      method: s.method ?? 'GET',
      hostname: u.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: u.port || 80,
      path: `${u.pathname}${u.search}`,
      headers,
      timeout: s.timeoutMs,
    };
    if (s.agent !== undefined) options.agent = s.agent;
    if (s.createConnection) {
      const c = s.createConnection;
      options.createConnection = () => c();
    }
    let settled = false;
    const req = http.request(options, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        if (settled) return;
        settled = true;
        resolve({ status: res.statusCode ?? 0, body, reusedSocket: req.reusedSocket });
      });
      res.on('error', fail);
    });
    function fail(err: Error) {
      if (settled) return;
      settled = true;
      reject(Object.assign(err, { reusedSocket: req.reusedSocket }));
    }
    req.on('timeout', () => req.destroy(new RequestTimeout(s.timeoutMs)));
    req.on('error', fail);
    onRequest?.(req);
    req.end(s.body);
  });
}

export function startLoad(o: LoadOptions): LoadRun {
  const clientsPerTarget = o.clientsPerTarget ?? 4;
  const slowClientsPerTarget = o.slowClientsPerTarget ?? 1;
  const fastPath = o.path ?? '/';
  const slowPath = o.slowPath ?? '/cgi-bin/slow?s=2';
  const pauseMs = o.pauseMs ?? 30;
  const jitterMs = Math.min(o.pauseJitterMs ?? 5, pauseMs);
  const maxSockets = o.maxSocketsPerTarget ?? Math.max(1, clientsPerTarget + slowClientsPerTarget);
  const agents: http.Agent[] = [];
  const report: LoadReport = {
    requests: 0,
    ok: 0,
    failures: [],
    socketsReused: 0,
    idleSocketsClosedByServer: 0,
    slow: { started: 0, completed: 0, failed: 0, posts: 0, versions: {} },
    versions: {},
    last: {},
    byTarget: {},
    latenciesMs: [],
    durationMs: 0,
  };
  const started = Date.now();
  let running = true;
  const sleepers = new Set<() => void>();
  const halt = () => {
    running = false;
    for (const wake of [...sleepers]) wake();
  };
  const hardStop = setTimeout(halt, o.maxDurationMs ?? 120_000);
  /** Sleeps, but wakes at once when the load stops. */
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      if (!running) return resolve();
      const wake = () => {
        clearTimeout(timer);
        sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      sleepers.add(wake);
    });
  const jittered = () => Math.max(0, pauseMs + (Math.random() * 2 - 1) * jitterMs);

  /** Watches each socket: idle from the agent's 'free' until its next request. */
  const watched = new WeakSet<net.Socket>();
  const idle = new WeakSet<net.Socket>();
  const watch = (req: http.ClientRequest) =>
    req.on('socket', (socket: net.Socket) => {
      idle.delete(socket);
      if (watched.has(socket)) return;
      watched.add(socket);
      socket.on('free', () => idle.add(socket));
      socket.on('end', () => {
        if (idle.has(socket)) report.idleSocketsClosedByServer += 1;
      });
    });

  const client = async (t: ResolvedTarget, agent: http.Agent, slow: boolean, index: number) => {
    const totals = (report.byTarget[t.name] ??= { requests: 0, ok: 0, failures: 0, versions: {} });
    let n = 0;
    // Spread the clients' first requests over one pause.
    await pause(Math.random() * pauseMs);
    while (running) {
      // Slow clients: every third request is a POST, offset per client.
      const post = slow && (n + index) % 3 === 0;
      n += 1;
      const path = slow ? slowPath : fastPath;
      const method = post ? 'POST' : 'GET';
      const what = `${method} ${path}`;
      const t0 = performance.now();
      if (slow) report.slow.started += 1;
      if (post) report.slow.posts += 1;
      report.requests += 1;
      totals.requests += 1;
      const failed = (kind: FailureKind, reusedSocket: boolean, detail: string) => {
        if (slow) report.slow.failed += 1;
        totals.failures += 1;
        report.failures.push({ target: t.name, what: `${what}${reusedSocket ? ' on a reused socket' : ''}: ${detail}`, at: Date.now() - started, kind, reusedSocket, request: what });
      };
      try {
        const spec: RequestSpec = { url: t.url + path, host: t.host, method, timeoutMs: o.timeoutMs ?? (slow ? 10_000 : 5_000), agent };
        if (post) spec.body = `berth load check ${t.name} ${n}\n`;
        const res = await request(spec, watch);
        if (res.reusedSocket) report.socketsReused += 1;
        const version = res.body.trim();
        if (res.status >= 200 && res.status < 300) {
          report.ok += 1;
          totals.ok += 1;
          if (slow) {
            report.slow.completed += 1;
            report.slow.versions[version] = (report.slow.versions[version] ?? 0) + 1;
          } else {
            report.latenciesMs.push(performance.now() - t0);
            report.versions[version] = (report.versions[version] ?? 0) + 1;
            totals.versions[version] = (totals.versions[version] ?? 0) + 1;
            report.last[t.name] = version;
          }
        } else {
          failed('http', res.reusedSocket, `HTTP ${res.status}: ${version.slice(0, 80)}`);
        }
      } catch (err) {
        const reusedSocket = (err as { reusedSocket?: boolean }).reusedSocket === true;
        if (reusedSocket) report.socketsReused += 1;
        failed(classifyError(err), reusedSocket, describeError(err));
      }
      await pause(jittered());
    }
  };

  const clients: Promise<void>[] = [];
  for (const raw of o.targets) {
    const t = resolveTarget(raw);
    const agent = new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: 'fifo' });
    agents.push(agent);
    for (let i = 0; i < clientsPerTarget; i++) clients.push(client(t, agent, false, i));
    for (let i = 0; i < slowClientsPerTarget; i++) clients.push(client(t, agent, true, i));
  }
  const snapshot = (): LoadReport => structuredClone({ ...report, durationMs: Date.now() - started });
  return {
    snapshot,
    async stop() {
      halt();
      await Promise.all(clients);
      clearTimeout(hardStop);
      for (const a of agents) a.destroy();
      return snapshot();
    },
  };
}

/* ------------------------------------------------------------------------------------ */

export interface HoldStreamOptions {
  /** Base URL, e.g. `http://10.0.0.2:80`. */
  url: string;
  /** Host header to send (apps sharing a port are routed by it). */
  host?: string;
  /** e.g. `/cgi-bin/slow?s=60`. */
  path: string;
  /** How long the response is expected to take; the request times out 30 s after. */
  seconds: number;
  timeoutMs?: number;
}

export interface HoldStreamResult {
  /** 0 when no response head arrived. */
  status: number;
  body: string;
  /** The connection ended before a complete response (reset, hang-up, body cut off). */
  closedEarly: boolean;
  /** Set when the request did not complete: what went wrong. */
  error?: string;
  kind?: FailureKind;
  ms: number;
}

export interface HeldStream {
  /** True once the connection has ended without a complete response; false while it is open. */
  closedEarly(): boolean;
  done: Promise<HoldStreamResult>;
  /** Ends the request (test teardown); the result then says `aborted by the test`, not closedEarly. */
  abort(): void;
}

/**
 * One long request on its own connection whose response is slow or streaming, to show
 * that a connection to an app nobody deploys stays open through another app's deploys.
 * A timeout (ours) or `abort()` is not `closedEarly`; check `status` too.
 */
export function holdStream(o: HoldStreamOptions): HeldStream {
  const t0 = performance.now();
  const timeoutMs = o.timeoutMs ?? o.seconds * 1000 + 30_000;
  let closedEarly = false;
  let aborted = false;
  let req: http.ClientRequest | undefined;
  const done = new Promise<HoldStreamResult>((resolve) => {
    const u = new URL(o.url + o.path);
    let status = 0;
    let body = '';
    let settled = false;
    const finish = (r: Omit<HoldStreamResult, 'status' | 'body' | 'ms'>) => {
      if (settled) return;
      settled = true;
      closedEarly = r.closedEarly;
      resolve({ status, body, ...r, ms: performance.now() - t0 });
    };
    const fail = (err: Error) => {
      if (aborted) return finish({ closedEarly: false, error: 'aborted by the test', kind: 'other' });
      const kind = classifyError(err);
      finish({ closedEarly: kind !== 'timeout', error: describeError(err), kind });
    };
    req = http.request(
      {
        hostname: u.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: u.port || 80,
        path: `${u.pathname}${u.search}`,
        headers: o.host !== undefined ? { host: o.host } : {},
        agent: false,
        timeout: timeoutMs,
      },
      (res) => {
        status = res.statusCode ?? 0;
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => finish({ closedEarly: false }));
        res.on('error', fail);
      },
    );
    req.on('timeout', () => req!.destroy(new RequestTimeout(timeoutMs)));
    req.on('error', fail);
    req.end();
  });
  return {
    closedEarly: () => closedEarly,
    done,
    abort() {
      aborted = true;
      req?.destroy(new Error('aborted by the test'));
    },
  };
}

export interface HoldIdleOptions {
  url: string;
  host?: string;
  /** Path of both requests (default `/`). */
  path?: string;
  /** How long the connection sits idle between the two requests (default 5 s). */
  idleMs?: number;
  timeoutMs?: number;
  /** Called once the first request has answered and the socket is idle. */
  onIdle?: () => void;
}

export interface IdleConnectionResult {
  first: { status: number; body: string };
  /** The second request's answer; null when it failed. */
  second: { status: number; body: string } | null;
  /**
   * The second request on the same socket did not succeed: it was reset, timed out,
   * answered non-2xx, or the server had already closed the socket while it sat idle
   * (a request written into that socket would have been reset).
   */
  failed: boolean;
  /** The server closed the kept-alive connection while it sat idle. */
  closedWhileIdle: boolean;
  kind?: FailureKind;
  error?: string;
}

/**
 * One kept-alive socket: a request, `idleMs` of idleness, then a second request on the
 * SAME socket (no pool, no new connection, no retry). Reports whether the second one
 * failed — the idle-connection case a proxy reload breaks. Throws if the first fails.
 */
export async function holdIdleConnection(o: HoldIdleOptions): Promise<IdleConnectionResult> {
  const u = new URL(o.url);
  const socket = net.connect({ host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(u.port || 80) });
  socket.setNoDelay(true);
  const path = o.path ?? '/';
  const timeoutMs = o.timeoutMs ?? 10_000;
  const spec = (): RequestSpec => ({ url: o.url + path, host: o.host, timeoutMs, createConnection: () => socket, headers: { connection: 'keep-alive' } });
  try {
    const first = await request(spec());
    if (first.status < 200 || first.status >= 300) throw new Error(`holdIdleConnection: first request answered HTTP ${first.status}`);
    // Idle: watch for the server closing the socket (FIN or reset) before we use it again.
    let closedWhileIdle = false;
    const onEnd = () => (closedWhileIdle = true);
    const onError = () => (closedWhileIdle = true);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
    if (socket.destroyed || socket.readableEnded) closedWhileIdle = true;
    o.onIdle?.();
    await new Promise((r) => setTimeout(r, o.idleMs ?? 5_000));
    socket.off('end', onEnd);
    socket.off('close', onEnd);
    socket.off('error', onError);
    const base = { first: { status: first.status, body: first.body } };
    if (closedWhileIdle || socket.destroyed || !socket.writable) {
      return { ...base, second: null, failed: true, closedWhileIdle: true, kind: 'reset', error: 'the server closed the kept-alive connection while it sat idle' };
    }
    try {
      const second = await request(spec());
      const ok = second.status >= 200 && second.status < 300;
      return {
        ...base,
        second: { status: second.status, body: second.body },
        failed: !ok,
        closedWhileIdle: false,
        ...(ok ? {} : { kind: 'http' as const, error: `HTTP ${second.status}: ${second.body.trim().slice(0, 80)}` }),
      };
    } catch (err) {
      return { ...base, second: null, failed: true, closedWhileIdle: false, kind: classifyError(err), error: describeError(err) };
    }
  } finally {
    socket.destroy();
  }
}
