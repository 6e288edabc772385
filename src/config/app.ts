/**
 * The app document (snake_case, as in the YAML config and the body of
 * `PUT /v1/apps/:app`) -> AppSpec, with seed defaults filled in.
 */
import {
  DEFAULT_ROUTE_PORT,
  HTTPS_PORT,
  SEED_DEFAULTS,
  type AppSpec,
  type ContainerHealthcheckSpec,
  type ContainerSettings,
  type FailurePolicy,
  type HealthcheckSpec,
  type HooksSpec,
  type Parallelism,
  type ProcessSpec,
  type ProxyRouteSpec,
  type RolloutSpec,
  type RolloutStrategy,
  type TlsSpec,
} from '../domain/app-spec.js';
import { ConfigError } from '../domain/errors.js';
import { isAppName, isEnvName, isHostName } from '../domain/naming.js';
import { isReservedSecretName, reservedSecretMessage } from '../domain/secrets.js';
import {
  check,
  describe,
  Issues,
  keyPath,
  listOf,
  readBoolean,
  readEntries,
  readEnum,
  readInteger,
  readMap,
  readPort,
  type Fields,
  type Read,
} from './reader.js';
import { CONTAINER_KEYS, readContainerSettings, type AppPolicy } from './container.js';
import { readDuration, readHttpPath, readImageRepository, readPathPrefix, readRouteHost } from './values.js';

const APP_KEYS = [
  'image',
  'hosts',
  'port',
  'healthcheck',
  'rollout',
  'hooks',
  'retain_containers',
  'history_limit',
  'stop_timeout',
  'proxy',
  'env',
  'secrets',
  ...CONTAINER_KEYS,
  'processes',
] as const;
/** What a process may set: its hosts, its route and health check, and the app's defaults it overrides. */
const PROCESS_KEYS = ['hosts', 'port', 'env', 'secrets', 'stop_timeout', 'proxy', 'healthcheck', ...CONTAINER_KEYS] as const;
const HEALTHCHECK_KEYS = ['path', 'port', 'interval', 'timeout', 'max_attempts', 'min_healthy'] as const;
const CONTAINER_HEALTHCHECK_KEYS = ['cmd', 'interval', 'timeout', 'max_attempts', 'min_healthy'] as const;
const ROLLOUT_KEYS = ['parallelism', 'delay', 'on_failure', 'max_failure_ratio', 'progress_deadline', 'strategy', 'preboot'] as const;
const HOOKS_KEYS = ['pre_deploy', 'post_deploy', 'timeout'] as const;
const PROXY_KEYS = ['port', 'host', 'path_prefix', 'drain_timeout', 'tls'] as const;
const TLS_KEYS = ['certificate', 'private_key'] as const;
const FAILURE_POLICIES: readonly FailurePolicy[] = ['rollback', 'pause', 'continue'];
const STRATEGIES: readonly RolloutStrategy[] = ['start-first', 'recreate'];

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
/** Releases kept per app at most: a bound on the database, not a wish for this much history. */
const MAX_HISTORY_LIMIT = 10_000;
/** A bound against typos (10000 for 10): progress_deadline, not the attempt count, bounds the real wait. */
const MAX_HEALTH_ATTEMPTS = 1000;

/**
 * Validates one app document. Throws ConfigError listing every problem, each
 * located under `pathPrefix` (`apps.web` in the config file, `body` for the API).
 */
export function validateAppDocument(
  name: string,
  doc: unknown,
  knownHosts: readonly string[],
  pathPrefix: string = keyPath('apps', name),
  policy: AppPolicy = { allowHostAccess: false },
): AppSpec {
  const issues = new Issues();
  const spec = readApp(name, doc, knownHosts, pathPrefix, issues, policy);
  if (!issues.empty) throw new ConfigError(issues.list);
  return spec;
}

