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
 * - A slow request must be answered by the version that served its target when it
 *   began: the versions the same target's fast requests got just before and just after
 *   it went out (and those in flight then) are the versions it may have begun on. An
 *   answer of any other version (a proxy that re-sent it to the new container, a request
 *   that began on the new one answered by the old) is a failure of kind `version`.
 *
 * Targets are only the test hosts' own addresses (or local servers in unit tests); a
 * target may carry a Host header, for apps that share a port and are routed by Host.
 *
 * Also here: `holdStream` (one long request that must not be cut) and
 * `holdIdleConnection` (one kept-alive socket that must survive sitting idle).
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

/** A URL string, or a URL with a Host header to send and a name to report it under. */
/** For an `https://` URL, `ca` is the PEM to trust and the Host header (without port) is the SNI name. */
export type LoadTarget = string | { url: string; host?: string; name?: string; ca?: string };

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

/** `version`: a slow request answered by another version than the one it began on. */
export type FailureKind = 'reset' | 'refused' | 'timeout' | 'http' | 'version' | 'other';

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

export interface SlowTotals {
  started: number;
  /** Answered 2xx (whatever the version). */
  completed: number;
  /** Reset, refused, timed out or non-2xx (not counting `wrongVersion`). */
  failed: number;
  posts: number;
  /** Versions of the bodies of the completed slow requests. */
  versions: Record<string, number>;
  /**
   * Completed slow requests whose target served one version around their start (the
   * same target's fast requests just before, in flight, just after), by that version.
   */
  began: Record<string, number>;
  /** Completed slow requests that began while their target switched (fast requests saw two versions then): either is accepted. */
  straddled: number;
  /** Completed slow requests with no fast answer of their target around their start to compare with (no fast clients). */
  unchecked: number;
  /** Completed slow requests answered by a version their target did not serve when they began; each is also in `failures`. */
  wrongVersion: number;
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
  slow: SlowTotals;
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
  ca: string | undefined;
}

