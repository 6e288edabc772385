import type { Logger } from 'pino';
import { BerthError, HOST_ERROR_CODES, HostError, isHostDown, type ErrorCode } from '../domain/errors.js';
import { LABELS, NETWORK_NAME } from '../domain/labels.js';
import { FAILURE_LOG_LINE_CHARS, FAILURE_LOG_LINES, FAILURE_LOGS_EVENT, failureLogsMessage } from '../domain/logs.js';
import { imageReference } from '../domain/naming.js';
import type { ContainerHealthcheckSpec } from '../domain/app-spec.js';
import type { Redactor } from '../domain/secrets.js';
import type { CreateContainerOptions, HostDriver, RunOnceResult } from '../hosts/host-driver.js';
import { withDeadline } from '../hosts/host-errors.js';
import type { TrafficSwitch, Upstream } from '../proxy/traffic.js';
import { unitKey } from '../domain/processes.js';
import { waitContainerHealthy, waitHealthy } from './health.js';
import { desiredProcesses, type Action, type ActionResult, type DesiredProcess, type DesiredRelease, type HostUpdateAction } from './types.js';

/**
 * The thin executor: carries out the planner's actions against the hosts and
 * reports what happened. It decides nothing beyond "stop at the first failing step".
 */
export interface ExecContext {
  app: string;
  /** For a unit of an explicit process (unitContext): the process's spec and config hash. */
  desired: DesiredRelease;
  /** The unit's process, for an app with `processes`; absent for the implicit process and for host work (pull, hook). */
  process?: DesiredProcess;
  driver(host: string): HostDriver;
  traffic: TrafficSwitch;
  /** Secret values by name, from the app's secrets file (SecretMissingError / SecretsFileError otherwise). */
  secretValues(names: string[]): Record<string, string>;
  /**
   * Cuts the app's secret values out of text (domain/secrets.ts): applied to one-off
   * output tails, step error messages and every emitted event before they are stored,
   * logged or returned.
   */
  redact: Redactor;
  log: Logger;
  emit(event: { type: string; message: string; host?: string }): void;
  onHealthAttempt(host: string, ok: boolean): void;
}

export class StepError extends BerthError {
  /** The last log lines of the container that failed (redacted), when they could be read. */
  logs: string[] | null = null;

  constructor(
    readonly stage: 'pull' | 'start' | 'health' | 'switch' | 'other',
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

function failure(ctx: ExecContext, action: Action, err: unknown): ActionResult {
  const stage = err instanceof StepError ? err.stage : 'other';
  const code = err instanceof BerthError ? err.code : 'UNEXPECTED';
  const unreachable = isHostDown(err);
  // The message goes into the rollout record, status, events and the log.
  const message = ctx.redact(err instanceof Error ? err.message : String(err));
  const logs = err instanceof StepError ? err.logs : null;
  return { action, ok: false, stage, code, message, unreachable, ...(logs ? { logs } : {}) };
}

/** How long reading a failed container's last lines may hold up its host's step. */
const FAILURE_LOGS_TIMEOUT_MS = 5_000;

/**
 * The last FAILURE_LOG_LINES lines of a container that never became healthy (or is not
 * running), each redacted and cut to FAILURE_LOG_LINE_CHARS, read before the container is
 * removed, and said in a FAILURE_LOGS_EVENT; null when they cannot be read in time (the
 * step fails as it would have).
 */
async function failedContainerLogs(ctx: ExecContext, host: string, id: string, name: string, err: StepError): Promise<string[] | null> {
  const about = `${name} (${ctx.desired.version}) ${err.stage === 'health' ? 'failed its health check' : 'is not running'}`;
  try {
    const lines = await withDeadline(host, `read the last log lines of ${name}`, FAILURE_LOGS_TIMEOUT_MS, async (signal) => {
      const stream = await ctx.driver(host).containerLogs(id, { tail: FAILURE_LOG_LINES, follow: false });
      signal.addEventListener('abort', () => stream.close(), { once: true });
      const out: string[] = [];
      for await (const line of stream) out.push(ctx.redact(line.text).slice(0, FAILURE_LOG_LINE_CHARS));
      return out.slice(-FAILURE_LOG_LINES);
    });
    ctx.emit({ type: FAILURE_LOGS_EVENT, host, message: failureLogsMessage(lines.length > 0 ? `${about}; its last ${lines.length} log lines:` : `${about}; it wrote no log line`, lines) });
    return lines;
  } catch (e) {
    ctx.log.warn({ app: ctx.app, host, container: name, err: ctx.redact(e instanceof Error ? e.message : String(e)) }, 'could not read the log of a failed container');
    return null;
  }
}

/**
 * Redacts an error's message and stack, and its causes', in place: for an error that
 * leaves the executor as it is (berth exec answers the API with it, which may log it).
 */
export function redactError(err: unknown, redact: Redactor): void {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    e.message = redact(e.message);
    if (e.stack) e.stack = redact(e.stack);
  }
}

async function at<T>(stage: StepError['stage'], fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof StepError) throw err;
    const code = err instanceof BerthError ? err.code : 'UNEXPECTED';
    throw new StepError(stage, code, err instanceof Error ? err.message : String(err), { cause: err });
  }
}

