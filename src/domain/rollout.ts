/**
 * The rollout record and its validator. It lives in the domain layer because both the
 * reconciler (which writes it) and the store (which keeps it as JSON and validates it
 * on read, src/store/status.ts) name it.
 */

export type HostRolloutState =
  | { step: 'switched'; containerId: string; at: number }
  /**
   * rollout.preboot: the unit's new container runs and passed its health check; its switch
   * waits for its batch. `restarts`: Docker's RestartCount when it passed (absent in a record
   * of an older berth): one that moved since is checked again in full at its turn.
   */
  | { step: 'prebooted'; containerId: string; at: number; restarts?: number }
  /** `logs`: the last lines of the container that failed, redacted (src/reconciler/execute.ts). */
  | { step: 'failed'; reason: 'HealthCheckFailed' | 'StartFailed'; message: string; at: number; logs?: string[] }
  /** A start or switch failed for a reason that may pass (the proxy, Docker): tried again from `notBefore`. */
  | { step: 'retrying'; attempts: number; notBefore: number; message: string; at: number };

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

const RECORD_STATES: ReadonlySet<string> = new Set<RolloutRecord['state']>(['active', 'complete', 'failed', 'paused']);
const HOST_FAILURE_REASONS: ReadonlySet<string> = new Set(['HealthCheckFailed', 'StartFailed'] satisfies Array<
  Extract<HostRolloutState, { step: 'failed' }>['reason']
>);

type Obj = Record<string, unknown>;

const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isTime = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function hostProblem(h: unknown): string | null {
  if (!isObject(h)) return 'is not an object';
  if (!isTime(h.at)) return '.at is not a number';
  if (h.step === 'switched' || h.step === 'prebooted') {
    if (h.step === 'prebooted' && h.restarts !== undefined && !isCount(h.restarts)) return '.restarts is not a count';
    return typeof h.containerId === 'string' ? null : '.containerId is not a string';
  }
  if (h.step === 'failed') {
    if (typeof h.reason !== 'string' || !HOST_FAILURE_REASONS.has(h.reason)) return `.reason ${JSON.stringify(h.reason)} is not a host failure reason`;
    if (h.logs !== undefined && !(Array.isArray(h.logs) && h.logs.every((l) => typeof l === 'string'))) return '.logs is not a list of lines';
    return typeof h.message === 'string' ? null : '.message is not a string';
  }
  if (h.step === 'retrying') {
    if (!isCount(h.attempts)) return '.attempts is not a count';
    if (!isTime(h.notBefore)) return '.notBefore is not a number';
    return typeof h.message === 'string' ? null : '.message is not a string';
  }
  return `.step ${JSON.stringify(h.step)} is not switched, prebooted, failed or retrying`;
}

/**
 * What is wrong with `value` as a rollout record (the first problem found, as
 * `field: problem`), or null when it is one. Fields it does not know are allowed.
 */
export function rolloutRecordProblem(value: unknown): string | null {
  if (!isObject(value)) return 'not an object';
  const r = value;
  if (!isCount(r.revision)) return 'revision: not a non-negative integer';
  if (!isTime(r.startedAt)) return 'startedAt: not a number';
  if (typeof r.state !== 'string' || !RECORD_STATES.has(r.state)) return `state: ${JSON.stringify(r.state)} is not one of ${[...RECORD_STATES].join(', ')}`;
  if (!Array.isArray(r.pulled) || !r.pulled.every((h) => typeof h === 'string')) return 'pulled: not a list of host names';
  if (typeof r.preDeployDone !== 'boolean') return 'preDeployDone: not a boolean';
  if (typeof r.postDeployDone !== 'boolean') return 'postDeployDone: not a boolean';
  if (!isCount(r.batch)) return 'batch: not a non-negative integer';
  if (!isTime(r.batchNotBefore)) return 'batchNotBefore: not a number';
  if (!isObject(r.hosts)) return 'hosts: not an object';
  for (const [host, h] of Object.entries(r.hosts)) {
    const problem = hostProblem(h);
    if (problem) return `hosts.${host}${problem.startsWith('.') ? problem : `: ${problem}`}`;
  }
  if (r.failure !== null && !(isObject(r.failure) && typeof r.failure.reason === 'string' && typeof r.failure.message === 'string')) {
    return 'failure: neither null nor {reason, message}';
  }
  if (r.finishedAt !== null && !isTime(r.finishedAt)) return 'finishedAt: neither null nor a number';
  return null;
}

/**
 * `value` as a rollout record, or null when it is not one (a record from a corrupt
 * row, or written by a berth with another shape).
 *
 * Null rather than a throw, on purpose: losing a record is safe by design (the planner
 * starts a new one, re-probes and re-switches), while a throw would fail every pass of
 * the app until someone deleted the row by hand. Callers treat null as "no record" and
 * report it (the store's `onInvalidRollout`); `rolloutRecordProblem` says what is wrong.
 */
export function parseRolloutRecord(value: unknown): RolloutRecord | null {
  return rolloutRecordProblem(value) === null ? (value as RolloutRecord) : null;
}
