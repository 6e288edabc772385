import { rollbackSpec } from '../domain/app-spec.js';
import { routedApp } from '../domain/processes.js';
import type { AppStatus } from '../domain/release.js';
import type { RolloutRecord } from '../domain/rollout.js';
import { BerthError } from '../domain/errors.js';
import { sameJson } from '../domain/same-json.js';
import { activeFence } from '../cluster/fence.js';
import type { HostReachability } from '../hosts/reachability.js';
import { execContext, readWanted, type ReconcilerDeps, type Wanted } from './context.js';
import { executeActions } from './execute.js';
import { observeFleet } from './observe.js';
import { plan } from './plan.js';
import type { ResyncRows } from './resync-rows.js';
import type { ResyncSnapshot } from './resync-snapshot.js';
import { applyResults } from './results.js';
import { tearDownApp } from './teardown.js';
import type { ActionResult, DesiredRelease, HostObservation, Plan } from './types.js';

export interface PassDeps extends ReconcilerDeps {
  reachability: HostReachability;
  /** The last resync's look at every host (null: every pass lists for itself). */
  snapshot: ResyncSnapshot | null;
  /** The last resync's read of every app's rows (null: every pass reads its own). */
  rows: ResyncRows | null;
}

/**
 * A failed step the rollout record does not hold (retire, remove, maintenance, a traffic
 * restore) is planned again by the next pass: not sooner than this, or a step that keeps
 * failing (a proxy not answering yet) would be retried in a tight loop.
 */
const UNTRACKED_STEP_RETRY_MS = 1_000;
const untrackedFailure = (r: ActionResult) => !r.ok && !r.unreachable && r.action.type !== 'updateHost' && r.action.type !== 'pull' && r.action.type !== 'hook';

const FINAL_STATES: ReadonlySet<RolloutRecord['state']> = new Set(['complete', 'failed']);

/**
 * One reconcile pass for one app, top to bottom: read desired -> observe -> plan ->
 * one transaction (status, record, events, pause, rollback release) -> act -> fold
 * the results into the record -> record it. Returns when to look again (ms), or null.
 */
export async function reconcilePass(deps: PassDeps, app: string): Promise<number | null> {
  const started = performance.now();
  const { store, metrics, log } = deps;
  // (Every read is a round trip on PostgreSQL: a pass reads its rows in one, or a resync's page holds them.)
  const inputs = (await deps.rows?.use(app)) ?? store.passInputs.one(app);
  if (!inputs) return null;
  // An app being deleted has no desired release any more: its pass tears it down.
  if (inputs.deletingSince) {
    const appRecord = store.apps.getApp(app);
    return appRecord ? (await tearDownApp(deps, appRecord)).againMs : null;
  }
  const wanted = readWanted(inputs, deps.secrets);
  if (!wanted.desired) return null;
  const { desired } = wanted;

  const routed = routedApp(desired.spec);
  const observed = await observeFleet(deps.drivers, desired.spec.hosts, app, { traffic: deps.traffic, route: routed.proxy, routeHosts: routed.hosts }, deps.reachability, deps.snapshot);
  const previous = wanted.status;
  const stored = wanted.record;
  const record = stored?.revision === desired.revision ? stored : null;
  const p = plan({
    app,
    desired,
    stable: wanted.stable,
    observed,
    record,
    paused: wanted.paused,
    maintenance: wanted.maintenance,
    now: deps.now(),
    previousConditions: previous?.conditions ?? [],
  });
  let wrote = commitPlan(deps, app, desired, p, previous, stored);
  if (p.record && record) observeFinish(deps, app, desired, record, p.record);

  // A rollback release is new desired state: the next pass rolls it out at once.
  let again = p.rollback ? 0 : p.requeueAfterMs;
  if (p.actions.length > 0) {
    const results = await executeActions(execContext(deps, app, desired, wanted.secrets), p.actions);
    // A leader whose lease lapsed mid-step records none of it: the next leader observes what the step did.
    activeFence()?.beforeRemote();
    for (const r of results) if (!r.ok && r.unreachable) deps.reachability.report(r.action.host, false, r.message);
    const next = applyResults(p.record!, results, deps.now());
    // A failed pull or hook ends the release here, not in the planner: its RolloutFailed event is written here too.
    const failedNow = next.state === 'failed' && p.record!.state !== 'failed' && next.failure !== null;
    const events = failedNow ? [{ type: 'RolloutFailed', message: next.failure!.message, host: null, revision: desired.revision, actor: 'controller' }] : [];
    store.status.recordStep(app, { rollout: { revision: next.revision, state: next }, events });
    observeFinish(deps, app, desired, p.record!, next);
    again = results.some(untrackedFailure) ? UNTRACKED_STEP_RETRY_MS : 0;
    wrote = true;
  }
  if (pruneHistory(deps, app, wanted, observed) > 0) wrote = true;
  // Nothing of the app's rows changed: its next pass may use these (resync-rows.ts).
  if (!wrote) deps.rows?.keep(app, inputs);
  metrics.reconcileTotal.inc({ app, result: passResult(p) });
  metrics.reconcileDuration.observe({ app }, (performance.now() - started) / 1000);
  log.debug({ app, revision: desired.revision, actions: p.actions.map((a) => a.type), again }, 'reconcile pass');
  return again;
}

/**
 * History retention, off the request path: at most one batch (PRUNE_BATCH releases, a few
 * ms) per pass, so an app over its history_limit shrinks by a batch each resync. Kept
 * besides what the store protects (pruneReleases): the revision of every container the
 * hosts hold, running or retained for rollback. Only when every host of the app answered
 * this pass: one that did not could hold a container of any revision.
 */