/** Like validateAppDocument, but records issues instead of throwing (the config validator collects across apps). */
export function readApp(name: string, doc: unknown, knownHosts: readonly string[], path: string, issues: Issues, policy: AppPolicy): AppSpec {
  if (!isAppName(name)) {
    issues.add(path, 'invalid app name: expected lowercase letters, digits and "-", starting with a letter, at most 63 characters');
  }
  const f = readMap(doc, path, issues, APP_KEYS);
  // With processes, hosts may be each process's alone, and the route and health check are the processes'.
  const withProcesses = f.has('processes');
  if (withProcesses && f.has('proxy')) f.issues.add(f.at('proxy'), `with processes, the route is the process's that serves: put it under that process (${keyPath(keyPath(f.at('processes'), 'web'), 'proxy')}, say)`);
  // Read in the order the keys are documented, so issues come out in that order too.
  const image = f.need('image', readImageRepository, '');
  const hosts = withProcesses ? f.get('hosts', readHostList(knownHosts), []) : f.need('hosts', readHostList(knownHosts), []);
  const port = f.get('port', readPort, SEED_DEFAULTS.port);
  const healthcheck = readHealthcheck(f.raw('healthcheck'), f.at('healthcheck'), f.issues, port);
  const rollout = readRollout(f.raw('rollout'), f.at('rollout'), f.issues);
  const hooks = readHooks(f.raw('hooks'), f.at('hooks'), f.issues);
  const retainContainers = f.get('retain_containers', readInteger(0, 100), SEED_DEFAULTS.retainContainers);
  const historyLimit = f.get<number | undefined>('history_limit', readInteger(1, MAX_HISTORY_LIMIT), undefined);
  const stopTimeoutMs = f.get('stop_timeout', readDuration(0, HOUR), SEED_DEFAULTS.stopTimeoutMs);
  const proxy = f.has('proxy') && !withProcesses ? readProxyRoute(f.raw('proxy'), f.at('proxy'), f.issues) : null;
  const env = readEnv(f);
  const secrets = f.get('secrets', readSecrets(env), []);
  const container = readContainerSettings(f, policy);
  const spec: AppSpec = { name, image, hosts, port, healthcheck, rollout, hooks, retainContainers, ...(historyLimit !== undefined ? { historyLimit } : {}), stopTimeoutMs, proxy, env, secrets, ...(container ? { container } : {}) };
  if (!withProcesses) return spec;
  const processes = readProcesses(f.raw('processes'), f.at('processes'), f.issues, { spec, knownHosts, policy, hostsPath: f.at('hosts') });
  // The app runs where its processes run: observation, teardown, logs and exec read these hosts.
  return { ...spec, hosts: [...new Set(processes.flatMap((p) => p.hosts))], processes };
}

/** What reading a process needs of its app: the app-level values it inherits, and the rules its hosts and settings obey. */
interface ProcessContext {
  spec: AppSpec;
  knownHosts: readonly string[];
  policy: AppPolicy;
  /** Where the app's own hosts are: named when a process has none to inherit. */
  hostsPath: string;
}

function readProcesses(doc: unknown, path: string, issues: Issues, ctx: ProcessContext): ProcessSpec[] {
  const entries = readEntries(doc, path, issues);
  if (entries.length === 0 && doc !== null && typeof doc === 'object' && !Array.isArray(doc)) issues.add(path, 'expected at least one process (leave processes out for an app of one process)');
  const processes: ProcessSpec[] = [];
  for (const [name, processDoc] of entries) {
    const at = keyPath(path, name);
    if (!isAppName(name)) issues.add(at, 'invalid process name: expected lowercase letters, digits and "-", starting with a letter, at most 63 characters');
    processes.push(readProcess(name, processDoc, at, issues, ctx));
  }
  // One route per app: each host's proxy has one backend per app (src/proxy/haproxy-config.ts).
  const serving = processes.filter((p) => p.proxy !== null);
  for (const extra of serving.slice(1)) {
    issues.add(keyPath(keyPath(path, extra.name), 'proxy'), `only one process of an app serves through the proxy, and ${serving[0]!.name} does: make ${extra.name} an app of its own to route it too`);
  }
  return processes;
}

function readProcess(name: string, doc: unknown, path: string, issues: Issues, ctx: ProcessContext): ProcessSpec {
  const app = ctx.spec;
  const f = readMap(doc, path, issues, PROCESS_KEYS);
  if (!f.has('hosts') && app.hosts.length === 0) f.issues.add(f.at('hosts'), `required: the hosts this process runs on, here or for every process at ${ctx.hostsPath}`);
  const hosts = f.get('hosts', readHostList(ctx.knownHosts), app.hosts);
  const port = f.get('port', readPort, app.port);
  // Variables merge (the process's win): a worker adds QUEUE=jobs without repeating the app's env.
  const own = readEnv(f);
  const env = { ...app.env, ...own };
  for (const key of Object.keys(own)) if (!f.has('secrets') && app.secrets.includes(key)) f.issues.add(keyPath(f.at('env'), key), `"${key}" is one of the app's secrets; a variable is either in env or in secrets`);
  const secrets = f.get('secrets', readSecrets(env), app.secrets);
  const stopTimeoutMs = f.get('stop_timeout', readDuration(0, HOUR), app.stopTimeoutMs);
  const container = mergeContainer(app.container, readContainerSettings(f, ctx.policy));
  const settings = { name, hosts, port, env, secrets, stopTimeoutMs, ...(container ? { container } : {}) };
  if (f.has('proxy')) {
    const proxy = readProxyRoute(f.raw('proxy'), f.at('proxy'), f.issues);
    // The app's healthcheck is this process's default; its port follows the process's unless the app's set one.
    const base = app.healthcheck;
    const defaults = { ...base, port: base.port !== app.port ? base.port : port };
    return { ...settings, proxy, healthcheck: readHealthcheck(f.raw('healthcheck'), f.at('healthcheck'), f.issues, defaults.port, defaults) };
  }
  return { ...settings, proxy: null, healthcheck: readContainerHealthcheck(f.raw('healthcheck'), f.at('healthcheck'), f.issues) };
}

