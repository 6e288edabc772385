// Over 400 lines: one in-memory Docker host; splitting its state from its operations would only add indirection.
/**
 * SIMULATION ONLY. A HostDriver that keeps "containers" in memory and answers after an
 * injected delay. It exists for planner / controller scale benchmarks (bench/scale.ts,
 * bench/api.ts) and for controller unit tests that need many hosts.
 *
 * It is NOT evidence that deploys work: nothing here talks to Docker, SSH, a registry
 * or a real process. No image is fetched, no container runs, no health endpoint is
 * served; an "IP" is a string in a Map. What a run over these drivers shows is how the
 * reconcile loop, the planner, the store and the API behave when hosts answer with the
 * configured latency. Whether berth deploys correctly is shown only by the tests that
 * run against real Docker hosts (test/integration, test/e2e).
 *
 * What it models on purpose (so the controller's code paths are the real ones):
 * - labels and deterministic names: a create whose name exists adopts the container when
 *   its berth labels match, and fails with CONTAINER_NAME_CONFLICT when they do not;
 * - images: `createContainer` fails with IMAGE_NOT_FOUND unless the image was pulled;
 * - state: created -> running (gets an IP) -> exited (loses it) -> removed;
 * - `httpGet` reaches only a running container by its IP (`/health` 200, `/` the version);
 * - Docker events (create, start, die, stop, destroy) delivered asynchronously to watchers;
 * - a per-call deadline for `httpGet` / `runOnce` (their `timeoutMs`), and unreachability.
 * What it does not model: a container's output (its log is empty: a followed one stays open
 * until closed), SSH encryption and channel setup, Docker's JSON encoding beyond
 * a JSON round trip of listings, registry bandwidth, the CPU and memory of containers.
 */
import { createHash } from 'node:crypto';
import { HOST_ERROR_CODES, HostError } from '../domain/errors.js';
import { LABELS } from '../domain/labels.js';
import {
  ADOPT_LABELS,
  labelsToObserved,
  reportOperation,
  type CreateContainerOptions,
  type DockerEvent,
  type ExecResult,
  type HostDriver,
  type HostInfo,
  type HttpResult,
  type LogLine,
  type LogOptions,
  type LogStream,
  type ObservedContainer,
  type RunOnceOptions,
  type RunOnceResult,
} from './host-driver.js';
import { mulberry32 } from '../domain/prng.js';

/** The HostDriver calls whose latency the simulation injects. */
export type SimulatedOp =
  | 'ping'
  | 'listContainers'
  | 'hasImage'
  | 'pullImage'
  | 'ensureNetwork'
  | 'connectNetwork'
  | 'createContainer'
  | 'startContainer'
  | 'stopContainer'
  | 'removeContainer'
  | 'renameContainer'
  | 'inspectContainer'
  | 'httpGet'
  | 'unixCommand'
  | 'putFiles'
  | 'runOnce'
  | 'execInContainer'
  | 'containerLogs';

/**
 * Default per-call latency (ms), roughly a Docker host on a LAN behind one multiplexed
 * SSH connection: a small API call is a few ms, a container start tens of ms.
 */
export const DEFAULT_SIMULATED_LATENCY_MS: Readonly<Record<SimulatedOp, number>> = {
  ping: 2,
  listContainers: 2,
  hasImage: 2,
  pullImage: 50,
  ensureNetwork: 2,
  connectNetwork: 2,
  createContainer: 5,
  startContainer: 20,
  stopContainer: 20,
  removeContainer: 5,
  renameContainer: 5,
  inspectContainer: 2,
  httpGet: 1,
  unixCommand: 1,
  putFiles: 2,
  runOnce: 50,
  execInContainer: 5,
  containerLogs: 2,
};

/** What the `onCall` hook sees at the start of every call (before its latency). */
export interface SimulatedCall {
  host: string;
  op: SimulatedOp;
  /** The berth.app the call is about, when the driver can tell (create, start, stop, remove, list filter, runOnce). */
  app: string | null;
  /** The image reference, for hasImage / pullImage / createContainer / runOnce. */
  image: string | null;
  containerId: string | null;
}

/** A simulated container, as the driver keeps it. */
export interface SimulatedContainer {
  id: string;
  name: string;
  image: string;
  labels: Record<string, string>;
  env: Record<string, string>;
  state: 'created' | 'running' | 'exited';
  ip: string | null;
  createdAt: number;
  /** Docker's RestartCount: restarts by the restart policy (`crash`). */
  restartCount: number;
}

