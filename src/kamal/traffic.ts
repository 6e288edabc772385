/**
 * How traffic reaches a role and how its health is judged: Kamal 2's `proxy` (kamal-proxy,
 * root and per role) and Kamal 1's `traefik` + `healthcheck` -> berth's proxy route, the app
 * port and the health check. Kamal's defaults are written out where berth's differ, so the
 * app is probed and routed as Kamal did it (kamal-proxy probes /up every second for 30 s).
 */
import { parseDuration } from '../config/duration.js';
import { isMap, keyPath } from '../config/reader.js';
import { accepted } from './container.js';
import { list, section, type Doc, type MapContext } from './context.js';
import type { KamalRole } from './servers.js';

/** Kamal 2's defaults (lib/kamal/configuration/docs/proxy.yml and configuration.yml). */
const KAMAL2 = { appPort: 80, path: '/up', intervalS: 1, timeoutS: 5, deployTimeoutS: 30 };
/** Kamal 1's (lib/kamal/configuration/docs/healthcheck.yml at v1.9.0). */
const KAMAL1 = { port: 3000, path: '/up', interval: '1s', maxAttempts: 7 };
/** Kamal 2 waits this long for a role without proxy or healthcheck (`readiness_delay`). */
const READINESS_DELAY_S = 7;
const HTTP_PORT = 80;

export interface Traffic {
  /** The port the role's app listens on (berth's app `port`). */
  port: number | undefined;
  /** berth's `proxy` of the role, or undefined for a role Kamal gives no proxy. */
  proxy: Doc | undefined;
  healthcheck: Doc;
}

/** Kamal 1 configs have `traefik` or `healthcheck`; anything else is read as Kamal 2. */
export function isKamal1(doc: Doc): boolean {
  return doc.traefik !== undefined || doc.healthcheck !== undefined || Object.values(section(doc.servers)).some((r) => section(r).traefik !== undefined || section(r).healthcheck !== undefined);
}

/** Whether Kamal puts the role behind its proxy: the primary role unless it opts out, others when they opt in. */
export function isProxied(doc: Doc, role: KamalRole): boolean {
  const primary = role.name === (typeof doc.primary_role === 'string' ? doc.primary_role : 'web');
  const own = isKamal1(doc) ? role.settings.traefik : role.settings.proxy;
  return own === undefined ? primary : own !== false;
}

export function readTraffic(ctx: MapContext, doc: Doc, role: KamalRole): Traffic {
  const proxied = isProxied(doc, role);
  if (isKamal1(doc)) return kamal1(ctx, doc, role, proxied);
  return kamal2(ctx, doc, role, proxied);
}

/** A role Kamal does not route: berth counts it healthy once it has run for the readiness delay. */
export function readiness(ctx: MapContext, doc: Doc): Doc {
  return { min_healthy: ctx.seconds(doc.readiness_delay, 'readiness_delay') ?? `${READINESS_DELAY_S}s` };
}

function kamal2(ctx: MapContext, doc: Doc, role: KamalRole, proxied: boolean): Traffic {
  const own = section(role.settings.proxy);
  const p = { ...section(doc.proxy), ...own };
  const at = (key: string) => (key in own ? keyPath(keyPath(role.path, 'proxy'), key) : keyPath('proxy', key));
  const port = p.app_port === undefined ? KAMAL2.appPort : ctx.integer(p.app_port, at('app_port'));
  if (!proxied) return { port: undefined, proxy: undefined, healthcheck: readiness(ctx, doc) };
  ctx.rest(p, at, PROXY_KEYS, (k) => PROXY_WHY[k] ?? 'not a kamal-proxy setting berth knows');

  const route: Doc = {};
  const hosts = [...list(p.host), ...list(p.hosts)];
  const host = ctx.plain(hosts[0], at(p.host !== undefined ? 'host' : 'hosts'));
  if (hosts.length > 1) ctx.note(at('hosts'), `berth routes one host name per app: only ${String(host)} is routed (an app per further name)`);
  if (host !== undefined) route.host = host;
  else route.port = HTTP_PORT;
  const prefixes = [...list(p.path_prefix).flatMap((x) => String(x).split(',')), ...list(p.path_prefixes).map(String)].map((x) => x.trim());
  if (prefixes[0] !== undefined) {
    route.path_prefix = prefixes[0];
    if (prefixes.length > 1) ctx.note(at('path_prefix'), `berth routes one path prefix per app: only ${prefixes[0]} is routed`);
    if (p.strip_path_prefix !== false) ctx.note(at('path_prefix'), `kamal-proxy strips the prefix before forwarding; berth forwards the path as it came (${prefixes[0]}/…): the app must serve under it`);
  }
  if (p.ssl === true) {
    route.tls = true;
    ctx.note(at('ssl'), "berth orders one certificate for the whole fleet over ACME (HTTP-01 answered on port 80 of every host; Let's Encrypt unless acme.directory says otherwise)");
  }
  else if (isMap(p.ssl)) {
    route.tls = { certificate: ctx.plain(p.ssl.certificate_pem, keyPath(at('ssl'), 'certificate_pem')), private_key: ctx.plain(p.ssl.private_key_pem, keyPath(at('ssl'), 'private_key_pem')) };
    ctx.note(at('ssl'), "the PEM values are read from the app's secrets file under these names");
  }
  if (p.ssl_redirect === false) ctx.note(at('ssl_redirect'), 'berth always redirects plain HTTP to HTTPS for a TLS route');
  const drain = ctx.seconds(doc.drain_timeout, 'drain_timeout');
  if (drain !== undefined) route.drain_timeout = drain;

  const hc = section(p.healthcheck);
  const hcAt = (key: string) => keyPath(at('healthcheck'), key);
  ctx.rest(hc, hcAt, ['path', 'interval', 'timeout'], () => 'not a kamal-proxy healthcheck setting berth knows');
  const interval = ctx.seconds(hc.interval ?? KAMAL2.intervalS, hcAt('interval'));
  const deployMs = parseDuration(ctx.seconds(doc.deploy_timeout ?? KAMAL2.deployTimeoutS, 'deploy_timeout') ?? '') ?? KAMAL2.deployTimeoutS * 1000;
  const healthcheck: Doc = {
    path: ctx.plain(hc.path, hcAt('path')) ?? KAMAL2.path,
    interval,
    timeout: ctx.seconds(hc.timeout ?? KAMAL2.timeoutS, hcAt('timeout')),
    // kamal-proxy probes every interval until deploy_timeout: as many attempts.
    max_attempts: Math.max(1, Math.ceil(deployMs / (parseDuration(interval ?? '') || KAMAL2.intervalS * 1000))),
  };
  return { port, proxy: checked(ctx, 'proxy', route, role.path), healthcheck: checked(ctx, 'healthcheck', healthcheck, role.path) ?? {} };
}

