import { containerName } from '../domain/labels.js';
import { unitKey } from '../domain/processes.js';
import type { Condition } from '../domain/release.js';
import type { RolloutRecord } from '../domain/rollout.js';
import type { ObservedContainer } from '../hosts/host-driver.js';
import { batchSize, toBatches } from './batches.js';
import {
  desiredProcesses,
  type Action,
  type DesiredProcess,
  type DesiredRelease,
  type HostObservation,
  type HostUpdateAction,
  type Plan,
  type PlanInput,
  type PlannedEvent,
  type RollbackDecision,
  type StatusView,
} from './types.js';

/**
 * The rules of berth, as one pure function: desired release + what the hosts run +
 * the rollout record + the clock -> the next actions. No I/O; every decision a
 * rollout makes is made here and tested table-style in test/unit/plan.test.ts.
 */

type HostClass = 'updated' | 'pending' | 'failed' | 'unreachable';

/**
 * What the rollout moves: one process on one host (docs/design.md, "Processes"). An app
 * without `processes` has one unit per host, keyed by the host's name as before.
 */
interface Unit {
  /** `web@h1`, or the host for the implicit process: the record's, status's and events' key. */
  key: string;
  host: string;
  process: DesiredProcess;
}

/** The units of a release: process by process (declaration order), host by host. */
function unitsOf(desired: DesiredRelease): Unit[] {
  return desiredProcesses(desired).flatMap((process) => process.spec.hosts.map((host) => ({ key: unitKey(process.name, host), host, process })));
}

/**
 * Which unit an app container on `host` belongs to: its process's unit there; a container of
 * a process the release does not run there (the app gained or lost processes, a process left
 * the host) goes with the unit that serves the host's traffic (else the host's first unit),
 * which retires it once its own container serves. (A loop, not filter and find: it runs
 * for every container of every pass, a resync's passes included.)
 */
function unitOfContainer(units: Unit[], host: string, c: ObservedContainer): string | null {
  let first: Unit | null = null;
  let heir: Unit | null = null;
  for (const u of units) {
    if (u.host !== host) continue;
    if ((u.process.name ?? undefined) === c.process) return u.key;
    first ??= u;
    if (!heir && u.process.spec.proxy) heir = u;
  }
  return (heir ?? first)?.key ?? null;
}

/** The observation of `host`, one per host (config/app.ts refuses a host listed twice); a loop, not a map per pass for a handful of hosts. */
function observationOf(observed: readonly HostObservation[], host: string): HostObservation | undefined {
  for (const o of observed) if (o.host === host) return o;
  return undefined;
}

/** Whether the proxy's upstream is `ip:port`, without writing `ip:port` out for every container of every pass. */
function isUpstream(upstream: string | null | undefined, ip: string | null, port: number): boolean {
  if (!upstream || ip === null || !upstream.startsWith(ip) || upstream.charCodeAt(ip.length) !== 58 /* ':' */) return false;
  const p = String(port);
  return upstream.length === ip.length + 1 + p.length && upstream.endsWith(p);
}

interface HostView {
  /** The unit's key (the host's name for the implicit process). */
  key: string;
  host: string;
  process: DesiredProcess;
  cls: HostClass;
  /** The container that runs (or will run) the desired release on this host. */
  target: ObservedContainer | null;
  /** Running app containers other than the target: still serving, or to be retired. */
  othersRunning: ObservedContainer[];
  stopped: ObservedContainer[];
  error: string | null;
  /** The last log lines of the container that failed here (the record keeps them after it is removed). */
  logs: string[] | null;
  /**
   * The target runs and may carry the host's traffic: the proxy route is on it, or (no
   * proxy route) it is the host's only running app container. A failed host's target
   * is then kept: with secret values in the config hash, the target of a host whose
   * replacement failed can turn back into the container that served all along (the
   * secret rotated back, an unset one set again).
   */
  targetServing: boolean;
  /** A pending host whose last start failed for a passing reason: not tried again before this (Unix ms). */
  retryAt: number | null;
  /**
   * The running container that carries the host's traffic besides the target: the one the
   * proxy routes to, or (no proxy route) the newest running one. What a failed rollout
   * leaves serving on the host (cleanupActions).
   */
  keeper: ObservedContainer | null;
  /** rollout.preboot: the target runs and passed its health check early; only its switch is left. */
  prebooted: boolean;
}