export interface SimulatedHostOptions {
  name: string;
  /** Per-call latency overrides (ms), merged over DEFAULT_SIMULATED_LATENCY_MS. */
  latencyMs?: Partial<Record<SimulatedOp, number>>;
  /** Uniform jitter as a fraction of each latency (0.2 = ±20%). Default 0. */
  jitter?: number;
  /** Seed of the jitter's PRNG, so runs are repeatable. Default: derived from the name. */
  seed?: number;
  /** Delay before a Docker event reaches watchers (ms). Default 1. */
  eventLatencyMs?: number;
  /** Images present before any pull. */
  images?: Iterable<string>;
  /**
   * Overrides the answer of `httpGet` to a running container (e.g. a version that never
   * turns healthy). Return null to fall back to the default answer.
   */
  httpHandler?: (container: SimulatedContainer, path: string) => HttpResult | null;
  /** The answer of `execInContainer` (a health command); null or absent: exit 0, no output. */
  execHandler?: (container: SimulatedContainer, cmd: string[]) => ExecResult | null;
  /** Called at the start of every call, before its latency (benchmarks time "first action" with it). */
  onCall?: (call: SimulatedCall) => void;
  /** Called when a call settles, like the real drivers' metrics hook. */
  onOperation?: (op: SimulatedOp, seconds: number, ok: boolean) => void;
  /** Clock for createdAt (ms). */
  now?: () => number;
}

// The real drivers' error codes, so the executor classifies simulated failures the same way.
const {
  timeout: HOST_TIMEOUT,
  unreachable: HOST_UNREACHABLE,
  closed: HOST_CLOSED,
  docker: DOCKER_ERROR,
  imageNotFound: IMAGE_NOT_FOUND,
  nameConflict: NAME_CONFLICT,
  httpFailed: HTTP_FAILED,
} = HOST_ERROR_CODES;

/** Default delay before a Docker event reaches watchers: asynchronous, as dockerd's stream is. */
const DEFAULT_EVENT_LATENCY_MS = 1;
/** First address index of a simulated host's containers (10.<subnet>.0.2): .0.1 is the gateway, as on a Docker bridge. */
const FIRST_IP_INDEX = 2;
/** Last index before the allocator wraps back to the first: stays inside the host's /16. */
const LAST_IP_INDEX = 65_000;
/** Simulated hosts get subnets 10.0-249.x.x in turn, so IPs of different hosts rarely collide. */
const SUBNETS = 250;

