import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import type { ProxyRouteSpec } from '../../src/domain/app-spec.js';
import { ProxyError } from '../../src/domain/errors.js';
import { PROXY_CONTAINER_NAME } from '../../src/domain/labels.js';
import type { HostDriver, ObservedContainer } from '../../src/hosts/host-driver.js';
import { unixCommand } from '../../src/hosts/unix-command.js';
import {
  MIGRATION_CONTAINER_NAME,
  caddyAdminGet,
  finishLeftovers,
  migrateFromCaddy,
  missingServers,
  parseCaddyRoutes,
  parseHttpAnswer,
  planLeftovers,
  seedFromCaddy,
  stopGraceMs,
  type MigrationContext,
} from '../../src/proxy/caddy-migration.js';
import type { HostRoute, Slot } from '../../src/proxy/haproxy-config.js';

const HAPROXY = 'registry/haproxy:2.6';
const CADDY = 'registry/caddy:2';
const route = (app: string, host: string | null, drainTimeoutMs = 5000): HostRoute => ({ app, route: { port: 80, host, pathPrefix: null, drainTimeoutMs } satisfies ProxyRouteSpec });

/** The Caddy config the old berth built (caddy-config.ts before HAProxy): web in service, blog in maintenance, solo mid-switch. */
function oldBerthConfig(): unknown {
  const proxy = (app: string, dials: string[]) => ({
    '@id': `berth-upstreams-${app}`,
    handler: 'reverse_proxy',
    upstreams: dials.map((dial) => ({ dial })),
    load_balancing: { selection_policy: { policy: 'first' }, try_duration: '5s', try_interval: '100ms' },
  });
  const page = (app: string, message: string) => ({ '@id': `berth-maintenance-${app}`, handler: 'static_response', status_code: 503, body: `${message}\n` });
  return {
    admin: { listen: 'unix//run/berth-proxy/admin.sock', config: { persist: true } },
    apps: {
      http: {
        servers: {
          'berth-p80': {
            listen: [':80'],
            automatic_https: { disable: true },
            routes: [
              { '@id': 'berth-route-web', match: [{ host: ['a.test'] }], handle: [proxy('web', ['172.18.0.5:3000'])], terminal: true },
              { '@id': 'berth-route-blog', match: [{ host: ['b.test'] }], handle: [page('blog', 'Back at 5; sorry'), proxy('blog', ['172.18.0.6:3000'])], terminal: true },
              { handle: [{ handler: 'static_response', body: 'not berth' }] },
            ],
          },
          'berth-p8081': { listen: [':8081'], routes: [{ '@id': 'berth-route-solo', handle: [proxy('solo', ['172.18.0.8:3000', '172.18.0.7:3000'])], terminal: true }] },
        },
      },
    },
  };
}