function containerEnv(ctx: ExecContext): Record<string, string> {
  const { spec } = ctx.desired;
  return { ...spec.env, ...ctx.secretValues(spec.secrets) };
}

/** How every container of the release runs, app or one-off (volumes, user, limits, /etc/hosts): not cmd, entrypoint, stop signal, labels or logging, which are the app container's. */
function sharedSettings(ctx: ExecContext): Partial<CreateContainerOptions> {
  const c = ctx.desired.spec.container;
  if (!c) return {};
  return {
    ...(c.volumes ? { volumes: c.volumes } : {}),
    ...(c.user ? { user: c.user } : {}),
    ...(c.memoryBytes !== undefined ? { memoryBytes: c.memoryBytes } : {}),
    ...(c.cpus !== undefined ? { cpus: c.cpus } : {}),
    ...(c.extraHosts ? { extraHosts: c.extraHosts } : {}),
    ...(c.privileged ? { privileged: true } : {}),
  };
}

/** The app container's own settings on top of the shared ones. */
function appSettings(ctx: ExecContext): Partial<CreateContainerOptions> {
  const c = ctx.desired.spec.container;
  return {
    ...sharedSettings(ctx),
    ...(c?.cmd ? { cmd: c.cmd } : {}),
    ...(c?.entrypoint ? { entrypoint: c.entrypoint } : {}),
    ...(c?.stopSignal ? { stopSignal: c.stopSignal } : {}),
    ...(c?.logging ? { logging: c.logging } : {}),
  };
}

function labels(ctx: ExecContext, role: 'app' | 'hook'): Record<string, string> {
  return {
    // The app's own labels first: berth's (validated never to collide) always win.
    ...(role === 'app' ? ctx.desired.spec.container?.labels : {}),
    [LABELS.managed]: 'true',
    [LABELS.app]: ctx.app,
    [LABELS.revision]: String(ctx.desired.revision),
    [LABELS.version]: ctx.desired.version,
    [LABELS.config]: ctx.desired.configHash,
    [LABELS.role]: role,
    ...(ctx.process?.name && role === 'app' ? { [LABELS.process]: ctx.process.name } : {}),
  };
}

/**
 * The context of one action. A unit of an explicit process runs with the process's spec
 * (its hosts, port, env, container settings, route, health check) and config hash, and
 * its events name the unit (`worker@h3`) where they would name the host.
 */
function unitContext(ctx: ExecContext, action: Action): ExecContext {
  if (!('process' in action) || !action.process) return ctx;
  const name = action.process;
  const process = desiredProcesses(ctx.desired).find((p) => p.name === name);
  if (!process) throw new BerthError('UNEXPECTED', `revision ${ctx.desired.revision} of ${ctx.app} has no process ${name}`);
  const key = unitKey(name, action.host);
  return {
    ...ctx,
    desired: { ...ctx.desired, spec: process.spec, configHash: process.configHash },
    process,
    emit: (e) => ctx.emit({ ...e, ...(e.host === action.host ? { host: key } : {}) }),
  };
}

const imageOf = (ctx: ExecContext) => imageReference(ctx.desired.spec.image, ctx.desired.version);

function missingPrerequisite(err: unknown): boolean {
  if (!(err instanceof HostError)) return false;
  // A missing network, or duplicates of it (made by a racing client): ensureNetwork repairs both.
  return err.code === HOST_ERROR_CODES.imageNotFound || /network \S+ (not found|is ambiguous)/i.test(err.message);
}

async function ensureImage(driver: HostDriver, ref: string): Promise<void> {
  if (!(await driver.hasImage(ref))) await driver.pullImage(ref);
}

/**
 * One host: target running -> healthy -> traffic switched. With `stopFirst` (recreate) the
 * old containers are drained and stopped right before the target's first start: after the
 * pull and the create, so the host's downtime is the new container's boot, and a release
 * that cannot even create its container (a secret missing) has stopped nothing.
 */
