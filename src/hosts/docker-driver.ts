/**
 * The one HostDriver implementation, on top of dockerode's modem. What differs between a
 * remote host and this machine is only how a stream reaches the Docker socket / a container:
 *
 * - SSH (`createSshDriver`): dockerode gets an `http.Agent` whose `createConnection` opens an
 *   OpenSSH streamlocal channel to the host's Docker socket on one multiplexed SSH connection;
 *   health probes go over direct-tcpip channels, Unix-socket requests over streamlocal ones.
 * - local (`createLocalDriver`): the Docker socket path and direct TCP / Unix connections.
 *
 * Every call runs under a deadline (default 15 s, pulls 5 min) and rejects with a HostError
 * (codes in host-errors.ts). Env values go only in the create body, never in a URL or a log.
 */
import http from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import { inspect } from 'node:util';
import Docker from 'dockerode';
import type DockerModem from 'docker-modem';
import type { HostSpec } from '../domain/app-spec.js';
import { HostError } from '../domain/errors.js';
import { tarArchive } from './tar.js';
import { LABELS, NETWORK_NAME } from '../domain/labels.js';
import type { Logger } from '../log.js';
import type {
  ContainerRole,
  CreateContainerOptions,
  DockerEvent,
  HostDriver,
  HostInfo,
  HttpResult,
  ObservedContainer,
  RunOnceResult,
} from './host-driver.js';
import { HOST_ERROR_CODES, backoffMs, dockerMessage, dockerStatus, toHostError, withDeadline } from './host-errors.js';
import { httpRequest, type HttpTarget } from './http-request.js';
import { SshConnection, type SshConnectionOptions } from './ssh-connection.js';

export interface DriverOptions {
  /** Deadline of one Docker API call. Default 15 s. */
  timeoutMs?: number;
  /** Deadline of an image pull (the whole progress stream). Default 5 min. */
  pullTimeoutMs?: number;
  /** The network whose address is reported as ObservedContainer.ip. Default `berth`. */
  network?: string;
  /** Observes every host operation (for berth_host_operation_duration_seconds{host,op}). */
  onOperation?: (op: string, seconds: number, ok: boolean) => void;
  /** SSH connection tuning (SSH driver only). */
  ssh?: SshConnectionOptions;
  /** Re-subscription backoff cap of watchEvents. Default 10 s. */
  eventsBackoffMaxMs?: number;
  /** Bytes of output runOnce keeps. Default 4096. */
  outputTailBytes?: number;
}

/** The op label values passed to onOperation (bounded: fit for a metric label). */
export type HostOperation =
  | 'connect'
  | 'ping'
  | 'list_containers'
  | 'has_image'
  | 'pull'
  | 'ensure_network'
  | 'create'
  | 'start'
  | 'stop'
  | 'remove'
  | 'inspect'
  | 'http_get'
  | 'unix_request'
  | 'run_once'
  | 'events_subscribe';

/** How the driver reaches the host. */
interface Transport {
  readonly kind: 'ssh' | 'local';
  readonly modem: DockerModem;
  tcpTarget(ip: string, port: number): HttpTarget;
  unixTarget(socketPath: string): HttpTarget;
  close(): Promise<void>;
}

/** An http.Agent whose connections are SSH streamlocal channels to the Docker socket. */
class SshDockerAgent extends http.Agent {
  constructor(
    private readonly conn: SshConnection,
    private readonly socketPath: string,
  ) {
    super({ keepAlive: false });
  }

  /**
   * docker-modem util.inspect()s every request's options, this agent included, even
   * with its debug output off; the SSH connection behind it made that cost ms per call.
   */
  [inspect.custom](): string {
    return `SshDockerAgent(${this.conn.spec.name})`;
  }

  override createConnection(
    _options: http.ClientRequestArgs,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    this.conn.forwardUnix(this.socketPath).then(
      (stream) => callback?.(null, stream),
      (err: unknown) => {
        const he =
          err instanceof HostError && err.code === HOST_ERROR_CODES.channelFailed
            ? new HostError(
                HOST_ERROR_CODES.unreachable,
                this.conn.spec.name,
                `docker socket ${this.socketPath} not reachable over SSH (is dockerd running?): ${(err.cause as Error | undefined)?.message ?? err.message}`,
                { cause: err },
              )
            : err instanceof Error
              ? err
              : new Error(String(err));
        // Node ignores the stream argument when err is set; the type wants one.
        callback?.(he, undefined as unknown as Duplex);
      },
    );
    return undefined;
  }
}