describe('Caddy migration (pure)', () => {
  it('reads each app route of the old berth config: serving upstream first, maintenance text', () => {
    const routes = parseCaddyRoutes(oldBerthConfig());
    assert.deepEqual(Object.fromEntries(routes), {
      web: { upstream: '172.18.0.5:3000', maintenance: null },
      blog: { upstream: '172.18.0.6:3000', maintenance: 'Back at 5; sorry' },
      solo: { upstream: '172.18.0.8:3000', maintenance: null },
    });
    assert.equal(parseCaddyRoutes(null).size, 0);
    assert.equal(parseCaddyRoutes({ apps: { http: { servers: { x: { routes: 'nope' } } } } }).size, 0);
    assert.equal(parseCaddyRoutes({ admin: {} }).size, 0, 'a Caddy without servers routes nothing');
  });

  it('seeds HAProxy with the upstreams of the wanted apps only; apps Caddy did not route stay unrouted', () => {
    const seed = seedFromCaddy([route('web', 'a.test'), route('blog', 'b.test'), route('new', 'c.test')], parseCaddyRoutes(oldBerthConfig()));
    assert.deepEqual(seed.slots, [
      { backend: 'app_web', server: 's1', addr: '172.18.0.5:3000', state: 'ready', inFlight: 0 },
      { backend: 'app_blog', server: 's1', addr: '172.18.0.6:3000', state: 'ready', inFlight: 0 },
    ]);
    assert.deepEqual([...seed.maintenance], [['blog', 'Back at 5; sorry']]);
    assert.deepEqual(seed.unrouted, ['new']);
    // A dial HAProxy would have to resolve is not copied.
    const named = seedFromCaddy([route('web', 'a.test')], new Map([['web', { upstream: 'web-r3:3000', maintenance: null }]]));
    assert.deepEqual(named.unrouted, ['web']);
  });

  it('tells which seeded servers a running proxy lacks', () => {
    const seeded: Slot[] = [{ backend: 'app_web', server: 's1', addr: '10.0.0.5:3000', state: 'ready', inFlight: 0 }];
    assert.deepEqual(missingServers(seeded, [{ ...seeded[0]!, inFlight: 3 }]), []);
    assert.equal(missingServers(seeded, [{ ...seeded[0]!, state: 'maint' }]).length, 1);
    assert.equal(missingServers(seeded, []).length, 1);
  });

  it('builds an HTTP/1.0 GET with an empty Host that unixCommand completes with its newline', () => {
    assert.equal(`${caddyAdminGet('/config/')}\n`, 'GET /config/ HTTP/1.0\r\nHost: \r\n\r\n');
  });

  it('parses raw HTTP answers: close-delimited, chunked, not HTTP', () => {
    assert.deepEqual(parseHttpAnswer('HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"a":1}\n'), { status: 200, body: '{"a":1}\n' });
    assert.deepEqual(parseHttpAnswer('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n5\r\n:"é"\r\n1\r\n}\r\n0\r\n\r\n'), { status: 200, body: '{"a":"é"}' });
    assert.deepEqual(parseHttpAnswer('HTTP/1.1 403 Forbidden\r\n\r\n{"error":"host not allowed"}'), { status: 403, body: '{"error":"host not allowed"}' });
    assert.equal(parseHttpAnswer('# pxname,svname\n'), null);
    assert.equal(parseHttpAnswer('HTTP/1.0 200 OK\r\nContent-'), null);
  });

  it('gives Caddy the longest drain timeout of the host routes to finish its requests', () => {
    assert.equal(stopGraceMs([route('a', null, 5000), route('b', 'x', 20_000)]), 20_000);
    assert.equal(stopGraceMs([]), 30_000);
  });
});

const c = (name: string, version: string, running = true, state = running ? 'running' : 'exited'): ObservedContainer => ({
  id: `id-${name}-${version}`,
  name,
  app: '_proxy',
  revision: 0,
  version,
  configHash: '',
  role: 'proxy',
  state,
  running,
  ip: null,
  createdAt: 0,
  image: version,
});

describe('Caddy migration: leftovers of an interrupted migration', () => {
  it('plans from the proxy containers alone', () => {
    assert.deepEqual(planLeftovers([c(PROXY_CONTAINER_NAME, HAPROXY)], HAPROXY), { kind: 'none' });
    assert.deepEqual(planLeftovers([c(PROXY_CONTAINER_NAME, CADDY)], HAPROXY), { kind: 'none' }, 'a Caddy alone is migrated by start()');
    assert.deepEqual(planLeftovers([], HAPROXY), { kind: 'none' });
    const next = c(MIGRATION_CONTAINER_NAME, HAPROXY);
    assert.deepEqual(planLeftovers([c(PROXY_CONTAINER_NAME, CADDY), next], HAPROXY), { kind: 'finish', next, old: c(PROXY_CONTAINER_NAME, CADDY) });
    assert.deepEqual(planLeftovers([next], HAPROXY), { kind: 'finish', next, old: null }, 'crash between removing Caddy and the rename');
    assert.deepEqual(planLeftovers([c(PROXY_CONTAINER_NAME, HAPROXY), next], HAPROXY), { kind: 'drop', next });
  });
});

