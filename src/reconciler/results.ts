import type { RolloutRecord } from '../domain/rollout.js';
import type { ActionResult } from './types.js';

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
      if (a.type === 'updateHost' && r.containerId) next.hosts[a.host] = { step: 'switched', containerId: r.containerId, at: now };
      continue;
    }
    // A host that stopped answering is not the release's fault: it is retried when it returns.
    if (r.unreachable) continue;
    if (a.type === 'pull' || (a.type === 'updateHost' && r.stage === 'pull')) {
      next = { ...next, state: 'failed', failure: { reason: 'ImagePullFailed', message: `${a.host}: ${r.message}` }, finishedAt: now };
    } else if (a.type === 'hook') {
      next = { ...next, state: 'failed', failure: { reason: 'HookFailed', message: `${a.phase} on ${a.host}: ${r.message}` }, finishedAt: now };
    } else if (a.type === 'updateHost') {
      next.hosts[a.host] = {
        step: 'failed',
        reason: r.stage === 'health' ? 'HealthCheckFailed' : 'StartFailed',
        message: r.message,
        at: now,
      };
    }
  }
  return next;
}
