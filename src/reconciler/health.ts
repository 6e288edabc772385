import type { ContainerHealthcheckSpec, HealthcheckSpec } from '../domain/app-spec.js';
import { isHostDown } from '../domain/errors.js';
import type { HostDriver } from '../hosts/host-driver.js';

export interface ProbeOutcome {
  ok: boolean;
  attempts: number;
  /** What the last failing probe saw (status code or error). */
  lastError: string | null;
}

export interface ProbeHooks {
  onAttempt?: (ok: boolean, detail: string) => void;
  sleep?: (ms: number) => Promise<void>;
}

/** How much of a failing probe's response body its detail (events, errors) keeps. */
const PROBE_BODY_CHARS = 200;

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * A probe that timed out may mean a slow container or a lost host: a ping tells them
 * apart, and a lost host aborts the health check as unreachable instead of counting
 * against the release.
 */
async function probeOnce(driver: HostDriver, ip: string, hc: HealthcheckSpec): Promise<{ ok: boolean; answered: boolean; detail: string }> {
  try {
    const res = await driver.httpGet(ip, hc.port, hc.path, hc.timeoutMs);
    const ok = res.status >= 200 && res.status < 300;
    // A failing answer keeps the start of its body: what the app said is the probe's output.
    const body = ok ? '' : res.body.replace(/\s+/g, ' ').trim().slice(0, PROBE_BODY_CHARS);
    return { ok, answered: true, detail: `GET ${hc.path} -> ${res.status}${body ? `: ${body}` : ''}` };
  } catch (err) {
    if (isHostDown(err)) await driver.ping();
    return { ok: false, answered: false, detail: `GET ${hc.path}: ${err instanceof Error ? err.message : String(err)}` };
  }
}

/** While a just-started app is not listening yet, the first attempt re-probes this often. */
export const STARTUP_POLL_MS = 100;

/**
 * The first attempt: probe at once and, while nothing answers (the process is still
 * binding its port), again every STARTUP_POLL_MS until one interval has passed. A
 * container that is up 30 ms after start is then promoted 30 ms after start, not one
 * interval later; an app that answers with an error is judged at the normal cadence.
 */
async function firstAttempt(driver: HostDriver, ip: string, hc: HealthcheckSpec, sleep: (ms: number) => Promise<void>) {
  const until = Date.now() + hc.intervalMs;
  let probe = await probeOnce(driver, ip, hc);
  while (!probe.answered && Date.now() + STARTUP_POLL_MS < until) {
    await sleep(STARTUP_POLL_MS);
    probe = await probeOnce(driver, ip, hc);
  }
  return { probe, waitMs: Math.max(0, until - Date.now()) };
}

/**
 * Probes at once, then every `interval`, up to `max_attempts`; each probe bounded by
 * `timeout`. With `min_healthy`, a passing container must keep passing for that long
 * (probing every interval), so a version that flaps inside the window is never promoted.
 */
export async function waitHealthy(driver: HostDriver, ip: string, hc: HealthcheckSpec, hooks: ProbeHooks = {}): Promise<ProbeOutcome> {
  const sleep = hooks.sleep ?? defaultSleep;
  let attempts = 0;
  let lastError: string | null = null;
  let healthySince: number | null = null;
  while (true) {
    attempts += 1;
    let probe: Awaited<ReturnType<typeof probeOnce>>;
    let waitMs = hc.intervalMs;
    if (attempts === 1) ({ probe, waitMs } = await firstAttempt(driver, ip, hc, sleep));
    else probe = await probeOnce(driver, ip, hc);
    hooks.onAttempt?.(probe.ok, probe.detail);
    if (probe.ok) {
      healthySince ??= Date.now();
      if (Date.now() - healthySince >= hc.minHealthyMs) return { ok: true, attempts, lastError: null };
    } else {
      lastError = probe.detail;
      // Inside the soak window a failure is final: the version flaps.
      if (healthySince !== null) return { ok: false, attempts, lastError: `${probe.detail} (failed during min_healthy soak)` };
      if (attempts >= hc.maxAttempts) return { ok: false, attempts, lastError };
    }
    await sleep(waitMs);
  }
}