const PROXY_KEYS = ['host', 'hosts', 'app_port', 'ssl', 'ssl_redirect', 'path_prefix', 'path_prefixes', 'strip_path_prefix', 'healthcheck'];
const PROXY_WHY: Record<string, string> = {
  forward_headers: "berth's proxy passes the client's headers through as they came (and sets X-Forwarded-Proto on HTTPS)",
  response_timeout: "berth's proxy has its own timeouts (src/proxy/haproxy-config.ts)",
  buffering: "berth's proxy does not buffer request or response bodies",
  logging: "berth's proxy logs to its container's output (docker logs berth-proxy)",
  run: "berth runs its own proxy (HAProxy) on every host: proxy.image at the top of berth.yml",
};

function kamal1(ctx: MapContext, doc: Doc, role: KamalRole, proxied: boolean): Traffic {
  const own = section(role.settings.healthcheck);
  const hc = { ...section(doc.healthcheck), ...own };
  const at = (key: string) => (key in own ? keyPath(keyPath(role.path, 'healthcheck'), key) : keyPath('healthcheck', key));
  ctx.rest(hc, at, ['path', 'port', 'interval', 'max_attempts', 'cmd'], (k) => HEALTHCHECK_WHY[k] ?? 'not a Kamal healthcheck setting berth knows');
  if (!proxied) {
    const cmd = ctx.text(hc.cmd, at('cmd'));
    return { port: undefined, proxy: undefined, healthcheck: cmd !== undefined ? { cmd } : readiness(ctx, doc) };
  }
  if (hc.cmd !== undefined) ctx.note(at('cmd'), 'berth probes a routed app over HTTP from its host (healthcheck.path and port), not with a command in the container');
  // Kamal 1 routed to the port it health-checked: the app's port.
  const port = hc.port === undefined ? KAMAL1.port : ctx.integer(hc.port, at('port'));
  const healthcheck: Doc = {
    path: ctx.plain(hc.path, at('path')) ?? KAMAL1.path,
    ...(hc.port !== undefined && port !== undefined ? { port } : {}),
    interval: ctx.seconds(hc.interval ?? KAMAL1.interval, at('interval')),
    max_attempts: hc.max_attempts === undefined ? KAMAL1.maxAttempts : ctx.integer(hc.max_attempts, at('max_attempts')),
  };
  const t = section(doc.traefik);
  const route: Doc = { port: t.host_port === undefined ? HTTP_PORT : ctx.integer(t.host_port, 'traefik.host_port') };
  const host = traefikHost(doc);
  if (host !== undefined) {
    route.host = host;
    ctx.note('labels', `proxy.host ${host} is the host of the Traefik rule Host(\`${host}\`)`);
  }
  return { port, proxy: checked(ctx, 'proxy', route, role.path), healthcheck: checked(ctx, 'healthcheck', healthcheck, role.path) ?? {} };
}

const HEALTHCHECK_WHY: Record<string, string> = {
  cord: 'berth takes a container out of its proxy before stopping it: no cord file',
  log_lines: 'berth keeps the last 50 log lines of a container that failed',
};

/** The host of a `traefik.http.routers.*.rule: Host(\`app.example.com\`)` label, Kamal 1's way to route by name. */
function traefikHost(doc: Doc): string | undefined {
  for (const [key, value] of Object.entries(section(doc.labels))) {
    const m = key.endsWith('.rule') && typeof value === 'string' ? /Host\(`([^`]+)`\)/.exec(value) : null;
    if (m) return m[1];
  }
  return undefined;
}

/** `traefik` itself: Traefik's own settings, none of which berth's proxy takes. */
export function noteTraefik(ctx: MapContext, doc: Doc): void {
  const t = section(doc.traefik);
  for (const key of Object.keys(t)) {
    if (key === 'host_port') continue;
    const published = key === 'options' ? list(section(t.options).publish).map(String) : [];
    const tls = published.some((p) => p.endsWith(':443') || p === '443');
    ctx.note(keyPath('traefik', key), tls
      ? 'Traefik published 443 for HTTPS: berth serves HTTPS on 443 for a route with proxy.host and proxy.tls (true: a certificate from ACME; or given PEM secrets): set them'
      : `Traefik's own ${key}: berth's proxy is HAProxy (proxy.image), configured by berth`);
  }
}

/** A route or health check berth accepts, else none (noted with berth's reasons). */
function checked(ctx: MapContext, key: string, value: Doc, path: string): Doc | undefined {
  return accepted(ctx, key, value, keyPath(path, key)) ? value : undefined;
}