/** Modem options that ignore DOCKER_HOST / DOCKER_TLS_* from the daemon's environment. */
function modemFor(opts: DockerModem.ConstructorOptions): DockerModem {
  const base: DockerModem.ConstructorOptions = {
    socketPath: undefined,
    host: undefined,
    port: undefined,
    protocol: 'http',
    ca: undefined,
    cert: undefined,
    key: undefined,
    timeout: undefined,
    version: undefined,
    headers: {},
  };
  return new Docker({ ...base, ...opts } as Docker.DockerOptions).modem;
}

function sshTransport(spec: HostSpec, log: Logger, opts: DriverOptions): Transport {
  const conn = new SshConnection(spec, log, {
    ...opts.ssh,
    onConnect: (s, ok) => {
      opts.ssh?.onConnect?.(s, ok);
      safeObserve(opts, 'connect', s, ok);
    },
  });
  const agent = new SshDockerAgent(conn, spec.dockerSocket);
  // `host` only feeds the URL / Host header; the agent decides where bytes go.
  const modem = modemFor({ host: 'docker', port: 80, protocol: 'http', agent });
  return {
    kind: 'ssh',
    modem,
    tcpTarget: (ip, port) => ({
      kind: 'stream',
      open: () => conn.forwardTcp(ip, port),
      hostHeader: `${ip}:${port}`,
      describe: `http://${ip}:${port}`,
    }),
    unixTarget: (socketPath) => ({
      kind: 'stream',
      open: () => conn.forwardUnix(socketPath),
      hostHeader: '',
      describe: `unix:${socketPath}:`,
    }),
    close: async () => {
      agent.destroy();
      await conn.close();
    },
  };
}

function localTransport(spec: HostSpec): Transport {
  const modem = modemFor({ socketPath: spec.dockerSocket });
  return {
    kind: 'local',
    modem,
    tcpTarget: (ip, port) => ({ kind: 'tcp', ip, port }),
    unixTarget: (socketPath) => ({ kind: 'unix', socketPath }),
    close: async () => undefined,
  };
}

function safeObserve(opts: DriverOptions, op: string, seconds: number, ok: boolean): void {
  try {
    opts.onOperation?.(op, seconds, ok);
  } catch {
    /* a metrics hook never breaks a host call */
  }
}

interface DialArgs {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  query?: Record<string, unknown>;
  body?: unknown;
  /** A raw request body (a tar archive for PUT .../archive). */
  file?: Buffer;
  ok: number[];
  stream?: boolean;
  signal: AbortSignal;
}

/** A raw API call. Query and body are kept apart (dockerode would also put the body in the URL). */
function dial<T>(modem: DockerModem, a: DialArgs): Promise<T> {
  const statusCodes: DockerModem.StatusCodes = {};
  for (const c of a.ok) statusCodes[c] = true;
  for (const c of [304, 400, 401, 403, 404, 409, 500, 503]) if (!(c in statusCodes)) statusCodes[c] = `HTTP ${c}`;
  return new Promise<T>((resolve, reject) => {
    modem.dial(
      {
        method: a.method,
        path: `${a.path}?`,
        options: { _query: a.query ?? {}, _body: a.body ?? {} },
        ...(a.file ? { file: a.file, headers: { 'Content-Type': 'application/x-tar' } } : {}),
        statusCodes,
        isStream: a.stream === true,
        abortSignal: a.signal,
      },
      (err, data) => (err ? reject(err) : resolve(data as T)),
    );
  });
}

/** Splits a stream of newline-delimited JSON (events, pull progress). */
function jsonLines(stream: Readable, onObject: (o: Record<string, unknown>) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let buf = '';
    let ended = false;
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (line === '') continue;
        try {
          onObject(JSON.parse(line) as Record<string, unknown>);
        } catch (e) {
          if (e instanceof HostError) {
            stream.destroy();
            reject(e);
            return;
          }
          /* a line that is not JSON: skip */
        }
      }
    });
    stream.on('end', () => {
      ended = true;
      const line = buf.trim();
      if (line !== '') {
        try {
          onObject(JSON.parse(line) as Record<string, unknown>);
        } catch (e) {
          if (e instanceof HostError) {
            reject(e);
            return;
          }
        }
      }
      resolve();
    });
    stream.on('error', reject);
    stream.on('close', () => {
      if (!ended) reject(new Error('stream closed before its end'));
    });
  });
}