async function updateHost(ctx: ExecContext, a: HostUpdateAction): Promise<{ containerId: string; restarts?: number }> {
  const driver = ctx.driver(a.host);
  const stopping = a.stopFirst?.length ? ` (recreate: ${a.stopFirst.length} running container(s) stop first)` : '';
  // A pre-booted container that restarted since it passed (a crash its restart policy hid) is checked again in full.
  const restarted = a.prebooted && a.existingContainerId ? await at('start', () => restartedSince(driver, a.existingContainerId!, a.prebooted!.restarts)) : null;
  if (a.preboot) ctx.emit({ type: 'PrebootStarted', host: a.host, message: `pre-booting ${ctx.desired.version} on ${a.host}; its traffic moves in its batch` });
  else ctx.emit({ type: 'HostUpdateStarted', host: a.host, message: `updating ${a.host} to ${ctx.desired.version}${a.prebooted ? ` (pre-booted${restarted ? `; ${restarted}: checked again in full` : ''})` : ''}${stopping}` });
  let toStop = a.stopFirst ?? [];
  const start = async (id: string) => {
    await retire(ctx, a.host, toStop, 'withdraw');
    toStop = [];
    await driver.startContainer(id);
  };
  const id = await at('start', async () => {
    if (a.existingContainerId) {
      try {
        await start(a.existingContainerId);
        return a.existingContainerId;
      } catch (err) {
        if (!(err instanceof HostError && err.code === HOST_ERROR_CODES.staleTask)) throw err;
        // Not startable any more: replace it with a fresh container of the release.
        await driver.removeContainer(a.existingContainerId);
      }
    }
    const create = () =>
      driver.createContainer({
        ...appSettings(ctx),
        name: a.containerName,
        image: imageOf(ctx),
        env: containerEnv(ctx),
        labels: labels(ctx, 'app'),
        network: NETWORK_NAME,
        init: true,
        restartPolicy: 'unless-stopped',
      });
    if (a.pull) await at('pull', () => ensureImage(driver, imageOf(ctx)));
    let created: string | null = null;
    try {
      created = await create();
      await start(created);
    } catch (err) {
      if (created && err instanceof HostError && err.code === HOST_ERROR_CODES.staleTask) {
        await driver.removeContainer(created);
        created = await create();
        await start(created);
        return created;
      }
      // Image and network are looked up only when create (image) or start (network)
      // says one is missing: on every host's critical path, two round trips fewer.
      if (!missingPrerequisite(err)) throw err;
      await at('pull', () => ensureImage(driver, imageOf(ctx)));
      await driver.ensureNetwork(NETWORK_NAME);
      created ??= await create();
      await start(created);
    }
    return created;
  });
  // A pre-booted container is already running: its turn only checks and switches.
  if (!a.prebooted) ctx.emit({ type: 'ContainerStarted', host: a.host, message: `started ${a.containerName} (${ctx.desired.version})${a.existingContainerId ? ' reusing a retained container' : ''}` });
  try {
    await healthyThenSwitch(ctx, a.host, id, a.containerName, { switch: !a.preboot, soak: !a.prebooted || restarted !== null });
  } catch (err) {
    // The container's own fault: its last words go with the failure, before the planner removes it.
    if (err instanceof StepError && (err.stage === 'health' || err.code === 'CONTAINER_NOT_RUNNING')) err.logs = await failedContainerLogs(ctx, a.host, id, a.containerName, err);
    throw err;
  }
  if (!a.preboot) return { containerId: id };
  ctx.emit({ type: 'ContainerPrebooted', host: a.host, message: `${a.containerName} (${ctx.desired.version}) runs healthy; waiting for its batch to take the traffic` });
  const passed = await at('start', () => driver.inspectContainer(id));
  return { containerId: id, ...(passed?.restartCount !== undefined ? { restarts: passed.restartCount } : {}) };
}

/**
 * Why a pre-booted container's pass no longer holds: it restarted since (its RestartCount
 * moved), or that count was not recorded (a record of an older berth); null when it holds.
 */
async function restartedSince(driver: HostDriver, id: string, restartsWhenPassed: number | null): Promise<string | null> {
  if (restartsWhenPassed === null) return 'its restarts since were not recorded';
  const now = (await driver.inspectContainer(id))?.restartCount;
  if (now === undefined || now === restartsWhenPassed) return null;
  return `it restarted since (RestartCount ${restartsWhenPassed} -> ${now})`;
}

/**
 * A running container proven healthy, then the host's traffic moved onto it. `switch: false`
 * (a pre-boot) stops after the health check; `soak: false` (the turn of a pre-booted one)
 * skips the min_healthy soak its pre-boot already sat out.
 */
