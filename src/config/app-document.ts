/**
 * AppSpec -> the snake_case document users write (YAML config, `PUT /v1/apps/:app`).
 * The inverse of validateAppDocument, so `GET /v1/apps/:app` can show a spec in
 * the same shape it is written in, and what it shows can be PUT back unchanged.
 */
import type { AppSpec } from '../domain/app-spec.js';
import { formatDuration } from './duration.js';

export interface AppDocument {
  image: string;
  hosts: string[];
  port: number;
  healthcheck: {
    path: string;
    port: number;
    interval: string;
    timeout: string;
    max_attempts: number;
    min_healthy: string;
  };
  rollout: {
    /** A count, or a percentage like "30%". */
    parallelism: number | string;
    delay: string;
    on_failure: string;
    max_failure_ratio: number;
    progress_deadline: string;
    strategy: 'start-first' | 'recreate';
  };
  hooks: { pre_deploy: string[]; post_deploy: string[]; timeout: string };
  retain_containers: number;
  /** Only when the app sets it (AppSpec.historyLimit). */
  history_limit?: number;
  stop_timeout: string;
  proxy?: { port?: number; host?: string; path_prefix?: string; drain_timeout: string; tls?: true | { certificate: string; private_key: string } };
  env: Record<string, string>;
  secrets: string[];
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

export function appDocument(spec: AppSpec): AppDocument {
  const { healthcheck: h, rollout: r, hooks } = spec;
  const doc: AppDocument = {
    image: spec.image,
    hosts: [...spec.hosts],
    port: spec.port,
    healthcheck: {
      path: h.path,
      port: h.port,
      interval: formatDuration(h.intervalMs),
      timeout: formatDuration(h.timeoutMs),
      max_attempts: h.maxAttempts,
      min_healthy: formatDuration(h.minHealthyMs),
    },
    rollout: {
      parallelism: r.parallelism.kind === 'percent' ? `${r.parallelism.value}%` : r.parallelism.value,
      delay: formatDuration(r.delayMs),
      on_failure: r.onFailure,
      max_failure_ratio: r.maxFailureRatio,
      progress_deadline: formatDuration(r.progressDeadlineMs),
      strategy: r.strategy ?? 'start-first',
    },
    hooks: { pre_deploy: [...hooks.preDeploy], post_deploy: [...hooks.postDeploy], timeout: formatDuration(hooks.timeoutMs) },
    retain_containers: spec.retainContainers,
    ...(spec.historyLimit !== undefined ? { history_limit: spec.historyLimit } : {}),
    stop_timeout: formatDuration(spec.stopTimeoutMs),
    env: Object.fromEntries(Object.entries(spec.env)),
    secrets: [...spec.secrets],
  };
  const c = spec.container;
  if (c) {
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
  if (spec.proxy) {
    doc.proxy = { drain_timeout: formatDuration(spec.proxy.drainTimeoutMs) };
    if (spec.proxy.port !== null) doc.proxy.port = spec.proxy.port;
    if (spec.proxy.host !== null) doc.proxy.host = spec.proxy.host;
    if (spec.proxy.pathPrefix != null) doc.proxy.path_prefix = spec.proxy.pathPrefix;
    const tls = spec.proxy.tls;
    if (tls) doc.proxy.tls = tls.source === 'acme' ? true : { certificate: tls.certificate, private_key: tls.privateKey };
  }
  return doc;
}
