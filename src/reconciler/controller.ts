import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { HostDriver } from '../hosts/host-driver.js';
import { HostReachability } from '../hosts/reachability.js';
import type { BerthMetrics } from '../metrics/registry.js';
import { PROXY_APP_LABEL } from '../proxy/haproxy-proxy.js';
import type { TrafficSwitch } from '../proxy/traffic.js';
import type { AppSecretFiles } from '../secrets/app-secrets.js';
import type { Store } from '../store/index.js';
import { openAppLogs, type AppLogs, type AppLogsRequest } from './app-logs.js';
import { execInApp, type ExecOutcome } from './one-off.js';
import { reconcilePass, type PassDeps } from './pass.js';
import { AppPlacements } from './placements.js';
import { WorkQueue } from './queue.js';
import { ResyncRows } from './resync-rows.js';
import { ResyncSnapshot, type SnapshotApp } from './resync-snapshot.js';
import { NotLeaderError, runFenced } from '../cluster/fence.js';
import { StoreError } from '../domain/errors.js';
import type { Leadership } from '../cluster/lease.js';

/**
 * Events of a change someone asked for: the controller reconciles the app at once, whichever
 * daemon took the request (another daemon's reach this one through the store's follower).
 */
const DESIRED_STATE_EVENTS: ReadonlySet<string> = new Set(['AppCreated', 'AppUpdated', 'AppPaused', 'AppResumed', 'AppMaintenance', 'AppLive', 'AppDeleting', 'ReleaseCreated']);

/** Apps reconciled in parallel unless told otherwise. */
const DEFAULT_CONCURRENCY = 8;
/** Passes an operator's requests may run beyond the concurrency: a deploy does not wait for a resync's passes to free a worker. */
const OPERATOR_SLOTS = 2;
/** How long an operator's pass runs before routine passes start beside it again (queue.ts). */
const OPERATOR_HEAD_START_MS = 250;
/** Apps a resync queues per turn of the event loop: 10,000 adds in one held it 3-25 ms. */
const QUEUED_PER_TURN = 1_000;

export interface ControllerOptions {
  store: Store;
  drivers: Map<string, HostDriver>;
  traffic: TrafficSwitch;
  metrics: BerthMetrics;
  log: Logger;
  resyncIntervalMs: number;
  /** Apps reconciled in parallel. */
  concurrency?: number;
  /** Where apps' secret values come from (main.ts: `<data dir>/secrets`). */
  secrets: AppSecretFiles;
  /** Whether this daemon leads, and the fence of its passes (default: it is the only one, unfenced). */
  leadership?: Leadership;
  now?: () => number;
}

/**
 * The level-triggered loop: API writes, Docker events and a periodic resync only
 * enqueue app names; the work queue runs one pass per app at a time (pass.ts).
 * Everything a pass needs after a crash is in the store and on the hosts.
 *
 * It reconciles only while this daemon leads (src/cluster/lease.ts): `start` when it
 * becomes the leader, `standBy` when it stops; each term gets a fresh queue. A pass runs
 * fenced: its host calls stop once the lease lapses, its writes once another daemon leads.
 */
export class Controller {
  private queue: WorkQueue;
  private readonly deps: PassDeps;
  private readonly snapshot: ResyncSnapshot;
  private readonly rows: ResyncRows;
  private readonly placements: AppPlacements;
  private readonly unwatch: Array<() => void> = [];
  private resyncTimer: NodeJS.Timeout | null = null;
  /** A resync reading the apps' stamps, then queueing its passes (idle() waits for it). */
  private resyncing: Promise<void> | null = null;
  /** Apps an operator asked for while a resync was being queued: the pass queued for that looks at the app as the resync would. */
  private requestedDuringResync: Set<string> | null = null;
  private running = false;
  /** The queue was shut down (standBy): the next start makes a new one. */
  private stopped = false;

  constructor(private readonly o: ControllerOptions) {
    const { store, metrics, log } = o;
    const reachability = new HostReachability({
      drivers: o.drivers,
      rows: store.hostsStatus,
      setUp: (host, up) => metrics.hostUp.set({ host }, up ? 1 : 0),
      onBack: (host) => this.enqueueHostApps(host, 'queueing the apps of a host back'),
      onChange: (host, up, error) => void this.onHostApps(host, "recording a host's change", (apps) => this.recordHostChange(host, up, error, apps)),
      log,
      now: o.now,
    });
    const now = o.now ?? Date.now;
    this.snapshot = new ResyncSnapshot({ drivers: o.drivers, traffic: o.traffic, maxAgeMs: o.resyncIntervalMs, now });
    this.rows = new ResyncRows((from) => store.passInputs.page(from), now);
    this.placements = new AppPlacements(store.apps);
    this.deps = { store, drivers: o.drivers, traffic: o.traffic, metrics, log, secrets: o.secrets, now, reachability, snapshot: this.snapshot, rows: this.rows };
    this.queue = this.newQueue();
  }

