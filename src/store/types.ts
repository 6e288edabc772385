import type { AppSpec } from '../domain/app-spec.js';
import type { AppStatus, BerthEvent, Release, ReleaseReason } from '../domain/release.js';
import type { RolloutRecord } from '../domain/rollout.js';

/** An app as stored: its desired spec plus the pause switch. */
export interface StoredApp {
  name: string;
  spec: AppSpec;
  paused: boolean;
  /** Null when live; else the maintenance message the proxies answer with (503). */
  maintenance: string | null;
  /** Null unless a deletion was asked for (when): the controller is tearing the app down. */
  deletingSince: string | null;
  createdAt: string;
  updatedAt: string;
}

export type UpsertChange = 'created' | 'updated' | 'unchanged';

export interface UpsertAppResult {
  app: StoredApp;
  /** `unchanged` when the stored spec was already equal: nothing written, no event. */
  change: UpsertChange;
}

/** A release without its spec snapshot: what lists and app views show. */
export type ReleaseSummary = Omit<Release, 'spec'>;

export interface NewRelease {
  app: string;
  version: string;
  /** The spec snapshot; defaults to the app's stored spec. */
  spec?: AppSpec;
  reason: ReleaseReason;
  actor: string;
  /** Optimistic concurrency: the newest revision the caller saw (0 = none yet). Mismatch -> ConflictError. */
  expectedRevision?: number;
}

/** An event to append; `id` and `createdAt` are assigned by the store. */
export interface NewEvent {
  app?: string | null;
  host?: string | null;
  revision?: number | null;
  type: string;
  message: string;
  actor?: string | null;
}

/**
 * A row of the rollouts table: the controller's rollout record of an app, validated
 * when read (`state.revision === revision`).
 */
export interface StoredRollout {
  app: string;
  revision: number;
  state: RolloutRecord;
  updatedAt: string;
}

/**
 * The reconciler's "record" step, written in ONE transaction. `rollout`: omitted =
 * leave as is, `null` = delete the record, else replace it.
 */
export interface RecordStep {
  status?: AppStatus;
  rollout?: { revision: number; state: RolloutRecord } | null;
  /** `app` defaults to the step's app. */
  events?: NewEvent[];
}

export interface RecordStepResult {
  events: BerthEvent[];
}

export interface HostReachability {
  host: string;
  up: boolean;
  dockerVersion: string | null;
  lastError: string | null;
  checkedAt: string;
}

export interface HostReachabilityInput {
  host: string;
  up: boolean;
  dockerVersion?: string | null;
  lastError?: string | null;
  /** Defaults to now. */
  checkedAt?: string;
}

export interface PageOptions {
  /** Default DEFAULT_LIMIT (releases: DEFAULT_RELEASES_LIMIT), at most MAX_LIMIT: src/store/limits.ts. */
  limit?: number;
}

/**
 * What a reconcile pass reads of one app, in one statement (pass-inputs.ts): the app's
 * switches, its newest release, its status, the release its status says the fleet runs,
 * its rollout record, and how many releases it keeps.
 */
export interface AppPassInputs {
  name: string;
  paused: boolean;
  maintenance: string | null;
  deletingSince: string | null;
  /** The app spec's `historyLimit`; null: the default. */
  historyLimit: number | null;
  latest: Release | null;
  status: AppStatus | null;
  /** The release the status's observed revision names (an automatic rollback's target). */
  stable: { revision: number; version: string } | null;
  rollout: StoredRollout | null;
  releaseCount: number;
}
