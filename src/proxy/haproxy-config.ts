/**
 * HAProxy configuration for berth's per-host proxy, and the parsing of what its runtime
 * API answers (pure). The config changes only when the set of routes on the host
 * changes; switches, drains and maintenance are runtime commands (haproxy-proxy.ts).
 */
import { DEFAULT_ROUTE_PORT, HTTPS_PORT, type ProxyRouteSpec } from '../domain/app-spec.js';

/** The proxy's directory inside its container (bind mount of `state_dir/proxy`). */
export const STATE_DIR_IN_CONTAINER = '/state';
export const CONFIG_PATH = `${STATE_DIR_IN_CONTAINER}/haproxy.cfg`;
export const MAINTENANCE_MAP = `${STATE_DIR_IN_CONTAINER}/maintenance.map`;
export const ROUTES_MAP = `${STATE_DIR_IN_CONTAINER}/routes.map`;
/** ACME HTTP-01 answers: token -> key authorization, changed at runtime while an order is validated. */
export const ACME_MAP = `${STATE_DIR_IN_CONTAINER}/acme.map`;
/** The HTTPS listener's certificates: one PEM (chain + key) per host name, listed in CERT_LIST. */
export const CERT_DIR = `${STATE_DIR_IN_CONTAINER}/certs`;
export const CERT_LIST = `${STATE_DIR_IN_CONTAINER}/certs.list`;
const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/';
/** Server slots per app backend: the serving one, the new one, and one still draining from a quick second switch. */
export const SLOTS = ['s1', 's2', 's3'] as const;
/** The placeholder address of an empty slot (in maintenance, never used). */
const EMPTY_SLOT_ADDR = '127.0.0.1:1';

/** Bounds: idle keep-alive and long-lived (websocket, streaming) connections outlive a switch. */
const TIMEOUTS = {
  connect: '5s',
  'http-request': '30s',
  client: '5m',
  server: '5m',
  'http-keep-alive': '5m',
  tunnel: '1h',
  'client-fin': '10s',
  'server-fin': '10s',
  queue: '30s',
} as const;

export interface HostRoute {
  app: string;
  route: ProxyRouteSpec;
}

export type SlotState = 'ready' | 'drain' | 'maint';

export interface Slot {
  backend: string;
  server: string;
  /** `ip:port`, or null for an empty slot. */
  addr: string | null;
  state: SlotState;
  /** Requests in flight on the server (`show stat` scur). */
  inFlight: number;
}

export const backendName = (app: string): string => `app_${app}`;
export const portOf = (route: ProxyRouteSpec): number => route.port ?? DEFAULT_ROUTE_PORT;
const pathOf = (route: ProxyRouteSpec): string | null => (route.pathPrefix && route.pathPrefix !== '/' ? route.pathPrefix : null);

/** What routes.map records per app, so a pass can tell whether the running config has the app's route as specified. */
export function routeKey(route: ProxyRouteSpec): string {
  return `${portOf(route)}|${route.host ?? '*'}|${pathOf(route) ?? '/'}${route.tls ? '|tls' : ''}`;
}

/** The file of a host name's certificate in the proxy (`*.example.com` -> `_.example.com.pem`; `_` is in no DNS name). */
export const certFile = (hostName: string): string => `${CERT_DIR}/${hostName.replace('*', '_')}.pem`;

/**
 * The condition matching a route's requests (null: every request on its port). Paths
 * match by whole segment (`/api`, `/api/...`, never `/apix`); `*.example.com` matches
 * its subdomains at any depth, never `example.com` itself.
 */
function routeCondition(route: ProxyRouteSpec): string | null {
  const host = route.host === null ? null : route.host.startsWith('*.') ? `{ var(txn.host) -m end ${route.host.slice(1)} }` : `{ var(txn.host) -m str ${route.host} }`;
  const path = pathOf(route);
  if (path === null) return host;
  const parts = [`{ path -m str ${path} }`, `{ path -m beg ${path}/ }`];
  return parts.map((p) => (host ? `${host} ${p}` : p)).join(' || ');
}