/** Docker's multiplexed log format: 8-byte headers [stream, 0, 0, 0, len BE32] + payload. */
export function demuxDockerLog(buf: Buffer): Buffer {
  const parts: Buffer[] = [];
  let off = 0;
  while (off + 8 <= buf.length) {
    const type = buf[off];
    if (!(type === 0 || type === 1 || type === 2) || buf[off + 1] !== 0 || buf[off + 2] !== 0 || buf[off + 3] !== 0) {
      // Not framed (a TTY container): raw bytes.
      return off === 0 ? buf : Buffer.concat([...parts, buf.subarray(off)]);
    }
    const len = buf.readUInt32BE(off + 4);
    parts.push(buf.subarray(off + 8, Math.min(buf.length, off + 8 + len)));
    off += 8 + len;
  }
  return Buffer.concat(parts);
}

/** The last `max` bytes, decoded without a broken leading UTF-8 sequence. */
export function utf8Tail(buf: Buffer, max: number): string {
  let start = Math.max(0, buf.length - max);
  while (start < buf.length && start > 0 && ((buf[start] ?? 0) & 0xc0) === 0x80) start++;
  return buf.subarray(start).toString('utf8');
}

const ROLES: readonly ContainerRole[] = ['app', 'proxy', 'hook'];

interface RawListed {
  Id: string;
  Names?: string[];
  Image: string;
  Labels?: Record<string, string> | null;
  State: string;
  Created: number;
  NetworkSettings?: { Networks?: Record<string, { IPAddress?: string }> | null } | null;
}

interface RawInspect {
  Id: string;
  Name: string;
  Created: string;
  Config: { Image: string; Labels?: Record<string, string> | null };
  State: { Status: string; Running: boolean; ExitCode: number };
  NetworkSettings?: { Networks?: Record<string, { IPAddress?: string }> | null } | null;
}

export class DockerHostDriver implements HostDriver {
  readonly name: string;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly pullTimeoutMs: number;
  private readonly network: string;
  private readonly watchers = new Set<() => void>();
  private closed = false;

  constructor(
    readonly spec: HostSpec,
    log: Logger,
    private readonly transport: Transport,
    private readonly opts: DriverOptions = {},
  ) {
    this.name = spec.name;
    this.log = log.child({ host: spec.name });
    this.timeoutMs = opts.timeoutMs ?? 15_000;
    this.pullTimeoutMs = opts.pullTimeoutMs ?? 300_000;
    this.network = opts.network ?? NETWORK_NAME;
  }

  get kind(): 'ssh' | 'local' {
    return this.transport.kind;
  }

  /** Runs one host operation under its deadline; maps errors; reports the duration. */
  private async call<T>(op: HostOperation, what: string, fn: (signal: AbortSignal) => Promise<T>, timeoutMs = this.timeoutMs): Promise<T> {
    if (this.closed) throw new HostError(HOST_ERROR_CODES.closed, this.name, `${what}: driver closed`);
    const started = performance.now();
    try {
      const v = await withDeadline(this.name, what, timeoutMs, fn);
      safeObserve(this.opts, op, (performance.now() - started) / 1000, true);
      return v;
    } catch (e) {
      const he = toHostError(e, this.name, what);
      safeObserve(this.opts, op, (performance.now() - started) / 1000, false);
      this.log.debug({ op, code: he.code }, he.message);
      throw he;
    }
  }

  private dial<T>(a: DialArgs): Promise<T> {
    return dial<T>(this.transport.modem, a);
  }

  ping(): Promise<HostInfo> {
    return this.call('ping', 'docker version', async (signal) => {
      const v = await this.dial<{ Version?: string; ApiVersion?: string }>({ method: 'GET', path: '/version', ok: [200], signal });
      return { dockerVersion: v.Version ?? 'unknown' };
    });
  }

  listContainers(filter: { app?: string } = {}): Promise<ObservedContainer[]> {
    const label = [`${LABELS.managed}=true`];
    if (filter.app !== undefined) label.push(`${LABELS.app}=${filter.app}`);
    return this.call('list_containers', 'list containers', async (signal) => {
      const list = await this.dial<RawListed[]>({
        method: 'GET',
        path: '/containers/json',
        query: { all: true, filters: { label } },
        ok: [200],
        signal,
      });
      return list.map((c) => this.fromListed(c));
    });
  }

