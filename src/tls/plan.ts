/**
 * Which certificates the fleet needs and when one is (re)ordered — pure functions of
 * the desired apps, the stored certificates and the clock (src/tls/manager.ts acts).
 */
import type { AppSpec, TlsSpec } from '../domain/app-spec.js';
import type { StoredCertificate } from '../store/certificates.js';
import { routedApp } from '../domain/processes.js';

/** One host name served over HTTPS: every app routed by it, and every host those apps run on. */
export interface TlsName {
  hostName: string;
  tls: TlsSpec;
  apps: string[];
  hosts: string[];
}

/**
 * The host names of TLS routes, each once. Apps that share a name have the same TLS
 * setting (the route conflict rules refuse anything else, src/config/routes.ts); if
 * stored specs disagreed anyway, the first app by name decides.
 */
export function tlsNames(apps: Iterable<AppSpec>): TlsName[] {
  const byName = new Map<string, TlsName>();
  for (const app of [...apps].map(routedApp).sort((a, b) => a.name.localeCompare(b.name))) {
    const route = app.proxy;
    if (!route?.tls || route.host === null) continue;
    const entry = byName.get(route.host) ?? { hostName: route.host, tls: route.tls, apps: [], hosts: [] };
    entry.apps.push(app.name);
    for (const h of app.hosts) if (!entry.hosts.includes(h)) entry.hosts.push(h);
    byName.set(route.host, entry);
  }
  return [...byName.values()].sort((a, b) => a.hostName.localeCompare(b.hostName));
}

export type OrderReason = 'missing' | 'expired' | 'renew';

const DAY_MS = 86_400_000;
/** However the window is set, one host name is not re-ordered more than once a day (CAs rate-limit duplicates: Let's Encrypt allows 5 a week). */
export const MIN_REORDER_MS = DAY_MS;

/**
 * Whether the certificate of an ACME name must be ordered now, and why.
 * - none stored: `missing`; past its end: `expired`;
 * - remaining life under `renewBeforeMs`: `renew` — unless it was already inside that
 *   same window when it was issued (the window is longer than the CA's certificates
 *   live) and is less than a day old: renewing it again would only loop.
 *   A window changed since the order renews at once.
 */
export function orderReason(stored: StoredCertificate | null, now: number, renewBeforeMs: number): OrderReason | null {
  if (!stored) return 'missing';
  const notAfter = Date.parse(stored.notAfter);
  if (now >= notAfter) return 'expired';
  if (notAfter - now > renewBeforeMs) return null;
  const issuedAt = Date.parse(stored.issuedAt);
  const bornInWindow = notAfter - issuedAt <= renewBeforeMs;
  if (bornInWindow && stored.renewBeforeMs === renewBeforeMs && now - issuedAt < MIN_REORDER_MS) return null;
  return 'renew';
}

/** Waiting time after the n-th failed order in a row (n >= 1): 30 s doubling up to an hour. */
export function orderBackoffMs(failures: number): number {
  return Math.min(3_600_000, 30_000 * 2 ** Math.max(0, failures - 1));
}