export function newRecord(revision: number, now: number): RolloutRecord {
  return {
    revision,
    startedAt: now,
    state: 'active',
    pulled: [],
    preDeployDone: false,
    postDeployDone: false,
    batch: 0,
    batchNotBefore: 0,
    hosts: {},
    failure: null,
    finishedAt: null,
  };
}

/** A container can serve the desired release (or one of its processes) when version and container config both match. */
export function pickTarget(containers: ObservedContainer[], desired: Pick<DesiredRelease, 'version' | 'configHash'>): ObservedContainer | null {
  // Running first, then the newest revision, then the newest; the first of equals.
  let best: ObservedContainer | null = null;
  for (const c of containers) {
    if (c.role !== 'app' || c.version !== desired.version || c.configHash !== desired.configHash) continue;
    if (!best || Number(c.running) - Number(best.running) > 0 || (c.running === best.running && (c.revision > best.revision || (c.revision === best.revision && c.createdAt > best.createdAt)))) best = c;
  }
  return best;
}

/**
 * The name of the release's container on a host: `<app>-r<revision>`, unless a container
 * of another config already holds that name (the same revision before a secret was
 * rotated): creating under the name would adopt that container, values and all. Then
 * the config hash goes into the name, which stays deterministic for crash adoption.
 */
function newContainerName(app: string, revision: number, process: DesiredProcess, v: HostView): string {
  const name = containerName(app, revision, process.name);
  if (v.target?.name === name) return name;
  const taken = [...v.othersRunning, ...v.stopped].some((c) => c.name === name && c.configHash !== process.configHash);
  return taken ? `${name}-${process.configHash.slice(0, 8)}` : name;
}

/** With a proxy route, a unit is only updated while its host's proxy really sends traffic to the target. */
function routedTo(obs: HostObservation & { reachable: true }, process: DesiredProcess, target: ObservedContainer): boolean {
  if (!process.spec.proxy) return true;
  return isUpstream(obs.route?.upstream, target.ip, process.spec.port);
}

function viewUnit(unit: Unit, units: Unit[], obs: HostObservation | undefined, desired: DesiredRelease, record: RolloutRecord): HostView {
  const { key, host, process } = unit;
  if (!obs || !obs.reachable) {
    return { key, host, process, cls: 'unreachable', target: null, othersRunning: [], stopped: [], error: obs && !obs.reachable ? obs.error : 'not observed', logs: null, targetServing: false, retryAt: null, keeper: null, prebooted: false };
  }
  const apps: ObservedContainer[] = [];
  for (const c of obs.containers) if (c.role === 'app' && unitOfContainer(units, host, c) === key) apps.push(c);
  const target = pickTarget(apps, { version: desired.version, configHash: process.configHash });
  const othersRunning: ObservedContainer[] = [];
  const stopped: ObservedContainer[] = [];
  for (const c of apps) if (c.id !== target?.id) (c.running ? othersRunning : stopped).push(c);
  const state = record.hosts[key];
  let cls: HostClass = 'pending';
  if (state?.step === 'failed') cls = 'failed';
  else if (target?.running && state?.step === 'switched' && state.containerId === target.id && routedTo(obs, process, target)) cls = 'updated';
  const { proxy, port } = process.spec;
  const targetServing = !!target?.running && (proxy ? routedTo(obs, process, target) : othersRunning.length === 0);
  const error = state?.step === 'failed' ? state.message : state?.step === 'retrying' ? `retrying (attempt ${state.attempts + 1}): ${state.message}` : null;
  let keeper: ObservedContainer | null = null;
  // Behind a proxy: the one it routes to; else the newest (the first of equals).
  for (const c of othersRunning) {
    if (proxy ? isUpstream(obs.route?.upstream, c.ip, port) : !keeper || c.createdAt > keeper.createdAt) keeper = c;
    if (proxy && keeper) break;
  }
  const logs = state?.step === 'failed' ? (state.logs ?? null) : null;
  const prebooted = cls === 'pending' && !!target?.running && state?.step === 'prebooted' && state.containerId === target.id;
  return { key, host, process, cls, target, othersRunning, stopped, error, logs, targetServing, retryAt: state?.step === 'retrying' ? state.notBefore : null, keeper, prebooted };
}