function pruneHistory(deps: PassDeps, app: string, wanted: Pick<Wanted, 'historyLimit' | 'releaseCount'>, observed: HostObservation[]): number {
  const limit = wanted.historyLimit;
  // (The count as the pass read it: a rollback release it created since is pruned by a later pass.)
  if (wanted.releaseCount <= limit) return 0;
  const keep: number[] = [];
  for (const o of observed) {
    if (!o.reachable) return 0;
    for (const c of o.containers) keep.push(c.revision);
  }
  const removed = deps.store.releases.pruneReleases(app, { limit, keep });
  if (removed > 0) deps.log.info({ app, removed, historyLimit: limit }, 'pruned old releases');
  return removed;
}

/** `berth_reconcile_total`'s `result` for a pass that did not throw (a throw is `error`, counted by the controller). */
export type PassResult = 'acted' | 'waiting' | 'converged';

/**
 * What a pass that ran `p` counts as (pure): `acted` when it executed actions;
 * `converged` only when the fleet really is on the desired release (phase Complete or
 * RolledBack, the status's observed revision is the desired one) with nothing left to
 * do and nothing scheduled; `waiting` for everything else with no actions: a health
 * check, a batch delay or a retry backoff to sit out, a rollback release about to roll
 * out, and a rollout that cannot move right now (a host unreachable, paused, failed).
 */
export function passResult(p: Pick<Plan, 'actions' | 'record' | 'status' | 'requeueAfterMs' | 'rollback'>): PassResult {
  if (p.actions.length > 0) return 'acted';
  const s = p.status;
  const converged =
    (s.phase === 'Complete' || s.phase === 'RolledBack') &&
    p.record !== null &&
    p.record.state === 'complete' &&
    s.observedRevision === p.record.revision &&
    p.requeueAfterMs === null &&
    !p.rollback;
  return converged ? 'converged' : 'waiting';
}

/**
 * Everything the plan decided, in one transaction: status, rollout record, events,
 * the pause of `on_failure: pause` and the release of `on_failure: rollback`. Then
 * mirrored in the metrics. Whether it wrote anything.
 */
function commitPlan(deps: PassDeps, app: string, desired: DesiredRelease, p: Plan, previous: AppStatus | null, storedRecord: RolloutRecord | null): boolean {
  const { store, metrics, log } = deps;
  const s = p.status;
  const observedRevision = s.observedRevision ?? previous?.observedRevision ?? null;
  const status: AppStatus = { app, phase: s.phase, observedRevision, conditions: s.conditions, hosts: s.hosts, updatedAt: new Date(deps.now()).toISOString() };
  // A converged app's passes change nothing: skip the (fsync'd) write.
  const unchanged =
    !p.pauseApp &&
    !p.rollback &&
    p.events.length === 0 &&
    previous !== null &&
    sameJson({ ...previous, updatedAt: '' }, { ...status, updatedAt: '' }) &&
    sameJson(storedRecord, p.record);
  let rollbackRevision: number | null = null;
  if (!unchanged) {
    // A rollback release or a pause is a decision, made once: fsync'd like the API's writes.
    // The rest (status, record, events) is observed state, recomputed if a power loss takes it.
    const commit = p.pauseApp || p.rollback ? store.transaction.bind(store) : store.observedTransaction.bind(store);
    commit(() => {
      if (p.pauseApp) store.apps.setPaused(app, true, 'controller');
      if (p.rollback) {
        const target = store.releases.getRelease(app, p.rollback.toRevision);
        if (!target) throw new BerthError('ROLLBACK_TARGET_MISSING', `release ${p.rollback.toRevision} of ${app} is gone`);
        rollbackRevision = store.releases.createRelease({ app, version: target.version, spec: rollbackSpec(target.spec, desired.spec), reason: 'rollback', actor: 'controller' }).revision;
      }
      if (p.record?.state === 'complete') store.releases.markCompleted(app, p.record.revision, new Date(p.record.finishedAt ?? deps.now()));
      store.status.recordStep(app, {
        status,
        rollout: p.record ? { revision: p.record.revision, state: p.record } : null,
        events: p.events.map((e) => ({ type: e.type, message: e.message, host: e.host ?? null, revision: desired.revision, actor: 'controller' })),
      });
    });
  }
  if (p.rollback) {
    metrics.rollbacksTotal.inc({ app, reason: p.rollback.reason });
    log.warn({ app, revision: rollbackRevision, toRevision: p.rollback.toRevision, version: p.rollback.toVersion, reason: p.rollback.reason }, 'automatic rollback');
  }
  metrics.setRollout(app, { desiredRevision: desired.revision, observedRevision, phase: s.phase, hostsTotal: s.hostsTotal, hostsUpdated: s.hostsUpdated });
  return !unchanged;
}

/** The rollout duration metric and log line, when a record turns final. */
function observeFinish(deps: PassDeps, app: string, desired: DesiredRelease, before: RolloutRecord, after: RolloutRecord): void {
  if (FINAL_STATES.has(before.state) || !FINAL_STATES.has(after.state)) return;
  const result = after.state === 'complete' ? (desired.reason === 'rollback' ? 'rolled_back' : 'complete') : 'failed';
  deps.metrics.rolloutDuration.observe({ app, result }, ((after.finishedAt ?? deps.now()) - after.startedAt) / 1000);
  deps.log.info({ app, revision: desired.revision, result, failure: after.failure }, 'rollout finished');
}
