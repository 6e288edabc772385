/** Two apps on one host cannot own the same proxy route: the second would silently steal the first's traffic. */
import type { AppSpec } from '../domain/app-spec.js';

/** A message naming the first app in `others` whose route collides with `app`'s on a shared host, or null. */
export function findRouteConflict(app: AppSpec, others: Iterable<AppSpec>): string | null {
  const route = app.proxy;
  if (!route) return null;
  for (const other of others) {
    if (other.name === app.name || !other.proxy) continue;
    if (other.proxy.port !== route.port || other.proxy.host !== route.host) continue;
    const shared = app.hosts.filter((h) => other.hosts.includes(h));
    if (shared.length === 0) continue;
    return `same proxy route as app "${other.name}" (${describeRoute(route.port, route.host)}) on host ${shared.join(', ')}`;
  }
  return null;
}

function describeRoute(port: number | null, host: string | null): string {
  const parts: string[] = [];
  if (port !== null) parts.push(`port ${port}`);
  if (host !== null) parts.push(`host "${host}"`);
  return parts.join(', ');
}
