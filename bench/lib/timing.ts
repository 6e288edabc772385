/**
 * Timing decorators for a real berth: every call berth makes to a host (through the
 * real SSH driver), every proxy step, every reconcile pass and every SQLite write gets a
 * [t0, t1] span on one clock. Nothing is simulated: the decorated objects do exactly what
 * they did before, they are just timed. The spans feed bench/lib/rollout-analysis.ts.
 */
import { performance } from 'node:perf_hooks';
import type {
  CreateContainerOptions,
  DockerEvent,
  HostDriver,
  HostInfo,
  HttpResult,
  LogOptions,
  LogStream,
  ObservedContainer,
  RunOnceResult,
  ExecResult,
} from '../../src/hosts/host-driver.js';
import type { HaproxyProxy } from '../../src/proxy/haproxy-proxy.js';
import type { Controller } from '../../src/reconciler/controller.js';
import type { Store } from '../../src/store/index.js';

/** Unix ms with sub-millisecond resolution (monotonic within the process). */
export const now = (): number => performance.timeOrigin + performance.now();

export type SpanKind =
  /** A HostDriver call (op = the method name). */
  | 'host'
  /** A TrafficSwitch step of the proxy (op = switchTo | drain | observeRoute | setMaintenance | ensureRunning). */
  | 'proxy'
  /** One Controller.reconcile pass (op = 'pass'). */
  | 'pass'
  /** A synchronous SQLite write (op = transaction | recordStep | appendEvent). */
  | 'sqlite';

export interface Span {
  kind: SpanKind;
  op: string;
  host: string | null;
  t0: number;
  t1: number;
  ok: boolean;
  /** httpGet: the status; unixRequest: "METHOD path"; pass: the requeue value. */
  detail?: string | number | null;
}

export class Recorder {
  readonly spans: Span[] = [];
  private on = true;

  add(s: Span): void {
    if (this.on) this.spans.push(s);
  }

  /** Spans that overlap [from, to]. */
  between(from: number, to: number): Span[] {
    return this.spans.filter((s) => s.t1 >= from && s.t0 <= to);
  }

  /** Drops spans that ended before `t` (keeps memory flat over many runs). */
  forgetBefore(t: number): void {
    let i = 0;
    for (const s of this.spans) if (s.t1 >= t) this.spans[i++] = s;
    this.spans.length = i;
  }

  async time<T>(kind: SpanKind, op: string, host: string | null, fn: () => Promise<T>, detail?: (r: T) => Span['detail']): Promise<T> {
    const t0 = now();
    try {
      const r = await fn();
      this.add({ kind, op, host, t0, t1: now(), ok: true, detail: detail ? detail(r) : null });
      return r;
    } catch (err) {
      this.add({ kind, op, host, t0, t1: now(), ok: false, detail: err instanceof Error ? err.message.slice(0, 120) : String(err) });
      throw err;
    }
  }

  timeSync<T>(kind: SpanKind, op: string, fn: () => T): T {
    const t0 = now();
    try {
      return fn();
    } finally {
      this.add({ kind, op, host: null, t0, t1: now(), ok: true });
    }
  }
}

/** A real HostDriver, timed: every call is passed through unchanged and recorded. */
export class TimedDriver implements HostDriver {
  constructor(
    private readonly inner: HostDriver,
    private readonly rec: Recorder,
  ) {}

  get name(): string {
    return this.inner.name;
  }

  private t<T>(op: string, fn: () => Promise<T>, detail?: (r: T) => Span['detail']): Promise<T> {
    return this.rec.time('host', op, this.inner.name, fn, detail);
  }

