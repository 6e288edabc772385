/**
 * What berth needs from one Docker host. Implemented by the docker-over-SSH driver,
 * the local-socket driver, and (for planner scale benches only) a simulation.
 * Every call is bounded by a deadline and rejects with a HostError on failure.
 * Also the vocabulary every driver shares: roles, adoption labels, label decoding, op names.
 */
import { HostNotConfiguredError } from '../domain/errors.js';
import { LABELS } from '../domain/labels.js';

export const CONTAINER_ROLES = ['app', 'proxy', 'hook'] as const;
export type ContainerRole = (typeof CONTAINER_ROLES)[number];

export interface ObservedContainer {
  id: string;
  name: string;
  app: string;
  revision: number;
  version: string;
  /** The berth.config label: containerConfigHash of the release it was made from. */
  configHash: string;
  role: ContainerRole;
  /** The berth.process label: the container's process, absent for the implicit process's. */
  process?: string;
  /** Docker's state string: created | running | paused | restarting | removing | exited | dead */
  state: string;
  running: boolean;
  /** IP on the berth network, when running. */
  ip: string | null;
  /** Unix ms. */
  createdAt: number;
  image: string;
  /** Times Docker restarted it (its restart policy): inspect only, a listing does not say. */
  restartCount?: number;
}

/** An ObservedContainer's fields that come from berth's labels; unknown roles read as `app`. */
export function labelsToObserved(
  labels: Record<string, string>,
): Pick<ObservedContainer, 'app' | 'revision' | 'version' | 'configHash' | 'role' | 'process'> {
  const rev = Number.parseInt(labels[LABELS.revision] ?? '', 10);
  const role = labels[LABELS.role] as ContainerRole | undefined;
  const process = labels[LABELS.process];
  return {
    app: labels[LABELS.app] ?? '',
    revision: Number.isFinite(rev) ? rev : 0,
    version: labels[LABELS.version] ?? '',
    configHash: labels[LABELS.config] ?? '',
    role: role !== undefined && CONTAINER_ROLES.includes(role) ? role : 'app',
    ...(process ? { process } : {}),
  };
}

/** Labels that must match for createContainer to adopt an existing container of the same name. */
export const ADOPT_LABELS = [LABELS.managed, LABELS.app, LABELS.revision, LABELS.role, LABELS.process] as const;

export interface CreateContainerOptions {
  name: string;
  image: string;
  /** Values (including secrets) go only through the Docker API body, never a command line. */
  env: Record<string, string>;
  labels: Record<string, string>;
  /** A Docker network name, or `host` for the host's own network stack (the proxy). */
  network: string;
  cmd?: string[];
  /** Overrides the image's entrypoint. */
  entrypoint?: string[];
  /** Files copied into the container after it is created and before it starts. */
  files?: Array<{ path: string; content: string; mode?: number }>;
  /** Run an init as PID 1 so SIGTERM reaches the app (busybox httpd ignores it as PID 1). */
  init: boolean;
  /** Publish container ports on the host (the proxy): containerPort -> hostPort. */
  publish?: Array<{ containerPort: number; hostPort: number; hostIp?: string }>;
  binds?: string[];
  restartPolicy?: 'no' | 'unless-stopped';
  /** The user the process runs as (`root` for a proxy that binds low ports and owns its socket directory). */
  user?: string;
  /** Named volumes (created on first use) and host paths. */
  volumes?: Array<{ source: string; target: string; readOnly: boolean }>;
  memoryBytes?: number;
  cpus?: number;
  logging?: { driver: string; options: Record<string, string> };
  stopSignal?: string;
  extraHosts?: string[];
  privileged?: boolean;
}

/** A command run inside a running container (Docker exec). */
export interface ExecResult {
  exitCode: number;
  /** The last few KiB of combined stdout/stderr. */
  outputTail: string;
}

export interface HttpResult {
  status: number;
  body: string;
}

export interface RunOnceResult {
  exitCode: number;
  /** The last few KiB of combined stdout/stderr. */
  outputTail: string;
  timedOut: boolean;
}

/** One line a container wrote, as Docker keeps it. */
export interface LogLine {
  stream: 'stdout' | 'stderr';
  /** When Docker received it: RFC 3339 with nanoseconds, UTC (Docker's own timestamp); null when it came without one. */
  time: string | null;
  /** The line without its newline; one longer than MAX_LOG_LINE_BYTES is cut there and ends in "…". */
  text: string;
}

/**
 * What `docker logs` is asked for: the last `tail` lines (after `sinceMs`, Unix ms), then
 * with `follow` every new line as it is written, until the container stops or the stream is closed.
 */
export interface LogOptions {
  tail: number;
  sinceMs?: number;
  follow: boolean;
}

/**
 * A container's log lines, in the order written per stream (Docker interleaves the two in
 * write order). Iterating reads them as the caller is ready (the host is not read ahead:
 * backpressure reaches Docker); `close` ends it early. A failed read throws a HostError.
 */
