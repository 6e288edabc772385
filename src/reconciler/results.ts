import type { RolloutRecord } from '../domain/rollout.js';
import type { ErrorCode } from '../domain/errors.js';
import { unitKey } from '../domain/processes.js';
import type { ActionResult } from './types.js';

/**
 * A start or switch that failed for a reason outside the release (the proxy not ready, a
 * Docker error, a name conflict after a crash) is tried again — level-triggered, with
 * backoff (1 s, 2 s, 4 s, 8 s) — before the host counts as failed; a failure that is the
 * release's own (it exits at once, a secret is missing or its file unusable) fails the host at once.
 */
const MAX_START_ATTEMPTS = 5;
const START_RETRY_BASE_MS = 1_000;
/**
 * Repair after completion (a proxy recreated, a container removed by hand) re-updates a host
 * of a release the whole fleet already ran: there is nothing to fail or roll back, and a
 * host marked failed there would have its serving container removed and stay dark until
 * the next release (seen: host-repair, 5 apps, 503 for a minute). Where nothing else carries
 * the host's traffic (HostUpdateAction.repair) it is retried, backing off to this (a
 * container that keeps crashing: Kubernetes' CrashLoopBackOff). A replacement beside a
 * container that still serves (a rotated secret the app rejects) fails as in a rollout.
 */
const REPAIR_RETRY_MAX_MS = 30_000;
const RELEASE_FAULTS: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['CONTAINER_NOT_RUNNING', 'SECRET_MISSING', 'SECRETS_FILE_INVALID', 'HOST_NOT_CONFIGURED', 'IMAGE_NOT_FOUND', 'IMAGE_PULL_FAILED']);

/**
 * Folds what the executor did into the rollout record (pure). The planner's next
 * pass reads the record together with a fresh observation of the hosts.
 */
export function applyResults(record: RolloutRecord, results: ActionResult[], now: number): RolloutRecord {
  let next: RolloutRecord = { ...record, hosts: { ...record.hosts }, pulled: [...record.pulled] };
  for (const r of results) {
    const a = r.action;
    if (r.ok) {
      if (a.type === 'pull' && !next.pulled.includes(a.host)) next.pulled.push(a.host);
      if (a.type === 'hook') next = a.phase === 'pre_deploy' ? { ...next, preDeployDone: true } : { ...next, postDeployDone: true };
      if (a.type === 'updateHost' && r.containerId) {
        next.hosts[unitKey(a.process, a.host)] = a.preboot
          ? { step: 'prebooted', containerId: r.containerId, at: now, ...(r.restarts !== undefined ? { restarts: r.restarts } : {}) }
          : { step: 'switched', containerId: r.containerId, at: now };
      }
      continue;
    }
    // A host that stopped answering is not the release's fault: it is retried when it returns.
    if (r.unreachable) continue;
    // The record keeps a unit's state under its key (`worker@h3`; the host for the implicit process).
    const unit = a.type === 'updateHost' ? unitKey(a.process, a.host) : a.host;
    if (a.type === 'updateHost' && a.repair) {
      const before = record.hosts[unit];
      const attempts = before?.step === 'retrying' ? before.attempts + 1 : 1;
      const backoff = Math.min(START_RETRY_BASE_MS * 2 ** (attempts - 1), REPAIR_RETRY_MAX_MS);
      next.hosts[unit] = { step: 'retrying', attempts, notBefore: now + backoff, message: r.message, at: now };
      continue;
    }
    if (a.type === 'pull' || (a.type === 'updateHost' && r.stage === 'pull')) {
      next = { ...next, state: 'failed', failure: { reason: 'ImagePullFailed', message: `${a.host}: ${r.message}` }, finishedAt: now };
    } else if (a.type === 'hook') {
      next = { ...next, state: 'failed', failure: { reason: 'HookFailed', message: `${a.phase} on ${a.host}: ${r.message}` }, finishedAt: now };
    } else if (a.type === 'updateHost') {
      const before = record.hosts[unit];
      const attempts = before?.step === 'retrying' ? before.attempts + 1 : 1;
      if (r.stage !== 'health' && !RELEASE_FAULTS.has(r.code) && attempts < MAX_START_ATTEMPTS) {
        next.hosts[unit] = { step: 'retrying', attempts, notBefore: now + START_RETRY_BASE_MS * 2 ** (attempts - 1), message: r.message, at: now };
      } else {
        next.hosts[unit] = {
          step: 'failed',
          reason: r.stage === 'health' ? 'HealthCheckFailed' : 'StartFailed',
          message: attempts > 1 ? `${r.message} (after ${attempts} attempts)` : r.message,
          at: now,
          ...(r.logs ? { logs: r.logs } : {}),
        };
      }
    }
  }
  return next;
}
