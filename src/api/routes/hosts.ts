import type { FastifyInstance } from 'fastify';
import type { ProxyStatus } from '../../proxy/traffic.js';
import type { ApiDeps } from '../context.js';
import { hostListSchema } from '../responses.js';

/** How long GET /v1/hosts waits for a host's proxy status before answering without it. */
const PROXY_STATUS_TIMEOUT_MS = 2_000;

export function hostRoutes(app: FastifyInstance, deps: ApiDeps, guard: { read: unknown }): void {
  app.get(
    '/v1/hosts',
    { onRequest: guard.read as never, schema: { operationId: 'listHosts', summary: "Reachability, Docker version, last error and the proxy's state of every host", response: { 200: hostListSchema } } },
    async () => {
      const seen = new Map(deps.store.hostsStatus.list().map((h) => [h.host, h]));
      const hosts = deps.hostNames().map((name) => seen.get(name) ?? { host: name, up: false, dockerVersion: null, lastError: 'not checked yet', checkedAt: null });
      // Only hosts that answer are asked; a slow one answers `proxy: null` rather than holding the whole list.
      const proxies = await Promise.all(hosts.map((h) => (h.up ? proxyStatusOf(deps, h.host) : null)));
      return { hosts: hosts.map((h, i) => ({ ...h, proxy: proxies[i] ?? null })) };
    },
  );
}

async function proxyStatusOf(deps: ApiDeps, host: string): Promise<ProxyStatus | null> {
  if (!deps.proxyStatus) return null;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), PROXY_STATUS_TIMEOUT_MS)));
  try {
    return await Promise.race([deps.proxyStatus(host).catch(() => null), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
