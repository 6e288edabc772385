/**
 * Processes (roles): one app, one image, one release, several processes, each on its own
 * hosts with its own command and settings. The rollout's unit is a (process, host) pair;
 * an app without `processes` is one implicit process whose units are its hosts, keyed and
 * named exactly as before processes existed (docs/design.md, "Processes").
 */
import type { AppSpec, ContainerHealthcheckSpec, ProcessSpec, RoutedApp } from './app-spec.js';

/** One process of an app as the rollout runs it: `name` null for the implicit process. */
export interface AppProcess {
  name: string | null;
  /** The app's spec with the process's settings in place (hosts, port, env, container, proxy, healthcheck). */
  spec: AppSpec;
  /** Set for a process without a proxy: how it is known healthy instead of an HTTP probe. */
  containerHealthcheck: ContainerHealthcheckSpec | null;
}

/** The processes of an app in declaration order; an app without `processes` is its one implicit process. */
export function appProcesses(spec: AppSpec): AppProcess[] {
  if (!spec.processes) return [{ name: null, spec, containerHealthcheck: null }];
  return spec.processes.map((p) => ({ name: p.name, spec: processSpec(spec, p), containerHealthcheck: p.proxy ? null : p.healthcheck }));
}

/** The app spec as one process runs it: the process's resolved settings over the app's. */
function processSpec(app: AppSpec, p: ProcessSpec): AppSpec {
  const { processes: _all, container: _app, ...rest } = app;
  return {
    ...rest,
    hosts: p.hosts,
    port: p.port,
    env: p.env,
    secrets: p.secrets,
    stopTimeoutMs: p.stopTimeoutMs,
    proxy: p.proxy,
    // A process without a proxy is checked by its containerHealthcheck; the app's HTTP one stays unused.
    healthcheck: p.proxy ? p.healthcheck : app.healthcheck,
    ...(p.container ? { container: p.container } : {}),
  };
}

/** What status, events and the CLI call a unit: `web@h1` for an explicit process, the host for the implicit one. */
export function unitKey(process: string | null | undefined, host: string): string {
  return process ? `${process}@${host}` : host;
}

/** The host of a unit key (`web@h1` -> `h1`). */
export function unitHost(key: string): string {
  return key.slice(key.indexOf('@') + 1);
}

/**
 * The app's proxy route and the hosts it is on: the app's own, or the process that serves
 * (at most one process of an app has a proxy: src/config/app.ts). What route checks,
 * certificates and each host's proxy config read of an app.
 */
export function routedApp(spec: AppSpec): RoutedApp {
  const serving = spec.processes?.find((p) => p.proxy !== null);
  if (spec.processes) return { name: spec.name, hosts: serving?.hosts ?? [], proxy: serving?.proxy ?? null };
  return { name: spec.name, hosts: spec.hosts, proxy: spec.proxy };
}

/** Every secret name the app's containers may hold (the app's and each process's): what its output is redacted of. */
export function allSecretNames(spec: AppSpec): string[] {
  return [...new Set([...spec.secrets, ...(spec.processes ?? []).flatMap((p) => p.secrets)])];
}
