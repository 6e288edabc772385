import type { AppSpec, ContainerHealthcheckSpec } from '../domain/app-spec.js';
import type { ErrorCode } from '../domain/errors.js';
import type { AppPhase, Condition, HostStatus, ReleaseReason } from '../domain/release.js';
import type { RolloutRecord } from '../domain/rollout.js';
import type { ObservedContainer } from '../hosts/host-driver.js';
import type { RouteState } from '../proxy/traffic.js';

/** The release the controller is driving the fleet towards (the app's newest revision). */
export interface DesiredRelease {
  revision: number;
  version: string;
  spec: AppSpec;
  reason: ReleaseReason;
  configHash: string;
  /**
   * An app with `processes`: each process as the rollout runs it, in declaration order.
   * Absent for an app of one implicit process, which is `spec` and `configHash` (desiredProcesses).
   */
  processes?: DesiredProcess[];
}

/** One process of the desired release: its effective spec (domain/processes.ts) and container config hash. */
export interface DesiredProcess {
  /** Null for the implicit process of an app without `processes`. */
  name: string | null;
  spec: AppSpec;
  configHash: string;
  /** A process without a proxy: how it is known healthy (else the HTTP healthcheck of `spec`). */
  containerHealthcheck: ContainerHealthcheckSpec | null;
}

/** The processes of a desired release; an app without `processes` is its one implicit process. */
export function desiredProcesses(desired: DesiredRelease): DesiredProcess[] {
  return desired.processes ?? [{ name: null, spec: desired.spec, configHash: desired.configHash, containerHealthcheck: null }];
}

/** The last release the fleet fully converged on: what an automatic rollback returns to. */
export interface StableRelease {
  revision: number;
  version: string;
}

export type HostObservation =
  | {
      host: string;
      reachable: true;
      containers: ObservedContainer[];
      /** For an app with a proxy route: the route on the host's proxy (null without a proxy route). */
      route?: RouteState | null;
    }
  | { host: string; reachable: false; error: string };

export interface PlanInput {
  app: string;
  desired: DesiredRelease | null;
  stable: StableRelease | null;
  observed: HostObservation[];
  record: RolloutRecord | null;
  paused: boolean;
  /** Maintenance message wanted on every proxy (null = live). */
  maintenance: string | null;
  now: number;
  previousConditions: Condition[];
}

/** One host's critical path in a batch: make the target run, prove it healthy, move traffic. */
export interface HostUpdateAction {
  type: 'updateHost';
  host: string;
  /** The unit's process, for an app with `processes` (UnitAction). */
  process?: string;
  /** Start this retained container instead of creating one (rollback reuse, crash resume). */
  existingContainerId: string | null;
  containerName: string;
  /** Pull before creating when the image may be missing. */
  pull: boolean;
  /**
   * rollout.strategy: recreate only: the host's other running app containers, drained and
   * stopped once the target exists (pulled, created) and before it starts. start-first
   * retires them after the switch instead (a `retire` of a later pass).
   */
  stopFirst?: string[];
  /**
   * Repair after completion on a host where no other container carries the traffic (its
   * proxy was recreated, its container removed by hand): a failure is retried with backoff
   * and never fails the host (results.ts), which would remove its target and leave it dark.
   */
  repair?: true;
  /**
   * rollout.preboot, a unit of a later batch: boot and health-check only; the switch waits
   * for the unit's batch (a success records the unit `prebooted`, results.ts).
   */
  preboot?: true;
  /**
   * The unit's turn after its container was prebooted: health-checked once more before the
   * switch, without the min_healthy soak it already passed, unless it restarted since
   * (`restarts`: its RestartCount when it passed; null, not recorded: checked in full).
   */
  prebooted?: { restarts: number | null };
}

/**
 * Work on one unit of an app with `processes` names the process (its settings, health check
 * and route apply, and its events say `process@host`); absent for the implicit process.
 */
type UnitAction<T> = T & { process?: string };

/** Work on one host; the planner never gives one container two actions in a pass. */
export type Action =
  | { type: 'pull'; host: string }
  | { type: 'hook'; host: string; phase: 'pre_deploy' | 'post_deploy' }
  | HostUpdateAction
  /** Drain then stop the containers that no longer serve traffic. */
  | UnitAction<{ type: 'retire'; host: string; containerIds: string[] }>
  /** Remove containers: old ones past retain_containers, or a new one that failed. */
  | UnitAction<{ type: 'remove'; host: string; containerIds: string[]; why: 'prune' | 'failed' }>
  /** Turn the app's maintenance page on (message) or off (null) on one host's proxy. */
  | UnitAction<{ type: 'maintenance'; host: string; message: string | null }>
  /** Put the host's traffic back on a running container its proxy lost the route to (health-checked first). */
  | UnitAction<{ type: 'restoreTraffic'; host: string; containerId: string; containerName: string }>
  /**
   * rollout.strategy: recreate, a host whose new container failed after the old one stopped:
   * stop `stopFirst` (the failed one), then start the container the host ran before,
   * health-check it and put the traffic back on it.
   */
  | UnitAction<{ type: 'revertHost'; host: string; containerId: string; containerName: string; stopFirst: string[] }>;

/** A failed release that touched hosts goes back to the last release the fleet converged on. */
export interface RollbackDecision {
  toVersion: string;
  toRevision: number;
  reason: 'health_check_failed' | 'progress_deadline';
}

export interface PlannedEvent {
  type: string;
  message: string;
  host?: string;
}

export interface StatusView {
  phase: AppPhase | null;
  conditions: Condition[];
  hosts: HostStatus[];
  /** Revision the fleet has fully converged on, or null while not converged. */
  observedRevision: number | null;
  hostsUpdated: number;
  hostsTotal: number;
}

export interface Plan {
  actions: Action[];
  /** The record to persist before the actions run (new rollout, batch moved, final state). */
  record: RolloutRecord | null;
  status: StatusView;
  events: PlannedEvent[];
  /** Run the next pass after this many ms (null: only on the next event or resync). */
  requeueAfterMs: number | null;
  /** Set the app's paused flag in the same transaction as the record (on_failure: pause). */
  pauseApp?: true;
  /** Create this rollback release in the same transaction as the record (on_failure: rollback). */
  rollback?: RollbackDecision;
}

/** What the executor reports back about one action; folded into the record by applyResults. */
export type ActionResult =
  /** `restarts`: a pre-boot's container's RestartCount once it passed (results.ts records it). */
  | { action: Action; ok: true; containerId?: string; restarts?: number }
  | {
      action: Action;
      ok: false;
      /** Which part of an updateHost failed. */
      stage: 'pull' | 'start' | 'health' | 'switch' | 'other';
      code: ErrorCode;
      message: string;
      /** The host stopped answering: not the release's fault, retried when it returns. */
      unreachable: boolean;
      /** The last log lines of the container that failed (health check, not running), redacted. */
      logs?: string[];
    };
