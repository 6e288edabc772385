/**
 * Validation entry points. A document (parsed YAML or an API body) is walked
 * once, every problem is collected with its key path, and either a normalised
 * value comes back or a ConfigError listing all of them is thrown.
 * Unknown keys are errors everywhere: a misspelt key silently falling back to
 * a default is the worst kind of config bug.
 */
import { homedir } from 'node:os';
import { SEED_DEFAULTS, type AcmeConfig, type ApiConfig, type AppSpec, type BerthConfig, type HostSpec, type RegistrySpec } from '../domain/app-spec.js';
import { ConfigError } from '../domain/errors.js';
import { DOCKER_HUB, isEnvName, isRegistryHost } from '../domain/naming.js';
import { REGISTRIES_FILE } from '../defaults.js';
import { readApp } from './app.js';
import { readHost, type PathContext } from './host.js';
import { check, type Fields, Issues, isMap, keyPath, readBoolean, readEntries, readInteger, readMap, type Read } from './reader.js';
import { routeConflicts } from './routes.js';
import { routedApp } from '../domain/processes.js';
import { readDuration, readImageReference, readListen, readLocalPath, readToken } from './values.js';

export { validateAppDocument } from './app.js';

export interface ValidateOptions {
  /** What `~` in local paths expands to. Default: the current user's home directory. */
  homeDir?: string;
  /** Relative local paths (ssh_key, known_hosts) are resolved from here. Default: process.cwd(); loadConfig passes the config file's directory. */
  baseDir?: string;
}

const TOP_KEYS = ['allow_host_access', 'hosts', 'proxy', 'acme', 'api', 'controller', 'registries', 'apps'] as const;
const REGISTRY_KEYS = ['username', 'password'] as const;

/** The whole config document -> BerthConfig. An empty document (null) is an empty config with defaults. */
export function validateConfigDocument(doc: unknown, opts: ValidateOptions = {}): BerthConfig {
  const ctx: PathContext = { homeDir: opts.homeDir ?? homedir(), baseDir: opts.baseDir ?? process.cwd() };
  const issues = new Issues();
  const top = readMap(doc, '', issues, TOP_KEYS);
  const allowHostAccess = top.get('allow_host_access', readBoolean, false);

  const hosts: Array<[string, HostSpec]> = readEntries(top.raw('hosts'), 'hosts', issues).map(([name, hostDoc]) => [
    name,
    readHost(name, hostDoc, keyPath('hosts', name), issues, ctx),
  ]);
  // Every declared host name counts as known, even one with its own errors, so a
  // single broken host is not reported again under every app that uses it.
  const hostsDoc = top.raw('hosts');
  const knownHosts = isMap(hostsDoc) ? Object.keys(hostsDoc) : [];

  const apps: AppSpec[] = [];
  // Apps read without an issue: only their routes are compared (a bad host read as
  // null would look like a route without a host and report a conflict that is not there).
  const routable: AppSpec[] = [];
  for (const [name, appDoc] of readEntries(top.raw('apps'), 'apps', issues)) {
    const path = keyPath('apps', name);
    const before = issues.list.length;
    const app = readApp(name, appDoc, knownHosts, path, issues, { allowHostAccess });
    apps.push(app);
    if (issues.list.length !== before) continue;
    // Reported on the later app, naming the earlier one (routes.ts has the rules).
    for (const conflict of routeConflicts(routedApp(app), routable.map(routedApp))) issues.add(keyPath(path, 'proxy'), conflict);
    routable.push(app);
  }

  const config: BerthConfig = {
    allowHostAccess,
    hosts: Object.fromEntries(hosts),
    proxy: readProxy(top, issues),
    acme: readAcme(top, issues, ctx),
    apps: Object.fromEntries(apps.map((a) => [a.name, a])),
    api: readApi(top, issues),
    controller: readController(top, issues),
    registries: readRegistries(top, issues),
  };
  if (!issues.empty) throw new ConfigError(issues.list);
  return config;
}

function readProxy(top: Fields, issues: Issues): BerthConfig['proxy'] {
  const f = readMap(top.raw('proxy'), 'proxy', issues, ['image']);
  return { image: f.get('image', readImageReference, SEED_DEFAULTS.proxyImage) };
}

const DAY = 86_400_000;

const readHttpsUrl = check('an https:// URL', (v) => {
  if (typeof v !== 'string') return undefined;
  try {
    return new URL(v).protocol === 'https:' ? v : undefined;
  } catch {
    return undefined;
  }
});

const readEmail = check('an email address', (v) => (typeof v === 'string' && /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v) ? v : undefined));