/** The process's container settings over the app's, key by key; labels merge (the process's win). */
function mergeContainer(app: ContainerSettings | undefined, own: ContainerSettings | undefined): ContainerSettings | undefined {
  if (!app || !own) return own ?? app;
  const labels = app.labels || own.labels ? { labels: { ...app.labels, ...own.labels } } : {};
  return { ...app, ...own, ...labels };
}

/** A command string runs under `sh -c` (Docker's HEALTHCHECK CMD-SHELL); a list runs as it is (exec form). */
const readHealthCommand: Read<string[]> = (value, path, issues) => {
  if (typeof value === 'string' && value.trim() !== '') return ['sh', '-c', value];
  if (Array.isArray(value) && value.length > 0 && value.every((w) => typeof w === 'string' && w !== '')) return value as string[];
  issues.add(path, `expected a command string (run with sh -c) or a non-empty list of strings, got ${describe(value)}`);
  return undefined;
};

/**
 * A process without a proxy: healthy once `cmd` exits 0 inside the container, or, without
 * `cmd`, once it has run `min_healthy` (default 10s) without a restart. HTTP keys are refused
 * with the reason: there is no route to probe through.
 */
function readContainerHealthcheck(doc: unknown, path: string, issues: Issues): ContainerHealthcheckSpec {
  const d = SEED_DEFAULTS.healthcheck;
  const f = readMap(doc, path, issues, [...CONTAINER_HEALTHCHECK_KEYS, 'path', 'port']);
  for (const key of ['path', 'port']) {
    if (f.has(key)) f.issues.add(f.at(key), `a process without a proxy is not probed over HTTP: give healthcheck.cmd (a command run in the container, exit 0 = healthy) or rely on min_healthy (running that long without a restart)`);
  }
  const cmd = f.get<string[] | null>('cmd', readHealthCommand, null);
  return {
    cmd,
    intervalMs: f.get('interval', readDuration(100, HOUR), d.intervalMs),
    timeoutMs: f.get('timeout', readDuration(100, 10 * MINUTE), d.timeoutMs),
    maxAttempts: f.get('max_attempts', readInteger(1, MAX_HEALTH_ATTEMPTS), d.maxAttempts),
    // Without a command, running this long unrestarted is the whole check; with one, it is an optional soak.
    minHealthyMs: f.get('min_healthy', readDuration(0, HOUR), cmd ? 0 : SEED_DEFAULTS.processMinHealthyMs),
  };
}

function readHostList(knownHosts: readonly string[]): Read<string[]> {
  const known = knownHosts.length > 0 ? knownHosts.join(', ') : 'none';
  return (value, path, issues) => {
    const seen = new Set<string>();
    const item: Read<string> = (v, p, iss) => {
      if (typeof v !== 'string' || !isHostName(v)) {
        iss.add(p, `expected a host name, got ${describe(v)}`);
      } else if (!knownHosts.includes(v)) {
        iss.add(p, `unknown host "${v}" (known: ${known})`);
      } else if (seen.has(v)) {
        iss.add(p, `duplicate host "${v}"`);
      } else {
        seen.add(v);
        return v;
      }
      return undefined;
    };
    const hosts = listOf(item, 'a list of host names')(value, path, issues);
    if (Array.isArray(value) && value.length === 0) issues.add(path, 'expected at least one host');
    return hosts;
  };
}