function viewUnits(input: PlanInput, desired: DesiredRelease, record: RolloutRecord): HostView[] {
  const units = unitsOf(desired);
  return units.map((u) => viewUnit(u, units, observationOf(input.observed, u.host), desired, record));
}

/** What the rollout's counts count: hosts, or (process, host) units for an app with processes. */
function unitNoun(desired: DesiredRelease): string {
  return desired.processes ? 'units' : 'hosts';
}

/** What an action carries to name its unit's process: nothing for the implicit process, so its actions are as before processes. */
function processOf(v: Pick<HostView, 'process'>): { process?: string } {
  return v.process.name ? { process: v.process.name } : {};
}

/** Stopped containers past the newest `retain` (the target never counts: it is in use). */
function prunable(view: HostView, retain: number): string[] {
  if (view.stopped.length <= retain) return [];
  return [...view.stopped]
    .sort((a, b) => b.createdAt - a.createdAt || b.revision - a.revision)
    .slice(retain)
    .map((c) => c.id);
}

function cleanupActions(views: HostView[], retain: number, busy: Set<string>, failed: boolean, preboot: boolean): Action[] {
  const actions: Action[] = [];
  for (const v of views) {
    if (v.cls === 'unreachable' || busy.has(v.key)) continue;
    const unit = processOf(v);
    // Old containers stop only once the host's traffic is on a healthy new one.
    if (v.cls === 'updated' && v.othersRunning.length > 0) {
      actions.push({ type: 'retire', host: v.host, ...unit, containerIds: v.othersRunning.map((c) => c.id) });
    }
    // A failed rollout moves nothing any more: a host it caught between switch and retire
    // (a release superseded mid-step) keeps the container its traffic is on, and the others
    // stop, or they would run beside it until the next release.
    if (failed && v.cls !== 'updated' && v.keeper) {
      const extra = v.othersRunning.filter((c) => c.id !== v.keeper!.id);
      if (extra.length > 0) actions.push({ type: 'retire', host: v.host, ...unit, containerIds: extra.map((c) => c.id) });
    }
    if (v.cls === 'failed' && v.target && !v.targetServing) {
      actions.push({ type: 'remove', host: v.host, ...unit, containerIds: [v.target.id], why: 'failed' });
    }
    // rollout.preboot: a failed rollout will never switch the units it booted early, and their
    // containers never took traffic (a crash may have kept the record from saying `prebooted`:
    // a pending unit's running target that does not serve is one too).
    if (failed && preboot && v.cls === 'pending' && v.target?.running && !v.targetServing) {
      actions.push({ type: 'remove', host: v.host, ...unit, containerIds: [v.target.id], why: 'failed' });
    }
    const old = prunable(v, retain);
    if (old.length > 0) actions.push({ type: 'remove', host: v.host, ...unit, containerIds: old, why: 'prune' });
  }
  return actions;
}

/**
 * A host whose proxy routes the app nowhere (the proxy recreated by hand, or after a crash)
 * while the rollout is not moving it: a failed or paused rollout, or a host waiting for a
 * later batch. Its traffic goes back on the container still running there (the stable
 * release's, else the newest), which served it before. A host the rollout updates gets its
 * route from that update (nextRolloutStep), and an updated host is re-updated there too.
 */
function restoreTrafficActions(input: PlanInput, views: HostView[], busy: Set<string>): Action[] {
  const actions: Action[] = [];
  for (const v of views) {
    const obs = observationOf(input.observed, v.host);
    // Only the process that serves has a route (a worker's unit on the same host has none to lose).
    if (!v.process.spec.proxy || !obs?.reachable || obs.route?.upstream !== null || v.cls === 'updated' || busy.has(v.key)) continue;
    const running = [...v.othersRunning].sort((a, b) => b.revision - a.revision || b.createdAt - a.createdAt);
    const serve = running.find((c) => c.revision === input.stable?.revision) ?? running[0];
    if (serve) actions.push({ type: 'restoreTraffic', host: v.host, ...processOf(v), containerId: serve.id, containerName: serve.name });
  }
  return actions;
}

/**
 * rollout.strategy: recreate stopped a failed host's old container before its new one
 * failed, so nothing of the app runs there but, perhaps, the failed one. Whatever on_failure
 * says (and while paused too, as a lost route is restored), the host goes back on the
 * container it ran before, which start-first never stopped: the stable release's, else the
 * newest stopped one; the failed one stops first. A host with nothing to go back to (its
 * first release) stays as it is.
 */
