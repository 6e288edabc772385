import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HOST_NAME_PATTERN } from '../../domain/naming.js';
import type { ProxyStatus } from '../../proxy/traffic.js';
import { clampLimit } from '../../store/index.js';
import type { ApiDeps } from '../context.js';
import { hostListSchema } from '../responses.js';
import { pageQuery } from '../schemas.js';

/** A page of hosts when the caller names no size: the hosts come from the config file, so one page is the usual fleet. */
const DEFAULT_HOSTS_LIMIT = 100;
/** How long GET /v1/hosts waits for a host's proxy status before answering without it. */
const PROXY_STATUS_TIMEOUT_MS = 2_000;

export function hostRoutes(app: FastifyInstance, deps: ApiDeps, guard: { read: unknown }): void {
  app.get(
    '/v1/hosts',
    {
      onRequest: guard.read as never,
      schema: {
        operationId: 'listHosts',
        summary: "Reachability, Docker version, last error and the proxy's state of every host, by name, one page at a time: pass next as ?after= for the rest",
        querystring: pageQuery({ after: { type: 'string', pattern: HOST_NAME_PATTERN, description: 'a host name: only hosts after it (by name) are listed' } }),
        response: { 200: hostListSchema },
      },
    },
    async (req: FastifyRequest<{ Querystring: { limit?: number; after?: string } }>) => {
      const limit = clampLimit(req.query.limit, DEFAULT_HOSTS_LIMIT);
      const after = req.query.after;
      const names = deps.hostNames().filter((n) => after === undefined || n > after).sort();
      const page = names.slice(0, limit);
      const seen = new Map(deps.store.hostsStatus.list().map((h) => [h.host, h]));
      const hosts = page.map((name) => seen.get(name) ?? { host: name, up: false, dockerVersion: null, lastError: 'not checked yet', checkedAt: null });
      // Only hosts that answer are asked; a slow one answers `proxy: null` rather than holding the whole list.
      const proxies = await Promise.all(hosts.map((h) => (h.up ? proxyStatusOf(deps, h.host) : null)));
      return { hosts: hosts.map((h, i) => ({ ...h, proxy: proxies[i] ?? null })), next: names.length > limit ? page[page.length - 1]! : null };
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
