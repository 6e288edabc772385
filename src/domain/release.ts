import type { AppSpec } from './app-spec.js';

export type ReleaseReason = 'deploy' | 'rollback';

export interface Release {
  app: string;
  /** Per-app, only grows. The desired release of an app is its newest revision. */
  revision: number;
  version: string;
  spec: AppSpec;
  reason: ReleaseReason;
  actor: string;
  createdAt: string;
}

export type AppPhase = 'Progressing' | 'Complete' | 'Failed' | 'Paused' | 'RolledBack';

export type ConditionReason =
  | 'NewReleaseCreated'
  | 'HostUpdated'
  | 'HealthCheckFailed'
  | 'ProgressDeadlineExceeded'
  | 'RolledBack'
  | 'Paused'
  | 'Complete'
  | 'HookFailed'
  | 'HostUnreachable';

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: ConditionReason | string;
  message: string;
  lastTransitionTime: string;
}

export interface HostStatus {
  /** The host; for an app with `processes`, the unit key `process@host` (src/domain/processes.ts). */
  host: string;
  /** The unit's process, for an app with `processes`. */
  process?: string;
  version: string | null;
  revision: number | null;
  containerId: string | null;
  health: 'healthy' | 'unhealthy' | 'unknown';
  lastError: string | null;
  /** The last log lines of the container that failed on this host in the current rollout (secret values redacted); null when none did. */
  lastLogs: string[] | null;
}

export interface AppStatus {
  app: string;
  phase: AppPhase | null;
  observedRevision: number | null;
  conditions: Condition[];
  hosts: HostStatus[];
  updatedAt: string;
}

export interface BerthEvent {
  id: number;
  app: string | null;
  host: string | null;
  revision: number | null;
  type: string;
  message: string;
  actor: string | null;
  createdAt: string;
}