function revertActions(input: PlanInput, views: HostView[], busy: Set<string>): Array<Extract<Action, { type: 'revertHost' }>> {
  const actions: Array<Extract<Action, { type: 'revertHost' }>> = [];
  for (const v of views) {
    if (v.cls !== 'failed' || v.othersRunning.length > 0 || busy.has(v.key)) continue;
    const previous = [...v.stopped].sort((a, b) => b.createdAt - a.createdAt || b.revision - a.revision);
    const back = previous.find((c) => c.revision === input.stable?.revision) ?? previous[0];
    if (back) actions.push({ type: 'revertHost', host: v.host, ...processOf(v), containerId: back.id, containerName: back.name, stopFirst: v.target?.running ? [v.target.id] : [] });
  }
  return actions;
}

/** Maintenance follows the app's flag on every host whose proxy already routes the app (the serving process's units). */
function maintenanceActions(input: PlanInput, views: HostView[], busy: Set<string>): Action[] {
  const actions: Action[] = [];
  for (const v of views) {
    const o = observationOf(input.observed, v.host);
    if (v.process.spec.proxy && o?.reachable && o.route?.upstream && !busy.has(v.key) && o.route.maintenance !== input.maintenance) {
      actions.push({ type: 'maintenance', host: v.host, ...processOf(v), message: input.maintenance });
    }
  }
  return actions;
}

function condition(type: string, status: Condition['status'], reason: string, message: string, previous: Condition[], now: number): Condition {
  const before = previous.find((c) => c.type === type);
  const unchanged = before && before.status === status && before.reason === reason;
  return {
    type,
    status,
    reason,
    message,
    lastTransitionTime: unchanged ? before.lastTransitionTime : new Date(now).toISOString(),
  };
}

function statusView(input: PlanInput, desired: DesiredRelease, record: RolloutRecord, views: HostView[]): StatusView {
  let updated = 0;
  let failedHosts = 0;
  let unreachableCount = 0;
  for (const v of views) {
    if (v.cls === 'updated') updated += 1;
    else if (v.cls === 'failed') failedHosts += 1;
    else if (v.cls === 'unreachable') unreachableCount += 1;
  }
  const total = views.length;
  // With on_failure: continue, hosts that failed within max_failure_ratio do not hold convergence.
  const converged = record.state === 'complete' && updated + failedHosts === total;
  let phase: StatusView['phase'];
  let reason: string;
  let message: string;
  if (input.paused || record.state === 'paused') {
    phase = 'Paused';
    reason = record.failure?.reason ?? 'Paused';
    message = record.failure?.message ?? `rollout of revision ${desired.revision} paused by the operator`;
  } else if (record.state === 'failed') {
    phase = 'Failed';
    reason = record.failure?.reason ?? 'Failed';
    message = record.failure?.message ?? 'rollout failed';
  } else if (converged) {
    phase = desired.reason === 'rollback' ? 'RolledBack' : 'Complete';
    reason = desired.reason === 'rollback' ? 'RolledBack' : 'Complete';
    message = `revision ${desired.revision} (${desired.version}) serves on ${updated}/${total} ${unitNoun(desired)}` + (failedHosts ? ` (${failedHosts} failed)` : '');
  } else {
    phase = 'Progressing';
    reason = updated === 0 ? 'NewReleaseCreated' : 'HostUpdated';
    message = `revision ${desired.revision} (${desired.version}) on ${updated}/${total} ${unitNoun(desired)}`;
  }
  const prev = input.previousConditions;
  // Known to serve: a reachable host with a running container of the app. An unreachable host proves nothing.
  let serving = 0;
  for (const v of views) if (v.cls !== 'unreachable' && (v.target?.running || v.othersRunning.length > 0)) serving += 1;
  const reachable = total - unreachableCount;
  const conditions: Condition[] = [
    condition('Progressing', phase === 'Progressing' || phase === 'Paused' ? 'True' : 'False', reason, message, prev, input.now),
    condition(
      'Available',
      serving > 0 && serving === reachable ? 'True' : 'False',
      serving === 0 ? 'NoHostServes' : updated === total ? 'AllHostsUpdated' : 'ServingMixedOrPrevious',
      serving === 0
        ? `no host is known to serve the app (${unreachableCount}/${total} unreachable)`
        : `${updated}/${total} hosts serve revision ${desired.revision}; ${serving}/${total} serve the app`,
      prev,
      input.now,
    ),
    condition(
      'HostsReachable',
      unreachableCount === 0 ? 'True' : 'False',
      unreachableCount === 0 ? 'AllReachable' : 'HostUnreachable',
      unreachableCount === 0
        ? 'every host answered'
        : views
            .filter((v) => v.cls === 'unreachable')
            .map((v) => `${v.key}: ${v.error}`)
            .join('; '),
      prev,
      input.now,
    ),
  ];
  const hosts = views.map((v) => {
    const obs = observationOf(input.observed, v.host);
    const serving = v.cls === 'updated' ? v.target : (v.othersRunning[0] ?? null);
    return {
      host: v.key,
      ...processOf(v),
      version: serving?.version ?? null,
      revision: serving?.revision ?? null,
      containerId: serving?.id ?? null,
      health: v.cls === 'updated' ? ('healthy' as const) : v.cls === 'failed' ? ('unhealthy' as const) : ('unknown' as const),
      lastError: obs && !obs.reachable ? obs.error : v.error,
      lastLogs: v.logs,
    };
  });
  return {
    phase,
    conditions,
    hosts,
    observedRevision: converged ? desired.revision : (input.stable?.revision ?? null),
    hostsUpdated: updated,
    hostsTotal: total,
  };
}