/** Most specific first: exact hosts, then wildcards (longest suffix first), then hostless; longer paths first within each. */
function specificity(r: HostRoute): [number, number, number] {
  const host = r.route.host;
  const rank = host === null ? 2 : host.startsWith('*.') ? 1 : 0;
  return [rank, -(host?.length ?? 0), -(pathOf(r.route)?.length ?? 0)];
}

function bySpecificity(a: HostRoute, b: HostRoute): number {
  const x = specificity(a);
  const y = specificity(b);
  return x[0] - y[0] || x[1] - y[1] || x[2] - y[2] || a.app.localeCompare(b.app);
}

const HOST_VAR = '    http-request set-var(txn.host) req.hdr(host),field(1,:),lower';

/** `use_backend` lines, most specific first, and the backend of a route without a condition. */
function routing(routes: HostRoute[]): { lines: string[]; fallback: string } {
  const lines: string[] = [];
  let fallback = 'be_no_route';
  for (const r of [...routes].sort(bySpecificity)) {
    const cond = routeCondition(r.route);
    if (cond === null) fallback = backendName(r.app);
    else lines.push(`    use_backend ${backendName(r.app)} if ${cond}`);
  }
  return { lines, fallback };
}

/**
 * A plain HTTP listener. On port 80 it answers ACME HTTP-01 challenges for every host
 * name (the token is the key; the map is empty outside an order), and a TLS route's
 * requests are redirected to HTTPS, except those challenges.
 */
function frontend(port: number, routes: HostRoute[]): string[] {
  const lines = [`frontend fe_${port}`, `    bind :${port}`, HOST_VAR];
  if (port === DEFAULT_ROUTE_PORT) {
    const token = `path,field(4,/),map(${ACME_MAP})`;
    lines.push(`    http-request return status 200 content-type text/plain lf-string "%[${token}]" if { path_beg ${ACME_CHALLENGE_PREFIX} } { ${token} -m found }`);
  }
  for (const r of [...routes].sort(bySpecificity)) {
    if (r.route.tls) lines.push(`    http-request redirect scheme https code 301 if ${routeCondition(r.route)}`);
  }
  const { lines: use, fallback } = routing(routes);
  return [...lines, ...use, `    default_backend ${fallback}`, ''];
}

/**
 * The HTTPS listener of the TLS routes: certificates from CERT_LIST (possibly empty at
 * start; berth adds them at runtime, src/proxy/haproxy-proxy.ts), picked by SNI.
 */
function httpsFrontend(routes: HostRoute[]): string[] {
  const { lines: use, fallback } = routing(routes);
  return [
    'frontend fe_https',
    `    bind :${HTTPS_PORT} ssl crt-list ${CERT_LIST} alpn http/1.1`,
    HOST_VAR,
    '    http-request set-header X-Forwarded-Proto https',
    ...use,
    `    default_backend ${fallback}`,
    '',
  ];
}

/**
 * A draining server is written disabled: the new worker sends it nothing, and the
 * requests it had stay with the old worker, which the drain waits for (haproxy-proxy.ts).
 */
function serverLine(slot: Pick<Slot, 'server' | 'addr' | 'state'>): string {
  if (!slot.addr || slot.state !== 'ready') return `    server ${slot.server} ${slot.addr ?? EMPTY_SLOT_ADDR} disabled`;
  return `    server ${slot.server} ${slot.addr}`;
}

function backend(app: string, slots: Slot[]): string[] {
  const name = backendName(app);
  const byServer = new Map(slots.filter((s) => s.backend === name).map((s) => [s.server, s]));
  const maint = `str(${name}),map(${MAINTENANCE_MAP})`;
  return [
    `backend ${name}`,
    // Served as literal text: a map value is sample data, never expanded as a log format.
    `    http-request return status 503 content-type "text/plain; charset=utf-8" lf-string "%[${maint}]" hdr Retry-After 60 if { ${maint} -m found }`,
    ...SLOTS.map((server) => serverLine(byServer.get(server) ?? { server, addr: null, state: 'maint' })),
    '',
  ];
}

