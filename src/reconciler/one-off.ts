import { randomBytes } from 'node:crypto';
import { ConflictError, NotFoundError } from '../domain/errors.js';
import type { RunOnceResult } from '../hosts/host-driver.js';
import { execContext, mustRunOn, readWanted, type ReconcilerDeps } from './context.js';
import { runOneOff } from './execute.js';

export type ExecOutcome = RunOnceResult & { host: string; version: string };

/**
 * A fresh name for each exec container: the time (sortable) and 48 random bits, so two
 * execs of one app in the same millisecond (or from two daemons' clocks) never share one.
 */
export function execContainerName(app: string): string {
  return `${app}-exec-${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
}

/**
 * `berth exec`: a one-off command in a container of the app's desired release on one
 * of its hosts (the first by default), with the app's env and secrets. The output tail
 * and any error come back with the secret values redacted (runOneOff).
 */
export async function execInApp(deps: ReconcilerDeps, app: string, command: string, host?: string): Promise<ExecOutcome> {
  const inputs = deps.store.passInputs.one(app);
  if (!inputs) throw new NotFoundError(`app "${app}"`);
  const wanted = readWanted(inputs, deps.secrets);
  const { desired } = wanted;
  if (!desired) throw new ConflictError(`app "${app}" has no release yet: deploy one first`);
  const target = mustRunOn(app, desired.spec.hosts, host ?? desired.spec.hosts[0]!);
  const ctx = execContext(deps, app, desired, wanted.secrets);
  ctx.emit({ type: 'ExecStarted', host: target, message: `exec on ${target} in ${desired.version}` });
  const result = await runOneOff(ctx, target, execContainerName(app), command);
  ctx.emit({ type: 'ExecFinished', host: target, message: `exec exit ${result.exitCode}${result.timedOut ? ' (timed out)' : ''}` });
  return { ...result, host: target, version: desired.version };
}