function fail(record: RolloutRecord, reason: string, message: string, now: number): RolloutRecord {
  return { ...record, state: 'failed', failure: { reason, message }, finishedAt: now };
}

/**
 * Applies on_failure once a host failed (or the deadline passed): roll the fleet back
 * to the stable release, pause, or carry on while the failure ratio allows.
 */
function onFailure(
  input: PlanInput,
  desired: DesiredRelease,
  record: RolloutRecord,
  views: HostView[],
  reason: string,
  message: string,
  events: PlannedEvent[],
): { record: RolloutRecord; pause: boolean } {
  const policy = desired.spec.rollout.onFailure;
  if (policy === 'continue' && reason === 'HealthCheckFailed') {
    const failedShare = views.filter((v) => v.cls === 'failed').length / views.length;
    if (failedShare <= desired.spec.rollout.maxFailureRatio) return { record, pause: false };
  }
  if (policy === 'pause') {
    events.push({ type: 'RolloutPaused', message: `${message}; paused (on_failure: pause)` });
    return { record: { ...record, state: 'paused', failure: { reason, message } }, pause: true };
  }
  events.push({ type: 'RolloutFailed', message });
  return { record: fail(record, reason, message, input.now), pause: false };
}

function rollbackDecision(input: PlanInput, desired: DesiredRelease, record: RolloutRecord): RollbackDecision | null {
  const stable = input.stable;
  if (record.state !== 'failed' || desired.spec.rollout.onFailure !== 'rollback') return null;
  // Only a release that touched hosts needs undoing; a failed pull or hook changed nothing.
  const reason = record.failure?.reason;
  if (reason !== 'HealthCheckFailed' && reason !== 'ProgressDeadlineExceeded') return null;
  // A failed rollback is not rolled back again; a release equal to the stable one has nowhere to go.
  if (desired.reason === 'rollback' || !stable || stable.revision >= desired.revision) return null;
  return {
    toVersion: stable.version,
    toRevision: stable.revision,
    reason: reason === 'ProgressDeadlineExceeded' ? 'progress_deadline' : 'health_check_failed',
  };
}