  hasImage(ref: string): Promise<boolean> {
    return this.call('has_image', `inspect image ${ref}`, async (signal) => {
      try {
        await this.dial({ method: 'GET', path: `/images/${ref}/json`, ok: [200], signal });
        return true;
      } catch (e) {
        if (dockerStatus(e) === 404) return false;
        throw e;
      }
    });
  }

  pullImage(ref: string): Promise<void> {
    const { repo, tag } = splitReference(ref);
    return this.call(
      'pull',
      `pull ${ref}`,
      async (signal) => {
        let stream: Readable;
        try {
          stream = await this.dial<Readable>({
            method: 'POST',
            path: '/images/create',
            query: { fromImage: repo, tag },
            ok: [200],
            stream: true,
            signal,
          });
        } catch (e) {
          if (dockerStatus(e) !== null) throw this.pullFailed(ref, dockerMessage(e), e);
          throw e;
        }
        let status = '';
        await jsonLines(stream, (o) => {
          const detail = o.errorDetail as { message?: unknown } | undefined;
          const err = typeof o.error === 'string' ? o.error : typeof detail?.message === 'string' ? detail.message : null;
          if (err !== null) throw this.pullFailed(ref, err);
          if (typeof o.status === 'string') status = o.status;
        });
        this.log.debug({ image: ref, status }, 'image pulled');
      },
      this.pullTimeoutMs,
    );
  }

  private pullFailed(ref: string, message: string, cause?: unknown): HostError {
    return new HostError(HOST_ERROR_CODES.imagePullFailed, this.name, `pull of ${ref} failed: ${message.trim()}`, { cause });
  }

  ensureNetwork(name: string): Promise<void> {
    return this.call('ensure_network', `ensure network ${name}`, async (signal) => {
      const nets = await this.dial<Array<{ Name: string }>>({
        method: 'GET',
        path: '/networks',
        query: { filters: { name: [name] } },
        ok: [200],
        signal,
      });
      if (nets.some((n) => n.Name === name)) return;
      try {
        await this.dial({
          method: 'POST',
          path: '/networks/create',
          body: { Name: name, Driver: 'bridge', CheckDuplicate: true, Labels: { [LABELS.managed]: 'true' } },
          ok: [200, 201],
          signal,
        });
        this.log.info({ network: name }, 'created network');
      } catch (e) {
        if (dockerStatus(e) === 409) return; // created concurrently
        throw e;
      }
    });
  }

  createContainer(o: CreateContainerOptions): Promise<string> {
    return this.call('create', `create container ${o.name}`, (signal) => this.create(o, signal));
  }

  private async create(o: CreateContainerOptions, signal: AbortSignal): Promise<string> {
    const labels: Record<string, string> = { [LABELS.managed]: 'true', ...o.labels };
    const exposed: Record<string, object> = {};
    const bindings: Record<string, Array<{ HostIp: string; HostPort: string }>> = {};
    for (const p of o.publish ?? []) {
      const key = `${p.containerPort}/tcp`;
      exposed[key] = {};
      (bindings[key] ??= []).push({ HostIp: p.hostIp ?? '', HostPort: String(p.hostPort) });
    }
    const body = {
      Image: o.image,
      ...(o.cmd ? { Cmd: o.cmd } : {}),
      ...(o.entrypoint ? { Entrypoint: o.entrypoint } : {}),
      Env: Object.entries(o.env).map(([k, v]) => `${k}=${v}`),
      Labels: labels,
      ...(o.publish?.length ? { ExposedPorts: exposed } : {}),
      HostConfig: {
        Init: o.init,
        AutoRemove: false,
        NetworkMode: o.network,
        RestartPolicy: { Name: o.restartPolicy ?? 'no' },
        ...(o.publish?.length ? { PortBindings: bindings } : {}),
        ...(o.binds?.length ? { Binds: o.binds } : {}),
      },
      // The host network takes no endpoint settings.
      ...(o.network === 'host' ? {} : { NetworkingConfig: { EndpointsConfig: { [o.network]: {} } } }),
    };
    let id: string;
    try {
      const res = await this.dial<{ Id: string; Warnings?: string[] }>({
        method: 'POST',
        path: '/containers/create',
        query: { name: o.name },
        body,
        ok: [200, 201],
        signal,
      });
      this.log.info({ container: o.name, id: res.Id.slice(0, 12), image: o.image }, 'created container');
      id = res.Id;
    } catch (e) {
      const status = dockerStatus(e);
      if (status === 409) {
        const adopted = await this.adopt(o.name, labels, signal, e);
        // Created but never started (a crash between create and start): its files may be missing.
        if (o.files?.length && adopted.state === 'created') await this.copyFiles(adopted.id, o.files, signal);
        return adopted.id;
      }
      if (status === 404 && /image/i.test(dockerMessage(e))) {
        throw new HostError(HOST_ERROR_CODES.imageNotFound, this.name, `create container ${o.name}: image ${o.image} is not on the host (pull it first): ${dockerMessage(e)}`, { cause: e });
      }
      throw e;
    }
    if (o.files?.length) {
      try {
        await this.copyFiles(id, o.files, signal);
      } catch (e) {
        // Never leave a half-made container behind: a retry creates it afresh.
        await this.dial({ method: 'DELETE', path: `/containers/${id}`, query: { force: true, v: true }, ok: [204, 404], signal }).catch(() => undefined);
        throw e;
      }
    }
    return id;
  }