async function healthyThenSwitch(ctx: ExecContext, host: string, id: string, name: string, how = { switch: true, soak: true }): Promise<void> {
  const driver = ctx.driver(host);
  const { spec } = ctx.desired;
  const containerCheck = ctx.process?.containerHealthcheck;
  if (containerCheck) return containerHealthy(ctx, host, id, how.soak ? containerCheck : { ...containerCheck, minHealthyMs: 0 });
  const upstream = await at('start', async () => upstreamOf(driver, id, spec.port));
  const outcome = await waitHealthy(driver, upstream.ip, how.soak ? spec.healthcheck : { ...spec.healthcheck, minHealthyMs: 0 }, {
    onAttempt: (ok, detail) => {
      ctx.onHealthAttempt(host, ok);
      if (!ok) ctx.emit({ type: 'HealthCheckAttemptFailed', host, message: detail });
    },
  });
  if (!outcome.ok) {
    throw new StepError('health', 'HEALTH_CHECK_FAILED', `never healthy after ${outcome.attempts} attempts: ${outcome.lastError}`);
  }
  ctx.emit({ type: 'HealthCheckPassed', host, message: `healthy after ${outcome.attempts} attempt(s)` });
  if (!how.switch) return;
  await at('switch', () => ctx.traffic.switchTo(host, ctx.app, spec.proxy, upstream));
  ctx.emit({ type: 'TrafficSwitched', host, message: `traffic on ${host} now goes to ${name}` });
}

/** A process without a proxy: healthy by its command, or by running min_healthy unrestarted; no traffic to move. */
async function containerHealthy(ctx: ExecContext, host: string, id: string, hc: ContainerHealthcheckSpec): Promise<void> {
  const outcome = await at('health', () =>
    waitContainerHealthy(ctx.driver(host), id, hc, {
      onAttempt: (ok, detail) => {
        ctx.onHealthAttempt(host, ok);
        if (!ok) ctx.emit({ type: 'HealthCheckAttemptFailed', host, message: detail });
      },
    }),
  );
  if (outcome.attempts === 0) throw new StepError('start', 'CONTAINER_NOT_RUNNING', `container ${id.slice(0, 12)} is not running: ${outcome.lastError}`);
  if (!outcome.ok) throw new StepError('health', 'HEALTH_CHECK_FAILED', `never healthy after ${outcome.attempts} attempt(s): ${outcome.lastError}`);
  ctx.emit({ type: 'HealthCheckPassed', host, message: outcome.detail });
}

async function upstreamOf(driver: HostDriver, id: string, port: number): Promise<Upstream> {
  let c = await driver.inspectContainer(id);
  if (c?.running && !c.ip) {
    // Running but off the app network (the network removed by hand, or the container
    // disconnected): attach it again. Replacing it instead would remove a container that
    // served until a moment ago, and its replacement would need the same network anyway.
    await driver.ensureNetwork(NETWORK_NAME);
    await driver.connectNetwork(id, NETWORK_NAME);
    c = await driver.inspectContainer(id);
  }
  if (!c?.running || !c.ip) throw new StepError('start', 'CONTAINER_NOT_RUNNING', `container ${id.slice(0, 12)} is not running`);
  return { containerId: id, ip: c.ip, port };
}

/**
 * Drains, then stops containers. `drain` for the ones the traffic has already left (a
 * switch moved it); `withdraw` for ones it may still be on (recreate: nothing replaces them yet).
 */
async function retire(ctx: ExecContext, host: string, ids: string[], how: 'drain' | 'withdraw'): Promise<void> {
  const driver = ctx.driver(host);
  const { spec } = ctx.desired;
  await Promise.all(
    ids.map(async (id) => {
      const c = await driver.inspectContainer(id);
      if (c?.ip) await ctx.traffic[how](host, ctx.app, spec.proxy, { containerId: id, ip: c.ip, port: spec.port }, spec.proxy?.drainTimeoutMs ?? 0);
      await driver.stopContainer(id, spec.stopTimeoutMs);
      ctx.emit({ type: 'ContainerStopped', host, message: `stopped ${c?.name ?? id.slice(0, 12)} (${c?.version ?? '?'})` });
    }),
  );
}

/**
 * One command in a one-off container of the release's image, with the app's env and
 * secrets. The output tail comes back with the secret values redacted, and so does
 * the message of an error: neither is ever seen verbatim by a caller (hook events, the
 * exec API answer).
 */
