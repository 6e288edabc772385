/**
 * Planner / controller scale benchmark over SIMULATED hosts.
 *
 *   node --import tsx bench/scale.ts            (1.5-3 minutes on 2 cores, depending on the disk)
 *
 * 1,000 apps on 100 simulated hosts (3 hosts per app, round-robin), a real SQLite store
 * in a temp file with berth's real pragmas (WAL, synchronous=FULL), the real Controller
 * at its default concurrency, and the real API (inject) for the deploy-latency samples.
 * The hosts are src/hosts/simulated-driver.ts: in-memory containers answering after a
 * LAN-like delay. Nothing here shows that a deploy works; it shows what the reconcile
 * loop, the planner and the store cost at this size. See bench/README.md.
 *
 * Writes bench/results/scale.json and prints a table.
 */
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { PerformanceObserver, monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { buildApp } from '../src/api/app.js';
import { NO_CONFIG_FILE } from '../src/api/context.js';
import { LAN_LATENCY_MS, SimulatedHostDriver, simulatedFleet, type SimulatedCall } from '../src/hosts/simulated-driver.js';
import type { HostDriver } from '../src/hosts/host-driver.js';
import { BerthMetrics } from '../src/metrics/registry.js';
import { directTraffic } from '../src/proxy/traffic.js';
import { Controller } from '../src/reconciler/controller.js';
import { AppSecretFiles } from '../src/secrets/app-secrets.js';
import { secretsDirPath } from '../src/defaults.js';
import { openStore } from '../src/store/index.js';
import { makeSpec } from '../test/support/fixtures.js';
import type { Parallelism } from '../src/domain/app-spec.js';
import { calibrateDisk, countCommits } from './lib/sqlite-cost.js';
import { freshDatabase } from '../test/support/postgres.js';
import { machine } from './lib/machine.js';
import { LoopLagSampler } from './lib/loop-lag.js';
import { HeapSampler, fullGc, memoryMiB, residentByMapping, retainedBy } from './lib/heap-breakdown.js';

const APPS = Number(process.env.BENCH_APPS ?? 1000);
const HOSTS = Number(process.env.BENCH_HOSTS ?? 100);
/** `3`, or a range `3-10`: each app gets a count in it (spread evenly, deterministic). */
const HOSTS_PER_APP = parseRange(process.env.BENCH_HOSTS_PER_APP ?? '3');
/** Each app's rollout.parallelism: unset = the default (1); `100%` rolls an app's hosts in one batch (fewer passes per rollout). */
const PARALLELISM = parseParallelism(process.env.BENCH_PARALLELISM);
/** 1: the initial rollout runs at zero host latency (berth's own cost; saves minutes at 10,000 apps). */
const FAST_ROLLOUT = process.env.BENCH_FAST_ROLLOUT === '1';
const RESYNC_RUNS = Number(process.env.BENCH_RESYNC_RUNS ?? 7);
const DEPLOY_SAMPLES = Number(process.env.BENCH_DEPLOY_SAMPLES ?? 50);
const DEPLOY_DURING_RESYNC_SAMPLES = 5;
const TOKEN = 'bench-token-0123456789abcdef';
const IMAGE_REGISTRY = '10.77.0.1:5000';

const JITTER = 0.2;
/** 1: a memory diagnostic instead of the bench (bench/lib/heap-breakdown.ts): converge, one resync, break the heap down, stop. */
const HEAP_BREAKDOWN = process.env.BENCH_HEAP === '1';
/** 1: what a no-op resync allocates, garbage included (bytes per pass, by site) instead of the bench: converge, resync twice, sample the second, stop. */
const ALLOCATIONS = process.env.BENCH_ALLOC === '1';
/** 1: during the resync runs, name what the loop was doing in each stall over 20 ms (the resync call, a store read or write, a GC). */
const STALLS = process.env.BENCH_STALLS === '1';
/** What BENCH_STALLS counts as a stall: the loop held longer than this (ms). */
const STALL_MS = Number(process.env.BENCH_STALL_MS ?? 20);
/** perf_hooks' NODE_PERFORMANCE_GC_* kinds. */
const GC_KINDS: Record<number, string> = { 1: 'scavenge', 2: 'mark-compact', 4: 'incremental marking', 8: 'weak callbacks' };

const here = dirname(fileURLToPath(import.meta.url));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const ms = (x: number) => Math.round(x * 10) / 10;

function pct(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

function lagOf(samples: number[]): { p50: number; p99: number; max: number } {
  return { p50: ms(pct(samples, 50)), p99: ms(pct(samples, 99)), max: ms(Math.max(...samples)) };
}

function lagMs(h: IntervalHistogram): { p50: number; p99: number; max: number } {
  return { p50: ms(h.percentile(50) / 1e6), p99: ms(h.percentile(99) / 1e6), max: ms(h.max / 1e6) };
}


function parseParallelism(v: string | undefined): Parallelism | null {
  if (v === undefined) return null;
  const m = /^(\d+)(%?)$/.exec(v);
  if (!m || Number(m[1]) < 1) throw new Error(`BENCH_PARALLELISM: "${v}" is not N or N%`);
  return m[2] ? { kind: 'percent', value: Number(m[1]) } : { kind: 'count', value: Number(m[1]) };
}

function parseRange(v: string): { min: number; max: number } {
  const m = /^(\d+)(?:-(\d+))?$/.exec(v);
  if (!m) throw new Error(`BENCH_HOSTS_PER_APP: "${v}" is not N or N-M`);
  const min = Number(m[1]);
  const max = Number(m[2] ?? m[1]);
  if (min < 1 || max < min) throw new Error(`BENCH_HOSTS_PER_APP: "${v}" is not a range of at least 1`);
  return { min, max };
}
const hostsPerAppLabel = HOSTS_PER_APP.min === HOSTS_PER_APP.max ? `${HOSTS_PER_APP.min}` : `${HOSTS_PER_APP.min}-${HOSTS_PER_APP.max}`;

const mib = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;
const appName = (i: number) => `app-${String(i).padStart(4, '0')}`;
const imageOf = (i: number) => `${IMAGE_REGISTRY}/${appName(i)}`;

async function main(): Promise<void> {
  const rssAtStart = process.memoryUsage().rss;
  const dir = mkdtempSync(join(os.tmpdir(), 'berth-bench-scale-'));
  const dbPath = join(dir, 'berth.db');
  const disk = calibrateDisk(dir);
  // BENCH_STORE=postgres: a fresh database on the test bed's PostgreSQL (testbed pg-up) instead of the SQLite file.
  const postgres = process.env.BENCH_STORE === 'postgres' ? await freshDatabase('scale') : null;
  const store = openStore(postgres?.url ?? dbPath);
  // As the daemon keeps them; these apps name no secret.
  const secrets = new AppSecretFiles(secretsDirPath(dbPath));
  // The daemon logs JSON at info to stdout; here the same lines go to /dev/null.
  const log = pino({ level: 'info', base: { service: 'berth' } }, pino.destination({ dest: '/dev/null', sync: true }));
  const metrics = new BerthMetrics('bench');

  // "First action" probe for the deploy-latency samples: set before a POST, filled by the hook.
  let probe: { app: string; image: string; tObserve: number | null; tAction: number | null } | null = null;
  const onCall = (c: SimulatedCall) => {
    if (!probe) return;
    const now = performance.now();
    if (probe.tObserve === null && c.op === 'listContainers' && c.app === probe.app) probe.tObserve = now;
    if (probe.tAction === null && (c.op === 'hasImage' || c.op === 'pullImage' || c.op === 'createContainer') && c.image === probe.image) probe.tAction = now;
  };
  const fleet = simulatedFleet(HOSTS, {
    prefix: 'sim',
    latencyMs: LAN_LATENCY_MS,
    jitter: JITTER,
    onCall,
    onOperation: (op, seconds) => metrics.hostOperationDuration.observe({ host: 'sim', op }, seconds),
  });
  const hostNames = [...fleet.keys()];
  const drivers = new Map<string, HostDriver>(fleet);
  // Durable commits (each one a WAL fsync under synchronous=FULL).
  const commits = countCommits(store);
  const totalCalls = () => [...fleet.values()].reduce((n, d: SimulatedHostDriver) => n + Object.values(d.callCounts()).reduce((a, b) => a + b, 0), 0);

  // Apps as the config sync writes them, each with a first release.
  const t0 = performance.now();
  for (let i = 0; i < APPS; i += 1) {
    const count = Math.min(HOSTS, HOSTS_PER_APP.min + (i % (HOSTS_PER_APP.max - HOSTS_PER_APP.min + 1)));
    const hosts = Array.from({ length: count }, (_, k) => hostNames[(i * HOSTS_PER_APP.min + k) % HOSTS]!);
    const spec = makeSpec({ name: appName(i), image: imageOf(i), hosts });
    if (PARALLELISM) spec.rollout = { ...spec.rollout, parallelism: PARALLELISM };
    store.apps.upsertApp(spec, 'bench');
    store.releases.createRelease({ app: appName(i), version: 'v1', reason: 'deploy', actor: 'bench' });
  }
  const seedMs = performance.now() - t0;

  // The periodic resync is triggered by hand below (same code path), so no timer fires mid-measurement.
  const controller = new Controller({ store, drivers, traffic: directTraffic, metrics, log, resyncIntervalMs: 3_600_000, secrets });
  const resync = (): void => {
    const c = controller as unknown as { resync?: () => void };
    if (typeof c.resync === 'function') c.resync();
    else for (const a of store.apps.listApps()) controller.enqueue(a.name);
  };
  const api = buildApp({ store, metrics, log, controller, secrets, auth: { token: TOKEN, openReads: false }, hostNames: () => hostNames, configFile: NO_CONFIG_FILE, version: 'bench' });
  await api.ready();
  /** Everything the bench opened, closed, and its PostgreSQL database dropped. */
  const tearDown = async (): Promise<void> => {
    await api.close();
    await controller.stop();
    store.close();
    await postgres?.drop();
    rmSync(dir, { recursive: true, force: true });
  };

  async function settle(): Promise<void> {
    // idle() can resolve between a pass and the Docker events it caused; wait until quiet twice.
    for (let quiet = 0; quiet < 2; ) {
      await controller.idle();
      await sleep(20);
      quiet = controller['queue'].depth === 0 ? quiet + 1 : 0;
    }
  }

  const sampler = HEAP_BREAKDOWN ? new HeapSampler() : null;
  await sampler?.start();

  // ---- 1. initial rollout of 1,000 apps, measured ----
  process.stderr.write(`[scale] ${APPS} apps on ${HOSTS} simulated hosts: rolling out v1 ...\n`);
  const lagConverge = monitorEventLoopDelay({ resolution: 5 });
  lagConverge.enable();
  const callsBefore = totalCalls();
  const convergeCommits0 = commits();
  if (FAST_ROLLOUT) for (const d of fleet.values()) d.setLatency(Object.fromEntries(Object.keys(LAN_LATENCY_MS).map((op) => [op, 0])));
  const tc0 = performance.now();
  controller.start();
  let lastReport = tc0;
  const convergedAt: number[] = [];
  const seen = new Set<string>();
  // Two columns, not listStatus(): parsing 10,000 statuses ten times a second allocated
  // hundreds of MB/s of the bench's own garbage, and V8 grew the heap (and RSS) for it.
  const completeApps = store.sql.prepare("SELECT app FROM status WHERE phase = 'Complete' AND observed_revision = 1").pluck();
  while (seen.size < APPS) {
    await sleep(100);
    for (const app of completeApps.all() as string[]) {
      if (!seen.has(app)) {
        seen.add(app);
        convergedAt.push(performance.now() - tc0);
      }
    }
    if (performance.now() - lastReport > 10_000) {
      lastReport = performance.now();
      process.stderr.write(`[scale]   ${seen.size}/${APPS} converged after ${Math.round((lastReport - tc0) / 1000)} s\n`);
    }
    const limitMs = 240_000 * Math.max(1, APPS / 1000);
    if (performance.now() - tc0 > limitMs) throw new Error(`initial rollout did not converge in ${limitMs / 1000} s (${seen.size}/${APPS})`);
  }
  const convergeMs = performance.now() - tc0;
  await settle();
  if (FAST_ROLLOUT) for (const d of fleet.values()) d.setLatency(LAN_LATENCY_MS);
  lagConverge.disable();
  const convergeCalls = totalCalls() - callsBefore;
  const convergeCommits = commits() - convergeCommits0;
  const mem = process.memoryUsage();
  process.stderr.write(`[scale] converged in ${Math.round(convergeMs)} ms; measuring no-op resyncs ...\n`);

  if (ALLOCATIONS) {
    // The first resync after convergence warms what a steady state has (compiled code, caches).
    resync();
    await controller.idle();
    const allocated = new HeapSampler();
    await allocated.start({ allocated: true });
    resync();
    await controller.idle();
    const { totalBytes, bySite } = await allocated.sites(`file://${join(here, '..')}/`, 40);
    await allocated.stop();
    const report = { machine: machine(), config: { apps: APPS, hosts: HOSTS, hostsPerApp: hostsPerAppLabel }, resyncAllocatedMiB: mib(totalBytes), perPassKB: Math.round(totalBytes / APPS / 102.4) / 10, bySite };
    writeFileSync(join(here, 'results', `alloc-${process.env.BENCH_RESULT_NAME ?? 'scale.json'}`), JSON.stringify(report, null, 2) + '\n');
    console.log(JSON.stringify(report, null, 2));
    await tearDown();
    return;
  }

  if (sampler) {
    const root = `file://${join(here, '..')}/`;
    const afterConverge = { memory: { rssMiB: mib(mem.rss), heapUsedMiB: mib(mem.heapUsed), heapTotalMiB: mib(mem.heapTotal), externalMiB: mib(mem.external) }, afterFullGc: fullGc(), resident: residentByMapping(), bySite: await sampler.bySite(root) };
    resync();
    await controller.idle();
    const afterResync = { memory: memoryMiB(), afterFullGc: fullGc(), resident: residentByMapping(), bySite: await sampler.bySite(root) };
    await sampler.stop();
    // What a /metrics scrape leaves held (exposition.ts keeps nothing from one scrape to the next).
    const beforeScrape = fullGc().heapUsedMiB;
    const scrapeBytes = (await metrics.text()).length;
    const afterScrape = { heapUsedMiB: fullGc().heapUsedMiB, heldMiB: ms(fullGc().heapUsedMiB - beforeScrape), textMiB: mib(scrapeBytes) };
    // Private fields, reached on purpose: each step lets go of one component's memory.
    const internals = <T>(o: unknown) => o as T;
    const byComponent = retainedBy([
      { component: 'rows kept between passes (resync-rows.ts)', release: () => internals<{ rows: { clear(): void } }>(controller).rows.clear() },
      { component: 'resync snapshot', release: () => internals<{ snapshot: { hosts: Map<string, unknown> } }>(controller).snapshot.hosts.clear() },
      { component: 'metrics series (prom-client)', release: () => metrics.registry.resetMetrics() },
      {
        component: 'simulated fleet (containers, images)',
        release: () => {
          for (const d of fleet.values()) {
            const sim = internals<{ byId: Map<string, unknown>; byName: Map<string, unknown>; images: Set<string> }>(d);
            sim.byId.clear();
            sim.byName.clear();
            sim.images.clear();
          }
        },
      },
    ]);
    const out = join(here, 'results', `heap-${process.env.BENCH_RESULT_NAME ?? 'scale.json'}`);
    const report = { machine: machine(), config: { apps: APPS, hosts: HOSTS, hostsPerApp: hostsPerAppLabel }, afterConverge, afterResync, afterScrape, byComponent };
    writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
    console.log(JSON.stringify(report, null, 2));
    await tearDown();
    return;
  }

  // ---- 2. no-op full resync: every app observed, planned and recorded, nothing to do ----
  const resyncMs: number[] = [];
  // The process's CPU time and V8's GC pauses per run: what the wall time is made of when other jobs share the cores.
  const resyncCpuMs: number[] = [];
  /**
   * Two of the resync's turns that hold the event loop: the call (the pings' start, the
   * stamps' read sent), and once the stamps are in, the snapshot's start: its longest turn
   * (it goes through the apps a few thousand a turn), timed by an immediate re-queued at
   * every turn while it runs.
   */
  const resyncCallMs: number[] = [];
  const snapshotStartMs: number[] = [];
  const snapshotInternals = controller as unknown as { snapshot: { take: (...a: unknown[]) => Promise<void> } };
  const take = snapshotInternals.snapshot.take.bind(snapshotInternals.snapshot);
  snapshotInternals.snapshot.take = async (...a: unknown[]) => {
    let longest = 0;
    let turnStart = performance.now();
    let taking = true;
    const turn = () => {
      const now = performance.now();
      longest = Math.max(longest, now - turnStart);
      if (STALLS) spans.push({ what: "the snapshot's start", start: turnStart, end: now });
      turnStart = now;
      if (taking) setImmediate(turn);
    };
    setImmediate(turn);
    await take(...a);
    taking = false;
    turn();
    snapshotStartMs.push(longest);
  };
  const resyncGcMs: number[] = [];
  let gcMs = 0;
  // BENCH_STALLS: spans of what may hold the loop, and the stalls a 1 ms probe saw.
  const spans: Array<{ what: string; start: number; end: number }> = [];
  const stalls: Array<{ start: number; end: number }> = [];
  let stallProbe: NodeJS.Timeout | undefined;
  const gcObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gcMs += e.duration;
      if (STALLS) spans.push({ what: `gc (${GC_KINDS[((e as unknown as { detail?: { kind?: number } }).detail?.kind) ?? 0] ?? 'other'})`, start: e.startTime, end: e.startTime + e.duration });
    }
  });
  if (STALLS) {
    const timed = <A extends unknown[], R>(what: string, fn: (...a: A) => R) => (...a: A): R => {
      const start = performance.now();
      try {
        return fn(...a);
      } finally {
        spans.push({ what, start, end: performance.now() });
      }
    };
    // (A page of pass inputs and the apps' stamps are read without holding the loop: not timed here.)
    store.passInputs.one = timed("store: one app's pass inputs", store.passInputs.one.bind(store.passInputs));
    store.hostsStatus.refresh = timed('store: the pings\' write', store.hostsStatus.refresh.bind(store.hostsStatus));
    let last = performance.now();
    stallProbe = setInterval(() => {
      const now = performance.now();
      if (now - last > STALL_MS) stalls.push({ start: last, end: now });
      last = now;
    }, 1);
  }
  gcObserver.observe({ entryTypes: ['gc'] });
  const resyncLag: Array<{ p50: number; p99: number; max: number }> = [];
  // Every run's samples together: a run's p99 is its ~3rd-worst sample of ~300, which swings 10-30 ms from run to run.
  const pooledLag: number[] = [];
  const lagSampler = new LoopLagSampler(5);
  let resyncCalls = 0;
  let resyncCommits = 0;
  const loadBefore = os.loadavg();
  for (let r = 0; r < RESYNC_RUNS; r += 1) {
    const before = totalCalls();
    const commitsBefore = commits();
    const gcBefore = gcMs;
    lagSampler.start();
    const cpu = process.cpuUsage();
    const s = performance.now();
    resync();
    resyncCallMs.push(performance.now() - s);
    if (STALLS) spans.push({ what: 'the resync() call', start: s, end: performance.now() });
    await controller.idle();
    resyncMs.push(performance.now() - s);
    const used = process.cpuUsage(cpu);
    resyncCpuMs.push((used.user + used.system) / 1000);
    const samples = lagSampler.stop();
    pooledLag.push(...samples);
    resyncLag.push(lagOf(samples));
    resyncCalls = totalCalls() - before;
    resyncCommits = commits() - commitsBefore;
    await sleep(50);
    resyncGcMs.push(gcMs - gcBefore);
  }
  gcObserver.disconnect();
  clearInterval(stallProbe);
  if (STALLS) {
    // Each stall is put down to whatever overlapped it most; what nothing overlapped is "passes and the rest".
    const causes = new Map<string, { stalls: number; ms: number }>();
    for (const st of stalls) {
      let best = { what: 'passes and the rest', overlap: 0 };
      for (const sp of spans) {
        const overlap = Math.min(st.end, sp.end) - Math.max(st.start, sp.start);
        if (overlap > best.overlap) best = { what: sp.what, overlap };
      }
      const c = causes.get(best.what) ?? { stalls: 0, ms: 0 };
      c.stalls += 1;
      c.ms += st.end - st.start;
      causes.set(best.what, c);
    }
    process.stderr.write(`[scale] stalls over ${STALL_MS} ms in ${RESYNC_RUNS} resyncs: ${stalls.length}\n`);
    if (process.env.BENCH_STALLS_FILE) {
      // (On the monotonic clock of a --cpu-prof profile, in µs.)
      const offsetUs = Number(process.hrtime.bigint() / 1000n) - performance.now() * 1000;
      writeFileSync(process.env.BENCH_STALLS_FILE, stalls.map((st) => `${Math.round(st.start * 1000 + offsetUs)} ${Math.round(st.end * 1000 + offsetUs)}`).join('\n') + '\n');
    }
    for (const [what, c] of causes) process.stderr.write(`[scale]   ${what}: ${c.stalls} stalls, mean ${ms(c.ms / c.stalls)} ms\n`);
  }
  // The same resync with zero host latency: berth's own cost (CPU + SQLite commits).
  // Then, as a diagnostic only, with synchronous=NORMAL (no fsync per commit; NOT what berth runs).
  for (const d of fleet.values()) d.setLatency({ ping: 0, listContainers: 0 });
  const timedResyncs = async (n: number) => {
    const out: number[] = [];
    for (let r = 0; r < n; r += 1) {
      const s = performance.now();
      resync();
      await controller.idle();
      out.push(performance.now() - s);
      await sleep(50);
    }
    return out;
  };
  // Interleaved, so drift in the (shared) disk's speed hits both alike.
  const resyncZeroMs: number[] = [];
  const resyncZeroNormalMs: number[] = [];
  for (let r = 0; r < 3; r += 1) {
    resyncZeroMs.push(...(await timedResyncs(1)));
    if (store.engine !== 'sqlite') continue;
    store.db.pragma('synchronous = NORMAL');
    resyncZeroNormalMs.push(...(await timedResyncs(1)));
    store.db.pragma('synchronous = FULL');
  }
  for (const d of fleet.values()) d.setLatency(LAN_LATENCY_MS);
  const loadAfter = os.loadavg();
  // The resync snapshot (every host's listing) is held from one resync to the next: the steady state.
  const memAfterResyncs = process.memoryUsage();

  // ---- 3. POST /v1/apps/:app/releases -> first host action, everything else idle ----
  process.stderr.write(`[scale] ${DEPLOY_SAMPLES} deploys through the API while the rest is idle ...\n`);
  const revisions = new Map<string, number>();
  const deploy = async (i: number, version: string) => {
    const app = appName(i);
    probe = { app, image: `${imageOf(i)}:${version}`, tObserve: null, tAction: null };
    const s = performance.now();
    const res = await api.inject({ method: 'POST', url: `/v1/apps/${app}/releases`, headers: { authorization: `Bearer ${TOKEN}` }, payload: { version } });
    const tResponse = performance.now() - s;
    if (res.statusCode !== 202) throw new Error(`POST ${app} -> ${res.statusCode} ${res.body}`);
    revisions.set(app, (JSON.parse(res.body) as { revision: number }).revision);
    return { app, s, tResponse };
  };
  const waitAction = async (s: number) => {
    const deadline = performance.now() + 60_000;
    while (probe!.tAction === null) {
      if (performance.now() > deadline) throw new Error(`no first action for ${probe!.app} within 60 s`);
      await sleep(1);
    }
    return { observe: probe!.tObserve! - s, action: probe!.tAction - s };
  };
  const waitConverged = async (app: string) => {
    const rev = revisions.get(app)!;
    const deadline = performance.now() + 60_000;
    while (!(store.status.readStatus(app)?.phase === 'Complete' && store.status.readStatus(app)?.observedRevision === rev)) {
      if (performance.now() > deadline) throw new Error(`${app} did not converge on revision ${rev}`);
      await sleep(5);
    }
  };
  const quietSamples: Array<{ response: number; observe: number; action: number; rollout: number }> = [];
  for (let k = 0; k < DEPLOY_SAMPLES; k += 1) {
    const i = (k * 37 + 11) % APPS;
    const { app, s, tResponse } = await deploy(i, `v2-${k}`);
    const t = await waitAction(s);
    await waitConverged(app);
    quietSamples.push({ response: tResponse, ...t, rollout: performance.now() - s });
    probe = null;
    await settle();
  }

  // ---- 4. the same, but the POST lands just after a full resync was enqueued ----
  process.stderr.write(`[scale] ${DEPLOY_DURING_RESYNC_SAMPLES} deploys during a full resync ...\n`);
  const busySamples: Array<{ position: number; action: number }> = [];
  const appOrder = store.apps.listApps().map((a) => a.name);
  for (let k = 0; k < DEPLOY_DURING_RESYNC_SAMPLES; k += 1) {
    const i = Math.floor(((k + 0.5) / DEPLOY_DURING_RESYNC_SAMPLES) * APPS);
    resync();
    const { app, s } = await deploy(i, `v3-${k}`);
    const t = await waitAction(s);
    busySamples.push({ position: appOrder.indexOf(app), action: t.action });
    probe = null;
    await waitConverged(app);
    await settle();
  }

  const diskAfter = calibrateDisk(dir);
  const dbBytes = postgres ? (store.sql.prepare('SELECT pg_database_size(current_database())').pluck().get() as number) : statSync(dbPath).size + (() => {
    try {
      return statSync(`${dbPath}-wal`).size;
    } catch {
      return 0;
    }
  })();
  await tearDown();

  // ---- report ----
  const lagRuns = resyncLag;
  const results = {
    bench: 'scale',
    simulated: true,
    note: 'Simulated hosts (src/hosts/simulated-driver.ts): planner/controller/store cost at scale, not evidence that deploys work.',
    machine: machine(),
    diskCalibration: { before: disk, after: diskAfter },
    date: new Date().toISOString(),
    config: {
      apps: APPS,
      hosts: HOSTS,
      hostsPerApp: hostsPerAppLabel,
      parallelism: process.env.BENCH_PARALLELISM ?? 'default (1)',
      initialRolloutHostLatency: FAST_ROLLOUT ? 'zero' : 'LAN',
      controllerConcurrency: 'default (8)',
      store: postgres ? `PostgreSQL (test bed, ${postgres.url.replace(/:[^:@/]*@/, ':***@')})` : 'SQLite temp file, WAL, synchronous=FULL',
      latencyMs: LAN_LATENCY_MS,
      jitter: JITTER,
      resyncRuns: RESYNC_RUNS,
      deploySamples: DEPLOY_SAMPLES,
    },
    seed: { ms: Math.round(seedMs) },
    initialRollout: {
      ms: Math.round(convergeMs),
      appConvergedAtMs: { first: Math.round(convergedAt[0]!), p50: Math.round(pct(convergedAt, 50)), last: Math.round(convergedAt[convergedAt.length - 1]!) },
      appsPerSecond: ms(APPS / (convergeMs / 1000)),
      hostCalls: convergeCalls,
      durableCommits: convergeCommits,
      eventLoopLagMs: lagMs(lagConverge),
    },
    noopResync: {
      runsMs: resyncMs.map(Math.round),
      p50Ms: Math.round(pct(resyncMs, 50)),
      maxMs: Math.round(Math.max(...resyncMs)),
      perAppMs: ms(pct(resyncMs, 50) / APPS),
      hostCallsPerRun: resyncCalls,
      durableCommitsPerRun: resyncCommits,
      loadAverage1m: { before: ms(loadBefore[0]!), after: ms(loadAfter[0]!) },
      eventLoopLagMs: { pooled: lagOf(pooledLag), p50OfRunP99: ms(pct(lagRuns.map((l) => l.p99), 50)), runsP99: lagRuns.map((l) => ms(l.p99)), worstP99: ms(Math.max(...lagRuns.map((l) => l.p99))), worstMax: ms(Math.max(...lagRuns.map((l) => l.max))) },
      resyncCallRunsMs: resyncCallMs.map(ms),
      snapshotStartRunsMs: snapshotStartMs.slice(0, RESYNC_RUNS).map(ms),
      cpuRunsMs: resyncCpuMs.map(Math.round),
      gcPauseRunsMs: resyncGcMs.map(Math.round),
      zeroHostLatencyRunsMs: resyncZeroMs.map(Math.round),
      zeroHostLatencyP50Ms: Math.round(pct(resyncZeroMs, 50)),
      diagnosticSynchronousNormalZeroLatencyRunsMs: resyncZeroNormalMs.map(Math.round),
    },
    deployLatencyQuiet: {
      samples: quietSamples.length,
      apiResponseMs: { p50: ms(pct(quietSamples.map((x) => x.response), 50)), p99: ms(pct(quietSamples.map((x) => x.response), 99)) },
      toObserveMs: { p50: ms(pct(quietSamples.map((x) => x.observe), 50)), p99: ms(pct(quietSamples.map((x) => x.observe), 99)) },
      toFirstActionMs: { p50: ms(pct(quietSamples.map((x) => x.action), 50)), p99: ms(pct(quietSamples.map((x) => x.action), 99)), max: ms(Math.max(...quietSamples.map((x) => x.action))) },
      toConvergedMs: { p50: Math.round(pct(quietSamples.map((x) => x.rollout), 50)), p99: Math.round(pct(quietSamples.map((x) => x.rollout), 99)) },
    },
    deployLatencyDuringResync: busySamples.map((b) => ({ queuePosition: b.position, toFirstActionMs: Math.round(b.action) })),
    memory: { rssAtStartMiB: mib(rssAtStart), rssAfterConvergeMiB: mib(mem.rss), heapUsedAfterConvergeMiB: mib(mem.heapUsed), rssAfterResyncsMiB: mib(memAfterResyncs.rss), heapUsedAfterResyncsMiB: mib(memAfterResyncs.heapUsed), dbMiB: mib(dbBytes) },
  };

  const out = join(here, 'results', process.env.BENCH_RESULT_NAME ?? 'scale.json');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(results, null, 2) + '\n');

  const m = results.machine;
  const q = results.deployLatencyQuiet;
  const rows: Array<[string, string]> = [
    ['machine', `${m.nproc} cores (${m.cpu}), node ${m.node}, commit ${m.commit}`],
    ['disk: one SQLite FULL commit', `p50 ${disk.p50Ms} / p99 ${disk.p99Ms} ms before, p50 ${diskAfter.p50Ms} / p99 ${diskAfter.p99Ms} ms after (calibration, ${disk.commits} commits each)`],
    ['setup', `${APPS} apps x ${hostsPerAppLabel} of ${HOSTS} SIMULATED hosts (parallelism ${process.env.BENCH_PARALLELISM ?? 1}), list ${LAN_LATENCY_MS.listContainers} ms ±${JITTER * 100}%, ${postgres ? 'PostgreSQL on the test bed (fresh database)' : 'SQLite WAL+FULL (temp file)'}, concurrency 8`],
    ['load average (1 min)', `${results.noopResync.loadAverage1m.before} before / ${results.noopResync.loadAverage1m.after} after the resync runs`],
    [`initial rollout of all apps (v1)${FAST_ROLLOUT ? ', zero host latency' : ''}`, `${(convergeMs / 1000).toFixed(1)} s (${results.initialRollout.appsPerSecond} apps/s, ${convergeCalls} host calls, ${convergeCommits} commits), loop lag p99 ${results.initialRollout.eventLoopLagMs.p99} ms`],
    ['  when each app converged', `first ${(results.initialRollout.appConvergedAtMs.first / 1000).toFixed(1)} s, median ${(results.initialRollout.appConvergedAtMs.p50 / 1000).toFixed(1)} s, last ${(results.initialRollout.appConvergedAtMs.last / 1000).toFixed(1)} s`],
    ['no-op full resync p50', `${results.noopResync.p50Ms} ms (runs: ${results.noopResync.runsMs.join(', ')}; ${resyncCalls} host calls, ${resyncCommits} store commits/run)`],
    ['  the resync() call itself', `${results.noopResync.resyncCallRunsMs.join(', ')} ms (synchronous: the loop waits for it)`],
    ['  the snapshot\'s start', `${results.noopResync.snapshotStartRunsMs.join(', ')} ms (its longest turn of the loop, once the stamps are in)`],
    ['  CPU / GC pauses per run', `${results.noopResync.cpuRunsMs.join(', ')} ms CPU (user + system) / ${results.noopResync.gcPauseRunsMs.join(', ')} ms GC`],
    ['  same, zero host latency', `${results.noopResync.zeroHostLatencyRunsMs.join(', ')} ms (berth's own CPU + store cost)`],
    ...(postgres ? [] : [['  same, synchronous=NORMAL (diag)', `${results.noopResync.diagnosticSynchronousNormalZeroLatencyRunsMs.join(', ')} ms (no fsync per commit; not what berth runs)`] as [string, string]]),
    ['event-loop lag during resync', `p99 ${results.noopResync.eventLoopLagMs.pooled.p99} ms (all runs' samples), p50 ${results.noopResync.eventLoopLagMs.pooled.p50} ms; per run p99 median ${results.noopResync.eventLoopLagMs.p50OfRunP99} ms (${results.noopResync.eventLoopLagMs.runsP99.join(', ')}), worst p99 ${results.noopResync.eventLoopLagMs.worstP99} ms, worst max ${results.noopResync.eventLoopLagMs.worstMax} ms`],
    ['POST release -> API 202', `p50 ${q.apiResponseMs.p50} ms, p99 ${q.apiResponseMs.p99} ms (inject)`],
    ['POST -> first observe (list)', `p50 ${q.toObserveMs.p50} ms, p99 ${q.toObserveMs.p99} ms`],
    ['POST -> first action (pull check)', `p50 ${q.toFirstActionMs.p50} ms, p99 ${q.toFirstActionMs.p99} ms, max ${q.toFirstActionMs.max} ms (n=${q.samples}, rest idle)`],
    [`POST -> app converged (${hostsPerAppLabel} hosts)`, `p50 ${q.toConvergedMs.p50} ms, p99 ${q.toConvergedMs.p99} ms`],
    ['POST -> first action during resync', results.deployLatencyDuringResync.map((b) => `#${b.queuePosition}: ${b.toFirstActionMs} ms`).join(', ')],
    ['RSS after convergence', `${results.memory.rssAfterConvergeMiB} MiB (heap used ${results.memory.heapUsedAfterConvergeMiB} MiB; ${results.memory.rssAtStartMiB} MiB at start); db ${results.memory.dbMiB} MiB`],
    ['RSS after the resync runs', `${results.memory.rssAfterResyncsMiB} MiB (heap used ${results.memory.heapUsedAfterResyncsMiB} MiB)`],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  console.log('\nberth scale bench (SIMULATED hosts: planner/controller cost, not deploy evidence)\n');
  for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
  console.log(`\nwrote ${out}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
