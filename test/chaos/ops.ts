/**
 * The chaos run's operations. Each draws its choices from the run's PRNG (so a seed
 * replays the same sequence), does its thing, and returns one line saying what it did;
 * a fault it injects is undone before it returns (the link comes back, the app is
 * resumed, maintenance ends), and the run then waits for the fleet to settle. An op
 * whose fault legitimately fails requests opens a fault window for exactly the hosts and
 * apps it touches (windows.ts).
 */
import { PROXY_CONTAINER_NAME } from '../../src/domain/labels.js';
import { PROXY_APP_LABEL } from '../../src/proxy/haproxy-proxy.js';
import { testbedCommandAsync } from '../support/testbed.js';
import { APPS, GOOD_VERSIONS, MAINTENANCE_MESSAGE, between, pick, sleep, type AppView, type ChaosApp, type World } from './world.js';

export interface Op {
  name: string;
  /** Relative frequency. */
  weight: number;
  run(w: World): Promise<string>;
}

type Answer = { status: number; body: Record<string, unknown> | null };

/** Statuses a write may answer under chaos; anything else (a 5xx above all) fails the run. */
const FAIR_WRITE = new Set([200, 202, 409]);

async function write(w: World, path: string, body: unknown): Promise<Answer> {
  const res = await w.daemon.request<Record<string, unknown> | null>('POST', path, body);
  if (!FAIR_WRITE.has(res.status)) throw new Error(`POST ${path} ${JSON.stringify(body)} answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res;
}

async function view(w: World, app: ChaosApp): Promise<AppView> {
  return (await w.daemon.request<AppView>('GET', `/v1/apps/${app}`)).body;
}

/** A good version other than the app's desired one (so the deploy is a real rollout). */
async function otherGood(w: World, app: ChaosApp): Promise<string> {
  const current = (await view(w, app)).desired?.version;
  return pick(w.random, GOOD_VERSIONS.filter((v) => v !== current));
}

async function deploy(w: World, app: ChaosApp, version: string): Promise<string> {
  const res = await write(w, `/v1/apps/${app}/releases`, { version });
  return `${app} ${version} -> ${res.status}${res.body?.revision !== undefined ? ` r${String(res.body.revision)}` : ''}`;
}

const deployOp = (name: string, weight: number, version: (w: World, app: ChaosApp) => Promise<string> | string): Op => ({
  name,
  weight,
  async run(w) {
    const app = pick(w.random, APPS);
    return deploy(w, app, await version(w, app));
  },
});

export const OPS: Op[] = [
  deployOp('deploy-good', 6, otherGood),
  deployOp('deploy-broken', 2, () => 'broken'),
  deployOp('deploy-slowboot', 2, () => 'slowboot'),
  {
    name: 'rollback',
    weight: 2,
    async run(w) {
      const app = pick(w.random, APPS);
      const res = await write(w, `/v1/apps/${app}/rollback`, {});
      return `${app} -> ${res.status}${res.body?.version ? ` ${String(res.body.version)}` : ''}`;
    },
  },
  {
    name: 'pause-resume',
    weight: 2,
    async run(w) {
      const app = pick(w.random, APPS);
      const line = await deploy(w, app, await otherGood(w, app));
      await sleep(between(w.random, 0, 1500));
      await write(w, `/v1/apps/${app}/pause`, {});
      const held = between(w.random, 1000, 3000);
      await sleep(held);
      await write(w, `/v1/apps/${app}/resume`, {});
      return `${line}, paused ${held} ms`;
    },
  },
  {
    name: 'maintenance',
    weight: 1,
    async run(w) {
      const app = pick(w.random, APPS);
      const held = between(w.random, 1000, 3000);
      // Closed by the settle: the proxies answer 503 until the pass after /live has reached them.
      w.openWindow(`maintenance ${app}`, w.hosts, [app], MAINTENANCE_MESSAGE);
      await write(w, `/v1/apps/${app}/maintenance`, { message: MAINTENANCE_MESSAGE });
      await sleep(held);
      await write(w, `/v1/apps/${app}/live`, {});
      return `${app} for ${held} ms`;
    },
  },
  {
    name: 'kill9',
    weight: 3,
    async run(w) {
      const during = w.random() < 0.7 ? pick(w.random, APPS) : null;
      const line = during ? `${await deploy(w, during, await otherGood(w, during))}, ` : '';
      const after = between(w.random, 0, 3000);
      await sleep(after);
      await w.daemon.kill9();
      await w.daemon.restart();
      return `${line}killed after ${after} ms`;
    },
  },
  {
    name: 'container-by-hand',
    weight: 2,
    async run(w) {
      const app = pick(w.random, APPS);
      const host = pick(w.random, w.hosts);
      const remove = w.random() < 0.5;
      const d = w.daemon.drivers.get(host)!;
      const serving = (await d.listContainers({ app })).filter((c) => c.role === 'app' && c.running);
      if (serving.length === 0) return `${app}@${host}: nothing running`;
      // Nothing else serves this app on this host until berth replaces it: its requests there may fail.
      w.openWindow(`${remove ? 'removed' : 'stopped'} ${app}@${host}`, [host], [app]);
      for (const c of serving) {
        if (remove) await d.removeContainer(c.id);
        else await d.stopContainer(c.id, 0);
      }
      return `${remove ? 'removed' : 'stopped'} ${app}@${host} (${serving.map((c) => c.name).join(' ')})`;
    },
  },
  {
    name: 'remove-proxy',
    weight: 1,
    async run(w) {
      const host = pick(w.random, w.hosts);
      const d = w.daemon.drivers.get(host)!;
      const proxy = (await d.listContainers({ app: PROXY_APP_LABEL })).find((c) => c.name === PROXY_CONTAINER_NAME);
      if (!proxy) return `${host}: no proxy`;
      // Every app on this host is unreachable until berth recreates the proxy (as in test/e2e/host-repair.test.ts).
      w.openWindow(`removed proxy ${host}`, [host], APPS);
      await d.removeContainer(proxy.id);
      return host;
    },
  },
  {
    name: 'net-cut',
    weight: 1,
    async run(w) {
      const host = pick(w.random, w.hosts);
      const ms = between(w.random, 5_000, 20_000);
      const during = w.random() < 0.5 ? pick(w.random, APPS) : null;
      const win = w.openWindow(`net-cut ${host}`, [host], APPS);
      await testbedCommandAsync('netdown', host);
      let line = '';
      try {
        await sleep(Math.floor(ms / 3));
        if (during) line = `, ${await deploy(w, during, await otherGood(w, during))}`;
        await sleep(ms - Math.floor(ms / 3));
      } finally {
        await testbedCommandAsync('netup', host);
        win.to = w.clock();
      }
      return `${host} for ${ms} ms${line}`;
    },
  },
  {
    name: 'dockerd-restart',
    weight: 1,
    async run(w) {
      const host = pick(w.random, w.hosts);
      const during = w.random() < 0.5 ? pick(w.random, APPS) : null;
      const line = during ? `, ${await deploy(w, during, await otherGood(w, during))}` : '';
      await sleep(between(w.random, 0, 1500));
      // live-restore is on (as in test/faults/hosts-faults.test.ts): containers and the proxy keep serving.
      await testbedCommandAsync('dockerd-restart', host);
      return `${host}${line}`;
    },
  },
  {
    name: 'concurrent-writes',
    weight: 2,
    async run(w) {
      // Two deploys of one app with the same expectedRevision: exactly one wins, the other is a 409.
      const app = pick(w.random, APPS);
      const current = await view(w, app);
      const expected = current.desired!.revision;
      const [a, b] = GOOD_VERSIONS.filter((v) => v !== current.desired!.version);
      const others = APPS.filter((x) => x !== app);
      const results = await Promise.all([
        write(w, `/v1/apps/${app}/releases`, { version: a, expectedRevision: expected }),
        write(w, `/v1/apps/${app}/releases`, { version: b, expectedRevision: expected }),
        ...others.map(async (x) => (w.random() < 0.5 ? write(w, `/v1/apps/${x}/rollback`, {}) : write(w, `/v1/apps/${x}/releases`, { version: await otherGood(w, x) }))),
        write(w, `/v1/apps/${pick(w.random, others)}/restart`, undefined),
      ]);
      const race = results.slice(0, 2).map((r) => r.status).sort();
      if (race[0] !== 202 || race[1] !== 409) throw new Error(`two deploys of ${app} with expectedRevision ${expected}: answered ${race.join(' and ')}, want one 202 and one 409`);
      return `${app} race ${race.join('/')}; ${results.slice(2).map((r) => r.status).join(' ')}`;
    },
  },
];

/** Picks an op by weight. */
export function drawOp(random: () => number): Op {
  const total = OPS.reduce((n, o) => n + o.weight, 0);
  let x = random() * total;
  for (const o of OPS) {
    x -= o.weight;
    if (x < 0) return o;
  }
  return OPS[OPS.length - 1]!;
}
