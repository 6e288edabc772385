import type { Logger } from 'pino';
import { containerConfigHash } from '../domain/config-hash.js';
import { BerthError, ConflictError, NotFoundError } from '../domain/errors.js';
import type { HostDriver, RunOnceResult } from '../hosts/host-driver.js';
import type { BerthMetrics } from '../metrics/registry.js';
import type { TrafficSwitch } from '../proxy/traffic.js';
import type { AppStatus } from '../domain/release.js';
import { canonicalJson, type Store } from '../store/index.js';
import { executeActions, runOneOff, type ExecContext } from './execute.js';
import { observeFleet } from './observe.js';
import { plan } from './plan.js';
import { applyResults } from './results.js';
import { WorkQueue } from './queue.js';
import type { Action, DesiredRelease, Plan, RolloutRecord, StableRelease } from './types.js';

export interface ControllerOptions {
  store: Store;
  drivers: Map<string, HostDriver>;
  traffic: TrafficSwitch;
  metrics: BerthMetrics;
  log: Logger;
  resyncIntervalMs: number;
  /** Apps reconciled in parallel. */
  concurrency?: number;
  env?: Record<string, string | undefined>;
  now?: () => number;
}

export class SecretMissingError extends BerthError {
  constructor(name: string) {
    super('SECRET_MISSING', `secret ${name} is not set in berth's environment`);
  }
}

const FINAL_STATES: ReadonlySet<RolloutRecord['state']> = new Set(['complete', 'failed']);

/**
 * The level-triggered loop (DESIGN.md §3): API writes, Docker events and a periodic
 * resync only enqueue app names; one pass per app observes, plans, executes and
 * records. Everything it needs after a crash is in the store and on the hosts.
 */
export class Controller {
  private readonly queue: WorkQueue;
  private readonly unwatch: Array<() => void> = [];
  private resyncTimer: NodeJS.Timeout | null = null;
  /** Hosts whose last call failed: skipped by observation until a ping answers. */
  private readonly down = new Map<string, { since: number; error: string }>();
  private running = false;
  private readonly now: () => number;

  constructor(private readonly o: ControllerOptions) {
    this.now = o.now ?? Date.now;
    this.queue = new WorkQueue(
      (app) => this.reconcile(app),
      (app, err) => {
        o.metrics.reconcileTotal.inc({ app, result: 'error' });
        o.log.error({ app, err }, 'reconcile failed; retrying with backoff');
      },
      { concurrency: o.concurrency ?? 8, onDepth: (d) => o.metrics.queueDepth.set(d) },
    );
  }

  start(): void {
    this.running = true;
    for (const [host, driver] of this.o.drivers) {
      this.unwatch.push(
        driver.watchEvents((e) => {
          // After a re-subscription events may have been missed: look at every app of the host.
          if (e.action === 'resubscribed') this.enqueueHostApps(host);
          else if (e.app && this.o.store.apps.getApp(e.app)) this.queue.add(e.app);
        }),
      );
      this.o.log.debug({ host }, 'watching docker events');
    }
    this.resync();
    this.resyncTimer = setInterval(() => this.resync(), this.o.resyncIntervalMs);
    this.resyncTimer.unref();
  }

  isRunning(): boolean {
    return this.running;
  }

  /** An operator's request (API): goes ahead of the resync's routine passes. */
  enqueue(app: string): void {
    this.queue.add(app, { front: true });
  }

  /** Resolves when no pass is running or waiting (tests and benchmarks). */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  /** Stops taking work, lets the pass in flight finish, closes every host connection. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    for (const u of this.unwatch.splice(0)) u();
    await this.queue.shutdown();
    await Promise.allSettled([...this.o.drivers.values()].map((d) => d.close()));
  }

  private resync(): void {
    void this.checkHosts();
    for (const app of this.o.store.apps.listApps()) this.queue.add(app.name);
  }

  /** Reachability of every host, for /v1/hosts and berth_host_up. */
  private async checkHosts(): Promise<void> {
    await Promise.all(
      [...this.o.drivers].map(async ([host, driver]) => {
        try {
          const info = await driver.ping();
          this.markHost(host, true, null, info.dockerVersion);
        } catch (err) {
          this.markHost(host, false, err instanceof Error ? err.message : String(err));
        }
      }),
    );
  }

  private enqueueHostApps(host: string): void {
    for (const app of this.o.store.apps.listApps()) if (app.spec.hosts.includes(host)) this.queue.add(app.name);
  }

