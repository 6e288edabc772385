import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BerthEvent } from '../../src/domain/release.js';
import type { HostDriver } from '../../src/hosts/host-driver.js';
import { bedApp, type BedApp } from '../support/bed-app.js';
import { startBedDaemonApps, type BedDaemon } from '../support/bed-daemon.js';
import { bedSkipReason, testbedCommand } from '../support/testbed.js';
import { waitUntil } from '../support/wait.js';

/**
 * rollout.strategy: recreate on real hosts, through a real daemon: no host ever runs two
 * containers of the app, through a deploy, a failed deploy (rolled back) and kill -9s of
 * berth mid-rollout, each followed by a restart that finishes the rollout. Checked twice:
 * a sampler lists every host's containers every 50 ms, and afterwards each dockerd's own
 * start/die events (nanosecond times) are replayed, which sees an overlap shorter than a sample.
 *
 * `sched` is a singleton on h1 without a proxy route (a scheduler: never two anywhere).
 * `db` runs on three hosts behind the proxy with parallelism 1: at most one of its hosts
 * runs nothing at any moment (one host at a time is without the app).
 */
const skip = bedSkipReason();
const SAMPLE_MS = 50;
const DB_PORT = 8231;
const APPS = ['sched', 'db'] as const;
type App = (typeof APPS)[number];
const common = {
  rollout: { strategy: 'recreate', parallelism: 1 },
  healthcheck: { interval: '500ms', timeout: '1s', max_attempts: 10 },
  stop_timeout: '2s',
  // slowboot listens after 3 s (the image's default is 8).
  env: { BOOT_DELAY: '3' },
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sampler {
  /** Every sample that saw two running containers of an app on a host (or two db hosts with none). */
  violations: string[];
  /** Rounds over all hosts, the longest gap between two rounds, rounds where a host did not answer. */
  stats(): { rounds: number; maxGapMs: number; meanGapMs: number; missed: number };
  stop(): Promise<void>;
}

/** Lists every host's containers every SAMPLE_MS (each round starts SAMPLE_MS after the previous one started, or at once when a round took longer). */
function startSampler(drivers: Map<string, HostDriver>): Sampler {
  const violations: string[] = [];
  let stopped = false;
  let rounds = 0;
  let missed = 0;
  let maxGapMs = 0;
  let first = 0;
  let last = 0;
  const loop = (async () => {
    while (!stopped) {
      const started = Date.now();
      if (last) maxGapMs = Math.max(maxGapMs, started - last);
      first ||= started;
      last = started;
      const lists = await Promise.all([...drivers].map(async ([host, d]) => [host, await d.listContainers().catch(() => null)] as const));
      const at = new Date(started).toISOString();
      for (const app of APPS) {
        const empty: string[] = [];
        for (const [host, cs] of lists) {
          if (!cs) continue;
          const running = cs.filter((c) => c.app === app && c.role === 'app' && c.running);
          if (running.length > 1) violations.push(`${at} ${app} on ${host}: ${running.map((c) => `${c.name} (${c.version})`).join(', ')}`);
          if (app === 'db' && running.length === 0) empty.push(host);
        }
        if (empty.length > 1) violations.push(`${at} db runs on none of ${empty.join(', ')}`);
      }
      missed += lists.filter(([, cs]) => !cs).length;
      rounds += 1;
      await sleep(Math.max(0, SAMPLE_MS - (Date.now() - started)));
    }
  })();
  return {
    violations,
    stats: () => ({ rounds, maxGapMs, meanGapMs: rounds > 1 ? Math.round((last - first) / (rounds - 1)) : 0, missed }),
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/**
 * Each dockerd's start and die events of `app`'s containers since `sinceMs`, replayed in
 * order from the containers that ran then: every start that found another one running.
 */
function dockerOverlaps(host: string, app: App, sinceMs: number, runningThen: string[]): string[] {
  const out = testbedCommand(
    'exec', host, 'events',
    '--since', (sinceMs / 1000).toFixed(3), '--until', (Date.now() / 1000).toFixed(3),
    // One label filter: Docker ORs filters of the same key.
    '--filter', `label=berth.app=${app}`, '--filter', 'event=start', '--filter', 'event=die',
    '--format', '{{.TimeNano}} {{.Action}} {{.Actor.ID}} {{index .Actor.Attributes "berth.role"}} {{index .Actor.Attributes "name"}}',
  );
  const events = out
    .split('\n')
    .map((l) => l.trim().split(' '))
    .filter((f) => f.length === 5 && f[3] === 'app')
    .map(([nano, action, id, , name]) => ({ nano: BigInt(nano!), action: action!, id: id!, name: name! }))
    .sort((a, b) => (a.nano < b.nano ? -1 : a.nano > b.nano ? 1 : 0));
  const running = new Set(runningThen);
  const overlaps: string[] = [];
  for (const e of events) {
    if (e.action === 'die') running.delete(e.id);
    if (e.action !== 'start') continue;
    const others = [...running].filter((id) => id !== e.id);
    if (others.length > 0) overlaps.push(`${host}: ${e.name} started at ${e.nano} while ${others.map((id) => id.slice(0, 12)).join(', ')} ran`);
    running.add(e.id);
  }
  return overlaps;
}

describe('rollout.strategy recreate on real hosts: never two running', { skip, concurrency: false }, () => {
  let daemon: BedDaemon;
  let sampler: Sampler;
  const apps = {} as Record<App, BedApp>;
  /** Per test: when it began, and the app containers running then (app -> host -> ids). */
  let since = 0;
  let runningAtStart: Record<App, Record<string, string[]>>;

  const both = async (version: string) => Object.fromEntries(await Promise.all(APPS.map(async (a) => [a, await apps[a].deploy(version)] as const))) as Record<App, number>;
  const runningIds = async () => {
    const out = {} as Record<App, Record<string, string[]>>;
    for (const a of APPS) out[a] = Object.fromEntries(Object.entries(await apps[a].containers()).map(([h, cs]) => [h, cs.filter((c) => c.running).map((c) => c.id)]));
    return out;
  };
  const sawEvent = (app: App, revision: number, type: string, host: string) =>
    waitUntil(`${app} r${revision} ${type} on ${host}`, async () => (await apps[app].events().catch(() => [] as BerthEvent[])).find((e) => e.revision === revision && e.type === type && e.host === host) ?? null, { timeoutMs: 60_000 });

  /** Neither the sampler nor any dockerd's events saw two running, since the test began. */
  function assertNeverTwo(what: string): void {
    assert.deepEqual(sampler.violations, [], `${what}: the sampler saw two running`);
    for (const app of APPS) {
      for (const host of Object.keys(runningAtStart[app])) {
        assert.deepEqual(dockerOverlaps(host, app, since, runningAtStart[app][host] ?? []), [], `${what}: ${app} on ${host}, dockerd's events`);
      }
    }
    console.log(`# ${what}: sampler so far ${JSON.stringify(sampler.stats())}`);
  }

  before(async () => {
    daemon = await startBedDaemonApps({
      sched: { ...common, hosts: ['h1'] },
      db: { ...common, proxy: { port: DB_PORT, drain_timeout: '1s' } },
    });
    apps.sched = bedApp(daemon, 'sched', { proxyPort: 0 });
    apps.db = bedApp(daemon, 'db', { proxyPort: DB_PORT });
    const first = await both('v1');
    for (const a of APPS) assert.equal((await apps[a].settled(first[a], 90_000)).status?.phase, 'Complete', `${a} v1`);
    sampler = startSampler(daemon.drivers);
  });

  after(async () => {
    await sampler?.stop();
    await daemon?.close();
  });

  // Before each test (node:test's beforeEach would also run for skipped ones).
  const begin = async () => {
    sampler.violations.length = 0;
    since = Date.now();
    runningAtStart = await runningIds();
  };

  it('a deploy: each host drains and stops its old container before the new one starts, then serves the new version', async () => {
    await begin();
    const r = await both('v2');
    for (const a of APPS) assert.equal((await apps[a].settled(r[a])).status?.phase, 'Complete', await apps[a].story(r[a]));
    assert.deepEqual(await apps.db.served(), { h1: 'v2', h2: 'v2', h3: 'v2' });
    for (const a of APPS) {
      const events = (await apps[a].events()).filter((e) => e.revision === r[a]);
      for (const [host, ids] of Object.entries(runningAtStart[a])) {
        if (ids.length === 0) continue; // sched runs on h1 only
        const stopped = events.findIndex((e) => e.host === host && e.type === 'ContainerStopped');
        const started = events.findIndex((e) => e.host === host && e.type === 'ContainerStarted');
        assert.ok(stopped !== -1 && stopped < started, `${a} on ${host}: the old container stopped (${stopped}) before the new one started (${started})\n${await apps[a].story(r[a])}`);
        const switched = events.find((e) => e.host === host && e.type === 'TrafficSwitched');
        console.log(`# ${a} on ${host}: without the app for ${Date.parse(switched!.createdAt) - Date.parse(events[stopped]!.createdAt)} ms (stopped -> switched)`);
      }
    }
    assertNeverTwo('deploy v2');
  });

  it('a failed deploy (broken never gets healthy): the failed host stops it and starts its old container again, the fleet rolls back', async () => {
    await begin();
    const r = await both('broken');
    for (const a of APPS) assert.equal((await apps[a].settled(r[a], 90_000)).status?.phase, 'RolledBack', await apps[a].story(r[a]));
    for (const a of APPS) {
      const events = (await apps[a].events()).filter((e) => e.revision === r[a]);
      assert.ok(events.some((e) => e.type === 'HostReverted' && e.host === 'h1'), `${a}: h1 went back on its old container\n${await apps[a].story(r[a])}`);
      const running = Object.values(await apps[a].containers()).flat().filter((c) => c.running);
      assert.deepEqual([...new Set(running.map((c) => c.version))], ['v2'], `${a} runs v2 again`);
    }
    assert.deepEqual(await apps.db.served(), { h1: 'v2', h2: 'v2', h3: 'v2' });
    assertNeverTwo('failed deploy of broken');
  });

  it('kill -9 of berth three times mid-rollout (sched booting; db booting on h2; db right after stopping h3\'s old container), each restart finishes it', async () => {
    await begin();
    const r = await both('slowboot');
    const kill = async (where: string) => {
      await daemon.kill9();
      console.log(`# kill -9 ${where}`);
      // Nothing moves while berth is down: the sampler keeps looking.
      await sleep(500);
      await daemon.restart();
    };
    await sawEvent('sched', r.sched, 'ContainerStarted', 'h1');
    await sleep(300);
    await kill('while sched slowboot boots on h1');
    await sawEvent('db', r.db, 'ContainerStarted', 'h2');
    await sleep(300);
    await kill('while db slowboot boots on h2');
    await sawEvent('db', r.db, 'ContainerStopped', 'h3');
    await kill('right after db stopped h3\'s old container');
    for (const a of APPS) assert.equal((await apps[a].settled(r[a], 120_000)).status?.phase, 'Complete', await apps[a].story(r[a]));
    assert.deepEqual(await apps.db.served(), { h1: 'slowboot', h2: 'slowboot', h3: 'slowboot' });
    assertNeverTwo('kill -9 mid-rollout');
  });
});