/** Where TLS routes' certificates are ordered (`proxy.tls: true`); the defaults are Let's Encrypt's production CA and a 30-day window. */
function readAcme(top: Fields, issues: Issues, ctx: PathContext): AcmeConfig {
  const f = readMap(top.raw('acme'), 'acme', issues, ['directory', 'email', 'renew_before', 'ca_certificate']);
  const d = SEED_DEFAULTS.acme;
  return {
    directory: f.get('directory', readHttpsUrl, d.directory),
    email: f.get<string | null>('email', readEmail, null),
    // Up to ten years: a window longer than a certificate's life renews it now (src/tls/plan.ts says how often).
    renewBeforeMs: f.get('renew_before', readDuration(DAY, 3650 * DAY), d.renewBeforeMs),
    caCertificate: f.get<string | null>('ca_certificate', readLocalPath(ctx.homeDir, ctx.baseDir), null),
  };
}

/** Each open SSE stream holds a socket and up to a page of events: thousands is a misconfiguration, not a need. */
const MAX_EVENT_STREAMS = 10_000;

function readApi(top: Fields, issues: Issues): ApiConfig {
  const f = readMap(top.raw('api'), 'api', issues, ['listen', 'token', 'open_reads', 'max_event_streams']);
  // Left out when not set: the API applies its default (DEFAULT_MAX_EVENT_STREAMS, src/api/routes/events.ts).
  const maxEventStreams = f.get<number | undefined>('max_event_streams', readInteger(1, MAX_EVENT_STREAMS), undefined);
  return {
    listen: f.get('listen', readListen, SEED_DEFAULTS.listen),
    token: f.get<string | null>('token', readToken, null),
    openReads: f.get('open_reads', readBoolean, false),
    ...(maxEventStreams === undefined ? {} : { maxEventStreams }),
  };
}

/** A resync pings every host and queues every app: more often than once a second is load without gain. */
const MIN_RESYNC_INTERVAL_MS = 1_000;
/** The resync is what notices drift nobody reported (a container stopped by hand): at most an hour unseen. */
const MAX_RESYNC_INTERVAL_MS = 3_600_000;

/**
 * The leader's lease (PostgreSQL, src/cluster/lease.ts): renewed every third of it. Under a
 * second the renewals compete with the work; over a minute a dead leader stalls every deploy as long.
 */
const MIN_LEASE_MS = 1_000;
const MAX_LEASE_MS = 60_000;

function readController(top: Fields, issues: Issues): BerthConfig['controller'] {
  const f = readMap(top.raw('controller'), 'controller', issues, ['resync_interval', 'lease']);
  return {
    resyncIntervalMs: f.get('resync_interval', readDuration(MIN_RESYNC_INTERVAL_MS, MAX_RESYNC_INTERVAL_MS), SEED_DEFAULTS.resyncIntervalMs),
    leaseMs: f.get('lease', readDuration(MIN_LEASE_MS, MAX_LEASE_MS), SEED_DEFAULTS.leaseMs),
  };
}

/** Where a bad registries key most likely went wrong, said after what a key must be. */
function registryKeyHint(key: string): string {
  if (key.includes('://')) return `: leave out the scheme (${key.slice(key.indexOf('://') + 3)})`;
  if (key.includes('/')) return `: credentials are per registry, not per repository (${key.slice(0, key.indexOf('/'))})`;
  if (key !== key.toLowerCase()) return `: write it in lowercase (${key.toLowerCase()})`;
  return '';
}

/**
 * `registries: {ghcr.io: {username, password}}`: credentials sent with every pull from that
 * registry (src/hosts/docker/driver.ts). The password is the name of a line of the registries
 * secrets file, read when a pull needs it (src/secrets/registry-credentials.ts).
 */
function readRegistries(top: Fields, issues: Issues): Record<string, RegistrySpec> {
  const out: Array<[string, RegistrySpec]> = [];
  for (const [host, doc] of readEntries(top.raw('registries'), 'registries', issues)) {
    const path = keyPath('registries', host);
    if (host === 'index.docker.io') {
      issues.add(path, `Docker Hub is "${DOCKER_HUB}" here, as Docker names it`);
    } else if (!isRegistryHost(host)) {
      issues.add(path, `expected a registry host as image names start with it: lowercase, with a dot or a port, or localhost (ghcr.io, 10.0.0.5:5000)${registryKeyHint(host)}`);
    }
    const f = readMap(doc, path, issues, REGISTRY_KEYS);
    out.push([host, { username: f.need('username', readRegistryUser, ''), password: f.need('password', readPasswordName, '') }]);
  }
  // fromEntries defines own properties: a key like `__proto__` (refused above) stays plain data.
  return Object.fromEntries(out);
}

/** Basic auth sends `user:password`: a ":" in the user would move the split. */
const readRegistryUser = check('a user name without blanks or ":"', (v) => (typeof v === 'string' && /^[^\s:]+$/.test(v) ? v : undefined));

/**
 * The NAME of the password's variable. A value that is not a name is not quoted in the
 * message: it is most likely the password itself, written into the config by mistake.
 */
const readPasswordName: Read<string> = (value, path, issues) => {
  if (typeof value === 'string' && isEnvName(value)) return value;
  issues.add(path, `expected the name of the line of ${REGISTRIES_FILE} (next to berth's database) that holds the password, like GHCR_TOKEN: letters, digits and "_", not starting with a digit (value not shown)`);
  return undefined;
};