function readHealthcheck(doc: unknown, path: string, issues: Issues, appPort: number, d: Omit<HealthcheckSpec, 'port'> = SEED_DEFAULTS.healthcheck): HealthcheckSpec {
  const f = readMap(doc, path, issues, HEALTHCHECK_KEYS);
  return {
    path: f.get('path', readHttpPath, d.path),
    // Follows the app's port unless set: the seed's 3000 applies only through the app's default.
    port: f.get('port', readPort, appPort),
    intervalMs: f.get('interval', readDuration(100, HOUR), d.intervalMs),
    timeoutMs: f.get('timeout', readDuration(100, 10 * MINUTE), d.timeoutMs),
    maxAttempts: f.get('max_attempts', readInteger(1, MAX_HEALTH_ATTEMPTS), d.maxAttempts),
    minHealthyMs: f.get('min_healthy', readDuration(0, HOUR), d.minHealthyMs),
  };
}

const PARALLELISM_EXPECTED = 'expected a positive integer or a percentage like "30%"';

const readParallelism: Read<Parallelism> = (value, path, issues) => {
  if (Number.isSafeInteger(value) && (value as number) >= 1) return { kind: 'count', value: value as number };
  const m = typeof value === 'string' ? /^(\d{1,3})%$/.exec(value) : null;
  if (m) {
    const pct = Number(m[1]);
    if (pct >= 1 && pct <= 100) return { kind: 'percent', value: pct };
    issues.add(path, `expected a percentage from 1% to 100%, got ${describe(value)}`);
    return undefined;
  }
  issues.add(path, `${PARALLELISM_EXPECTED}, got ${describe(value)}`);
  return undefined;
};

const readRatio: Read<number> = check('a number from 0 to 1', (v) =>
  typeof v === 'number' && v >= 0 && v <= 1 ? v : undefined,
);

function readRollout(doc: unknown, path: string, issues: Issues): RolloutSpec {
  const d = SEED_DEFAULTS.rollout;
  const f = readMap(doc, path, issues, ROLLOUT_KEYS);
  const strategy = f.get('strategy', readEnum(STRATEGIES), 'start-first');
  const preboot = f.get('preboot', readBoolean, false);
  // Pre-booting runs the new container beside the old one, which recreate exists to never do.
  if (preboot && strategy === 'recreate') f.issues.add(f.at('preboot'), 'recreate never runs two containers of a unit, so it cannot pre-boot: drop preboot, or use strategy: start-first');
  return {
    parallelism: f.get('parallelism', readParallelism, d.parallelism),
    delayMs: f.get('delay', readDuration(0, HOUR), d.delayMs),
    onFailure: f.get('on_failure', readEnum(FAILURE_POLICIES), d.onFailure),
    maxFailureRatio: f.get('max_failure_ratio', readRatio, d.maxFailureRatio),
    progressDeadlineMs: f.get('progress_deadline', readDuration(SECOND, 24 * HOUR), d.progressDeadlineMs),
    // The default stays out of the spec: an app that says start-first is the app that says nothing.
    ...(strategy === 'recreate' ? { strategy } : {}),
    ...(preboot ? { preboot } : {}),
  };
}

// Hook commands run via `sh -c` inside the app's container, so any string is a
// command; an empty one is always a mistake (a stray `-` in the YAML list).
const readCommand: Read<string> = check('a non-empty command string', (v) =>
  typeof v === 'string' && v.trim() !== '' ? v : undefined,
);
const readCommands = listOf(readCommand, 'a list of commands');

function readHooks(doc: unknown, path: string, issues: Issues): HooksSpec {
  const f = readMap(doc, path, issues, HOOKS_KEYS);
  return {
    preDeploy: f.get('pre_deploy', readCommands, []),
    postDeploy: f.get('post_deploy', readCommands, []),
    timeoutMs: f.get('timeout', readDuration(SECOND, 24 * HOUR), SEED_DEFAULTS.hooks.timeoutMs),
  };
}

/** Only the shape of one route; conflicts between apps' routes are src/config/routes.ts. */
function readProxyRoute(doc: unknown, path: string, issues: Issues): ProxyRouteSpec {
  const f = readMap(doc, path, issues, PROXY_KEYS);
  if (!f.has('port') && !f.has('host')) f.issues.add(path, 'expected port or host (or both)');
  const route: ProxyRouteSpec = {
    port: f.get<number | null>('port', readPort, null),
    host: f.get<string | null>('host', readRouteHost, null),
    pathPrefix: f.get<string | null>('path_prefix', readPathPrefix, null),
    drainTimeoutMs: f.get('drain_timeout', readDuration(0, HOUR), SEED_DEFAULTS.proxy.drainTimeoutMs),
  };
  const tls = f.get<TlsSpec | null>('tls', readTls, null);
  if (tls === null) return route; // no key at all: a spec without TLS reads as it did before TLS existed
  checkTlsRoute(route, tls, f);
  return { ...route, tls };
}