function resolveTarget(t: LoadTarget): ResolvedTarget {
  if (typeof t === 'string') return { name: t, url: t, host: undefined, ca: undefined };
  return { name: t.name ?? (t.host ? `${t.host} via ${t.url}` : t.url), url: t.url, host: t.host, ca: t.ca };
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
  /** HTTPS: the CA to trust. */
  ca?: string | undefined;
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
    const secure = u.protocol === 'https:';
    const options: https.RequestOptions = {
      method: s.method ?? 'GET',
      hostname: u.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: u.port || (secure ? 443 : 80),
      path: `${u.pathname}${u.search}`,
      headers,
      timeout: s.timeoutMs,
    };
    if (s.agent !== undefined) options.agent = s.agent;
    if (s.createConnection) {
      const c = s.createConnection;
      options.createConnection = () => c();
    }
    // Node takes the TLS server name (SNI) from the Host header.
    if (secure && s.ca !== undefined) options.ca = s.ca;
    let settled = false;
    const req = (secure ? https : http).request(options, (res) => {
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

/** A successful fast answer: when it went out and completed (performance.now()), and its version. */
interface FastAnswer {
  sent: number;
  done: number;
  version: string;
}

/** A completed slow request, for the version check. */
interface SlowAnswer {
  target: string;
  /** performance.now() when it went out. */
  sent: number;
  /** ms since the load started, when it went out. */
  at: number;
  what: string;
  reusedSocket: boolean;
  version: string;
}

/** How far apart (ms, client clocks) two requests may be sent and still reach the proxy in the other order. */
const ORDER_SLACK_MS = 100;

/**
 * Which version each slow request began on, from its target's fast answers: the last one
 * that completed before it went out, the first one sent after it, and those in flight
 * when it went out. A proxy picks the server when a request arrives, so the slow request
 * was routed to one of those versions; one version there = the version it began on, two
 * = it began during a switch (either is right). Its body must be one of them.
 */
export function checkSlowVersions(
  timelines: Map<string, FastAnswer[]>,
  slows: SlowAnswer[],
): { began: Record<string, number>; straddled: number; unchecked: number; wrong: LoadFailure[] } {
  const began: Record<string, number> = {};
  const wrong: LoadFailure[] = [];
  let straddled = 0;
  let unchecked = 0;
  for (const s of slows) {
    const tl = timelines.get(s.target) ?? [];
    // First answer that completed after the slow request went out (binary search on `done`).
    let lo = 0;
    let hi = tl.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (tl[mid]!.done <= s.sent) lo = mid + 1;
      else hi = mid;
    }
    const around = new Set<string>();
    if (lo > 0) around.add(tl[lo - 1]!.version);
    // Later completions: in flight when it went out (sent before), or sent after it (keep the earliest).
    let firstAfter: FastAnswer | undefined;
    for (let i = lo; i < tl.length; i++) {
      const f = tl[i]!;
      if (f.sent <= s.sent) around.add(f.version);
      else if (!firstAfter || f.sent < firstAfter.sent) firstAfter = f;
      // A fast answer takes milliseconds (at most its timeout): one completing 15 s after
      // the earliest later-sent one was not sent before it.
      if (firstAfter && f.done > firstAfter.sent + 15_000) break;
    }
    if (firstAfter) around.add(firstAfter.version);
    // Requests sent this close together on different connections may reach the proxy in
    // either order (seen under load: a fast request sent 1 ms after a slow one got the old
    // version, the slow one the new): both versions count. A replay of a request after a
    // drain comes seconds later, far outside this.
    const near = new Set<string>();
    for (let i = Math.max(0, lo - 64); i < tl.length && tl[i]!.sent <= s.sent + ORDER_SLACK_MS; i++) {
      if (Math.abs(tl[i]!.sent - s.sent) <= ORDER_SLACK_MS) near.add(tl[i]!.version);
    }
    if (around.size === 0) {
      unchecked += 1;
      continue;
    }
    if (around.size > 1) straddled += 1;
    else {
      const v = [...around][0]!;
      began[v] = (began[v] ?? 0) + 1;
    }
    if (!around.has(s.version) && !near.has(s.version)) {
      const serving = [...around].sort().join(' or ');
      wrong.push({
        target: s.target,
        what: `${s.what}${s.reusedSocket ? ' on a reused socket' : ''}: began while ${serving} served, answered ${s.version.slice(0, 40)}`,
        at: s.at,
        kind: 'version',
        reusedSocket: s.reusedSocket,
        request: s.what,
      });
    }
  }
  return { began, straddled, unchecked, wrong };
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
    slow: { started: 0, completed: 0, failed: 0, posts: 0, versions: {}, began: {}, straddled: 0, unchecked: 0, wrongVersion: 0 },
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

  /** Per target name: the successful fast answers, in the order they completed (so `done` never decreases). */
  const timelines = new Map<string, FastAnswer[]>();
  const slowAnswers: SlowAnswer[] = [];

  const client = async (t: ResolvedTarget, agent: http.Agent, slow: boolean, index: number) => {
    const timeline = timelines.get(t.name) ?? timelines.set(t.name, []).get(t.name)!;
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
        const spec: RequestSpec = { url: t.url + path, host: t.host, method, timeoutMs: o.timeoutMs ?? (slow ? 10_000 : 5_000), agent, ca: t.ca };
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
            slowAnswers.push({ target: t.name, sent: t0, at: Date.now() - started, what, reusedSocket: res.reusedSocket, version });
          } else {
            timeline.push({ sent: t0, done: performance.now(), version });
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
    const agentOptions = { keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: 'fifo' as const };
    // An https.Agent keeps TLS sessions per target too: the same reuse as plain keep-alive.
    const agent = t.url.startsWith('https:') ? new https.Agent({ ...agentOptions, ...(t.ca ? { ca: t.ca } : {}) }) : new http.Agent(agentOptions);
    agents.push(agent);
    for (let i = 0; i < clientsPerTarget; i++) clients.push(client(t, agent, false, i));
    for (let i = 0; i < slowClientsPerTarget; i++) clients.push(client(t, agent, true, i));
  }
  // The version checks of the slow requests need the fast answers that came after them: made on each snapshot.
  const snapshot = (): LoadReport => {
    const out = structuredClone({ ...report, durationMs: Date.now() - started });
    const checks = checkSlowVersions(timelines, slowAnswers);
    Object.assign(out.slow, { began: checks.began, straddled: checks.straddled, unchecked: checks.unchecked, wrongVersion: checks.wrong.length });
    for (const f of checks.wrong) out.byTarget[f.target]!.failures += 1;
    out.failures = [...out.failures, ...checks.wrong].sort((a, b) => a.at - b.at);
    return out;
  };
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