/** How often a process without a health command is looked at while it runs its min_healthy. */
const RUNNING_POLL_MS = 1_000;

/** A running container's RestartCount, or why it does not count as running. */
async function runningState(driver: HostDriver, id: string): Promise<{ restarts: number } | { problem: string }> {
  const c = await driver.inspectContainer(id);
  if (!c) return { problem: 'the container is gone' };
  if (!c.running) return { problem: `the container is ${c.state}` };
  return { restarts: c.restartCount ?? 0 };
}

/**
 * A process without a proxy (ContainerHealthcheckSpec): with `cmd`, probed by Docker exec at
 * once, then every `interval`, up to `max_attempts` (each bounded by `timeout`; exit 0 passes),
 * then kept passing for `min_healthy`; without `cmd`, healthy once it has run `min_healthy`.
 * Either way, a container that stops or restarts (its RestartCount moves: a crash its restart
 * policy hid) before it is promoted fails at once.
 */
export async function waitContainerHealthy(driver: HostDriver, id: string, hc: ContainerHealthcheckSpec, hooks: ProbeHooks = {}): Promise<ProbeOutcome & { detail: string }> {
  const sleep = hooks.sleep ?? defaultSleep;
  const first = await runningState(driver, id);
  if ('problem' in first) return { ok: false, attempts: 0, lastError: first.problem, detail: first.problem };
  const started = Date.now();
  let attempts = 0;
  let healthySince: number | null = null;
  let lastError: string | null = null;
  while (true) {
    const now = await runningState(driver, id);
    const problem = 'problem' in now ? now.problem : now.restarts !== first.restarts ? `the container restarted (RestartCount ${first.restarts} -> ${now.restarts})` : null;
    if (problem) {
      hooks.onAttempt?.(false, problem);
      return { ok: false, attempts: attempts + 1, lastError: problem, detail: problem };
    }
    if (!hc.cmd) {
      const left = hc.minHealthyMs - (Date.now() - started);
      if (left <= 0) {
        const detail = `ran ${Math.round((Date.now() - started) / 100) / 10}s without a restart`;
        hooks.onAttempt?.(true, detail);
        return { ok: true, attempts: 1, lastError: null, detail };
      }
      await sleep(Math.min(RUNNING_POLL_MS, left));
      continue;
    }
    attempts += 1;
    const probe = await execProbe(driver, id, hc.cmd, hc.timeoutMs);
    hooks.onAttempt?.(probe.ok, probe.detail);
    if (probe.ok) {
      healthySince ??= Date.now();
      if (Date.now() - healthySince >= hc.minHealthyMs) return { ok: true, attempts, lastError: null, detail: `healthy after ${attempts} attempt(s)` };
    } else {
      lastError = probe.detail;
      if (healthySince !== null) return { ok: false, attempts, lastError: `${probe.detail} (failed during min_healthy soak)`, detail: probe.detail };
      if (attempts >= hc.maxAttempts) return { ok: false, attempts, lastError, detail: probe.detail };
    }
    await sleep(hc.intervalMs);
  }
}

/** One run of the health command: exit 0 passes; what it printed is the probe's detail. */
async function execProbe(driver: HostDriver, id: string, cmd: string[], timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
  const shown = cmd[0] === 'sh' && cmd[1] === '-c' ? (cmd[2] ?? '') : cmd.join(' ');
  try {
    const r = await driver.execInContainer(id, cmd, timeoutMs);
    const out = r.outputTail.replace(/\s+/g, ' ').trim().slice(0, PROBE_BODY_CHARS);
    return { ok: r.exitCode === 0, detail: `${shown} -> exit ${r.exitCode}${out ? `: ${out}` : ''}` };
  } catch (err) {
    if (isHostDown(err)) await driver.ping();
    return { ok: false, detail: `${shown}: ${err instanceof Error ? err.message : String(err)}` };
  }
}