export async function runOneOff(ctx: ExecContext, host: string, name: string, command: string): Promise<RunOnceResult> {
  try {
    const driver = ctx.driver(host);
    await ensureImage(driver, imageOf(ctx));
    await driver.ensureNetwork(NETWORK_NAME);
    const result = await driver.runOnce({
      ...sharedSettings(ctx),
      name,
      image: imageOf(ctx),
      cmd: ['sh', '-c', command],
      env: containerEnv(ctx),
      labels: labels(ctx, 'hook'),
      network: NETWORK_NAME,
      timeoutMs: ctx.desired.spec.hooks.timeoutMs,
    });
    // A tail may start inside a value: its leading end of a value is redacted too.
    return { ...result, outputTail: ctx.redact(result.outputTail, { tail: true }) };
  } catch (err) {
    redactError(err, ctx.redact);
    throw err;
  }
}

async function runHook(ctx: ExecContext, host: string, phase: 'pre_deploy' | 'post_deploy'): Promise<void> {
  const { spec, revision } = ctx.desired;
  const commands = phase === 'pre_deploy' ? spec.hooks.preDeploy : spec.hooks.postDeploy;
  for (const [i, command] of commands.entries()) {
    // Deterministic name: after a crash the same run is adopted, not started a second time.
    const result = await runOneOff(ctx, host, `${ctx.app}-r${revision}-${phase.replace('_', '-')}-${i}`, command);
    const tail = result.outputTail.trim().split('\n').slice(-20).join('\n');
    ctx.emit({ type: 'HookOutput', host, message: `${phase}[${i}] exit ${result.exitCode}${result.timedOut ? ' (timed out)' : ''}: ${tail}` });
    if (result.timedOut) throw new StepError('other', 'HOOK_TIMEOUT', `${phase}[${i}] timed out after ${spec.hooks.timeoutMs} ms`);
    if (result.exitCode !== 0) throw new StepError('other', 'HOOK_FAILED', `${phase}[${i}] exited with code ${result.exitCode}`);
  }
}

async function executeOne(appCtx: ExecContext, action: Action): Promise<ActionResult> {
  let ctx = appCtx;
  try {
    ctx = unitContext(appCtx, action);
    switch (action.type) {
      case 'pull':
        await at('pull', () => ensureImage(ctx.driver(action.host), imageOf(ctx)));
        return { action, ok: true };
      case 'hook':
        await runHook(ctx, action.host, action.phase);
        return { action, ok: true };
      case 'updateHost':
        return { action, ok: true, ...(await updateHost(ctx, action)) };
      case 'retire':
        await retire(ctx, action.host, action.containerIds, 'drain');
        return { action, ok: true };
      case 'remove':
        for (const id of action.containerIds) await ctx.driver(action.host).removeContainer(id);
        ctx.emit({ type: action.why === 'prune' ? 'ContainersPruned' : 'FailedContainerRemoved', host: action.host, message: `removed ${action.containerIds.length} container(s)` });
        return { action, ok: true };
      case 'restoreTraffic':
        ctx.emit({ type: 'RouteLost', host: action.host, message: `the proxy on ${action.host} routes ${ctx.app} nowhere: putting its traffic back on ${action.containerName}` });
        await healthyThenSwitch(ctx, action.host, action.containerId, action.containerName);
        return { action, ok: true };
      case 'revertHost':
        await retire(ctx, action.host, action.stopFirst, 'withdraw');
        await ctx.driver(action.host).startContainer(action.containerId);
        ctx.emit({ type: 'HostReverted', host: action.host, message: `the new container on ${action.host} failed: started ${action.containerName} again` });
        await healthyThenSwitch(ctx, action.host, action.containerId, action.containerName);
        return { action, ok: true };
      case 'maintenance':
        await ctx.traffic.setMaintenance(action.host, ctx.app, ctx.desired.spec.proxy!, action.message);
        ctx.emit({ type: action.message === null ? 'ProxyLive' : 'ProxyMaintenance', host: action.host, message: action.message === null ? 'serving traffic again' : `answering 503: ${action.message}` });
        return { action, ok: true };
    }
  } catch (err) {
    const result = failure(ctx, action, err);
    ctx.log.warn({ app: ctx.app, host: action.host, action: action.type, code: !result.ok ? result.code : undefined, err: result.ok ? undefined : result.message }, 'step failed');
    return result;
  }
}

/** Runs the pass's actions concurrently; the planner never gives one container two actions. */
export async function executeActions(ctx: ExecContext, actions: Action[]): Promise<ActionResult[]> {
  return Promise.all(actions.map((a) => executeOne(ctx, a)));
}