export interface LogStream extends AsyncIterable<LogLine> {
  close(): void;
}

/**
 * A log line longer than this is cut (Docker's json-file driver splits a line at 16 KiB
 * into parts; a part this long is cut at it): what one line may cost berth's memory.
 */
export const MAX_LOG_LINE_BYTES = 16 * 1024;

export interface HostInfo {
  dockerVersion: string;
}

export interface DockerEvent {
  /** Container id, when the event is about a container. */
  id: string | null;
  app: string | null;
  /**
   * Docker's action (create, start, die, stop, destroy, health_status: healthy, ...), or
   * `resubscribed` (id and app null) after the stream was re-established: events may have
   * been missed in between, so resync every app on that host.
   */
  action: string;
}

/** The op label values a driver's onOperation hook reports (bounded: fit for a metric label). */
export const HOST_OPERATIONS = [
  'connect',
  'ping',
  'list_containers',
  'has_image',
  'pull',
  'ensure_network',
  'connect_network',
  'create',
  'start',
  'stop',
  'remove',
  'rename',
  'inspect',
  'http_get',
  'unix_command',
  'put_files',
  'run_once',
  'events_subscribe',
  'logs',
  'exec',
] as const;
export type HostOperation = (typeof HOST_OPERATIONS)[number];

/** Passes one settled operation to a driver's onOperation hook; a metrics hook never breaks a host call. */
export function reportOperation<Op extends string>(
  hook: ((op: Op, seconds: number, ok: boolean) => void) | undefined,
  op: Op,
  seconds: number,
  ok: boolean,
): void {
  try {
    hook?.(op, seconds, ok);
  } catch {
    /* a metrics hook never breaks a host call */
  }
}

/** The options of a one-off container (HostDriver.runOnce). */
export type RunOnceOptions = Omit<CreateContainerOptions, 'init' | 'publish'> & { timeoutMs: number };

export interface HostDriver {
  readonly name: string;
  /** Checks reachability and returns the daemon's version. */
  ping(): Promise<HostInfo>;
  /** All containers carrying berth.managed=true, optionally of one app. */
  listContainers(filter?: { app?: string }): Promise<ObservedContainer[]>;
  /** True when the image is present locally. */
  hasImage(ref: string): Promise<boolean>;
  pullImage(ref: string): Promise<void>;
  ensureNetwork(name: string): Promise<void>;
  /** Attaches a running container to a network it is not on (Docker's network connect); already on it is fine. */
  connectNetwork(id: string, network: string): Promise<void>;
  /** Creates the container; when one of that name exists, returns the existing id (adopt after a crash). */
  createContainer(opts: CreateContainerOptions): Promise<string>;
  startContainer(id: string): Promise<void>;
  stopContainer(id: string, timeoutMs: number): Promise<void>;
  removeContainer(id: string): Promise<void>;
  /**
   * Gives the container another name (Docker's rename; the proxy migration's last step).
   * Optional only until bench/lib/timing.ts's TimedDriver passes it through; a driver
   * without it migrates the Caddy proxy the old way (stop, then start).
   */
  renameContainer?(id: string, name: string): Promise<void>;
  inspectContainer(id: string): Promise<ObservedContainer | null>;
  /** HTTP GET to ip:port inside the host's networks (SSH direct-tcpip for remote hosts). */
  httpGet(ip: string, port: number, path: string, timeoutMs: number): Promise<HttpResult>;
  /** Writes files into a container (created or running); a bind-mounted path writes the host's directory. */
  putFiles(id: string, files: NonNullable<CreateContainerOptions['files']>): Promise<void>;
  /** One command line on a line-protocol Unix socket on the host (HAProxy's runtime API); the answer until the socket closes. */
  unixCommand(socketPath: string, command: string, timeoutMs: number, opts?: { doneWhen?: (received: string) => boolean }): Promise<string>;
  /** Runs `cmd` inside a running container (Docker exec) to its exit; a HostError past `timeoutMs`. */
  execInContainer(id: string, cmd: string[], timeoutMs: number): Promise<ExecResult>;
  /** A one-off container that runs `cmd` to completion, removed afterwards. */
  runOnce(opts: RunOnceOptions): Promise<RunOnceResult>;
  /** The container's log lines (LogOptions); opening is bounded like any call, reading a followed stream is not. */
  containerLogs(id: string, opts: LogOptions): Promise<LogStream>;
  /** Subscribes to container events of berth-managed containers; returns an unsubscribe function. */
  watchEvents(onEvent: (e: DockerEvent) => void): () => void;
  close(): Promise<void>;
}

/** The driver of a configured host; HostNotConfiguredError for a name the config does not have. */
export function driverFor(drivers: ReadonlyMap<string, HostDriver>, host: string): HostDriver {
  const d = drivers.get(host);
  if (!d) throw new HostNotConfiguredError(host);
  return d;
}