  /** Copies files into a created, not yet started container: a tar through PUT /containers/{id}/archive. */
  private async copyFiles(id: string, files: NonNullable<CreateContainerOptions['files']>, signal: AbortSignal): Promise<void> {
    await this.dial({ method: 'PUT', path: `/containers/${id}/archive`, query: { path: '/' }, file: tarArchive(files), ok: [200], signal });
    this.log.debug({ id: short(id), files: files.map((f) => f.path) }, 'copied files into container');
  }

  /** A container of this name exists: take it over when it is ours and the same app/revision. */
  private async adopt(name: string, labels: Record<string, string>, signal: AbortSignal, cause: unknown): Promise<{ id: string; state: string }> {
    let existing: RawInspect;
    try {
      existing = await this.dial<RawInspect>({ method: 'GET', path: `/containers/${encodeURIComponent(name)}/json`, ok: [200], signal });
    } catch (e) {
      if (dockerStatus(e) === 404) {
        throw new HostError(HOST_ERROR_CODES.nameConflict, this.name, `create container ${name}: name conflict, but no container of that name (removed meanwhile?): ${dockerMessage(cause)}`, { cause });
      }
      throw e;
    }
    const have = existing.Config.Labels ?? {};
    const mismatched = [LABELS.managed, LABELS.app, LABELS.revision, LABELS.role].filter((k) => labels[k] !== undefined && have[k] !== labels[k]);
    if (mismatched.length > 0) {
      throw new HostError(
        HOST_ERROR_CODES.nameConflict,
        this.name,
        `create container ${name}: the name is taken by container ${existing.Id.slice(0, 12)} whose labels differ (${mismatched.map((k) => `${k}=${have[k] ?? '<unset>'}`).join(', ')}); not adopting it`,
        { cause },
      );
    }
    this.log.info({ container: name, id: existing.Id.slice(0, 12), state: existing.State.Status }, 'adopted existing container');
    return { id: existing.Id, state: existing.State.Status };
  }

  startContainer(id: string): Promise<void> {
    return this.call('start', `start container ${short(id)}`, async (signal) => {
      for (let attempt = 1; ; attempt++) {
        try {
          await this.dial({ method: 'POST', path: `/containers/${encodeURIComponent(id)}/start`, ok: [204], signal });
          return;
        } catch (e) {
          if (dockerStatus(e) === 304) return; // already running
          // After a dockerd restart that interrupted a start (live-restore), containerd
          // can keep the half-made task: "task ... already exists". Either the restore
          // brings the container up, or it can only be recreated (STALE_TASK).
          if (!/task \S+ already exists/.test(dockerMessage(e))) throw e;
          if ((await this.inspectRaw(id, signal))?.State.Running) return;
          if (attempt >= 3) {
            throw new HostError(HOST_ERROR_CODES.staleTask, this.name, `start container ${short(id)}: containerd kept a stale task from before a dockerd restart; the container must be recreated`, { cause: e });
          }
          await new Promise((r) => setTimeout(r, 300));
        }
      }
    });
  }