  private newQueue(): WorkQueue {
    const { metrics, log } = this.o;
    return new WorkQueue(
      (app) => this.reconcile(app),
      (app, err) => {
        if (err instanceof NotLeaderError) {
          log.warn({ app, err: err.message }, 'pass stopped: this daemon no longer leads');
          return;
        }
        metrics.reconcileTotal.inc({ app, result: 'error' });
        log.error({ app, err }, 'reconcile failed; retrying with backoff');
      },
      { concurrency: this.o.concurrency ?? DEFAULT_CONCURRENCY, frontSlots: OPERATOR_SLOTS, frontHeadStartMs: OPERATOR_HEAD_START_MS, onDepth: (d) => metrics.queueDepth.set(d) },
    );
  }

  start(): void {
    if (this.running) return;
    if (this.stopped) this.queue = this.newQueue();
    this.running = true;
    this.stopped = false;
    this.deps.reachability.forgetRows();
    this.unlessStoreFails('seeding the rollout gauges', () => this.seedRolloutGauges());
    this.unwatch.push(
      this.o.store.events.subscribe((e) => {
        if (!e.app) return;
        // Whatever wrote the event may have changed the app's rows (resync-rows.ts).
        this.rows.dropApp(e.app);
        if (DESIRED_STATE_EVENTS.has(e.type)) this.enqueue(e.app);
      }),
    );
    for (const [host, driver] of this.o.drivers) {
      this.unwatch.push(
        driver.watchEvents((e) => {
          // What the event may have changed is no longer in the resync's snapshot (resync-snapshot.ts).
          if (e.action === 'resubscribed' || e.app === PROXY_APP_LABEL) this.snapshot.dropHost(host);
          else if (e.app) this.snapshot.dropApp(host, e.app);
          // After a re-subscription events may have been missed: look at every app of the host.
          if (e.action === 'resubscribed') return this.enqueueHostApps(host, "queueing a host's apps after its events were re-subscribed");
          const app = e.app;
          if (!app) return;
          this.unlessStoreFails('a docker event', () => {
            if (this.o.store.apps.getApp(app)) this.queue.add(app);
          });
        }),
      );
      this.o.log.debug({ host }, 'watching docker events');
    }
    this.resync();
    this.resyncTimer = setInterval(() => this.resync(), this.o.resyncIntervalMs);
    this.resyncTimer.unref();
  }

  /** A scrape between a restart and an app's first pass sees the last recorded status, not an app without series. */
  private seedRolloutGauges(): void {
    const { store, metrics } = this.o;
    for (const status of store.status.listStatus()) {
      const desired = store.releases.latestSummary(status.app);
      if (!desired) continue;
      const hostsUpdated = status.hosts.filter((h) => h.revision === desired.revision && h.health === 'healthy').length;
      metrics.setRollout(status.app, { desiredRevision: desired.revision, observedRevision: status.observedRevision, phase: status.phase, hostsTotal: status.hosts.length, hostsUpdated });
    }
  }

  isRunning(): boolean {
    return this.running;
  }

  /** An operator's request (API): goes ahead of the resync's routine passes, and does not wait for its listings. */
  enqueue(app: string): void {
    this.requestedDuringResync?.add(app);
    this.snapshot.dropAppEverywhere(app);
    this.rows.dropApp(app);
    this.queue.add(app, { front: true });
  }

  /** Resolves when no pass is running or waiting, nor a resync about to queue its passes (tests and benchmarks). */
  async idle(): Promise<void> {
    while (this.resyncing) await this.resyncing;
    await this.queue.idle();
  }

  /** One pass for one app (the queue's worker; benches time it). Returns when to look again (ms), or null. */
  reconcile(app: string): Promise<number | null> {
    const leadership = this.o.leadership;
    if (leadership && !leadership.isLeading()) return Promise.reject(new NotLeaderError(`daemon ${leadership.daemonId} does not lead`));
    // (The only daemon of a SQLite file has no fence: nobody else can act.)
    const fence = leadership?.fence();
    return fence ? runFenced(fence, () => reconcilePass(this.deps, app)) : reconcilePass(this.deps, app);
  }

  /** `berth exec` for the API (one-off.ts). */
  exec(app: string, command: string, host?: string): Promise<ExecOutcome> {
    return execInApp(this.deps, app, command, host);
  }

  /** `berth logs` for the API (app-logs.ts). */
  logs(app: string, req: AppLogsRequest): AppLogs {
    return openAppLogs(this.deps, app, req);
  }