function seedOf(name: string): number {
  return createHash('sha256').update(name).digest().readUInt32LE(0);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

let hostSeq = 0;

/** SIMULATION ONLY (see the file header): an in-memory Docker host with injected latency. */
export class SimulatedHostDriver implements HostDriver {
  readonly name: string;
  /** Always true: lets callers (and readers of logs) tell a simulation from a real host. */
  readonly simulated = true as const;
  private readonly latency: Record<SimulatedOp, number>;
  private readonly jitter: number;
  private readonly random: () => number;
  private readonly eventLatencyMs: number;
  private readonly images: Set<string>;
  private readonly networks = new Set<string>();
  private readonly byId = new Map<string, SimulatedContainer>();
  private readonly byName = new Map<string, string>();
  private readonly watchers = new Set<(e: DockerEvent) => void>();
  private readonly calls = new Map<SimulatedOp, number>();
  private readonly subnet: number;
  private nextIp = FIRST_IP_INDEX;
  private seq = 0;
  private reachable = true;
  private closed = false;
  private readonly now: () => number;

  constructor(private readonly o: SimulatedHostOptions) {
    this.name = o.name;
    this.latency = { ...DEFAULT_SIMULATED_LATENCY_MS, ...o.latencyMs };
    this.jitter = Math.max(0, Math.min(1, o.jitter ?? 0));
    this.random = mulberry32(o.seed ?? seedOf(o.name));
    this.eventLatencyMs = o.eventLatencyMs ?? DEFAULT_EVENT_LATENCY_MS;
    this.images = new Set(o.images ?? []);
    this.now = o.now ?? Date.now;
    hostSeq += 1;
    this.subnet = hostSeq % SUBNETS;
  }

  // ---- controls for tests and benchmarks (not part of HostDriver) ----

  /** An unreachable host rejects every call with HOST_UNREACHABLE (after the call's latency). */
  setReachable(up: boolean): void {
    this.reachable = up;
  }

  /** Changes per-call latency from now on. */
  setLatency(latencyMs: Partial<Record<SimulatedOp, number>>): void {
    Object.assign(this.latency, latencyMs);
  }

  /** A copy of every container on the host. */
  containers(): SimulatedContainer[] {
    return [...this.byId.values()].map((c) => ({ ...c, labels: { ...c.labels }, env: { ...c.env } }));
  }

  /** The container's process died and its restart policy started it again (RestartCount + 1, events die and start). */
  crash(id: string): void {
    const c = this.mustGet(id, 'crash');
    c.restartCount += 1;
    this.emit(c, 'die');
    this.emit(c, 'start');
  }

  /** How many times each call was made. */
  callCounts(): Record<string, number> {
    return Object.fromEntries(this.calls);
  }

  // ---- HostDriver ----

  ping(): Promise<HostInfo> {
    return this.call('ping', {}, () => ({ dockerVersion: 'simulated' }));
  }

  listContainers(filter: { app?: string } = {}): Promise<ObservedContainer[]> {
    return this.call('listContainers', { app: filter.app ?? null }, () => {
      const out: ObservedContainer[] = [];
      for (const c of this.byId.values()) {
        if (c.labels[LABELS.managed] !== 'true') continue;
        if (filter.app !== undefined && c.labels[LABELS.app] !== filter.app) continue;
        out.push(this.observe(c));
      }
      // A JSON round trip: the real driver decodes Docker's answer, and callers must not
      // hold references into the simulation's state.
      return JSON.parse(JSON.stringify(out)) as ObservedContainer[];
    });
  }

  hasImage(ref: string): Promise<boolean> {
    return this.call('hasImage', { image: ref }, () => this.images.has(ref));
  }

  pullImage(ref: string): Promise<void> {
    return this.call('pullImage', { image: ref }, () => {
      this.images.add(ref);
    });
  }

  ensureNetwork(name: string): Promise<void> {
    return this.call('ensureNetwork', {}, () => {
      this.networks.add(name);
    });
  }

  /** The simulation has one network that every container is on: only the container is checked. */
  connectNetwork(id: string, network: string): Promise<void> {
    return this.call('connectNetwork', { containerId: id, app: this.appOf(id) }, () => {
      this.mustGet(id, `connect to ${network}`);
    });
  }

  createContainer(opts: CreateContainerOptions): Promise<string> {
    const labels: Record<string, string> = { [LABELS.managed]: 'true', ...opts.labels };
    return this.call('createContainer', { app: labels[LABELS.app] ?? null, image: opts.image }, () => this.create(opts.name, opts.image, labels, opts.env));
  }

  startContainer(id: string): Promise<void> {
    return this.call('startContainer', { containerId: id, app: this.appOf(id) }, () => {
      const c = this.mustGet(id, 'start');
      if (c.state === 'running') return; // Docker's 304: already running
      c.state = 'running';
      c.ip = this.allocateIp();
      this.emit(c, 'start');
    });
  }

  stopContainer(id: string, _timeoutMs: number): Promise<void> {
    return this.call('stopContainer', { containerId: id, app: this.appOf(id) }, () => {
      const c = this.byId.get(id);
      if (!c || c.state !== 'running') return; // 304 / 404: the goal holds
      c.state = 'exited';
      c.ip = null;
      this.emit(c, 'die');
      this.emit(c, 'stop');
    });
  }

  removeContainer(id: string): Promise<void> {
    return this.call('removeContainer', { containerId: id, app: this.appOf(id) }, () => {
      const c = this.byId.get(id);
      if (!c) return; // 404: already gone
      if (c.state === 'running') {
        c.state = 'exited';
        c.ip = null;
        this.emit(c, 'die');
      }
      this.byId.delete(id);
      this.byName.delete(c.name);
      this.emit(c, 'destroy');
    });
  }

  renameContainer(id: string, name: string): Promise<void> {
    return this.call('renameContainer', { containerId: id, app: this.appOf(id) }, () => {
      const c = this.mustGet(id, 'rename');
      if (c.name === name) return;
      if (this.byName.has(name)) throw new HostError(DOCKER_ERROR, this.name, `rename ${c.name}: the name "${name}" is in use`);
      this.byName.delete(c.name);
      c.name = name;
      this.byName.set(name, c.id);
      this.emit(c, 'rename');
    });
  }

  inspectContainer(id: string): Promise<ObservedContainer | null> {
    return this.call('inspectContainer', { containerId: id, app: this.appOf(id) }, () => {
      const c = this.byId.get(id) ?? this.byId.get(this.byName.get(id) ?? '');
      return c ? this.inspected(c) : null;
    });
  }

  httpGet(ip: string, port: number, path: string, timeoutMs: number): Promise<HttpResult> {
    return this.call(
      'httpGet',
      {},
      () => {
        const c = [...this.byId.values()].find((x) => x.state === 'running' && x.ip === ip);
        if (!c) throw new HostError(HTTP_FAILED, this.name, `GET http://${ip}:${port}${path}: connect ECONNREFUSED (simulated)`);
        const custom = this.o.httpHandler?.(c, path);
        if (custom) return custom;
        if (path === '/health') return { status: 200, body: 'ok' };
        if (path === '/') return { status: 200, body: c.labels[LABELS.version] ?? '' };
        return { status: 404, body: 'not found' };
      },
      timeoutMs,
    );
  }

  /** Files are not modelled: the call only costs its latency. */
  putFiles(id: string, files: NonNullable<CreateContainerOptions['files']>): Promise<void> {
    return this.call('putFiles', { containerId: id }, () => void files);
  }

  /** No proxy runs on a simulated host: every socket answers with an empty line. */
  unixCommand(socketPath: string, command: string, timeoutMs: number): Promise<string> {
    return this.call('unixCommand', {}, () => (void socketPath, void command, '\n'), timeoutMs);
  }

  runOnce(opts: RunOnceOptions): Promise<RunOnceResult> {
    const labels: Record<string, string> = { [LABELS.managed]: 'true', ...opts.labels };
    return this.call(
      'runOnce',
      { app: labels[LABELS.app] ?? null, image: opts.image },
      () => {
        if (!this.images.has(opts.image)) {
          throw new HostError(IMAGE_NOT_FOUND, this.name, `run once ${opts.name}: image ${opts.image} is not on the host (simulated)`);
        }
        // Docker would create, start, wait for and remove a container: the same events.
        const c: SimulatedContainer = { id: this.newId(opts.name), name: opts.name, image: opts.image, labels, env: { ...opts.env }, state: 'exited', ip: null, createdAt: this.now(), restartCount: 0 };
        for (const action of ['create', 'start', 'die', 'destroy']) this.emit(c, action);
        return { exitCode: 0, outputTail: '', timedOut: false };
      },
      opts.timeoutMs,
    );
  }

  execInContainer(id: string, cmd: string[], timeoutMs: number): Promise<ExecResult> {
    return this.call(
      'execInContainer',
      { containerId: id, app: this.appOf(id) },
      () => {
        const c = this.mustGet(id, 'exec');
        if (c.state !== 'running') throw new HostError(DOCKER_ERROR, this.name, `exec in ${c.name}: container is not running (simulated)`);
        return this.o.execHandler?.(c, cmd) ?? { exitCode: 0, outputTail: '' };
      },
      timeoutMs,
    );
  }

  /** Simulated containers print nothing: no line, and a followed log stays open until it is closed. */
  containerLogs(id: string, opts: LogOptions): Promise<LogStream> {
    return this.call('containerLogs', { containerId: id, app: this.appOf(id) }, (): LogStream => {
      this.mustGet(id, 'logs');
      let close = () => {};
      const closed = new Promise<void>((resolve) => (close = resolve));
      async function* lines(): AsyncGenerator<LogLine> {
        if (opts.follow) await closed;
      }
      const it = lines();
      return { [Symbol.asyncIterator]: () => it, close };
    });
  }

  watchEvents(onEvent: (e: DockerEvent) => void): () => void {
    this.watchers.add(onEvent);
    return () => {
      this.watchers.delete(onEvent);
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watchers.clear();
  }

  // ---- internals ----

  /**
   * Runs one call: hook, latency (bounded by `deadlineMs` when given), then the effect.
   * The effect runs after the latency, as a remote call's effect lands at the far end.
   */
  private async call<T>(op: SimulatedOp, about: Partial<Omit<SimulatedCall, 'host' | 'op'>>, effect: () => T, deadlineMs?: number): Promise<T> {
    this.calls.set(op, (this.calls.get(op) ?? 0) + 1);
    this.o.onCall?.({ host: this.name, op, app: about.app ?? null, image: about.image ?? null, containerId: about.containerId ?? null });
    const started = performance.now();
    let ok = false;
    try {
      if (this.closed) throw new HostError(HOST_CLOSED, this.name, `${op}: driver closed`);
      const delay = this.delayOf(op);
      if (deadlineMs !== undefined && delay > deadlineMs) {
        await sleep(deadlineMs);
        throw new HostError(HOST_TIMEOUT, this.name, `${op}: no answer within ${deadlineMs} ms (simulated)`);
      }
      if (delay > 0) await sleep(delay);
      if (this.closed) throw new HostError(HOST_CLOSED, this.name, `${op}: driver closed`);
      if (!this.reachable) throw new HostError(HOST_UNREACHABLE, this.name, `${op}: host unreachable (simulated)`);
      const result = effect();
      ok = true;
      return result;
    } finally {
      reportOperation(this.o.onOperation, op, (performance.now() - started) / 1000, ok);
    }
  }

  private delayOf(op: SimulatedOp): number {
    const base = this.latency[op];
    if (base <= 0) return 0;
    if (this.jitter === 0) return base;
    return Math.max(0, base * (1 + this.jitter * (2 * this.random() - 1)));
  }

  private create(name: string, image: string, labels: Record<string, string>, env: Record<string, string>): string {
    const existingId = this.byName.get(name);
    if (existingId !== undefined) {
      const existing = this.byId.get(existingId)!;
      const mismatched = ADOPT_LABELS.filter((k) => labels[k] !== undefined && existing.labels[k] !== labels[k]);
      if (mismatched.length > 0) {
        throw new HostError(NAME_CONFLICT, this.name, `create container ${name}: the name is taken by ${existingId.slice(0, 12)} whose labels differ (${mismatched.join(', ')}); not adopting it`);
      }
      return existingId; // adopt after a crash
    }
    if (!this.images.has(image)) {
      throw new HostError(IMAGE_NOT_FOUND, this.name, `create container ${name}: image ${image} is not on the host (pull it first)`);
    }
    const c: SimulatedContainer = { id: this.newId(name), name, image, labels, env: { ...env }, state: 'created', ip: null, createdAt: this.now(), restartCount: 0 };
    this.byId.set(c.id, c);
    this.byName.set(name, c.id);
    this.emit(c, 'create');
    return c.id;
  }

  private mustGet(id: string, what: string): SimulatedContainer {
    const c = this.byId.get(id) ?? this.byId.get(this.byName.get(id) ?? '');
    if (!c) throw new HostError(DOCKER_ERROR, this.name, `${what} container ${id.slice(0, 12)}: no such container (simulated)`);
    return c;
  }

  private appOf(id: string): string | null {
    return this.byId.get(id)?.labels[LABELS.app] ?? null;
  }

  private newId(name: string): string {
    this.seq += 1;
    return createHash('sha256').update(`${this.name}/${name}/${this.seq}`).digest('hex');
  }

  private allocateIp(): string {
    const n = this.nextIp;
    this.nextIp = n >= LAST_IP_INDEX ? FIRST_IP_INDEX : n + 1;
    return `10.${this.subnet}.${n >> 8}.${n & 255}`;
  }

  private observe(c: SimulatedContainer): ObservedContainer {
    return {
      id: c.id,
      name: c.name,
      ...labelsToObserved(c.labels),
      state: c.state,
      running: c.state === 'running',
      ip: c.ip,
      createdAt: c.createdAt,
      image: c.image,
    };
  }

  /** What an inspect says beyond a listing. */
  private inspected(c: SimulatedContainer): ObservedContainer {
    return { ...this.observe(c), restartCount: c.restartCount };
  }

  private emit(c: SimulatedContainer, action: string): void {
    if (this.watchers.size === 0) return;
    const event: DockerEvent = { id: c.id, app: c.labels[LABELS.app] ?? null, action };
    const deliver = () => {
      for (const w of this.watchers) w(event);
    };
    if (this.eventLatencyMs > 0) setTimeout(deliver, this.eventLatencyMs).unref();
    else setImmediate(deliver);
  }
}

/**
 * SIMULATION ONLY: `count` simulated hosts named `${prefix}1..count`, as the Map the
 * Controller takes. `perHost` may adjust options per host (e.g. a slow one).
 */
export function simulatedFleet(
  count: number,
  opts: Omit<SimulatedHostOptions, 'name'> & { prefix?: string; perHost?: (name: string, i: number) => Partial<SimulatedHostOptions> } = {},
): Map<string, SimulatedHostDriver> {
  const { prefix = 'sim', perHost, ...common } = opts;
  const fleet = new Map<string, SimulatedHostDriver>();
  for (let i = 1; i <= count; i += 1) {
    const name = `${prefix}${i}`;
    fleet.set(name, new SimulatedHostDriver({ ...common, ...perHost?.(name, i), name }));
  }
  return fleet;
}

/** A Docker host on a LAN behind one multiplexed SSH connection (ms; the simulation adds ±20% jitter). */
export const LAN_LATENCY_MS: Partial<Record<SimulatedOp, number>> = {
  ping: 3,
  listContainers: 5,
  hasImage: 3,
  pullImage: 100,
  ensureNetwork: 3,
  createContainer: 10,
  startContainer: 25,
  stopContainer: 25,
  removeContainer: 10,
  inspectContainer: 3,
  httpGet: 2,
  unixCommand: 2,
  putFiles: 3,
  runOnce: 200,
};
