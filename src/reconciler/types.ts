import type { AppSpec } from '../domain/app-spec.js';
import type { AppPhase, Condition, HostStatus, ReleaseReason } from '../domain/release.js';
import type { ObservedContainer } from '../hosts/host-driver.js';
import type { RouteState } from '../proxy/traffic.js';

/** The release the controller is driving the fleet towards (the app's newest revision). */
export interface DesiredRelease {
  revision: number;
  version: string;
  spec: AppSpec;
  reason: ReleaseReason;
  configHash: string;
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

export type HostRolloutState =
  | { step: 'switched'; containerId: string; at: number }
  | { step: 'failed'; reason: 'HealthCheckFailed' | 'StartFailed'; message: string; at: number };

/**
 * What the controller remembers about the rollout of one release, beyond what it can
 * observe on the hosts. Stored as JSON next to the status; losing it is safe (the
 * planner re-probes and re-switches), it only saves work and carries decisions.
 */
export interface RolloutRecord {
  revision: number;
  startedAt: number;
  state: 'active' | 'complete' | 'failed' | 'paused';
  /** Hosts whose image pull finished (pre-pull before the first batch). */
  pulled: string[];
  preDeployDone: boolean;
  postDeployDone: boolean;
  /** Index of the batch in progress; moving past it starts the inter-batch delay. */
  batch: number;
  /** Unix ms before which the current batch may not start (rollout.delay). */
  batchNotBefore: number;
  hosts: Record<string, HostRolloutState>;
  failure: { reason: string; message: string } | null;
  /** When the record reached a final state; used for the rollout duration metric. */
  finishedAt: number | null;
}

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
  /** Start this retained container instead of creating one (rollback reuse, crash resume). */
  existingContainerId: string | null;
  containerName: string;
  /** Pull before creating when the image may be missing. */
  pull: boolean;
}

export type Action =
  | { type: 'pull'; host: string }
  | { type: 'hook'; host: string; phase: 'pre_deploy' | 'post_deploy' }
  | HostUpdateAction
  /** Drain then stop the containers that no longer serve traffic. */
  | { type: 'retire'; host: string; containerIds: string[] }
  /** Remove containers: old ones past retain_containers, or a new one that failed. */
  | { type: 'remove'; host: string; containerIds: string[]; why: 'prune' | 'failed' }
  /** Turn the app's maintenance page on (message) or off (null) on one host's proxy. */
  | { type: 'maintenance'; host: string; message: string | null }
  | { type: 'createRollback'; toVersion: string; toRevision: number; reason: 'health_check_failed' | 'progress_deadline' };

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
}

/** What the executor reports back about one action; folded into the record by applyResults. */
export type ActionResult =
  | { action: Action; ok: true; containerId?: string }
  | {
      action: Action;
      ok: false;
      /** Which part of an updateHost failed. */
      stage: 'pull' | 'start' | 'health' | 'switch' | 'other';
      code: string;
      message: string;
      /** The host stopped answering: not the release's fault, retried when it returns. */
      unreachable: boolean;
    };