export function plan(input: PlanInput): Plan {
  const { desired, now } = input;
  if (!desired) {
    return {
      actions: [],
      record: null,
      events: [],
      requeueAfterMs: null,
      status: { phase: null, conditions: [], hosts: [], observedRevision: null, hostsUpdated: 0, hostsTotal: 0 },
    };
  }
  const spec = desired.spec;
  const events: PlannedEvent[] = [];
  let record = input.record;
  if (!record || record.revision !== desired.revision) {
    record = newRecord(desired.revision, now);
    const units = unitsOf(desired);
    const to = desired.processes ? `${units.length} units (${units.map((u) => u.key).join(', ')})` : `${spec.hosts.length} hosts`;
    events.push({ type: 'NewReleaseCreated', message: `rolling out revision ${desired.revision} (${desired.version}) to ${to}` });
  }
  let pause = false;
  // The operator's resume lifts a pause that a failure imposed: failed hosts get another try.
  if (record.state === 'paused' && !input.paused) {
    record = { ...record, state: 'active', failure: null, hosts: Object.fromEntries(Object.entries(record.hosts).filter(([, h]) => h.step !== 'failed')) };
    events.push({ type: 'RolloutResumed', message: `rollout of revision ${desired.revision} resumed` });
  }

  let views = viewUnits(input, desired, record);
  const viewed = record;
  const actions: Action[] = [];
  let requeueAfterMs: number | null = null;
  const busy = new Set<string>();

  if (record.state === 'active' && !input.paused) {
    const failed = views.filter((v) => v.cls === 'failed');
    const pendingReachable = views.filter((v) => v.cls === 'pending');
    if (failed.length > 0) {
      const msg = failed.map((v) => `${v.key}: ${v.error}`).join('; ');
      ({ record, pause } = onFailure(input, desired, record, views, 'HealthCheckFailed', msg, events));
    } else if (pendingReachable.length > 0 && now - record.startedAt > spec.rollout.progressDeadlineMs) {
      const msg = `revision ${desired.revision} did not finish within its progress deadline (${spec.rollout.progressDeadlineMs} ms)`;
      ({ record, pause } = onFailure(input, desired, record, views, 'ProgressDeadlineExceeded', msg, events));
    }
  }

  if ((record.state === 'active' || record.state === 'complete') && !input.paused) {
    const step = nextRolloutStep(input, desired, record, views, events);
    record = step.record;
    actions.push(...step.actions);
    requeueAfterMs = step.requeueAfterMs;
    // A pull or a hook holds every unit of its host; an update holds its own unit.
    for (const a of step.actions) {
      if (a.type === 'updateHost') busy.add(unitKey(a.process, a.host));
      else if (a.type === 'pull' || a.type === 'hook') for (const v of views) if (v.host === a.host) busy.add(v.key);
    }
    // Views of the same record are the same views (a converged app's pass): not built twice.
    if (record !== viewed) views = viewUnits(input, desired, record);
  }

  if (spec.rollout.strategy === 'recreate') {
    const reverts = revertActions(input, views, busy);
    actions.push(...reverts);
    for (const a of reverts) busy.add(unitKey(a.process, a.host));
  }

  const rollback = rollbackDecision(input, desired, record);
  if (rollback) {
    events.push({ type: 'RollbackStarted', message: `rolling the fleet back to revision ${rollback.toRevision} (${rollback.toVersion})` });
  }
  if (!input.paused) actions.push(...cleanupActions(views, spec.retainContainers, busy, record.state === 'failed', !!spec.rollout.preboot));
  actions.push(...restoreTrafficActions(input, views, busy), ...maintenanceActions(input, views, busy));

  const status = statusView(input, desired, record, views);
  return { actions, record, status, events, requeueAfterMs, ...(pause ? { pauseApp: true as const } : {}), ...(rollback ? { rollback } : {}) };
}