export interface ProxyFiles {
  config: string;
  maintenanceMap: string;
  routesMap: string;
  /** CERT_LIST: one line per certificate file the HTTPS listener loads. */
  certList: string;
}

/**
 * The whole proxy configuration of one host: a frontend per port, a backend per app with
 * its slots as they run now (so a reload keeps every switch), the maintenance messages
 * as they are now, and the routes map that records which route each app has.
 */
export function renderProxy(routes: HostRoute[], slots: Slot[], maintenance: Map<string, string>, adminSocket: string, certificates: string[] = []): ProxyFiles {
  const ports = [...new Set(routes.map((r) => portOf(r.route)))].sort((a, b) => a - b);
  const tlsRoutes = routes.filter((r) => r.route.tls);
  const config = [
    '# Generated by berth; rewritten whenever the set of routes on this host changes.',
    'global',
    '    master-worker',
    // expose-fd listeners: a reloaded worker takes over the listening sockets (no refused connection).
    `    stats socket ${adminSocket} mode 600 level admin expose-fd listeners`,
    '    stats timeout 2m',
    '    log stderr format short local0 notice',
    '',
    'defaults',
    '    mode http',
    '    log global',
    '    option http-keep-alive',
    // Keep the client's connection, never reuse a server connection: an app that closes its
    // side after a response (or whose keep-alive timeout is shorter than the proxy's)
    // races a reused connection, and the client's request dies with it (43 resets in
    // 2,881 requests to a busybox app here; 0 with this option; docs/design.md).
    '    option http-server-close',
    // On a reload the old worker answers each idle keep-alive connection's next request
    // with `Connection: close` instead of closing it under the client (docs/design.md).
    '    option idle-close-on-response',
    // Never re-send or re-route a request: HAProxy's default (`retries 3` on a failed
    // connect, 1 s apart) would hide a switch to a container that is not listening yet
    // as a second of latency instead of an error, and no test could see it.
    '    retries 0',
    ...Object.entries(TIMEOUTS).map(([k, v]) => `    timeout ${k} ${v}`),
    '',
    ...ports.flatMap((port) => frontend(port, routes.filter((r) => portOf(r.route) === port))),
    ...(tlsRoutes.length > 0 ? httpsFrontend(tlsRoutes) : []),
    'backend be_no_route',
    // HAProxy loads only the maps the config uses, and the runtime API reads only loaded ones.
    `    http-request set-var(txn.routes) str(-),map(${ROUTES_MAP})`,
    `    http-request set-var(txn.maintenance) str(-),map(${MAINTENANCE_MAP})`,
    `    http-request set-var(txn.acme) str(-),map(${ACME_MAP})`,
    '    http-request return status 404 content-type "text/plain; charset=utf-8" string "no app is routed here"',
    '',
    ...[...routes].sort((a, b) => a.app.localeCompare(b.app)).flatMap((r) => backend(r.app, slots)),
  ].join('\n');
  return {
    config,
    maintenanceMap: [...maintenance].map(([app, message]) => `${backendName(app)} ${oneLine(message)}\n`).join(''),
    routesMap: routes.map((r) => `${r.app} ${routeKey(r.route)}\n`).join(''),
    certList: [...new Set(certificates)].sort().map((name) => `${certFile(name)}\n`).join(''),
  };
}

/** A map value or runtime argument is one line. */
export const oneLine = (s: string): string => s.replace(/[\r\n]+/g, ' ').trim();

