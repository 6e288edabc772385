/**
 * DockerHostDriver, the HostDriver on real Docker, and its factories: each operation is one bounded
 * call (metrics, HostError mapping) over an SSH or local transport (./transport.ts). Env values
 * go only in the create body, never in a URL or a log.
 */
import { activeFence } from '../../cluster/fence.js';
import type { Readable } from 'node:stream';
import type { HostSpec, RegistryAuth } from '../../domain/app-spec.js';
import { HOST_ERROR_CODES, HostError } from '../../domain/errors.js';
import { LABELS, NETWORK_NAME } from '../../domain/labels.js';
import { registryOf, splitReference } from '../../domain/naming.js';
import { secretRedactor } from '../../domain/secrets.js';
import type { Logger } from '../../log.js';
import {
  ADOPT_LABELS,
  reportOperation,
  type CreateContainerOptions,
  type DockerEvent,
  type ExecResult,
  type HostDriver,
  type HostInfo,
  type HostOperation,
  type HttpResult,
  type LogOptions,
  type LogStream,
  type ObservedContainer,
  type RunOnceOptions,
  type RunOnceResult,
} from '../host-driver.js';
import { boundedCall, dockerMessage, dockerStatus, toHostError } from '../host-errors.js';
import { httpRequest } from '../http-request.js';
import { tarArchive } from '../tar.js';
import { unixCommand } from '../unix-command.js';
import { createBody, fromInspect, fromListed, type RawInspect, type RawListed } from './container-json.js';
import { execIn } from './exec.js';
import { DEFAULT_RESUBSCRIBE_BACKOFF_MAX_MS, DockerEventWatcher, type EventsHost } from './events.js';
import { dial, jsonLines, type DialArgs } from './framing.js';
import { logLines, logsQuery } from './logs.js';
import { runOneOff, type OneOffHost } from './run-once.js';
import { localTransport, sshTransport, type Transport, type TransportOptions } from './transport.js';

/**
 * Deadline of one Docker API call: they answer in ms, but a daemon under I/O load can take
 * seconds to create or remove; past this the host counts as not answering.
 */
const DEFAULT_CALL_TIMEOUT_MS = 15_000;
/** Deadline of an image pull (the whole progress stream): a large image from a slow registry takes minutes. */
const DEFAULT_PULL_TIMEOUT_MS = 300_000;
/** Bytes of a one-off run's output kept in its result: the end of a hook's log, small enough for an event. */
const DEFAULT_OUTPUT_TAIL_BYTES = 4096;
/** Starts tried against a stale containerd task before giving up: a live-restore settles within a few. */
const STALE_TASK_START_ATTEMPTS = 3;
/** Pause between those starts, so dockerd's restore can finish. */
const STALE_TASK_RETRY_MS = 300;
/** A one-off run is bounded by its own timeout plus this many ordinary calls (create, inspect/start, logs, remove). */
const RUN_ONCE_EXTRA_CALLS = 4;

export interface DriverOptions extends TransportOptions {
  /** Deadline of one Docker API call. Default 15 s. */
  timeoutMs?: number;
  /** Deadline of an image pull (the whole progress stream). Default 5 min. */
  pullTimeoutMs?: number;
  /** The network whose address is reported as ObservedContainer.ip. Default `berth`. */
  network?: string;
  /** Re-subscription backoff cap of watchEvents. Default 10 s. */
  eventsBackoffMaxMs?: number;
  /** Bytes of output runOnce keeps. Default 4096. */
  outputTailBytes?: number;
  /**
   * The credentials a pull of `ref` sends to its registry, or null (anonymous). Asked at every
   * pull, so a reload or an edited password applies to the next one; may throw (a password
   * its file lacks), which fails that pull as it is.
   */
  registryAuth?: (ref: string) => RegistryAuth | null;
}

/** What a registry or dockerd says when a pull lacks credentials, or has wrong ones. */
const AUTH_REFUSED = /unauthorized|authentication required|no basic auth credentials|access denied|denied:/i;