  stopContainer(id: string, timeoutMs: number): Promise<void> {
    const t = Math.max(0, Math.ceil(timeoutMs / 1000));
    return this.call(
      'stop',
      `stop container ${short(id)}`,
      async (signal) => {
        try {
          await this.dial({ method: 'POST', path: `/containers/${encodeURIComponent(id)}/stop`, query: { t }, ok: [204], signal });
        } catch (e) {
          const s = dockerStatus(e);
          if (s === 304 || s === 404) return; // already stopped / gone: the goal holds
          throw e;
        }
      },
      t * 1000 + this.timeoutMs,
    );
  }

  removeContainer(id: string): Promise<void> {
    return this.call('remove', `remove container ${short(id)}`, async (signal) => {
      try {
        await this.dial({ method: 'DELETE', path: `/containers/${encodeURIComponent(id)}`, query: { force: true, v: true }, ok: [204], signal });
      } catch (e) {
        const s = dockerStatus(e);
        if (s === 404) return;
        if (s === 409 && /already in progress/i.test(dockerMessage(e))) return;
        throw e;
      }
    });
  }

  inspectContainer(id: string): Promise<ObservedContainer | null> {
    return this.call('inspect', `inspect container ${short(id)}`, async (signal) => {
      const raw = await this.inspectRaw(id, signal);
      return raw ? this.fromInspect(raw) : null;
    });
  }

  private async inspectRaw(id: string, signal: AbortSignal): Promise<RawInspect | null> {
    try {
      return await this.dial<RawInspect>({ method: 'GET', path: `/containers/${encodeURIComponent(id)}/json`, ok: [200], signal });
    } catch (e) {
      if (dockerStatus(e) === 404) return null;
      throw e;
    }
  }

  httpGet(ip: string, port: number, path: string, timeoutMs: number): Promise<HttpResult> {
    const target = this.transport.tcpTarget(ip, port);
    return this.call(
      'http_get',
      `GET http://${ip}:${port}${path}`,
      (signal) => httpRequest({ host: this.name, target, method: 'GET', path, signal }),
      timeoutMs,
    );
  }

  unixRequest(
    socketPath: string,
    req: { method: string; path: string; body?: string; timeoutMs: number; headers?: Record<string, string> },
  ): Promise<HttpResult> {
    const target = this.transport.unixTarget(socketPath);
    // An empty Host: what Caddy's admin API on a Unix socket wants (DESIGN §10); Docker accepts it.
    const headers = { Host: '', ...(req.headers ?? {}) };
    return this.call(
      'unix_request',
      `${req.method} unix:${socketPath}:${req.path}`,
      (signal) =>
        httpRequest({
          host: this.name,
          target,
          method: req.method,
          path: req.path,
          headers,
          ...(req.body !== undefined ? { body: req.body } : {}),
          signal,
        }),
      req.timeoutMs,
    );
  }

  runOnce(o: Omit<CreateContainerOptions, 'init' | 'publish'> & { timeoutMs: number }): Promise<RunOnceResult> {
    // The overall bound: the run itself plus a few ordinary calls around it.
    return this.call('run_once', `run once ${o.name}`, () => this.runOnceInner(o), o.timeoutMs + 4 * this.timeoutMs);
  }