  /** Stops reconciling (this daemon no longer leads) and lets the pass in flight finish; `start` resumes. */
  async standBy(): Promise<void> {
    this.running = false;
    this.stopped = true;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.resyncTimer = null;
    for (const u of this.unwatch.splice(0)) u();
    this.snapshot.clear();
    this.rows.clear();
    await this.queue.shutdown();
    // (A resync under way stops at its next turn, as this daemon no longer runs: the store stays open until then.)
    await this.resyncing?.catch(() => {});
  }

  /** Stops taking work, lets the pass in flight finish, closes every host connection. */
  async stop(): Promise<void> {
    await this.standBy();
    await Promise.allSettled([...this.o.drivers.values()].map((d) => d.close()));
  }

  private resync(): void {
    this.deps.reachability.pingAll().catch((err: unknown) => this.o.log.warn({ err: (err as Error).message }, 'host pings not recorded; the next resync tries again'));
    // (One still reading the stamps would queue what this one would.)
    if (this.resyncing) return;
    const run = this.queueResync().finally(() => {
      if (this.resyncing === run) this.resyncing = null;
    });
    this.resyncing = run;
  }

  /**
   * Reads the apps' stamps without holding the event loop (20-30 ms at 10,000 apps on
   * PostgreSQL), then takes the snapshot, then the rows, then queues the apps, each in turns
   * of the loop of their own (at 10,000 apps each held it 5-40 ms; in one, with SQLite's
   * stamps read at once, 40-65 ms).
   */
  private async queueResync(): Promise<void> {
    const requested = new Set<string>();
    this.requestedDuringResync = requested;
    try {
      let apps: SnapshotApp[];
      try {
        apps = await this.placements.read();
      } catch (err) {
        return this.storeFailed('the resync', err);
      }
      // A pass in flight reads its own, and so does one an operator asked for meanwhile: it must
      // not wait for the snapshot's listings.
      const ownReads = (name: string) => this.queue.isActive(name) || requested.has(name);
      await nextTurn();
      if (!this.running) return;
      await this.snapshot.take(apps, { app: ownReads, host: (name) => this.deps.reachability.downSince(name) !== null });
      await nextTurn();
      if (!this.running) return;
      this.rows.take(
        apps.map((a) => a.name),
        ownReads,
      );
      for (let i = 0; i < apps.length; i += QUEUED_PER_TURN) {
        if (i > 0) await nextTurn();
        if (!this.running) return;
        for (let k = i; k < Math.min(i + QUEUED_PER_TURN, apps.length); k += 1) {
          if (!requested.has(apps[k]!.name)) this.queue.add(apps[k]!.name);
        }
      }
    } finally {
      this.requestedDuringResync = null;
    }
  }

  /**
   * Runs `fn`, work a timer or an event started (not a pass, whose errors the queue retries):
   * a database that does not answer skips it with a warning, and the next resync does it again.
   */
  private unlessStoreFails(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.storeFailed(what, err);
    }
  }

  /** A StoreError skips `what` with a warning; anything else is a bug, thrown on. */
  private storeFailed(what: string, err: unknown): void {
    if (!(err instanceof StoreError)) throw err;
    this.o.log.warn({ err: err.message, code: err.code }, `${what} skipped: the database does not answer`);
  }

  private enqueueHostApps(host: string, what: string): void {
    void this.onHostApps(host, what, (apps) => {
      for (const app of apps) this.queue.add(app.name);
    });
  }

  /**
   * Runs `then` on the apps that run on `host` (placements.ts: the stamps awaited, no spec
   * parsed but a changed one's). Started by a host's change, which a pass's observation or a
   * ping reports: what fails here is logged, and never fails the call that saw the host.
   */
  private async onHostApps(host: string, what: string, then: (apps: SnapshotApp[]) => void): Promise<void> {
    try {
      const apps = (await this.placements.read()).filter((a) => a.hosts.includes(host));
      if (this.running) then(apps);
    } catch (err) {
      if (err instanceof NotLeaderError) this.o.log.warn({ host, err: err.message }, `${what} stopped: this daemon no longer leads`);
      else if (err instanceof StoreError) this.storeFailed(what, err);
      else this.o.log.error({ host, err }, `${what} failed`);
    }
  }

  /** An event on every app of the host, so `berth events APP` and `deploy --wait` show why it stalls. */
  private recordHostChange(host: string, up: boolean, error: string | null, apps: SnapshotApp[]): void {
    const message = up ? `host ${host} answers again` : `host ${host} is unreachable: ${error ?? 'no answer'}`;
    this.o.store.observedTransaction(() => {
      for (const app of apps) {
        this.o.store.events.appendEvent({ app: app.name, type: up ? 'HostRecovered' : 'HostUnreachable', message, host, revision: null, actor: 'controller' });
      }
    });
  }
}