/** A host whose driver records the migration's calls, in order. */
function fakeHost(o: { caddyAnswer?: string | Error; ready?: Slot[] | Error; canRename?: boolean } = {}) {
  const calls: string[] = [];
  const driver = {
    name: 'h1',
    hasImage: async () => false,
    pullImage: async (ref: string) => void calls.push(`pull ${ref}`),
    unixCommand: async (socket: string, command: string) => {
      calls.push(`admin ${socket} ${command.split('\r\n')[0]}`);
      const a = o.caddyAnswer ?? `HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(oldBerthConfig())}`;
      if (a instanceof Error) throw a;
      return a;
    },
    startContainer: async (id: string) => void calls.push(`start ${id}`),
    stopContainer: async (id: string, ms: number) => void calls.push(`stop ${id} ${ms}`),
    removeContainer: async (id: string) => void calls.push(`remove ${id}`),
    ...(o.canRename === false ? {} : { renameContainer: async (id: string, name: string) => void calls.push(`rename ${id} ${name}`) }),
  } as unknown as HostDriver;
  const created: Array<{ name: string; slots: Slot[]; maintenance: Map<string, string> }> = [];
  const ctx: MigrationContext<{ slots: Slot[] }> = {
    host: 'h1',
    driver,
    log: pino({ level: 'silent' }),
    image: HAPROXY,
    wanted: [route('web', 'a.test', 7000), route('blog', 'b.test')],
    caddyAdminSocket: '/var/lib/berth/proxy/admin.sock',
    createProxy: async (name, slots, maintenance) => {
      calls.push(`create ${name}`);
      created.push({ name, slots, maintenance });
      return `id-${name}`;
    },
    waitReady: async (routes) => {
      calls.push(`ready${routes ? ' with routes' : ''}`);
      const r = o.ready ?? created.at(-1)?.slots ?? [];
      if (r instanceof Error) throw r;
      return { slots: r };
    },
    reload: async (state) => {
      calls.push('reload');
      return state;
    },
  };
  return { ctx, calls, created };
}

describe('Caddy migration: the sequence', () => {
  const caddy = c(PROXY_CONTAINER_NAME, CADDY);

  it('reads Caddy, starts HAProxy beside it with its servers, then stops and removes Caddy, then renames', async () => {
    const h = fakeHost();
    const state = await migrateFromCaddy(h.ctx, caddy);
    assert.deepEqual(h.calls, [
      `pull ${HAPROXY}`,
      'admin /var/lib/berth/proxy/admin.sock GET /config/ HTTP/1.0',
      `create ${MIGRATION_CONTAINER_NAME}`,
      `start id-${MIGRATION_CONTAINER_NAME}`,
      'ready with routes',
      `stop ${caddy.id} 7000`,
      `remove ${caddy.id}`,
      `rename id-${MIGRATION_CONTAINER_NAME} ${PROXY_CONTAINER_NAME}`,
      'reload',
    ]);
    assert.deepEqual(h.created[0]!.slots.map((s) => `${s.backend} ${s.addr}`), ['app_web 172.18.0.5:3000', 'app_blog 172.18.0.6:3000']);
    assert.deepEqual([...h.created[0]!.maintenance], [['blog', 'Back at 5; sorry']]);
    assert.equal(state?.slots.length, 2);
  });

  it('changes nothing when Caddy\'s admin API does not answer like Caddy, or the driver cannot rename: the caller replaces it', async () => {
    for (const caddyAnswer of [new Error('ECONNREFUSED'), '# pxname,svname\n', 'HTTP/1.0 404 Not Found\r\n\r\n', 'HTTP/1.0 200 OK\r\n\r\n<html>']) {
      const h = fakeHost({ caddyAnswer });
      assert.equal(await migrateFromCaddy(h.ctx, caddy), null);
      assert.ok(!h.calls.some((x) => /^(create|stop|remove)/.test(x)), h.calls.join('; '));
    }
    const h = fakeHost({ canRename: false });
    assert.equal(await migrateFromCaddy(h.ctx, caddy), null);
    assert.deepEqual(h.calls, []);
  });

  it('a new proxy that does not come up (or lacks the servers) is taken away; Caddy is never touched', async () => {
    for (const ready of [new ProxyError('PROXY_NOT_READY', 'h1', 'not answering'), [] as Slot[]]) {
      const h = fakeHost({ ready });
      await assert.rejects(migrateFromCaddy(h.ctx, caddy), ProxyError);
      assert.deepEqual(h.calls.slice(-2), [`stop id-${MIGRATION_CONTAINER_NAME} 7000`, `remove id-${MIGRATION_CONTAINER_NAME}`]);
      assert.ok(!h.calls.some((x) => x.includes(caddy.id)), h.calls.join('; '));
    }
  });

  it('after a crash: a temporary HAProxy that answers is kept; Caddy retired, then the rename', async () => {
    const h = fakeHost({ ready: [] });
    const next = c(MIGRATION_CONTAINER_NAME, HAPROXY);
    assert.ok(await finishLeftovers(h.ctx, [caddy, next]));
    assert.deepEqual(h.calls, ['ready', `stop ${caddy.id} 7000`, `remove ${caddy.id}`, `rename ${next.id} ${PROXY_CONTAINER_NAME}`, 'reload']);
    // Crashed after Caddy's removal: only the rename is left.
    const h2 = fakeHost({ ready: [] });
    assert.ok(await finishLeftovers(h2.ctx, [next]));
    assert.deepEqual(h2.calls, ['ready', `rename ${next.id} ${PROXY_CONTAINER_NAME}`, 'reload']);
  });

  it('after a crash: a temporary HAProxy that never started or does not answer is removed and the migration starts over', async () => {
    const created = c(MIGRATION_CONTAINER_NAME, HAPROXY, false, 'created');
    const h = fakeHost();
    assert.ok(await finishLeftovers(h.ctx, [caddy, created]));
    assert.deepEqual(h.calls.slice(0, 4), [`stop ${created.id} 7000`, `remove ${created.id}`, `pull ${HAPROXY}`, 'admin /var/lib/berth/proxy/admin.sock GET /config/ HTTP/1.0']);
    assert.deepEqual(h.calls.slice(-2), [`rename id-${MIGRATION_CONTAINER_NAME} ${PROXY_CONTAINER_NAME}`, 'reload']);

    const silent = fakeHost({ ready: new ProxyError('PROXY_NOT_READY', 'h1', 'silent'), caddyAnswer: new Error('ENOENT') });
    assert.equal(await finishLeftovers(silent.ctx, [caddy, c(MIGRATION_CONTAINER_NAME, HAPROXY)]), null, 'Caddy unreadable: the normal path replaces it');
    assert.deepEqual(silent.calls.slice(0, 3), ['ready', `stop id-${MIGRATION_CONTAINER_NAME}-${HAPROXY} 7000`, `remove id-${MIGRATION_CONTAINER_NAME}-${HAPROXY}`]);
  });

  it('a temporary HAProxy beside an HAProxy berth-proxy is a leftover: removed, nothing else', async () => {
    const h = fakeHost();
    const next = c(MIGRATION_CONTAINER_NAME, HAPROXY);
    assert.equal(await finishLeftovers(h.ctx, [c(PROXY_CONTAINER_NAME, HAPROXY), next]), null);
    assert.deepEqual(h.calls, [`stop ${next.id} 7000`, `remove ${next.id}`]);
  });
});

