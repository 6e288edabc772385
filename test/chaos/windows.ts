/**
 * Fault windows: which failed requests of the chaos run's load are fair. A window names
 * the hosts and apps it covers and when it was open (ms on the load's clock); a failure
 * is excused only when its target is one of those app@host pairs and it happened inside
 * the window (plus the load's request timeout after it closes: a request sent just
 * before the end fails up to that much later). Everything else is a real failure.
 */
import type { LoadFailure } from '../support/load.js';

export interface FaultWindow {
  /** What opened it, e.g. `net-cut h2` (for the report). */
  why: string;
  hosts: string[];
  apps: string[];
  from: number;
  /** null while open. */
  to: number | null;
  /** Only answers whose text is this 503 are excused (maintenance), not resets or timeouts. */
  only503?: string;
}

/** Name of a load target: `app@host`. */
export const targetName = (app: string, host: string) => `${app}@${host}`;

/** The load's longest request timeout (slow requests, load.ts default). */
export const FAILURE_LAG_MS = 10_000;

export function excusedBy(f: LoadFailure, windows: readonly FaultWindow[], now: number): FaultWindow | undefined {
  const [app, host] = f.target.split('@');
  return windows.find((w) => {
    if (!w.hosts.includes(host!) || !w.apps.includes(app!)) return false;
    if (f.at < w.from || f.at > (w.to ?? now) + FAILURE_LAG_MS) return false;
    return w.only503 === undefined || (f.kind === 'http' && f.what.includes(`HTTP 503: ${w.only503}`));
  });
}

/** The failures no window excuses, and how many each window excused. */
export function judgeFailures(failures: readonly LoadFailure[], windows: readonly FaultWindow[], now: number): { unexcused: LoadFailure[]; excused: number } {
  const unexcused: LoadFailure[] = [];
  let excused = 0;
  for (const f of failures) {
    if (excusedBy(f, windows, now)) excused += 1;
    else unexcused.push(f);
  }
  return { unexcused, excused };
}