/** `tls: true` (ACME), `false`, or `{certificate: SECRET, private_key: SECRET}` (PEM values in the app's secrets file). */
const readTls: Read<TlsSpec | null> = (value, path, issues) => {
  if (value === true) return { source: 'acme' };
  if (value === false) return null;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    issues.add(path, `expected true (a certificate from ACME), false, or {certificate, private_key} (names of secrets holding PEM), got ${describe(value)}`);
    return undefined;
  }
  const f = readMap(value, path, issues, TLS_KEYS);
  const certificate = f.need('certificate', readSecretName, '');
  const privateKey = f.need('private_key', readSecretName, '');
  return certificate && privateKey ? { source: 'given', certificate, privateKey } : undefined;
};

/** A TLS route serves one host name; ACME's HTTP-01 challenge can only prove an exact name, on port 80. */
function checkTlsRoute(route: Omit<ProxyRouteSpec, 'tls'>, tls: TlsSpec, f: Fields): void {
  if (route.host === null) {
    f.issues.add(f.at('tls'), 'TLS needs proxy.host: a certificate is for a host name');
  } else if (tls.source === 'acme' && route.host.startsWith('*.')) {
    f.issues.add(f.at('tls'), `ACME (HTTP-01) cannot issue a certificate for a wildcard host "${route.host}": give one with tls: {certificate, private_key}`);
  }
  if (route.port === HTTPS_PORT) {
    f.issues.add(f.at('port'), `HTTPS is always on port ${HTTPS_PORT}; proxy.port is the plain HTTP port that redirects to it (leave it out for ${DEFAULT_ROUTE_PORT})`);
  } else if (tls.source === 'acme' && route.port !== null && route.port !== DEFAULT_ROUTE_PORT) {
    f.issues.add(f.at('port'), `ACME validates on port ${DEFAULT_ROUTE_PORT} (HTTP-01): leave proxy.port out or set it to ${DEFAULT_ROUTE_PORT} (HTTPS is always on ${HTTPS_PORT})`);
  }
}

/** The name of a secret (a line of the app's secrets file, src/secrets/app-secrets.ts), not a reserved one. */
const readSecretName: Read<string> = (value, path, issues) => {
  if (typeof value !== 'string' || !isEnvName(value)) {
    issues.add(path, `expected a variable name (${ENV_NAME_RULE}), got ${describe(value)}`);
    return undefined;
  }
  if (isReservedSecretName(value)) {
    issues.add(path, reservedSecretMessage(value));
    return undefined;
  }
  return value;
};

const ENV_NAME_RULE = 'letters, digits and "_", not starting with a digit';

function readEnv(f: Fields): Record<string, string> {
  const entries: Array<[string, string]> = [];
  for (const [key, value] of readEntries(f.raw('env'), f.at('env'), f.issues)) {
    const path = keyPath(f.at('env'), key);
    if (!isEnvName(key)) {
      f.issues.add(path, `invalid variable name: expected ${ENV_NAME_RULE}`);
    } else if (typeof value !== 'string') {
      // YAML turns `PORT: 3000` and `DEBUG: true` into a number and a boolean; say how to fix it.
      const hint = typeof value === 'number' || typeof value === 'boolean' ? ` (quote it: "${String(value)}")` : '';
      f.issues.add(path, `expected a string, got ${describe(value)}${hint}`);
    } else {
      entries.push([key, value]);
    }
  }
  // fromEntries defines own properties, so even a key like `__proto__` stays plain data.
  return Object.fromEntries(entries);
}

function readSecrets(env: Record<string, string>): Read<string[]> {
  return (value, path, issues) => {
    const seen = new Set<string>();
    const item: Read<string> = (v, p, iss) => {
      // BERTH_* are berth's own settings (its token among them): never an app's, whatever its file holds.
      const name = readSecretName(v, p, iss);
      if (name === undefined) return undefined;
      if (Object.hasOwn(env, name)) {
        iss.add(p, `"${name}" is also set in env; a variable is either in env or in secrets`);
      } else if (seen.has(name)) {
        iss.add(p, `duplicate secret "${name}"`);
      } else {
        seen.add(name);
        return name;
      }
      return undefined;
    };
    return listOf(item, 'a list of variable names')(value, path, issues);
  };
}
