import type { Logger } from 'pino';
import { SEED_DEFAULTS } from '../domain/app-spec.js';
import { containerConfigHash } from '../domain/config-hash.js';
import type { AppSpec } from '../domain/app-spec.js';
import { ConfigError, ConflictError } from '../domain/errors.js';
import { allSecretNames, appProcesses } from '../domain/processes.js';
import { isReservedSecretName, reservedSecretMessage, secretRedactor, type Redactor } from '../domain/secrets.js';
import { driverFor, type HostDriver } from '../hosts/host-driver.js';
import type { BerthMetrics } from '../metrics/registry.js';
import type { TrafficSwitch } from '../proxy/traffic.js';
import { secretValuesFrom, type AppSecretFiles, type AppSecretsRead } from '../secrets/app-secrets.js';
import type { AppPassInputs, Store } from '../store/index.js';
import type { RolloutRecord } from '../domain/rollout.js';
import type { AppStatus } from '../domain/release.js';
import type { ExecContext } from './execute.js';
import type { DesiredRelease, StableRelease } from './types.js';

/** What a reconcile pass and a one-off run use of the daemon. */
export interface ReconcilerDeps {
  store: Store;
  drivers: Map<string, HostDriver>;
  traffic: TrafficSwitch;
  metrics: BerthMetrics;
  log: Logger;
  /** Where secret values come from: each app's own secrets file. */
  secrets: AppSecretFiles;
  now: () => number;
}

export interface Wanted {
  desired: DesiredRelease | null;
  /** The last release the fleet converged on: what an automatic rollback returns to. */
  stable: StableRelease | null;
  paused: boolean;
  maintenance: string | null;
  /** Releases kept per app (history_limit): older ones are pruned unless still in use. */
  historyLimit: number;
  /** How many releases the app has (a prune within the limit needs no look). */
  releaseCount: number;
  /**
   * The app's secrets file as read for this pass: the desired config hash covers its
   * values (so a rotated secret asks for a new container), and the containers the pass
   * creates get these same values (execContext), never a later edit under this hash.
   */
  secrets: AppSecretsRead;
  /** The app's status as last recorded (only the app's own passes write it). */
  status: AppStatus | null;
  /** The rollout record as last recorded (null: none, or not a valid one). */
  record: RolloutRecord | null;
}

/** What a pass wants of the app, from its stored inputs (PassInputsRepo) and its secrets file. */
export function readWanted(inputs: AppPassInputs, secretFiles: AppSecretFiles): Wanted {
  const secrets = secretFiles.read(inputs.name);
  return {
    paused: inputs.paused,
    maintenance: inputs.maintenance,
    historyLimit: inputs.historyLimit ?? SEED_DEFAULTS.historyLimit,
    releaseCount: inputs.releaseCount,
    secrets,
    desired: inputs.latest ? desiredRelease(inputs.latest, secrets.values) : null,
    stable: inputs.stable,
    status: inputs.status,
    record: inputs.rollout?.state ?? null,
  };
}

/** A release as the controller drives it: the container config hash of its spec, and for an app with processes each process's. */
export function desiredRelease(release: Pick<DesiredRelease, 'revision' | 'version' | 'spec' | 'reason'>, secretValues: Readonly<Record<string, string | undefined>>): DesiredRelease {
  const { revision, version, spec, reason } = release;
  return {
    revision,
    version,
    spec,
    reason,
    configHash: containerConfigHash(spec, secretValues),
    // Each process its own hash, of its effective settings: changing one process's cmd rolls the app.
    ...(spec.processes ? { processes: appProcesses(spec).map((p) => ({ ...p, configHash: containerConfigHash(p.spec, secretValues) })) } : {}),
  };
}

/** Cuts the values of the app's secrets, as read, out of text: every value set, reserved names included (never passed, but never shown either). */
export function appRedactor(spec: AppSpec, secrets: AppSecretsRead): Redactor {
  return secretRedactor(Object.fromEntries(allSecretNames(spec).map((n) => [n, Object.hasOwn(secrets.values, n) ? secrets.values[n] : undefined])));
}

/** `host` when the app runs on it; a ConflictError naming the app's hosts otherwise (exec, logs). */
export function mustRunOn(app: string, hosts: readonly string[], host: string): string {
  if (!hosts.includes(host)) throw new ConflictError(`host "${host}" does not run app "${app}" (hosts: ${hosts.join(', ')})`);
  return host;
}

/** The executor's view of one app's desired release: drivers, the values of `secrets` (Wanted.secrets: the read its hash covers), live step events, health metric. */
export function execContext(deps: ReconcilerDeps, app: string, desired: DesiredRelease, secrets: AppSecretsRead): ExecContext {
  const { store, metrics, log } = deps;
  const redact = appRedactor(desired.spec, secrets);
  return {
    app,
    desired,
    traffic: deps.traffic,
    log,
    driver: (host) => driverFor(deps.drivers, host),
    secretValues: (names) => {
      // Config load and PUT refuse these names; a spec stored before that rule is refused here.
      const reserved = names.findIndex(isReservedSecretName);
      if (reserved !== -1) {
        const name = names[reserved]!;
        const at = desired.spec.secrets.indexOf(name);
        throw new ConfigError([{ path: `apps.${app}.secrets[${at === -1 ? reserved : at}]`, message: reservedSecretMessage(name) }]);
      }
      return secretValuesFrom(secrets, names);
    },
    redact,
    // Step events are written as they happen, so `events --follow` shows a rollout live.
    // Their messages (hook output, health details) pass the redactor first.
    emit: (e) => {
      const message = redact(e.message);
      store.observedTransaction(() => store.events.appendEvent({ app, type: e.type, message, host: e.host ?? null, revision: desired.revision, actor: 'controller' }));
      log.info({ app, host: e.host, revision: desired.revision, event: e.type }, message);
    },
    onHealthAttempt: (host, ok) => metrics.healthChecksTotal.inc({ app, host, result: ok ? 'pass' : 'fail' }),
  };
}
