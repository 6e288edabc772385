import { SEED_DEFAULTS, type AppSpec } from '../../src/domain/app-spec.js';
import { containerConfigHash } from '../../src/domain/config-hash.js';
import type { ObservedContainer } from '../../src/hosts/host-driver.js';
import type { DesiredRelease, HostObservation, PlanInput } from '../../src/reconciler/types.js';

/** A complete AppSpec with seed defaults, for tests that need one without YAML. */
export function makeSpec(overrides: Partial<AppSpec> = {}): AppSpec {
  return {
    name: 'web',
    image: '10.77.0.1:5000/app',
    hosts: ['h1', 'h2', 'h3'],
    port: 3000,
    healthcheck: { ...SEED_DEFAULTS.healthcheck },
    rollout: { ...SEED_DEFAULTS.rollout },
    hooks: { preDeploy: [], postDeploy: [], timeoutMs: SEED_DEFAULTS.hooks.timeoutMs },
    retainContainers: 5,
    stopTimeoutMs: 10_000,
    proxy: null,
    env: {},
    secrets: [],
    ...overrides,
  };
}

export function makeDesired(revision: number, version: string, spec = makeSpec(), reason: 'deploy' | 'rollback' = 'deploy'): DesiredRelease {
  return { revision, version, spec, reason, configHash: containerConfigHash(spec, {}) };
}

let seq = 0;
/** An app container as a host driver would report it. */
export function makeContainer(
  revision: number,
  version: string,
  opts: { running?: boolean; spec?: AppSpec; id?: string; createdAt?: number; state?: string } = {},
): ObservedContainer {
  const running = opts.running ?? true;
  seq += 1;
  return {
    id: opts.id ?? `c${seq}`,
    name: `web-r${revision}`,
    app: 'web',
    revision,
    version,
    configHash: containerConfigHash(opts.spec ?? makeSpec(), {}),
    role: 'app',
    state: opts.state ?? (running ? 'running' : 'exited'),
    running,
    ip: running ? `172.18.0.${seq % 250}` : null,
    createdAt: opts.createdAt ?? seq,
    image: `10.77.0.1:5000/app:${version}`,
  };
}

/** The planner's clock in table tests. */
export const PLAN_NOW = 1_000_000;

/** Hosts as observed: their containers, or `'down'` for one that did not answer. */
export function observeHosts(byHost: Record<string, ObservedContainer[] | 'down'>): HostObservation[] {
  return Object.entries(byHost).map(([host, cs]) =>
    cs === 'down' ? { host, reachable: false, error: 'connect ETIMEDOUT' } : { host, reachable: true, containers: cs },
  );
}

/** A planner input: web at v2 (revision 2) over a stable v1, nothing observed, no record, at PLAN_NOW. */
export function planInput(overrides: Partial<PlanInput>): PlanInput {
  return {
    app: 'web',
    desired: makeDesired(2, 'v2'),
    stable: { revision: 1, version: 'v1' },
    observed: [],
    record: null,
    paused: false,
    maintenance: null,
    now: PLAN_NOW,
    previousConditions: [],
    ...overrides,
  };
}