  private markHost(host: string, up: boolean, error: string | null, dockerVersion?: string): void {
    this.o.metrics.hostUp.set({ host }, up ? 1 : 0);
    const wasDown = this.down.has(host);
    if (!up && !wasDown) this.down.set(host, { since: this.now(), error: error ?? 'unreachable' });
    if (up && wasDown) {
      this.down.delete(host);
      // Back: its apps converge now rather than at the next resync.
      this.enqueueHostApps(host);
    }
    const before = this.o.store.hostsStatus.get(host);
    const version = dockerVersion ?? before?.dockerVersion ?? null;
    // A pass's observation only writes a change; the resync's ping (with a version) refreshes checkedAt.
    if (before && before.up === up && before.lastError === error && dockerVersion === undefined) return;
    this.o.store.hostsStatus.upsert({ host, up, lastError: error, dockerVersion: version });
    if (before && before.up !== up) this.o.log.warn({ host, up, err: error }, up ? 'host is back' : 'host is down');
  }

  private desiredOf(app: string): { desired: DesiredRelease | null; stable: StableRelease | null; paused: boolean; maintenance: string | null } | null {
    const { store } = this.o;
    const stored = store.apps.getApp(app);
    if (!stored) return null;
    const latest = store.releases.latestRelease(app);
    const status = store.status.readStatus(app);
    const stableRelease = status?.observedRevision ? store.releases.getRelease(app, status.observedRevision) : null;
    return {
      paused: stored.paused,
      maintenance: stored.maintenance,
      desired: latest
        ? { revision: latest.revision, version: latest.version, spec: latest.spec, reason: latest.reason, configHash: containerConfigHash(latest.spec) }
        : null,
      stable: stableRelease ? { revision: stableRelease.revision, version: stableRelease.version } : null,
    };
  }

  /** One pass for one app. Returns when to look again (ms), or null. */
  async reconcile(app: string): Promise<number | null> {
    const started = performance.now();
    const { store, metrics, log } = this.o;
    const wanted = this.desiredOf(app);
    if (!wanted?.desired) return null;
    const { desired } = wanted;

    const observed = await observeFleet(this.o.drivers, desired.spec.hosts, app, { traffic: this.o.traffic, route: desired.spec.proxy }, {
      downSince: (host) => this.down.get(host) ?? null,
      report: (host, up, err) => this.markHost(host, up, err),
    });
    const previous = store.status.readStatus(app);
    const stored = store.status.getRollout(app);
    const record = stored?.revision === desired.revision ? (stored.state as RolloutRecord) : null;
    const p = plan({
      app,
      desired,
      stable: wanted.stable,
      observed,
      record,
      paused: wanted.paused,
      maintenance: wanted.maintenance,
      now: this.now(),
      previousConditions: previous?.conditions ?? [],
    });
    this.record(app, desired, p, record, previous, stored?.state ?? null);

    let again = p.requeueAfterMs;
    if (p.actions.length > 0) {
      const results = await executeActions(this.execContext(app, desired), p.actions);
      for (const r of results) if (!r.ok && r.unreachable && 'host' in r.action) this.markHost(r.action.host, false, r.message);
      const next = applyResults(p.record!, results, this.now());
      store.status.recordStep(app, { rollout: { revision: next.revision, state: next } });
      this.observeFinish(app, desired, p.record!, next);
      again = 0;
    }
    metrics.reconcileTotal.inc({ app, result: p.actions.length > 0 ? 'acted' : again !== null ? 'waiting' : 'converged' });
    metrics.reconcileDuration.observe({ app }, (performance.now() - started) / 1000);
    log.debug({ app, revision: desired.revision, actions: p.actions.map((a) => a.type), again }, 'reconcile pass');
    return again;
  }

  /**
   * `berth exec`: a one-off command in a container of the app's desired release on one
   * of its hosts (the first by default), with the app's env and secrets.
   */
  async exec(app: string, command: string, host?: string): Promise<RunOnceResult & { host: string; version: string }> {
    const wanted = this.desiredOf(app);
    if (!wanted) throw new NotFoundError(`app "${app}"`);
    const { desired } = wanted;
    if (!desired) throw new ConflictError(`app "${app}" has no release yet: deploy one first`);
    const target = host ?? desired.spec.hosts[0]!;
    if (!desired.spec.hosts.includes(target)) throw new ConflictError(`host "${target}" does not run app "${app}" (hosts: ${desired.spec.hosts.join(', ')})`);
    const ctx = this.execContext(app, desired);
    ctx.emit({ type: 'ExecStarted', host: target, message: `exec on ${target} in ${desired.version}` });
    const result = await runOneOff(ctx, target, `${app}-exec-${Date.now().toString(36)}`, command);
    ctx.emit({ type: 'ExecFinished', host: target, message: `exec exit ${result.exitCode}${result.timedOut ? ' (timed out)' : ''}` });
    return { ...result, host: target, version: desired.version };
  }