/** `show stat` CSV -> the servers' slots (the BACKEND and FRONTEND rows are dropped). */
export function parseShowStat(csv: string): Slot[] {
  const lines = csv.split('\n').filter((l) => l.trim() !== '');
  const header = lines.shift()?.replace(/^#\s*/, '').split(',') ?? [];
  const col = (name: string) => header.indexOf(name);
  const [px, sv, scur, status, addr] = ['pxname', 'svname', 'scur', 'status', 'addr'].map(col) as [number, number, number, number, number];
  if ([px, sv, scur, status, addr].some((i) => i < 0)) return [];
  return lines.flatMap((line) => {
    const f = line.split(',');
    const server = f[sv] ?? '';
    if (server === 'BACKEND' || server === 'FRONTEND') return [];
    const st = (f[status] ?? '').toUpperCase();
    const state: SlotState = st.startsWith('MAINT') ? 'maint' : st.startsWith('DRAIN') ? 'drain' : 'ready';
    const a = f[addr] ?? '';
    return [{ backend: f[px] ?? '', server, addr: a === '' || a === EMPTY_SLOT_ADDR ? null : a, state, inFlight: Number(f[scur] ?? 0) || 0 }];
  });
}

/** `show map FILE` -> key -> value (each line: `0xID key value...`). */
export function parseShowMap(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^0x[0-9a-f]+ (\S+) (.*)$/i.exec(line.trim());
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

/**
 * The runtime commands that make `addr` the app's only serving server: reuse its slot
 * (or take an empty one), make it ready, and put every other serving slot to drain.
 * Null when there is no free slot (three containers with requests in flight).
 */
export function switchCommands(app: string, slots: Slot[], addr: string): string[] | null {
  const name = backendName(app);
  const mine = slots.filter((s) => s.backend === name);
  const idle = (state: SlotState) => mine.find((s) => s.state === state && s.inFlight === 0);
  // Its own slot (a rollback to a container still draining), else an empty one, else one whose drain is over.
  const target = mine.find((s) => s.addr === addr) ?? idle('maint') ?? idle('drain') ?? null;
  if (!target) return null;
  const [ip, port] = splitAddr(addr);
  const cmds: string[] = [];
  if (target.addr !== addr) cmds.push(`set server ${name}/${target.server} addr ${ip} port ${port}`);
  if (target.state !== 'ready') cmds.push(`set server ${name}/${target.server} state ready`);
  for (const s of mine) if (s !== target && s.state === 'ready') cmds.push(`set server ${name}/${s.server} state drain`);
  return cmds;
}

function splitAddr(addr: string): [string, string] {
  const i = addr.lastIndexOf(':');
  return [addr.slice(0, i), addr.slice(i + 1)];
}

/** The number of lines in the `# old workers` section of the master's `show proc`. */
export function countOldWorkers(showProc: string): number {
  let inOld = false;
  let n = 0;
  for (const line of showProc.split('\n')) {
    if (line.startsWith('#')) inOld = line.trim() === '# old workers';
    else if (inOld && line.trim() !== '') n += 1;
  }
  return n;
}

/**
 * How many answers a non-interactive runtime exchange holds so far: each answer ends with
 * a blank line (an empty answer is the blank line alone). The commands berth sends never
 * answer with a blank line inside.
 */
export function countAnswers(text: string): number {
  let n = 0;
  let i = 0;
  while (i < text.length) {
    if (text[i] === '\n') {
      n += 1;
      i += 1;
      continue;
    }
    const end = text.indexOf('\n\n', i);
    if (end < 0) break;
    n += 1;
    i = end + 2;
  }
  return n;
}

/** `show ssl cert` (no argument) -> the certificate files loaded. */
export function parseCertList(text: string): string[] {
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
}

/** The `Serial:` line of `show ssl cert FILE`, normalised like certificateSerial (src/tls/certificate.ts), or null. */
export function parseCertSerial(text: string): string | null {
  const m = /^Serial:\s*([0-9A-Fa-f]+)\s*$/m.exec(text);
  return m ? normaliseSerial(m[1]!) : null;
}

/** Upper-case hex without leading zeros: how HAProxy and Node print the same serial differently. */
export const normaliseSerial = (hex: string): string => hex.toUpperCase().replace(/^0+(?=.)/, '');
