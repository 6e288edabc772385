/**
 * AppSpec -> the snake_case document users write (YAML config, `PUT /v1/apps/:app`).
 * The inverse of validateAppDocument, so `GET /v1/apps/:app` can show a spec in
 * the same shape it is written in, and what it shows can be PUT back unchanged.
 */
import type { AppSpec, ContainerSettings, HealthcheckSpec, ProcessSpec, ProxyRouteSpec } from '../domain/app-spec.js';
import { formatDuration } from './duration.js';

type HttpHealthcheckDocument = { path: string; port: number; interval: string; timeout: string; max_attempts: number; min_healthy: string };
type ProxyDocument = { port?: number; host?: string; path_prefix?: string; drain_timeout: string; tls?: true | { certificate: string; private_key: string } };

/** The container keys of a document (app or process). */
interface ContainerDocument {
  cmd?: string[];
  entrypoint?: string[];
  volumes?: string[];
  /** Bytes. */
  memory?: number;
  cpus?: number;
  labels?: Record<string, string>;
  logging?: { driver: string; options: Record<string, string> };
  stop_signal?: string;
  user?: string;
  extra_hosts?: string[];
  privileged?: boolean;
}

/** One process, every setting written out (resolved), so a document read back resolves to the same process. */
export interface ProcessDocument extends ContainerDocument {
  hosts: string[];
  port: number;
  env: Record<string, string>;
  secrets: string[];
  stop_timeout: string;
  proxy?: ProxyDocument;
  healthcheck: HttpHealthcheckDocument | { cmd?: string[]; interval: string; timeout: string; max_attempts: number; min_healthy: string };
}

export interface AppDocument extends ContainerDocument {
  image: string;
  hosts: string[];
  port: number;
  /** With processes: the default of the process that serves through the proxy. */
  healthcheck: HttpHealthcheckDocument;
  rollout: {
    /** A count, or a percentage like "30%". */
    parallelism: number | string;
    delay: string;
    on_failure: string;
    max_failure_ratio: number;
    progress_deadline: string;
    strategy: 'start-first' | 'recreate';
    preboot: boolean;
  };
  hooks: { pre_deploy: string[]; post_deploy: string[]; timeout: string };
  retain_containers: number;
  /** Only when the app sets it (AppSpec.historyLimit). */
  history_limit?: number;
  stop_timeout: string;
  proxy?: ProxyDocument;
  env: Record<string, string>;
  secrets: string[];
  processes?: Record<string, ProcessDocument>;
}

export function appDocument(spec: AppSpec): AppDocument {
  const { rollout: r, hooks } = spec;
  const doc: AppDocument = {
    image: spec.image,
    hosts: [...spec.hosts],
    port: spec.port,
    healthcheck: httpHealthcheckDocument(spec.healthcheck),
    rollout: {
      parallelism: r.parallelism.kind === 'percent' ? `${r.parallelism.value}%` : r.parallelism.value,
      delay: formatDuration(r.delayMs),
      on_failure: r.onFailure,
      max_failure_ratio: r.maxFailureRatio,
      progress_deadline: formatDuration(r.progressDeadlineMs),
      strategy: r.strategy ?? 'start-first',
      preboot: r.preboot ?? false,
    },
    hooks: { pre_deploy: [...hooks.preDeploy], post_deploy: [...hooks.postDeploy], timeout: formatDuration(hooks.timeoutMs) },
    retain_containers: spec.retainContainers,
    ...(spec.historyLimit !== undefined ? { history_limit: spec.historyLimit } : {}),
    stop_timeout: formatDuration(spec.stopTimeoutMs),
    env: Object.fromEntries(Object.entries(spec.env)),
    secrets: [...spec.secrets],
  };
  writeContainer(doc, spec.container);
  if (spec.proxy) doc.proxy = proxyDocument(spec.proxy);
  if (spec.processes) doc.processes = Object.fromEntries(spec.processes.map((p) => [p.name, processDocument(p)]));
  return doc;
}

function processDocument(p: ProcessSpec): ProcessDocument {
  const h = p.healthcheck;
  const doc: ProcessDocument = {
    hosts: [...p.hosts],
    port: p.port,
    env: Object.fromEntries(Object.entries(p.env)),
    secrets: [...p.secrets],
    stop_timeout: formatDuration(p.stopTimeoutMs),
    healthcheck: p.proxy
      ? httpHealthcheckDocument(p.healthcheck)
      : { ...(p.healthcheck.cmd ? { cmd: [...p.healthcheck.cmd] } : {}), interval: formatDuration(h.intervalMs), timeout: formatDuration(h.timeoutMs), max_attempts: h.maxAttempts, min_healthy: formatDuration(h.minHealthyMs) },
  };
  writeContainer(doc, p.container);
  if (p.proxy) doc.proxy = proxyDocument(p.proxy);
  return doc;
}

function httpHealthcheckDocument(h: HealthcheckSpec): HttpHealthcheckDocument {
  return { path: h.path, port: h.port, interval: formatDuration(h.intervalMs), timeout: formatDuration(h.timeoutMs), max_attempts: h.maxAttempts, min_healthy: formatDuration(h.minHealthyMs) };
}

function writeContainer(doc: ContainerDocument, c: ContainerSettings | undefined): void {
  if (!c) return;
  if (c.cmd) doc.cmd = [...c.cmd];
  if (c.entrypoint) doc.entrypoint = [...c.entrypoint];
  if (c.volumes) doc.volumes = c.volumes.map((v) => `${v.source}:${v.target}${v.readOnly ? ':ro' : ''}`);
  if (c.memoryBytes !== undefined) doc.memory = c.memoryBytes;
  if (c.cpus !== undefined) doc.cpus = c.cpus;
  if (c.labels) doc.labels = { ...c.labels };
  if (c.logging) doc.logging = { driver: c.logging.driver, options: { ...c.logging.options } };
  if (c.stopSignal) doc.stop_signal = c.stopSignal;
  if (c.user) doc.user = c.user;
  if (c.extraHosts) doc.extra_hosts = [...c.extraHosts];
  if (c.privileged) doc.privileged = true;
}

function proxyDocument(route: ProxyRouteSpec): ProxyDocument {
  const doc: ProxyDocument = { drain_timeout: formatDuration(route.drainTimeoutMs) };
  if (route.port !== null) doc.port = route.port;
  if (route.host !== null) doc.host = route.host;
  if (route.pathPrefix != null) doc.path_prefix = route.pathPrefix;
  const tls = route.tls;
  if (tls) doc.tls = tls.source === 'acme' ? true : { certificate: tls.certificate, private_key: tls.privateKey };
  return doc;
}