  private async runOnceInner(o: Omit<CreateContainerOptions, 'init' | 'publish'> & { timeoutMs: number }): Promise<RunOnceResult> {
    const step = <T>(what: string, fn: (signal: AbortSignal) => Promise<T>, ms = this.timeoutMs): Promise<T> =>
      withDeadline(this.name, `run once ${o.name}: ${what}`, ms, fn).catch((e: unknown) => {
        throw toHostError(e, this.name, `run once ${o.name}: ${what}`);
      });
    const { timeoutMs, ...create } = o;
    const id = await step('create', (signal) => this.create({ ...create, init: true, restartPolicy: 'no' }, signal));
    const started = performance.now();
    try {
      const before = await step('inspect', (signal) => this.inspectRaw(id, signal));
      if (before?.State.Status === 'created') {
        await step('start', (signal) => this.dial({ method: 'POST', path: `/containers/${id}/start`, ok: [204, 304], signal }));
      }
      let timedOut = false;
      let exitCode: number;
      try {
        const remaining = Math.max(1, timeoutMs - (performance.now() - started));
        const res = await withDeadline(this.name, `run once ${o.name}`, remaining, (signal) =>
          this.dial<{ StatusCode: number }>({ method: 'POST', path: `/containers/${id}/wait`, query: { condition: 'not-running' }, ok: [200], signal }),
        );
        exitCode = res.StatusCode;
      } catch (e) {
        if (!(e instanceof HostError && e.code === HOST_ERROR_CODES.timeout)) throw e;
        timedOut = true;
        this.log.warn({ container: o.name, timeoutMs }, 'one-off container timed out; killing it');
        await step('kill', async (signal) => {
          try {
            await this.dial({ method: 'POST', path: `/containers/${id}/kill`, query: { signal: 'SIGKILL' }, ok: [204], signal });
          } catch (err) {
            if (dockerStatus(err) !== 409) throw err; // 409: not running any more
          }
        });
        const after = await step('wait after kill', (signal) =>
          this.dial<{ StatusCode: number }>({ method: 'POST', path: `/containers/${id}/wait`, query: { condition: 'not-running' }, ok: [200], signal }),
        );
        exitCode = after.StatusCode;
      }
      const logs = await step('logs', (signal) =>
        this.dial<Buffer | object>({
          method: 'GET',
          path: `/containers/${id}/logs`,
          query: { stdout: true, stderr: true, tail: 500 },
          ok: [200],
          signal,
        }),
      );
      // docker-modem hands back parsed JSON when the output happens to be JSON (TTY only).
      const raw = Buffer.isBuffer(logs) ? logs : Buffer.from(JSON.stringify(logs));
      const outputTail = utf8Tail(demuxDockerLog(raw), this.opts.outputTailBytes ?? 4096);
      this.log.info({ container: o.name, exitCode, timedOut, seconds: +((performance.now() - started) / 1000).toFixed(2) }, 'one-off container finished');
      return { exitCode, outputTail, timedOut };
    } finally {
      await step('remove', (signal) =>
        this.dial({ method: 'DELETE', path: `/containers/${id}`, query: { force: true, v: true }, ok: [204, 404], signal }),
      ).catch((e: unknown) => this.log.warn({ container: o.name, err: (e as Error).message }, 'could not remove one-off container'));
    }
  }