export class DockerHostDriver implements HostDriver {
  readonly name: string;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly pullTimeoutMs: number;
  private readonly network: string;
  private readonly watchers = new Set<DockerEventWatcher>();
  /** ensureNetwork calls in flight, by name: concurrent callers share one. */
  private readonly networksInFlight = new Map<string, Promise<void>>();
  private closed = false;
  /** What runOnce (./run-once.ts) and watchEvents (./events.ts) use of this driver. */
  private readonly oneOffHost: OneOffHost;
  private readonly eventsHost: EventsHost;

  constructor(
    readonly spec: HostSpec,
    log: Logger,
    private readonly transport: Transport,
    private readonly opts: DriverOptions = {},
  ) {
    this.name = spec.name;
    this.log = log.child({ host: spec.name });
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.pullTimeoutMs = opts.pullTimeoutMs ?? DEFAULT_PULL_TIMEOUT_MS;
    this.network = opts.network ?? NETWORK_NAME;
    this.oneOffHost = {
      name: this.name,
      log: this.log,
      callTimeoutMs: this.timeoutMs,
      outputTailBytes: opts.outputTailBytes ?? DEFAULT_OUTPUT_TAIL_BYTES,
      dial: (a) => this.dial(a),
      create: (o, signal) => this.create(o, signal),
      inspect: (id, signal) => this.inspectRaw(id, signal),
    };
    this.eventsHost = {
      name: this.name,
      log: this.log,
      subscribeTimeoutMs: this.timeoutMs,
      backoffMaxMs: opts.eventsBackoffMaxMs ?? DEFAULT_RESUBSCRIBE_BACKOFF_MAX_MS,
      isClosed: () => this.closed,
      dial: (a) => this.dial(a),
      observe: (op, seconds, ok) => reportOperation(this.opts.onOperation, op, seconds, ok),
    };
  }

  get kind(): 'ssh' | 'local' {
    return this.transport.kind;
  }