  /** Persists the plan's record, status and decisions in one transaction, and mirrors them in metrics. */
  private record(app: string, desired: DesiredRelease, p: Plan, before: RolloutRecord | null, previous: AppStatus | null, storedRecord: unknown): void {
    const { store, metrics } = this.o;
    const s = p.status;
    const observedRevision = s.observedRevision ?? previous?.observedRevision ?? null;
    const status: AppStatus = { app, phase: s.phase, observedRevision, conditions: s.conditions, hosts: s.hosts, updatedAt: new Date(this.now()).toISOString() };
    // A converged app's passes change nothing: skip the (fsync'd) write.
    const unchanged =
      !p.pauseApp &&
      p.events.length === 0 &&
      previous !== null &&
      canonicalJson({ ...previous, updatedAt: '' }) === canonicalJson({ ...status, updatedAt: '' }) &&
      canonicalJson(storedRecord ?? null) === canonicalJson(p.record);
    if (!unchanged) {
      store.transaction(() => {
        if (p.pauseApp) store.apps.setPaused(app, true, 'controller');
        store.status.recordStep(app, {
          status,
          rollout: p.record ? { revision: p.record.revision, state: p.record } : null,
          events: p.events.map((e) => ({ type: e.type, message: e.message, host: e.host ?? null, revision: desired.revision, actor: 'controller' })),
        });
      });
    }
    if (p.record && before) this.observeFinish(app, desired, before, p.record);
    metrics.desiredRevision.set({ app }, desired.revision);
    if (observedRevision !== null) metrics.observedRevision.set({ app }, observedRevision);
    metrics.rolloutHostsTotal.set({ app }, s.hostsTotal);
    metrics.rolloutHostsUpdated.set({ app }, s.hostsUpdated);
    metrics.setPhase(app, s.phase);
  }

  private observeFinish(app: string, desired: DesiredRelease, before: RolloutRecord, after: RolloutRecord): void {
    if (FINAL_STATES.has(before.state) || !FINAL_STATES.has(after.state)) return;
    const result = after.state === 'complete' ? (desired.reason === 'rollback' ? 'rolled_back' : 'complete') : 'failed';
    this.o.metrics.rolloutDuration.observe({ app, result }, ((after.finishedAt ?? this.now()) - after.startedAt) / 1000);
    this.o.log.info({ app, revision: desired.revision, result, failure: after.failure }, 'rollout finished');
  }

  private execContext(app: string, desired: DesiredRelease): ExecContext {
    const { store, metrics, log } = this.o;
    const env = this.o.env ?? process.env;
    return {
      app,
      desired,
      traffic: this.o.traffic,
      log,
      driver: (host) => {
        const d = this.o.drivers.get(host);
        if (!d) throw new BerthError('HOST_NOT_CONFIGURED', `host "${host}" is not in berth's config`);
        return d;
      },
      secretValues: (names) =>
        Object.fromEntries(
          names.map((n) => {
            const v = env[n];
            if (v === undefined) throw new SecretMissingError(n);
            return [n, v];
          }),
        ),
      // Step events are written as they happen, so `events --follow` shows a rollout live.
      emit: (e) => {
        store.events.appendEvent({ app, type: e.type, message: e.message, host: e.host ?? null, revision: desired.revision, actor: 'controller' });
        log.info({ app, host: e.host, revision: desired.revision, event: e.type }, e.message);
      },
      onHealthAttempt: (host, ok) => metrics.healthChecksTotal.inc({ app, host, result: ok ? 'pass' : 'fail' }),
      createRollback: (a: Extract<Action, { type: 'createRollback' }>) => {
        const target = store.releases.getRelease(app, a.toRevision);
        if (!target) throw new BerthError('ROLLBACK_TARGET_MISSING', `release ${a.toRevision} of ${app} is gone`);
        const r = store.releases.createRelease({ app, version: target.version, spec: target.spec, reason: 'rollback', actor: 'controller' });
        metrics.rollbacksTotal.inc({ app, reason: a.reason });
        log.warn({ app, revision: r.revision, version: r.version, reason: a.reason }, 'automatic rollback');
      },
    };
  }
}