const caddyBin = spawnSync('caddy', ['version'], { encoding: 'utf8' });
const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('Caddy migration: a real Caddy admin API', { skip: caddyBin.status === 0 ? false : 'caddy is not installed' }, () => {
  it('unixCommand carries the GET and the answer parses to the routes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-caddy-'));
    dirs.push(dir);
    const config = oldBerthConfig() as { admin: unknown; apps: { http: { servers: Record<string, { listen: string[] }> } } };
    config.admin = { listen: `unix/${dir}/admin.sock`, config: { persist: false } };
    // No TCP port: the servers listen on Unix sockets.
    config.apps.http.servers['berth-p80']!.listen = [`unix/${dir}/p80.sock`];
    config.apps.http.servers['berth-p8081']!.listen = [`unix/${dir}/p8081.sock`];
    writeFileSync(join(dir, 'caddy.json'), JSON.stringify(config));
    const proc = spawn('caddy', ['run', '--config', join(dir, 'caddy.json')], { stdio: 'ignore', env: { ...process.env, XDG_CONFIG_HOME: dir, XDG_DATA_HOME: dir } });
    try {
      let raw = '';
      for (let i = 0; i < 100 && !raw; i++) {
        raw = await unixCommand({ host: 'local', target: { kind: 'unix', socketPath: join(dir, 'admin.sock') }, socketPath: join(dir, 'admin.sock'), command: caddyAdminGet('/config/'), signal: AbortSignal.timeout(2000) }).catch(async () => {
          await new Promise((r) => setTimeout(r, 50));
          return '';
        });
      }
      const answer = parseHttpAnswer(raw);
      assert.equal(answer?.status, 200, raw.slice(0, 200));
      assert.deepEqual([...parseCaddyRoutes(JSON.parse(answer!.body))].map(([app, r]) => `${app} ${r.upstream} ${r.maintenance}`).sort(), [
        'blog 172.18.0.6:3000 Back at 5; sorry',
        'solo 172.18.0.8:3000 null',
        'web 172.18.0.5:3000 null',
      ]);
    } finally {
      proc.kill('SIGTERM');
    }
  });
});