/** Pre-pull, pre_deploy hook, batches with delay, post_deploy hook, completion. */
function nextRolloutStep(
  input: PlanInput,
  desired: DesiredRelease,
  record: RolloutRecord,
  views: HostView[],
  events: PlannedEvent[],
): { record: RolloutRecord; actions: Action[]; requeueAfterMs: number | null } {
  const { now } = input;
  const spec = desired.spec;
  const reachable = views.filter((v) => v.cls !== 'unreachable');
  const isDeploy = desired.reason === 'deploy';
  const wait = (ms: number) => ({ record, actions: [] as Action[], requeueAfterMs: ms });

  const needsPreDeploy = record.state === 'active' && isDeploy && spec.hooks.preDeploy.length > 0 && !record.preDeployDone;
  // Hosts, not units: the image is the host's, whichever of its processes needs it.
  const toPull = record.state === 'active' ? [...new Set(reachable.filter((v) => v.cls === 'pending' && !v.target && !record.pulled.includes(v.host)).map((v) => v.host))] : [];
  if (needsPreDeploy) {
    // The hook runs the new image before any host changes: every host pulls first.
    if (toPull.length > 0) return { record, actions: toPull.map((host) => ({ type: 'pull', host })), requeueAfterMs: 0 };
    const first = reachable[0];
    if (!first) return wait(0);
    return { record, actions: [{ type: 'hook', host: first.host, phase: 'pre_deploy' }], requeueAfterMs: 0 };
  }

  const batches = toBatches(views, batchSize(spec.rollout.parallelism, views.length));
  const current = batches.findIndex((b) => b.some((v) => v.cls === 'pending'));
  if (current === -1) {
    if (record.state === 'complete') return { record, actions: [], requeueAfterMs: null };
    if (views.some((v) => v.cls === 'unreachable')) return { record, actions: [], requeueAfterMs: null };
    // Done means the old containers are stopped too: the cleanup pass retires them first.
    if (views.some((v) => v.cls === 'updated' && v.othersRunning.length > 0)) return { record, actions: [], requeueAfterMs: 0 };
    if (isDeploy && spec.hooks.postDeploy.length > 0 && !record.postDeployDone) {
      const first = reachable[0];
      if (first) return { record, actions: [{ type: 'hook', host: first.host, phase: 'post_deploy' }], requeueAfterMs: 0 };
    }
    const updated = views.filter((v) => v.cls === 'updated').length;
    events.push({ type: 'RolloutComplete', message: `revision ${desired.revision} (${desired.version}) serves on ${updated}/${views.length} ${unitNoun(desired)}` });
    return { record: { ...record, state: 'complete', finishedAt: now }, actions: [], requeueAfterMs: null };
  }

  let next = record;
  if (current !== record.batch) {
    // Drift repair after completion goes straight on; a live rollout waits `delay` between batches.
    const delay = current > record.batch && record.state === 'active' ? spec.rollout.delayMs : 0;
    next = { ...record, batch: current, batchNotBefore: now + delay };
  }
  const update = (v: HostView, extra: Pick<HostUpdateAction, 'preboot' | 'prebooted'>): Action => ({
    type: 'updateHost',
    host: v.host,
    ...processOf(v),
    existingContainerId: v.target?.id ?? null,
    containerName: newContainerName(input.app, desired.revision, v.process, v),
    pull: !v.target && !next.pulled.includes(v.host),
    // Whatever runs now, as observed (not as recorded): after a crash anywhere in a step, the
    // new container still never starts beside an old one.
    ...(spec.rollout.strategy === 'recreate' ? { stopFirst: v.othersRunning.map((c) => c.id) } : {}),
    // A rotated secret's replacement that fails leaves the keeper serving: that host may fail.
    ...(record.state === 'complete' && !v.keeper ? { repair: true as const } : {}),
    ...extra,
  });
  const due = (v: HostView) => v.retryAt === null || v.retryAt <= now;
  // rollout.preboot: later batches' units boot and prove healthy now, through the delay too;
  // their switches still wait for their batch. A live rollout only: repair goes unit by unit.
  const early = spec.rollout.preboot && record.state === 'active' ? batches.slice(current + 1).flat().filter((v) => v.cls === 'pending' && !v.prebooted) : [];
  const preboots = early.filter(due).map((v) => update(v, { preboot: true }));
  const prebootRetryIn = Math.min(...early.filter((v) => !due(v)).map((v) => v.retryAt! - now));
  if (now < next.batchNotBefore) {
    const waitMs = Math.min(next.batchNotBefore - now, prebootRetryIn);
    return { record: next, actions: preboots, requeueAfterMs: preboots.length > 0 ? 0 : waitMs };
  }

  const pending = batches[current]!.filter((v) => v.cls === 'pending');
  const inBatch = pending.filter(due);
  const retryIn = Math.min(...pending.filter((v) => !due(v)).map((v) => v.retryAt! - now), prebootRetryIn);
  const restartsAtPreboot = (v: HostView) => {
    const state = record.hosts[v.key];
    return state?.step === 'prebooted' ? (state.restarts ?? null) : null;
  };
  const actions: Action[] = [...inBatch.map((v) => update(v, v.prebooted ? { prebooted: { restarts: restartsAtPreboot(v) } } : {})), ...preboots];
  // Later batches' hosts pull while the first batch boots (its hosts, and prebooting ones, pull inside updateHost).
  for (const host of toPull) if (!pending.some((v) => v.host === host) && !early.some((v) => v.host === host)) actions.push({ type: 'pull', host });
  return { record: next, actions, requeueAfterMs: inBatch.length > 0 || preboots.length > 0 || !Number.isFinite(retryIn) ? 0 : retryIn };
}
