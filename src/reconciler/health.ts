import type { HealthcheckSpec } from '../domain/app-spec.js';
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