  watchEvents(onEvent: (e: DockerEvent) => void): () => void {
    let stopped = false;
    let failures = 0;
    let subscribedOnce = false;
    let since: number | null = null;
    let ac: AbortController | null = null;
    let timer: NodeJS.Timeout | null = null;
    const cap = this.opts.eventsBackoffMaxMs ?? 10_000;

    const retry = (why: string): void => {
      if (stopped || this.closed) return;
      failures += 1;
      const delay = failures === 1 ? 0 : backoffMs(failures - 1, 500, cap);
      this.log.debug({ failures, retryInMs: delay }, `docker events stream ended (${why}); re-subscribing`);
      timer = setTimeout(subscribe, delay);
    };

    const subscribe = (): void => {
      timer = null;
      if (stopped || this.closed) return;
      const mine = new AbortController();
      ac = mine;
      const filters = { type: ['container'], label: [`${LABELS.managed}=true`] };
      const started = performance.now();
      withDeadline(this.name, 'subscribe to docker events', this.timeoutMs, (signal) => {
        signal.addEventListener('abort', () => mine.abort(signal.reason), { once: true });
        return this.dial<Readable>({
          method: 'GET',
          path: '/events',
          query: since !== null ? { filters, since } : { filters },
          ok: [200],
          stream: true,
          signal: mine.signal,
        });
      }).then(
        (stream) => {
          safeObserve(this.opts, 'events_subscribe', (performance.now() - started) / 1000, true);
          if (stopped) {
            stream.destroy();
            return;
          }
          if (subscribedOnce) onEvent({ id: null, app: null, action: 'resubscribed' });
          subscribedOnce = true;
          failures = 0;
          jsonLines(stream, (o) => {
            const actor = (o.Actor ?? {}) as { ID?: string; Attributes?: Record<string, string> };
            if (typeof o.time === 'number') since = o.time;
            if (o.Type !== undefined && o.Type !== 'container') return;
            const action = typeof o.Action === 'string' ? o.Action : typeof o.status === 'string' ? o.status : 'unknown';
            try {
              onEvent({
                id: actor.ID ?? (typeof o.id === 'string' ? o.id : null),
                app: actor.Attributes?.[LABELS.app] ?? null,
                action,
              });
            } catch (e) {
              this.log.error({ err: (e as Error).message }, 'docker event handler threw');
            }
          }).then(
            () => retry('end'),
            (e: unknown) => retry((e as Error).message),
          );
        },
        (e: unknown) => {
          safeObserve(this.opts, 'events_subscribe', (performance.now() - started) / 1000, false);
          const he = toHostError(e, this.name, 'subscribe to docker events');
          this.log.debug({ code: he.code }, he.message);
          if (!stopped) retry(he.message);
        },
      );
    };

    const unsubscribe = (): void => {
      if (stopped) return;
      stopped = true;
      if (timer) clearTimeout(timer);
      ac?.abort(new Error('unsubscribed'));
      this.watchers.delete(unsubscribe);
    };
    this.watchers.add(unsubscribe);
    subscribe();
    return unsubscribe;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const w of [...this.watchers]) w();
    this.closed = true;
    await this.transport.close();
  }

  private labelsToObserved(
    labels: Record<string, string>,
  ): Pick<ObservedContainer, 'app' | 'revision' | 'version' | 'configHash' | 'role'> {
    const rev = Number.parseInt(labels[LABELS.revision] ?? '', 10);
    const role = labels[LABELS.role] as ContainerRole | undefined;
    return {
      app: labels[LABELS.app] ?? '',
      revision: Number.isFinite(rev) ? rev : 0,
      version: labels[LABELS.version] ?? '',
      configHash: labels[LABELS.config] ?? '',
      role: role !== undefined && ROLES.includes(role) ? role : 'app',
    };
  }

  private ipOf(networks: Record<string, { IPAddress?: string }> | null | undefined, running: boolean): string | null {
    if (!running || !networks) return null;
    const own = networks[this.network]?.IPAddress;
    if (own) return own;
    for (const n of Object.values(networks)) if (n.IPAddress) return n.IPAddress;
    return null;
  }

  private fromListed(c: RawListed): ObservedContainer {
    const labels = c.Labels ?? {};
    const running = c.State === 'running';
    return {
      id: c.Id,
      name: (c.Names?.[0] ?? '').replace(/^\//, ''),
      ...this.labelsToObserved(labels),
      state: c.State,
      running,
      ip: this.ipOf(c.NetworkSettings?.Networks, running),
      createdAt: c.Created * 1000,
      image: c.Image,
    };
  }

  private fromInspect(c: RawInspect): ObservedContainer {
    const labels = c.Config.Labels ?? {};
    const running = c.State.Running;
    return {
      id: c.Id,
      name: c.Name.replace(/^\//, ''),
      ...this.labelsToObserved(labels),
      state: c.State.Status,
      running,
      ip: this.ipOf(c.NetworkSettings?.Networks, running),
      createdAt: Date.parse(c.Created),
      image: c.Config.Image,
    };
  }
}

/** `repo:tag`, `repo@sha256:...`, `registry:5000/repo` (tag `latest`). */
export function splitReference(ref: string): { repo: string; tag: string } {
  const at = ref.indexOf('@');
  if (at >= 0) return { repo: ref.slice(0, at), tag: ref.slice(at + 1) };
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (colon > slash) return { repo: ref.slice(0, colon), tag: ref.slice(colon + 1) };
  return { repo: ref, tag: 'latest' };
}

function short(id: string): string {
  return /^[0-9a-f]{64}$/.test(id) ? id.slice(0, 12) : id;
}

/** The driver for a host reached over SSH. */
export function createSshDriver(spec: HostSpec, log: Logger, opts: DriverOptions = {}): DockerHostDriver {
  return new DockerHostDriver(spec, log, sshTransport(spec, log.child({ host: spec.name }), opts), opts);
}

/** The driver for this machine's Docker (`local: true`): the socket path directly. */
export function createLocalDriver(spec: HostSpec, log: Logger, opts: DriverOptions = {}): DockerHostDriver {
  return new DockerHostDriver(spec, log, localTransport(spec), opts);
}

/** SSH or local, as the spec says. */
export function createHostDriver(spec: HostSpec, log: Logger, opts: DriverOptions = {}): DockerHostDriver {
  return spec.local ? createLocalDriver(spec, log, opts) : createSshDriver(spec, log, opts);
}