  ping(): Promise<HostInfo> {
    return this.t('ping', () => this.inner.ping());
  }
  listContainers(filter?: { app?: string }): Promise<ObservedContainer[]> {
    return this.t('listContainers', () => this.inner.listContainers(filter), (r) => r.length);
  }
  hasImage(ref: string): Promise<boolean> {
    return this.t('hasImage', () => this.inner.hasImage(ref), (r) => String(r));
  }
  pullImage(ref: string): Promise<void> {
    return this.t('pullImage', () => this.inner.pullImage(ref));
  }
  ensureNetwork(name: string): Promise<void> {
    return this.t('ensureNetwork', () => this.inner.ensureNetwork(name));
  }
  connectNetwork(id: string, network: string): Promise<void> {
    return this.t('connectNetwork', () => this.inner.connectNetwork(id, network), () => id.slice(0, 12));
  }
  createContainer(opts: CreateContainerOptions): Promise<string> {
    return this.t('createContainer', () => this.inner.createContainer(opts), () => opts.name);
  }
  startContainer(id: string): Promise<void> {
    return this.t('startContainer', () => this.inner.startContainer(id), () => id.slice(0, 12));
  }
  stopContainer(id: string, timeoutMs: number): Promise<void> {
    return this.t('stopContainer', () => this.inner.stopContainer(id, timeoutMs), () => id.slice(0, 12));
  }
  removeContainer(id: string): Promise<void> {
    return this.t('removeContainer', () => this.inner.removeContainer(id), () => id.slice(0, 12));
  }
  inspectContainer(id: string): Promise<ObservedContainer | null> {
    return this.t('inspectContainer', () => this.inner.inspectContainer(id), () => id.slice(0, 12));
  }
  httpGet(ip: string, port: number, path: string, timeoutMs: number): Promise<HttpResult> {
    return this.t('httpGet', () => this.inner.httpGet(ip, port, path, timeoutMs), (r) => r.status);
  }
  putFiles(id: string, files: Parameters<HostDriver['putFiles']>[1]): Promise<void> {
    return this.t('putFiles', () => this.inner.putFiles(id, files), () => files.map((f) => f.path).join(' '));
  }
  unixCommand(socketPath: string, command: string, timeoutMs: number, opts?: Parameters<HostDriver['unixCommand']>[3]): Promise<string> {
    return this.t('unixCommand', () => this.inner.unixCommand(socketPath, command, timeoutMs, opts), () => command.split(' ', 3).join(' '));
  }
  execInContainer(id: string, cmd: string[], timeoutMs: number): Promise<ExecResult> {
    return this.t('execInContainer', () => this.inner.execInContainer(id, cmd, timeoutMs), (r) => r.exitCode);
  }
  runOnce(opts: Parameters<HostDriver['runOnce']>[0]): Promise<RunOnceResult> {
    return this.t('runOnce', () => this.inner.runOnce(opts));
  }
  containerLogs(id: string, opts: LogOptions): Promise<LogStream> {
    return this.t('containerLogs', () => this.inner.containerLogs(id, opts), () => id.slice(0, 12));
  }
  watchEvents(onEvent: (e: DockerEvent) => void): () => void {
    return this.inner.watchEvents(onEvent);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * Replaces every driver in the map (the one the Controller and the proxy read on
 * each call) by its timed decorator. Returns the originals, keyed by host.
 */
export function timeDrivers(drivers: Map<string, HostDriver>, rec: Recorder): Map<string, HostDriver> {
  const originals = new Map(drivers);
  for (const [host, d] of originals) drivers.set(host, new TimedDriver(d, rec));
  return originals;
}

type AnyAsync = (...args: never[]) => Promise<unknown>;

/** The keys of `T` whose values are functions returning `R`: what the decorators below may patch. */
type MethodName<T, R = unknown> = { [K in keyof T]-?: T[K] extends (...args: never[]) => R ? K : never }[keyof T] & string;

/**
 * `obj[name]` bound to `obj`; throws, naming the class and the method, when there is no
 * such method (berth renamed or removed it): a decorator that skipped it would leave a
 * bench that quietly times less than it says. The types catch it at compile time where
 * the caller names a method of a known type; this catches the rest at run time.
 */
function methodOf(obj: object, name: string): (...args: unknown[]) => unknown {
  const fn = (obj as Record<string, unknown>)[name];
  if (typeof fn !== 'function') {
    const cls = Object.getPrototypeOf(obj)?.constructor?.name;
    const what = cls && cls !== 'Object' ? `a ${cls}` : 'the object';
    throw new Error(`bench timing: ${what} has no method ${name}() to time (was it renamed or removed in berth?)`);
  }
  return (fn as (...args: unknown[]) => unknown).bind(obj);
}

/** Wraps the named async methods of `obj` in place (instance properties shadow the prototype's). */
function wrapAsync<T extends object>(
  obj: T,
  names: ReadonlyArray<MethodName<T, Promise<unknown>>>,
  rec: Recorder,
  kind: SpanKind,
  hostOf: (args: unknown[]) => string | null,
): void {
  const o = obj as unknown as Record<string, AnyAsync>;
  // Every method is looked up before any is patched: a missing one leaves `obj` untouched.
  const methods = names.map((name) => [name, methodOf(obj, name) as (...args: unknown[]) => Promise<unknown>] as const);
  for (const [name, bound] of methods) {
    o[name] = ((...args: unknown[]) => rec.time(kind, name, hostOf(args), () => bound(...args))) as AnyAsync;
  }
}

/** Times the proxy's steps: switch (incl. making sure the proxy runs the routes), drain, route observation. */
export function timeTraffic(traffic: HaproxyProxy, rec: Recorder): void {
  wrapAsync(traffic, ['switchTo', 'drain', 'observeRoute', 'setMaintenance'], rec, 'proxy', (args) => (typeof args[0] === 'string' ? args[0] : null));
}

/**
 * Times every SQLite write path the controller uses on a rollout (all synchronous).
 * `onRecordStep` sees each recordStep's arguments (no extra read of the store), which is
 * how the bench learns that a pass recorded the rollout as final without touching SQLite.
 */
export function timeStore(store: Store, rec: Recorder, onRecordStep?: (app: string, step: Parameters<Store['status']['recordStep']>[1]) => void): void {
  const wrapSync = <T extends object>(obj: T, name: MethodName<T>, observe?: (a: unknown[]) => void) => {
    const o = obj as unknown as Record<string, (...a: unknown[]) => unknown>;
    const orig = methodOf(obj, name);
    o[name] = (...a: unknown[]) => {
      observe?.(a);
      return rec.timeSync('sqlite', name, () => orig(...a));
    };
  };
  wrapSync(store, 'transaction');
  wrapSync(store.status, 'recordStep', onRecordStep ? (a) => onRecordStep(a[0] as string, a[1] as Parameters<Store['status']['recordStep']>[1]) : undefined);
  wrapSync(store.events, 'appendEvent');
}

/**
 * Times every reconcile pass. The work queue calls `this.reconcile(app)` through an
 * arrow function, so an instance property replaces the method for every pass.
 * `after` runs right after each pass (to notice the rollout record turning final).
 */
export function timePasses(controller: Controller, rec: Recorder, after: (t1: number) => void): void {
  const orig = controller.reconcile.bind(controller);
  controller.reconcile = async (app: string) => {
    const t0 = now();
    let again: number | null = null;
    try {
      again = await orig(app);
      return again;
    } finally {
      const t1 = now();
      rec.add({ kind: 'pass', op: 'pass', host: null, t0, t1, ok: true, detail: again });
      after(t1);
    }
  };
}
