/**
 * Container JSON of the Docker API, both ways: the create body berth sends (POST
 * /containers/create) and what it reads back (GET /containers/json, GET /containers/{id}/json)
 * mapped onto ObservedContainer. Pure: no I/O.
 */
import { labelsToObserved, type CreateContainerOptions, type ObservedContainer } from '../host-driver.js';

type RawNetworks = Record<string, { IPAddress?: string }> | null | undefined;

/** One entry of GET /containers/json. */
export interface RawListed {
  Id: string;
  Names?: string[];
  Image: string;
  Labels?: Record<string, string> | null;
  State: string;
  Created: number;
  NetworkSettings?: { Networks?: RawNetworks } | null;
}

/** GET /containers/{id}/json. */
export interface RawInspect {
  Id: string;
  Name: string;
  Created: string;
  Config: { Image: string; Labels?: Record<string, string> | null };
  State: { Status: string; Running: boolean; ExitCode: number };
  NetworkSettings?: { Networks?: RawNetworks } | null;
  RestartCount?: number;
}

/** The address on `network` when the container runs there, else on any network it has. */
function ipOf(networks: RawNetworks, running: boolean, network: string): string | null {
  if (!running || !networks) return null;
  const own = networks[network]?.IPAddress;
  if (own) return own;
  for (const n of Object.values(networks)) if (n.IPAddress) return n.IPAddress;
  return null;
}

/** A listed container; `network` is the one whose address is reported as `ip`. */
export function fromListed(c: RawListed, network: string): ObservedContainer {
  const labels = c.Labels ?? {};
  const running = c.State === 'running';
  return {
    id: c.Id,
    name: (c.Names?.[0] ?? '').replace(/^\//, ''),
    ...labelsToObserved(labels),
    state: c.State,
    running,
    ip: ipOf(c.NetworkSettings?.Networks, running, network),
    createdAt: c.Created * 1000,
    image: c.Image,
  };
}

/** An inspected container; `network` is the one whose address is reported as `ip`. */
export function fromInspect(c: RawInspect, network: string): ObservedContainer {
  const labels = c.Config.Labels ?? {};
  const running = c.State.Running;
  return {
    id: c.Id,
    name: c.Name.replace(/^\//, ''),
    ...labelsToObserved(labels),
    state: c.State.Status,
    running,
    ip: ipOf(c.NetworkSettings?.Networks, running, network),
    createdAt: Date.parse(c.Created),
    image: c.Config.Image,
    ...(typeof c.RestartCount === 'number' ? { restartCount: c.RestartCount } : {}),
  };
}

/** The body of POST /containers/create; `labels` are the container's, berth.managed included. */
export function createBody(o: CreateContainerOptions, labels: Record<string, string>): Record<string, unknown> {
  const exposed: Record<string, object> = {};
  const bindings: Record<string, Array<{ HostIp: string; HostPort: string }>> = {};
  for (const p of o.publish ?? []) {
    const key = `${p.containerPort}/tcp`;
    exposed[key] = {};
    (bindings[key] ??= []).push({ HostIp: p.hostIp ?? '', HostPort: String(p.hostPort) });
  }
  return {
    Image: o.image,
    ...(o.cmd ? { Cmd: o.cmd } : {}),
    ...(o.entrypoint ? { Entrypoint: o.entrypoint } : {}),
    ...(o.user ? { User: o.user } : {}),
    ...(o.stopSignal ? { StopSignal: o.stopSignal } : {}),
    Env: Object.entries(o.env).map(([k, v]) => `${k}=${v}`),
    Labels: labels,
    ...(o.publish?.length ? { ExposedPorts: exposed } : {}),
    HostConfig: {
      Init: o.init,
      AutoRemove: false,
      NetworkMode: o.network,
      RestartPolicy: { Name: o.restartPolicy ?? 'no' },
      ...(o.publish?.length ? { PortBindings: bindings } : {}),
      ...(o.binds?.length || o.volumes?.length ? { Binds: [...(o.binds ?? []), ...(o.volumes ?? []).map((v) => `${v.source}:${v.target}${v.readOnly ? ':ro' : ''}`)] } : {}),
      ...(o.memoryBytes !== undefined ? { Memory: o.memoryBytes } : {}),
      ...(o.cpus !== undefined ? { NanoCpus: Math.round(o.cpus * 1e9) } : {}),
      ...(o.logging ? { LogConfig: { Type: o.logging.driver, Config: o.logging.options } } : {}),
      ...(o.extraHosts?.length ? { ExtraHosts: o.extraHosts } : {}),
      ...(o.privileged ? { Privileged: true } : {}),
    },
    // The host network takes no endpoint settings.
    ...(o.network === 'host' ? {} : { NetworkingConfig: { EndpointsConfig: { [o.network]: {} } } }),
  };
}