  /** Runs one host operation under its deadline; maps errors; reports the duration. */
  private async call<T>(op: HostOperation, what: string, fn: (signal: AbortSignal) => Promise<T>, timeoutMs = this.timeoutMs): Promise<T> {
    if (this.closed) throw new HostError(HOST_ERROR_CODES.closed, this.name, `${what}: driver closed`);
    // The leader's work stops at its next host call once its lease has lapsed (src/cluster/lease.ts).
    activeFence()?.beforeRemote();
    // Debug only: which daemon called what when (the takeover test reads it to prove no two leaders acted at once).
    this.log.debug({ op }, what);
    const started = performance.now();
    try {
      const v = await boundedCall(this.name, what, timeoutMs, fn);
      reportOperation(this.opts.onOperation, op, (performance.now() - started) / 1000, true);
      return v;
    } catch (e) {
      const he = toHostError(e, this.name, what);
      reportOperation(this.opts.onOperation, op, (performance.now() - started) / 1000, false);
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
      const list = await this.dial<RawListed[]>({ method: 'GET', path: '/containers/json', query: { all: true, filters: { label } }, ok: [200], signal });
      return list.map((c) => fromListed(c, this.network));
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

  /**
   * Pulls `ref` with the credentials of its registry when the config has them
   * (DriverOptions.registryAuth): the password goes only into the X-Registry-Auth header over
   * the host's connection, and is cut out of whatever dockerd answers before that becomes an error.
   */
  async pullImage(ref: string): Promise<void> {
    // Asked before the call: a password that cannot be read fails the pull as it is (SECRET_MISSING), not as a host error.
    const auth = this.opts.registryAuth?.(ref) ?? null;
    const { repo, tag } = splitReference(ref);
    const authconfig = auth ? { authconfig: { username: auth.username, password: auth.password, serveraddress: auth.registry } } : {};
    const pull = async (signal: AbortSignal): Promise<void> => {
      let stream: Readable;
      try {
        stream = await this.dial<Readable>({ method: 'POST', path: '/images/create', query: { fromImage: repo, tag }, ok: [200], stream: true, signal, ...authconfig });
      } catch (e) {
        if (dockerStatus(e) !== null) throw this.pullFailed(ref, dockerMessage(e), auth, e);
        throw e;
      }
      let status = '';
      await jsonLines(stream, (o) => {
        const detail = o.errorDetail as { message?: unknown } | undefined;
        const err = typeof o.error === 'string' ? o.error : typeof detail?.message === 'string' ? detail.message : null;
        if (err !== null) throw this.pullFailed(ref, err, auth);
        if (typeof o.status === 'string') status = o.status;
      });
      this.log.debug({ image: ref, status, ...(auth ? { registry: auth.registry, user: auth.username } : {}) }, 'image pulled');
    };
    return this.call('pull', `pull ${ref}`, pull, this.pullTimeoutMs);
  }

  /**
   * dockerd's (or the registry's) message, with the password cut out and which credentials
   * were sent, or that none were. Docker's own error is not kept as the cause when credentials
   * were sent: a logged error carries its cause's fields, and those are dockerd's answer unredacted.
   */
  private pullFailed(ref: string, message: string, auth: RegistryAuth | null, cause?: unknown): HostError {
    let text = message.trim();
    if (auth) text = `${secretRedactor({ [auth.passwordName]: auth.password })(text)} (sent the credentials of ${auth.username} for ${auth.registry})`;
    else if (AUTH_REFUSED.test(text)) text += ` (berth sent no credentials: the config's registries has no entry for ${registryOf(ref)})`;
    return new HostError(HOST_ERROR_CODES.imagePullFailed, this.name, `pull of ${ref} failed: ${text}`, auth ? {} : { cause });
  }

  /**
   * One network of the name, created once: concurrent callers (several apps' passes on a
   * fresh host) share one call, because Docker's CheckDuplicate is racy and two networks
   * of one name make every start fail ("network berth is ambiguous"). Duplicates made
   * before (by another client) are removed, keeping the oldest, when nothing uses them.
   */
  ensureNetwork(name: string): Promise<void> {
    const inFlight = this.networksInFlight.get(name);
    if (inFlight) return inFlight;
    const run = this.call('ensure_network', `ensure network ${name}`, async (signal) => {
      const nets = await this.dial<Array<{ Id: string; Name: string; Created: string }>>({ method: 'GET', path: '/networks', query: { filters: { name: [name] } }, ok: [200], signal });
      const same = nets.filter((n) => n.Name === name).sort((a, b) => a.Created.localeCompare(b.Created));
      for (const dup of same.slice(1)) {
        await this.dial({ method: 'DELETE', path: `/networks/${dup.Id}`, ok: [204], signal }).then(
          () => this.log.warn({ network: name, id: short(dup.Id) }, 'removed a duplicate network'),
          (e: unknown) => this.log.warn({ network: name, id: short(dup.Id), err: dockerMessage(e) }, 'duplicate network in use: left in place'),
        );
      }
      if (same.length > 0) return;
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
        if (dockerStatus(e) === 409) return; // created concurrently by another client
        throw e;
      }
    }).finally(() => this.networksInFlight.delete(name));
    this.networksInFlight.set(name, run);
    return run;
  }

  connectNetwork(id: string, network: string): Promise<void> {
    return this.call('connect_network', `connect container ${short(id)} to network ${network}`, async (signal) => {
      try {
        await this.dial({ method: 'POST', path: `/networks/${encodeURIComponent(network)}/connect`, body: { Container: id }, ok: [200], signal });
      } catch (e) {
        // Docker answers 403 "endpoint with name X already exists in network Y" when it is on it.
        if (dockerStatus(e) === 403 && /already exists/i.test(dockerMessage(e))) return;
        throw e;
      }
    });
  }

  createContainer(o: CreateContainerOptions): Promise<string> {
    return this.call('create', `create container ${o.name}`, (signal) => this.create(o, signal));
  }

  private async create(o: CreateContainerOptions, signal: AbortSignal): Promise<string> {
    const labels: Record<string, string> = { [LABELS.managed]: 'true', ...o.labels };
    const body = createBody(o, labels);
    let id: string;
    try {
      const res = await this.dial<{ Id: string }>({ method: 'POST', path: '/containers/create', query: { name: o.name }, body, ok: [200, 201], signal });
      this.log.info({ container: o.name, id: short(res.Id), image: o.image }, 'created container');
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

  /** Writes files into a container (created or running; bind-mounted paths reach the host's directory). */
  putFiles(id: string, files: NonNullable<CreateContainerOptions['files']>): Promise<void> {
    return this.call('put_files', `copy ${files.length} file(s) into ${short(id)}`, (signal) => this.copyFiles(id, files, signal));
  }

  /** Copies files into a container: a tar through PUT /containers/{id}/archive. */
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
    const mismatched = ADOPT_LABELS.filter((k) => labels[k] !== undefined && have[k] !== labels[k]);
    if (mismatched.length > 0) {
      throw new HostError(
        HOST_ERROR_CODES.nameConflict,
        this.name,
        `create container ${name}: the name is taken by container ${short(existing.Id)} whose labels differ (${mismatched.map((k) => `${k}=${have[k] ?? '<unset>'}`).join(', ')}); not adopting it`,
        { cause },
      );
    }
    this.log.info({ container: name, id: short(existing.Id), state: existing.State.Status }, 'adopted existing container');
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
          if (attempt >= STALE_TASK_START_ATTEMPTS) {
            throw new HostError(HOST_ERROR_CODES.staleTask, this.name, `start container ${short(id)}: containerd kept a stale task from before a dockerd restart; the container must be recreated`, { cause: e });
          }
          await new Promise((r) => setTimeout(r, STALE_TASK_RETRY_MS));
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
      // Docker waits up to t s before its SIGKILL; the call itself then gets the usual deadline.
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

  renameContainer(id: string, name: string): Promise<void> {
    return this.call('rename', `rename container ${short(id)} to ${name}`, async (signal) => {
      await this.dial({ method: 'POST', path: `/containers/${encodeURIComponent(id)}/rename`, query: { name }, ok: [204], signal });
    });
  }

  inspectContainer(id: string): Promise<ObservedContainer | null> {
    return this.call('inspect', `inspect container ${short(id)}`, async (signal) => {
      const raw = await this.inspectRaw(id, signal);
      return raw ? fromInspect(raw, this.network) : null;
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

  unixCommand(socketPath: string, command: string, timeoutMs: number, opts: { doneWhen?: (received: string) => boolean } = {}): Promise<string> {
    const target = this.transport.unixTarget(socketPath);
    return this.call(
      'unix_command',
      `unix:${socketPath}: ${command.split(' ', 2).join(' ')}`,
      (signal) => unixCommand({ host: this.name, target, socketPath, command, signal, ...(opts.doneWhen ? { doneWhen: opts.doneWhen } : {}) }),
      timeoutMs,
    );
  }

  execInContainer(id: string, cmd: string[], timeoutMs: number): Promise<ExecResult> {
    return this.call('exec', `exec in container ${short(id)}`, (signal) => execIn((a) => this.dial(a), id, cmd, this.oneOffHost.outputTailBytes, signal), timeoutMs);
  }

  runOnce(o: RunOnceOptions): Promise<RunOnceResult> {
    return this.call('run_once', `run once ${o.name}`, () => runOneOff(this.oneOffHost, o), o.timeoutMs + RUN_ONCE_EXTRA_CALLS * this.timeoutMs);
  }

  containerLogs(id: string, opts: LogOptions): Promise<LogStream> {
    const what = `logs of container ${short(id)}`;
    return this.call('logs', what, async (signal) => {
      const res = await this.dial<Readable>({ method: 'GET', path: `/containers/${encodeURIComponent(id)}/logs`, query: logsQuery(opts), ok: [200], stream: true, signal });
      return logLines(res, this.name, what);
    });
  }

  watchEvents(onEvent: (e: DockerEvent) => void): () => void {
    const watcher: DockerEventWatcher = new DockerEventWatcher(this.eventsHost, onEvent, () => this.watchers.delete(watcher));
    this.watchers.add(watcher);
    watcher.start();
    return () => watcher.stop();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const w of [...this.watchers]) w.stop();
    this.closed = true;
    await this.transport.close();
  }
}

/** Docker's 12-character short form of a full container id; names and short ids as given. */
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
