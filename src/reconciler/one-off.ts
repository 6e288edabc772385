import { ConflictError, NotFoundError } from '../domain/errors.js';
import type { RunOnceResult } from '../hosts/host-driver.js';
import { execContext, readWanted, type ReconcilerDeps } from './context.js';
import { runOneOff } from './execute.js';

export type ExecOutcome = RunOnceResult & { host: string; version: string };

/**
 * `berth exec`: a one-off command in a container of the app's desired release on one
 * of its hosts (the first by default), with the app's env and secrets.
 */
export async function execInApp(deps: ReconcilerDeps, app: string, command: string, host?: string): Promise<ExecOutcome> {
  const wanted = readWanted(deps.store, app);
  if (!wanted) throw new NotFoundError(`app "${app}"`);
  const { desired } = wanted;
  if (!desired) throw new ConflictError(`app "${app}" has no release yet: deploy one first`);
  const target = host ?? desired.spec.hosts[0]!;
  if (!desired.spec.hosts.includes(target)) throw new ConflictError(`host "${target}" does not run app "${app}" (hosts: ${desired.spec.hosts.join(', ')})`);
  const ctx = execContext(deps, app, desired);
  ctx.emit({ type: 'ExecStarted', host: target, message: `exec on ${target} in ${desired.version}` });
  const result = await runOneOff(ctx, target, `${app}-exec-${Date.now().toString(36)}`, command);
  ctx.emit({ type: 'ExecFinished', host: target, message: `exec exit ${result.exitCode}${result.timedOut ? ' (timed out)' : ''}` });
  return { ...result, host: target, version: desired.version };
}
