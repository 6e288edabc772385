/**
 * bench:needs-testbed
 *
 * Rollout speed on REAL hosts: berth against the physical limit, and against Docker Swarm.
 *
 *   node --import tsx bench/rollout-vs-swarm.ts     (root, test bed up; ~2 min)
 *
 * The three test hosts (network namespaces with their own dockerd + sshd, see
 * docs/testbed.md), the real registry and images, berth's real SSH drivers, store,
 * controller and HAProxy per host (test/support/fleet.ts), the real HTTP API (inject) for the
 * POST. Nothing is simulated: the drivers, the proxy, the passes and the SQLite writes
 * are wrapped in timing decorators (bench/lib/timing.ts) that pass every call through.
 *
 *   berth   app `benchroll`, proxy port 8470, health check every 1 s, delay 0, parallelism
 *           1, parallelism 1 with rollout.preboot, then parallelism 3, alternating v1 <-> v2;
 *           a fresh container per release (the env carries the run number, so no retained
 *           container is reused).
 *   swarm   the same hosts joined into a swarm (live-restore off for the duration), a
 *           global service of the same image with a Docker HEALTHCHECK every 1 s, update
 *           parallelism 1, delay 0, start-first, monitor 1 s; `docker service update
 *           --image` timed to convergence. A second service shows Swarm's fastest update
 *           settings: monitor 100 ms (plus a 100 ms health start interval where the
 *           daemons speak API >= 1.44; the test hosts' Docker 20.10 does not).
 *
 * The runs are interleaved round by round (berth p1, berth p1 preboot, berth p3, swarm, swarm tuned).
 * Afterwards: the swarm services are removed, every host leaves the swarm, live-restore
 * is on again, the berth app's containers are removed. Writes
 * bench/results/rollout-vs-swarm.json and prints the tables (docs/benchmarks.md explains them).
 *
 * Env: BENCH_ROUNDS (5), BENCH_SWARM=0 (berth only), BENCH_SWARM_TUNED=0 (skip the tuned service),
 * BENCH_SPANS=1 (every timed span of every berth run into the JSON), BENCH_BOOT_DELAY=S (berth's
 * containers wait S seconds before they answer their health check, the bed app's slowboot mode:
 * an app with a real boot, where pre-booting pays; results then go to rollout-vs-swarm.boot<S>s.json).
 *
 * Diagnostic, NOT what berth runs: BENCH_DIAG_NO_MODEM_INSPECT=1 stubs the one
 * `util.inspect(options, { showHidden: true, depth: null })` that docker-modem 5 evaluates
 * on every Docker API request, even with its debug output off (modem.js buildRequest); the
 * options hold berth's SSH http.Agent, so it walks the whole ssh2 client. It shows what
 * berth would gain without it; results go to bench/results/rollout-vs-swarm.diag-no-modem-inspect.json.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import util, { promisify } from 'node:util';
import { pino } from 'pino';
import type { Histogram } from 'prom-client';
import { buildApp } from '../src/api/app.js';
import { NO_CONFIG_FILE } from '../src/api/context.js';
import type { HaproxyProxy } from '../src/proxy/haproxy-proxy.js';
import { makeSpec } from '../test/support/fixtures.js';
import { startFleet, type Fleet } from '../test/support/fleet.js';
import { loadTestbed, type TestbedHost } from '../test/support/testbed.js';
import { cpuMeter, machine } from './lib/machine.js';
import { analyzeRollout, type Bucket, type RolloutAnalysis } from './lib/rollout-analysis.js';
import { max as maxOf, mean, median, ms, round, summarize, table } from './lib/stats.js';
import { Swarm, type SwarmRun, type SwarmServiceConfig } from './lib/swarm.js';
import { Recorder, now, timeDrivers, timePasses, timeStore, timeTraffic } from './lib/timing.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const WITH_SWARM = process.env.BENCH_SWARM !== '0';
const WITH_TUNED = process.env.BENCH_SWARM_TUNED !== '0';
const APP = 'benchroll';
/** No test uses it (they use 8080 and 8090): two catch-all routes on one port would shadow each other. */
const PROXY_PORT = 8470;
const TOKEN = 'bench-token-rollout-0123456789';
const HEALTH_INTERVAL_MS = 1_000;
const here = dirname(fileURLToPath(import.meta.url));
const pexec = promisify(execFile);
const sleep = (t: number) => new Promise((r) => setTimeout(r, t));
const quiet = pino({ level: 'silent' });
const DIAG_NO_MODEM_INSPECT = process.env.BENCH_DIAG_NO_MODEM_INSPECT === '1';
/** Seconds each berth container takes before it answers its health check (0: the bed app as it is). */
const BOOT_DELAY_S = Number(process.env.BENCH_BOOT_DELAY ?? 0);
const BOOT_ENV: Record<string, string> = BOOT_DELAY_S > 0 ? { MODE: 'slowboot', BOOT_DELAY: String(BOOT_DELAY_S) } : {};
/** The berth runs of each round, in order. */
const BERTH_VARIANTS = [
  { parallelism: 1, preboot: false },
  { parallelism: 1, preboot: true },
  { parallelism: 3, preboot: false },
] as const;
const RESULTS_FILE = DIAG_NO_MODEM_INSPECT ? 'rollout-vs-swarm.diag-no-modem-inspect.json' : BOOT_DELAY_S > 0 ? `rollout-vs-swarm.boot${BOOT_DELAY_S}s.json` : 'rollout-vs-swarm.json';

if (DIAG_NO_MODEM_INSPECT) {
  // Only the call shape docker-modem's buildRequest uses (request options with an agent).
  const real = util.inspect;
  const stub = ((obj: unknown, opts?: unknown) => {
    const o = opts as { showHidden?: boolean; depth?: number | null } | undefined;
    if (o && typeof o === 'object' && o.showHidden === true && o.depth === null && obj && typeof obj === 'object' && 'agent' in obj) return '';
    return (real as (a: unknown, b?: unknown) => string)(obj, opts);
  }) as typeof util.inspect;
  Object.assign(stub, real);
  (util as { inspect: typeof util.inspect }).inspect = stub;
}

interface BerthRun {
  system: string;
  parallelism: number;
  /** rollout.preboot: later batches boot while earlier ones switch. */
  preboot: boolean;
  round: number;
  from: string;
  to: string;
  revision: number;
  /** inject() of the POST until its 202. */
  postMs: number;
  analysis: RolloutAnalysis;
  eventLoopDelayMs: { p99: number; max: number };
  /** CPU use during the rollout: the whole machine (2 cores here) and this process. */
  cpu: { machineBusyPct: number; thisProcessPct: number };
  /** Mean ms per driver op: the driver's own histogram (berth_host_operation_duration_seconds) vs the decorator. */
  opCheck: Record<string, { histogramCount: number; histogramMeanMs: number; decoratorCount: number; decoratorMeanMs: number }>;
  /** berth_reconcile_duration_seconds over the run vs the pass spans. */
  passCheck: { histogramCount: number; histogramSumMs: number; decoratorCount: number; decoratorSumMs: number };
  servedThroughProxy: Record<string, string>;
  /** With BENCH_SPANS=1: every span of the run, times relative to the POST (ms). */
  spans?: Array<{ kind: string; op: string; host: string | null; t0: number; t1: number; ok: boolean; detail?: unknown }>;
}

const OP_NAMES: Record<string, string> = {
  listContainers: 'list_containers',
  hasImage: 'has_image',
  ensureNetwork: 'ensure_network',
  createContainer: 'create',
  startContainer: 'start',
  stopContainer: 'stop',
  removeContainer: 'remove',
  inspectContainer: 'inspect',
  httpGet: 'http_get',
  unixRequest: 'unix_request',
};

async function histogramBy(h: Histogram<string>, label: string): Promise<Map<string, { count: number; sum: number }>> {
  const out = new Map<string, { count: number; sum: number }>();
  for (const v of (await h.get()).values) {
    const key = String(v.labels[label] ?? '');
    const e = out.get(key) ?? { count: 0, sum: 0 };
    if (v.metricName?.endsWith('_count')) e.count += v.value;
    else if (v.metricName?.endsWith('_sum')) e.sum += v.value;
    else continue;
    out.set(key, e);
  }
  return out;
}

async function prePull(hosts: TestbedHost[], images: string[]): Promise<void> {
  await Promise.all(
    hosts.map(async (h) => {
      for (const img of images) await pexec('docker', ['-H', `unix://${h.dockerSocket}`, 'pull', '-q', img], { timeout: 180_000 });
    }),
  );
}

async function viaProxy(hosts: TestbedHost[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  await Promise.all(
    hosts.map(async (h) => {
      out[h.name] = await fetch(`http://${h.address}:${PROXY_PORT}/`, { signal: AbortSignal.timeout(3000) })
        .then((r) => r.text())
        .then((t) => t.trim(), (e: Error) => `error: ${e.message}`);
    }),
  );
  return out;
}

class BerthBench {
  readonly rec = new Recorder();
  private waiter: { revision: number; completingAt: number | null; failed: string | null; resolve(t: number): void; reject(e: Error): void } | null = null;
  private readonly api;
  private readonly hostNames: string[];
  current: string;
  private runNo = 0;

  private constructor(
    readonly fleet: Fleet,
    hosts: TestbedHost[],
  ) {
    this.hostNames = hosts.map((h) => h.name);
    this.current = '';
    timeDrivers(fleet.drivers, this.rec);
    timeTraffic(fleet.traffic as HaproxyProxy, this.rec); // started with proxy: true
    timeStore(fleet.store, this.rec, (app, step) => {
      const w = this.waiter;
      if (!w || app !== APP || step.rollout?.revision !== w.revision) return;
      const st = step.rollout.state.state;
      if (st === 'complete' && w.completingAt === null) w.completingAt = now();
      else if (st === 'failed' || st === 'paused') w.failed = `${st}: ${JSON.stringify(step.rollout.state.failure)}`;
    });
    timePasses(fleet.controller, this.rec, () => {
      const w = this.waiter;
      if (!w) return;
      if (w.completingAt !== null) {
        // Complete is the commit that recorded it (the status the API serves says Complete from
        // then on): the end of the transaction around that recordStep, or the recordStep itself.
        const at = w.completingAt;
        const around = (op: string) => this.rec.spans.findLast((s) => s.kind === 'sqlite' && s.op === op && s.t0 <= at && s.t1 >= at);
        w.resolve((around('transaction') ?? around('recordStep'))?.t1 ?? at);
      } else if (w.failed) w.reject(new Error(`rollout of revision ${w.revision} ${w.failed}`));
    });
    this.api = buildApp({
      store: fleet.store,
      metrics: fleet.metrics,
      log: quiet,
      controller: fleet.controller,
      secrets: fleet.secrets,
      auth: { token: TOKEN, openReads: false },
      hostNames: () => this.hostNames,
      configFile: NO_CONFIG_FILE,
      version: 'bench',
    });
  }

  static async start(hosts: TestbedHost[]): Promise<BerthBench> {
    const base = makeSpec();
    const fleet = await startFleet(
      APP,
      {
        healthcheck: { ...base.healthcheck, intervalMs: HEALTH_INTERVAL_MS },
        rollout: { ...base.rollout, parallelism: { kind: 'count', value: 1 }, delayMs: 0 },
        proxy: { port: PROXY_PORT, host: null, drainTimeoutMs: 5_000 },
      },
      { proxy: true },
    );
    const b = new BerthBench(fleet, hosts);
    await b.api.ready();
    return b;
  }

  /** One rollout to `version` with `parallelism` (and preboot), through POST /v1/apps/:app/releases, timed to Complete. */
  async run(version: string, parallelism: number, roundNo: number, timed = true, preboot = false): Promise<BerthRun | null> {
    const { fleet, rec } = this;
    this.runNo += 1;
    // A fresh container config per release (so every host creates one, as Swarm does), the batch size, preboot.
    const { preboot: _, ...rollout } = fleet.spec.rollout;
    fleet.store.apps.upsertApp(
      { ...fleet.spec, rollout: { ...rollout, parallelism: { kind: 'count', value: parallelism }, ...(preboot ? { preboot } : {}) }, env: { ...BOOT_ENV, BENCH_RUN: String(this.runNo) } },
      'bench',
    );
    // Quiet start: no pass in flight, Docker events of the last rollout handled.
    await fleet.controller.idle();
    await sleep(1_500);
    await fleet.controller.idle();
    rec.forgetBefore(now() - 60_000);
    fleet.metrics.hostOperationDuration.reset();
    fleet.metrics.reconcileDuration.reset();
    const expected = (fleet.store.releases.latestRelease(APP)?.revision ?? 0) + 1;
    const done = new Promise<number>((resolve, reject) => {
      this.waiter = { revision: expected, completingAt: null, failed: null, resolve, reject };
    });
    const timeout = setTimeout(() => this.waiter?.reject(new Error(`revision ${expected} not complete after 120 s`)), 120_000);
    const eld = monitorEventLoopDelay({ resolution: 1 });
    eld.enable();
    const meter = cpuMeter();
    const t0 = now();
    const res = await this.api.inject({ method: 'POST', url: `/v1/apps/${APP}/releases`, headers: { authorization: `Bearer ${TOKEN}` }, payload: { version } });
    const tPosted = now();
    if (res.statusCode !== 202) throw new Error(`POST release: ${res.statusCode} ${res.body}`);
    if ((res.json() as { revision: number }).revision !== expected) throw new Error(`POST gave revision ${res.body}, expected ${expected}`);
    let tc: number;
    try {
      tc = await done;
    } finally {
      clearTimeout(timeout);
      this.waiter = null;
      eld.disable();
    }
    const cpu = meter.stop();
    const from = this.current;
    this.current = version;
    // Read the driver's own histograms before anything else runs.
    const hist = await histogramBy(fleet.metrics.hostOperationDuration as unknown as Histogram<string>, 'op');
    const passHist = (await histogramBy(fleet.metrics.reconcileDuration as unknown as Histogram<string>, 'app')).get(APP) ?? { count: 0, sum: 0 };
    if (!timed) return null;
    const spans = rec.between(t0 - 1, tc + 1);
    const analysis = analyzeRollout(spans, { t0, tComplete: tc, hosts: this.hostNames, parallelism });
    const opCheck: BerthRun['opCheck'] = {};
    for (const [op, metricOp] of Object.entries(OP_NAMES)) {
      const mine = spans.filter((s) => s.kind === 'host' && s.op === op && s.t0 >= t0);
      const h = hist.get(metricOp) ?? { count: 0, sum: 0 };
      if (mine.length === 0 && h.count === 0) continue;
      opCheck[metricOp] = {
        histogramCount: h.count,
        histogramMeanMs: round(h.count ? (h.sum / h.count) * 1000 : NaN, 2),
        decoratorCount: mine.length,
        decoratorMeanMs: round(mine.length ? mine.reduce((a, s) => a + s.t1 - s.t0, 0) / mine.length : NaN, 2),
      };
    }
    const passes = spans.filter((s) => s.kind === 'pass' && s.t0 >= t0 - 0.5);
    const served = await viaProxy(this.hostsOf());
    if (Object.values(served).some((v) => v !== version)) throw new Error(`after the rollout to ${version} the proxies serve ${JSON.stringify(served)}`);
    return {
      system: `berth p${parallelism}${preboot ? ' preboot' : ''}`,
      parallelism,
      preboot,
      round: roundNo,
      from,
      to: version,
      revision: expected,
      postMs: round(tPosted - t0, 2),
      analysis,
      eventLoopDelayMs: { p99: round(eld.percentile(99) / 1e6, 2), max: round(eld.max / 1e6, 2) },
      cpu,
      opCheck,
      passCheck: {
        histogramCount: passHist.count,
        histogramSumMs: round(passHist.sum * 1000, 2),
        decoratorCount: passes.length,
        decoratorSumMs: round(passes.reduce((a, s) => a + s.t1 - s.t0, 0), 2),
      },
      servedThroughProxy: served,
      ...(process.env.BENCH_SPANS === '1'
        ? { spans: spans.map((x) => ({ ...x, t0: round(x.t0 - t0, 2), t1: round(x.t1 - t0, 2) })).sort((a, b) => a.t0 - b.t0) }
        : {}),
    };
  }

  private hostsOf(): TestbedHost[] {
    return this.fleet.bed.hosts.filter((h) => this.hostNames.includes(h.name));
  }

  /**
   * Removes the app's containers. Its route stays on every host's proxy until the next
   * user of the proxy switches (each switch rewrites the route set from its own store).
   */
  async stop(): Promise<void> {
    await this.api.close();
    await this.fleet.stop();
  }
}

// ------------------------------------------------------------------ report

const r0 = (x: number) => ms(x);
const flip = (v: string) => (v === 'v1' ? 'v2' : 'v1');

function berthRunsTable(runs: BerthRun[]): string {
  const rows = runs.map((r) => [
    `${r.system} #${r.round} ${r.from}->${r.to}`,
    r0(r.analysis.totalMs),
    r0(r.analysis.lastSwitchMs ?? NaN),
    r0(r.analysis.limitMs),
    r.analysis.ratio.toFixed(2),
    ((r.analysis.lastSwitchMs ?? NaN) / r.analysis.limitMs).toFixed(2),
    r.analysis.passes.length,
    r0(r.analysis.buckets.controller),
    r0(r.analysis.buckets.observe),
  ]);
  for (const system of [...new Set(runs.map((r) => r.system))]) {
    const group = runs.filter((r) => r.system === system);
    const med = (f: (r: BerthRun) => number) => median(group.map(f));
    rows.push([
      `median ${system} (n=${group.length})`,
      r0(med((r) => r.analysis.totalMs)),
      r0(med((r) => r.analysis.lastSwitchMs ?? NaN)),
      r0(med((r) => r.analysis.limitMs)),
      med((r) => r.analysis.ratio).toFixed(2),
      med((r) => (r.analysis.lastSwitchMs ?? NaN) / r.analysis.limitMs).toFixed(2),
      String(med((r) => r.analysis.passes.length)),
      r0(med((r) => r.analysis.buckets.controller)),
      r0(med((r) => r.analysis.buckets.observe)),
    ]);
  }
  return table(['run', 'POST->Complete ms', 'POST->last switch ms', 'limit ms', 'total/limit', 'last switch/limit', 'passes', 'controller (non-remote) ms', 'observe ms'], rows);
}

const BUCKETS: Array<[Bucket, string]> = [
  ['physical', 'physical (create+start+first passing probe)'],
  ['switch', 'proxy switch'],
  ['drain', 'drain'],
  ['stop', 'stop old container'],
  ['observe', 'observe (list + route, each pass)'],
  ['otherRemote', 'other remote calls (image/network checks, inspect, prune)'],
  ['controller', 'controller, no remote call (CPU, SQLite, scheduling)'],
];

function criticalPathTable(groups: Array<[string, BerthRun[]]>): string {
  // Means, so that the buckets add up to the mean total.
  const rows = BUCKETS.map(([b, label]) => [label, ...groups.flatMap(([, runs]) => {
    const v = mean(runs.map((r) => r.analysis.buckets[b]));
    return [r0(v), `${((100 * v) / mean(runs.map((r) => r.analysis.totalMs))).toFixed(1)}%`];
  })]);
  rows.push(['SQLite write time in the window (partly under remote calls)', ...groups.flatMap(([, runs]) => [r0(mean(runs.map((r) => r.analysis.sqliteMs))), ''])]);
  rows.push(['total (POST->Complete)', ...groups.flatMap(([, runs]) => [r0(mean(runs.map((r) => r.analysis.totalMs))), '100%'])]);
  rows.push(['physical limit', ...groups.flatMap(([, runs]) => [r0(mean(runs.map((r) => r.analysis.limitMs))), ''])]);
  rows.push(['check: max |total - sum of buckets| of a run', ...groups.flatMap(([, runs]) => [r0(maxOf(runs.map((r) => Math.abs(r.analysis.residualMs)))), ''])]);
  return table(['critical path (mean ms per rollout)', ...groups.flatMap(([n]) => [n, 'share'])], rows);
}

function hostStepsTable(berth: Array<[string, BerthRun[]]>, swarm: Array<[string, SwarmRun[]]>): string {
  type Row = [string, ...string[]];
  const col = (values: number[]) => {
    const s = summarize(values);
    return s.n ? `${r0(s.p50)} (${r0(s.max)})` : '-';
  };
  const rows: Row[] = [];
  const bh = (runs: BerthRun[]) => runs.flatMap((r) => r.analysis.hosts);
  const sh = (runs: SwarmRun[]) => runs.flatMap((r) => r.hosts);
  const names = [...berth.map(([n]) => n), ...swarm.map(([n]) => n)];
  const line = (label: string, fb: ((h: RolloutAnalysis['hosts'][number]) => number | null) | null, fs: ((h: SwarmRun['hosts'][number]) => number | null) | null) => {
    rows.push([
      label,
      ...berth.map(([, runs]) => (fb ? col(bh(runs).map((h) => fb(h) ?? NaN)) : 'n/a')),
      ...swarm.map(([, runs]) => (fs ? col(sh(runs).map((h) => fs(h) ?? NaN)) : 'n/a')),
    ]);
  };
  line('image + network check (berth)', (h) => h.prepMs, null);
  line('container create', (h) => h.createMs, null);
  line('container start', (h) => h.startMs, (h) => h.startMs);
  line('start -> first passing probe', (h) => h.readyMs, (h) => h.readyMs);
  line('probe attempts until pass', (h) => h.probeAttempts, null);
  line('host physical: create -> first pass', (h) => h.physicalMs, (h) => h.physicalMs);
  line('proxy switch', (h) => h.switchMs, null);
  line('new healthy -> old stop begins (swarm)', null, (h) => h.stopAfterHealthyMs);
  line('drain', (h) => h.drainMs, null);
  line('stop old container', (h) => h.stopMs, (h) => h.stopMs);
  return table(['per host step, ms: p50 (max) over runs x hosts', ...names], rows);
}

function overheadTable(runs: BerthRun[]): string {
  const passes = runs.flatMap((r) => r.analysis.passes);
  const gaps = runs.flatMap((r) => r.analysis.gapsMs).filter((g) => g > 0);
  const line = (label: string, values: number[]) => {
    const s = summarize(values);
    return [label, String(s.n), r0(s.p50), r0(s.p99), r0(s.max)];
  };
  return table(
    ['controller overhead (every berth run)', 'n', 'p50 ms', 'p99 ms', 'max ms'],
    [
      line('per pass: queue wait before it (1st: POST -> pass)', passes.map((p) => p.queueBeforeMs)),
      line('per pass: read desired state (pre)', passes.map((p) => p.preMs)),
      line('per pass: observe (remote: list + route)', passes.map((p) => p.observeMs)),
      line('per pass: plan + record', passes.map((p) => p.planRecordMs)),
      line('per pass: gaps between calls of the critical action', passes.map((p) => p.execGapMs)),
      line('per pass: fold results + record (post)', passes.map((p) => p.postMs)),
      line('per pass: SQLite writes', passes.map((p) => p.sqliteMs)),
      line('per pass: non-remote total', passes.map((p) => p.controllerMs)),
      line('per pass: non-remote + observe', passes.map((p) => p.controllerMs + p.observeMs)),
      line('every non-remote stretch on the critical path', gaps),
    ],
  );
}

function passesTable(run: BerthRun): string {
  return table(
    ['pass', 'at ms', 'actions', 'queue', 'pre', 'observe', 'plan+rec', 'exec', 'exec gaps', 'post', 'sqlite'],
    run.analysis.passes.map((p) => [String(p.index), r0(p.at), p.actions, r0(p.queueBeforeMs), r0(p.preMs), r0(p.observeMs), r0(p.planRecordMs), r0(p.execMs), r0(p.execGapMs), r0(p.postMs), r0(p.sqliteMs)]),
  );
}

function swarmRunsTable(runs: SwarmRun[]): string {
  const rows = runs.map((r, i) => [
    `${r.service} #${i + 1} ${r.from}->${r.to}`,
    r0(r.cliMs),
    r0(r.lastHealthyMs ?? NaN),
    r0(r.lastOldStoppedMs ?? NaN),
    r0(r.updateCompletedMs ?? NaN),
    r0(r.limitMs ?? NaN),
    r.limitMs ? (r.cliMs / r.limitMs).toFixed(2) : '-',
    r.handoverMs.map((h) => r0(h)).join(' / '),
    r.converged ? 'yes' : 'NO',
  ]);
  const med = (f: (r: SwarmRun) => number | null) => median(runs.map((r) => f(r) ?? NaN));
  rows.push([
    `median (n=${runs.length})`,
    r0(med((r) => r.cliMs)),
    r0(med((r) => r.lastHealthyMs)),
    r0(med((r) => r.lastOldStoppedMs)),
    r0(med((r) => r.updateCompletedMs)),
    r0(med((r) => r.limitMs)),
    med((r) => (r.limitMs ? r.cliMs / r.limitMs : NaN)).toFixed(2),
    r0(median(runs.flatMap((r) => r.handoverMs))),
    '',
  ]);
  return table(['run', 'CLI wall ms', '-> last new healthy', '-> last old stopped', 'swarmkit update (started->completed)', 'limit ms', 'CLI/limit', 'handover ms (healthy -> next create)', 'converged'], rows);
}

function versusTable(berth: Array<[string, BerthRun[]]>, swarm: Array<[string, SwarmRun[]]>): string {
  const medB = (runs: BerthRun[], f: (r: BerthRun) => number | null) => median(runs.map((r) => f(r) ?? NaN));
  const medS = (runs: SwarmRun[], f: (r: SwarmRun) => number | null) => median(runs.map((r) => f(r) ?? NaN));
  const names = [...berth.map(([n]) => n), ...swarm.map(([n]) => n)];
  const row = (label: string, fb: (r: BerthRun) => number | null, fs: (r: SwarmRun) => number | null) => [
    label,
    ...berth.map(([, runs]) => r0(medB(runs, fb))),
    ...swarm.map(([, runs]) => r0(medS(runs, fs))),
  ];
  const rows = [
    row('command returns (berth: POST 202; swarm: CLI exits)', (r) => r.postMs, (r) => r.cliMs),
    row('every host serves the new version (berth: last proxy switch; swarm: last new task healthy)', (r) => r.analysis.lastSwitchMs, (r) => r.lastHealthyMs),
    row('old containers stopped too (berth: Complete; swarm: last old container stop event)', (r) => r.analysis.totalMs, (r) => r.lastOldStoppedMs),
    row('done as the tool reports it (berth: Complete; swarm: CLI exits)', (r) => r.analysis.totalMs, (r) => r.cliMs),
    row('physical limit (sum over batches of create+start+first passing check)', (r) => r.analysis.limitMs, (r) => r.limitMs),
  ];
  const ref = swarm[0]?.[1];
  if (ref) {
    const sDone = medS(ref, (r) => r.cliMs);
    const sServe = medS(ref, (r) => r.lastHealthyMs);
    const sStop = medS(ref, (r) => r.lastOldStoppedMs);
    const ratio = (a: number, b: number) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : '-');
    rows.push([
      'swarm (as briefed) done / this done',
      ...berth.map(([, runs]) => ratio(sDone, medB(runs, (r) => r.analysis.totalMs))),
      ...swarm.map(([, runs]) => ratio(sDone, medS(runs, (r) => r.cliMs))),
    ]);
    rows.push([
      'swarm (as briefed) / this: every host serves the new version',
      ...berth.map(([, runs]) => ratio(sServe, medB(runs, (r) => r.analysis.lastSwitchMs))),
      ...swarm.map(([, runs]) => ratio(sServe, medS(runs, (r) => r.lastHealthyMs))),
    ]);
    rows.push([
      'swarm (as briefed) / this: old containers stopped',
      ...berth.map(([, runs]) => ratio(sStop, medB(runs, (r) => r.analysis.totalMs))),
      ...swarm.map(([, runs]) => ratio(sStop, medS(runs, (r) => r.lastOldStoppedMs))),
    ]);
  }
  return table(['v1 <-> v2 on 3 hosts, median ms', ...names], rows);
}

function opCheckTable(runs: BerthRun[]): string {
  const ops = [...new Set(runs.flatMap((r) => Object.keys(r.opCheck)))].sort();
  return table(
    ['driver op', 'histogram n', 'histogram mean ms', 'decorator n', 'decorator mean ms'],
    ops.map((op) => {
      const v = runs.map((r) => r.opCheck[op]).filter((x) => x !== undefined);
      const hn = v.reduce((a, x) => a + x.histogramCount, 0);
      const dn = v.reduce((a, x) => a + x.decoratorCount, 0);
      const hm = v.reduce((a, x) => a + x.histogramMeanMs * x.histogramCount, 0) / (hn || 1);
      const dm = v.reduce((a, x) => a + x.decoratorMeanMs * x.decoratorCount, 0) / (dn || 1);
      return [op, String(hn), r0(hm), String(dn), r0(dm)];
    }),
  );
}

// -------------------------------------------------------------------- main

async function main(): Promise<void> {
  const bed = loadTestbed();
  if (!bed) {
    console.log('SKIP rollout-vs-swarm: no test bed (run `bash test/hosts/testbed up 3` as root; see docs/testbed.md)');
    return;
  }
  if (process.getuid?.() !== 0) {
    console.log('SKIP rollout-vs-swarm: needs root (the test bed keys, Docker sockets and `testbed live-restore`)');
    return;
  }
  if (bed.hosts.length < 3) {
    console.log(`SKIP rollout-vs-swarm: needs 3 test hosts, the bed has ${bed.hosts.length}`);
    return;
  }
  const hosts = bed.hosts.slice(0, 3);
  const info = machine(hosts[0]!.dockerSocket);
  console.error(`[bench] ${info.nproc} cpus, node ${info.node}, docker ${info.docker.server}; ${ROUNDS} rounds`);
  const repo = bed.images.app;
  console.error('[bench] pre-pulling app:v1, app:v2 and the proxy image on every host');
  await prePull(hosts, [`${repo}:v1`, `${repo}:v2`, bed.images.haproxy]);

  const berthRuns: BerthRun[] = [];
  const swarmRuns = new Map<string, SwarmRun[]>();
  const swarmConfigs: SwarmServiceConfig[] = [];
  let swarm: Swarm | null = null;
  let berth: BerthBench | null = null;
  const notes: string[] = [];
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    if (berth) await berth.stop().catch((e: Error) => console.error(`[bench] berth stop: ${e.message}`));
    if (swarm) await swarm.down(swarmConfigs.map((c) => c.name)).catch((e: Error) => console.error(`[bench] swarm teardown: ${e.message}`));
  };
  const onSignal = () => {
    console.error('[bench] interrupted: leaving the swarm, restoring live-restore');
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    berth = await BerthBench.start(hosts);
    console.error('[bench] berth: warm-up v1 (creates the proxies), v2');
    await berth.run('v1', 1, 0, false);
    await berth.run('v2', 1, 0, false);

    if (WITH_SWARM) {
      swarm = new Swarm(bed);
      await swarm.up();
      const health = await swarm.healthCmd(`${repo}:v1`);
      notes.push(`swarm health check: ${health}`);
      const common = ['--health-cmd', health, '--health-timeout', '2s', '--health-retries', '3', '--update-parallelism', '1', '--update-delay', '0s', '--update-order', 'start-first', '--update-failure-action', 'pause'];
      swarmConfigs.push({
        name: 'benchswarm',
        flags: [...common, '--health-interval', '1s', '--update-monitor', '1s'],
        describe: 'as briefed: health interval 1s, parallelism 1, delay 0s, start-first, monitor 1s',
      });
      if (WITH_TUNED) {
        // Swarm's fastest update settings on these daemons: the update monitor at 100 ms (the CLI
        // waits that long after convergence); with API >= 1.44 (Docker 25+) also a health start
        // interval of 100 ms, so the first check does not wait a whole interval.
        const startInterval = (await swarm.apiVersion()) >= 1.44;
        swarmConfigs.push({
          name: 'benchswarmfast',
          flags: [...common, '--health-interval', '1s', '--update-monitor', '100ms', ...(startInterval ? ['--health-start-period', '30s', '--health-start-interval', '100ms'] : [])],
          describe: `tuned: monitor 100ms${startInterval ? ', health start interval 100ms' : ' (the daemons speak API < 1.44: no health start interval)'}`,
        });
      }
      for (const c of swarmConfigs) {
        await swarm.createService(c, `${repo}:v1`);
        swarmRuns.set(c.name, []);
        console.error(`[bench] swarm: warm-up update of ${c.name} to v2`);
        await swarm.update(c.name, repo, 'v1', 'v2');
      }
    }

    const swarmVersion = new Map(swarmConfigs.map((c) => [c.name, 'v2']));
    for (let roundNo = 1; roundNo <= ROUNDS; roundNo++) {
      for (const v of BERTH_VARIANTS) {
        const to = flip(berth.current);
        const r = (await berth.run(to, v.parallelism, roundNo, true, v.preboot))!;
        berthRuns.push(r);
        console.error(`[bench] round ${roundNo} ${r.system} ${r.from}->${to}: ${r0(r.analysis.totalMs)} ms (limit ${r0(r.analysis.limitMs)}, x${r.analysis.ratio.toFixed(2)})`);
      }
      if (swarm) {
        for (const c of swarmConfigs) {
          const from = swarmVersion.get(c.name)!;
          const run = await swarm.update(c.name, repo, from, flip(from));
          swarmVersion.set(c.name, flip(from));
          swarmRuns.get(c.name)!.push(run);
          console.error(`[bench] round ${roundNo} ${c.name} ${from}->${flip(from)}: CLI ${r0(run.cliMs)} ms, old stopped at ${r0(run.lastOldStoppedMs ?? NaN)}${run.converged ? '' : ' NOT CONVERGED'}`);
        }
      }
    }
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await cleanup();
  }

  // ---------------------------------------------------------------- output
  const p1 = berthRuns.filter((r) => r.system === 'berth p1');
  const p1Preboot = berthRuns.filter((r) => r.system === 'berth p1 preboot');
  const p3 = berthRuns.filter((r) => r.system === 'berth p3');
  const berthGroups: Array<[string, BerthRun[]]> = [
    ['berth p1', p1],
    ['berth p1 preboot', p1Preboot],
    ['berth p3', p3],
  ];
  const swarmGroups: Array<[string, SwarmRun[]]> = swarmConfigs.map((c) => [c.name === 'benchswarm' ? 'swarm' : 'swarm tuned', swarmRuns.get(c.name) ?? []]);

  const out: string[] = [];
  out.push(`# rollout vs physical limit and vs Docker Swarm (3 real hosts, ${ROUNDS} rounds, interleaved)${BOOT_DELAY_S > 0 ? `; berth's containers boot ${BOOT_DELAY_S} s before they answer` : ''}`);
  if (DIAG_NO_MODEM_INSPECT) out.push("DIAGNOSTIC RUN, NOT WHAT BERTH RUNS: docker-modem's per-request util.inspect stubbed out (BENCH_DIAG_NO_MODEM_INSPECT=1)");
  out.push(`machine: ${info.nproc} cpus (${info.cpu}), node ${info.node}, docker ${info.docker.server}, ${info.kernel}, commit ${info.commit}${info.srcChanges ? ` + uncommitted src changes (${info.srcChanges.split('\n').map((l) => l.trim()).join(', ')})` : ' (src clean)'}`);
  out.push('');
  out.push('## berth runs (parallelism 1 without and with preboot, parallelism 3): total vs the physical limit');
  out.push('limit = the sum over batches of the slowest host\'s create -> first passing probe: boots one batch after the other. A preboot run boots every batch at once, so it can finish under 1.00.');
  out.push(berthRunsTable(berthRuns));
  out.push('');
  out.push('## where the time goes (critical path of each rollout)');
  out.push(criticalPathTable(berthGroups));
  out.push('');
  out.push('## per host steps');
  out.push(hostStepsTable(berthGroups, swarmGroups));
  out.push('');
  out.push('## controller overhead per pass and per gap (goal: p99 < 20 ms)');
  out.push(overheadTable(berthRuns));
  if (p1[0]) {
    out.push('');
    out.push(`## the passes of one run (${p1[p1.length - 1]!.system} #${p1[p1.length - 1]!.round}), ms`);
    out.push(passesTable(p1[p1.length - 1]!));
  }
  for (const runs of [p1Preboot, p3]) {
    const last = runs[runs.length - 1];
    if (!last) continue;
    out.push('');
    out.push(`## the passes of one run (${last.system} #${last.round}), ms`);
    out.push(passesTable(last));
  }
  for (const [name, runs] of swarmGroups) {
    out.push('');
    out.push(`## ${name}: ${swarmConfigs.find((c) => (c.name === 'benchswarm') === (name === 'swarm'))?.describe ?? ''}`);
    out.push(swarmRunsTable(runs));
  }
  if (swarmGroups.length) {
    out.push('');
    out.push('## berth vs Swarm');
    out.push(versusTable(berthGroups, swarmGroups));
  }
  out.push('');
  out.push('## cross-check: the driver histogram (berth_host_operation_duration_seconds) vs the timing decorator');
  out.push(opCheckTable(berthRuns));
  const pc = berthRuns.map((r) => r.passCheck);
  out.push(
    `berth_reconcile_duration_seconds: ${pc.reduce((a, x) => a + x.histogramCount, 0)} passes, ${r0(pc.reduce((a, x) => a + x.histogramSumMs, 0))} ms; ` +
      `pass spans: ${pc.reduce((a, x) => a + x.decoratorCount, 0)} passes, ${r0(pc.reduce((a, x) => a + x.decoratorSumMs, 0))} ms`,
  );
  out.push(`event loop delay during berth runs: p99 ${r0(median(berthRuns.map((r) => r.eventLoopDelayMs.p99)))} ms (median of runs), max ${r0(maxOf(berthRuns.map((r) => r.eventLoopDelayMs.max)))} ms`);
  out.push(
    `CPU during berth runs (${info.nproc} cpus): machine busy ${median(berthRuns.map((r) => r.cpu.machineBusyPct)).toFixed(0)}% (median; max ${maxOf(berthRuns.map((r) => r.cpu.machineBusyPct)).toFixed(0)}%), ` +
      `berth's process ${median(berthRuns.map((r) => r.cpu.thisProcessPct)).toFixed(0)}% of the machine; ` +
      ([...swarmRuns.values()].flat().length ? `swarm runs: machine busy ${median([...swarmRuns.values()].flat().map((r) => r.cpu.machineBusyPct)).toFixed(0)}%; ` : '') +
      `load average before ${info.loadavg.join(' ')}`,
  );
  for (const n of [...notes, ...(swarm?.log ?? [])]) out.push(`note: ${n}`);
  console.log(out.join('\n'));

  const resultsDir = join(here, 'results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(
    join(resultsDir, RESULTS_FILE),
    JSON.stringify(
      {
        bench: 'rollout-vs-swarm',
        simulated: false,
        diagnostic: DIAG_NO_MODEM_INSPECT ? 'docker-modem per-request util.inspect stubbed out: NOT what berth runs' : null,
        machine: { ...info, loadavgAfter: (await import('node:os')).loadavg() },
        config: {
          rounds: ROUNDS,
          berth: { app: APP, proxyPort: PROXY_PORT, healthIntervalMs: HEALTH_INTERVAL_MS, delayMs: 0, variants: BERTH_VARIANTS, bootDelayS: BOOT_DELAY_S, freshContainerPerRelease: true, resyncIntervalMs: 2000 },
          swarm: swarmConfigs,
          notes,
        },
        summary: {
          berth: Object.fromEntries(
            berthGroups.map(([n, runs]) => [
              n,
              {
                totalMs: summarize(runs.map((r) => r.analysis.totalMs)),
                lastSwitchMs: summarize(runs.map((r) => r.analysis.lastSwitchMs ?? NaN)),
                limitMs: summarize(runs.map((r) => r.analysis.limitMs)),
                ratio: summarize(runs.map((r) => r.analysis.ratio), 3),
                lastSwitchRatio: summarize(runs.map((r) => (r.analysis.lastSwitchMs ?? NaN) / r.analysis.limitMs), 3),
                perPassNonRemoteMs: summarize(runs.flatMap((r) => r.analysis.passes.map((p) => p.controllerMs))),
                perPassNonRemotePlusObserveMs: summarize(runs.flatMap((r) => r.analysis.passes.map((p) => p.controllerMs + p.observeMs))),
                gapsMs: summarize(runs.flatMap((r) => r.analysis.gapsMs).filter((g) => g > 0)),
                bucketsMedianMs: Object.fromEntries(BUCKETS.map(([b]) => [b, round(median(runs.map((r) => r.analysis.buckets[b])))])),
              },
            ]),
          ),
          swarm: Object.fromEntries(
            swarmGroups.map(([n, runs]) => [
              n,
              {
                cliMs: summarize(runs.map((r) => r.cliMs)),
                lastHealthyMs: summarize(runs.map((r) => r.lastHealthyMs ?? NaN)),
                lastOldStoppedMs: summarize(runs.map((r) => r.lastOldStoppedMs ?? NaN)),
                limitMs: summarize(runs.map((r) => r.limitMs ?? NaN)),
                handoverMs: summarize(runs.flatMap((r) => r.handoverMs)),
              },
            ]),
          ),
        },
        berthRuns,
        swarmRuns: Object.fromEntries(swarmRuns),
        tables: out.join('\n'),
      },
      (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v),
      2,
    ) + '\n',
  );
  console.error(`[bench] wrote bench/results/${RESULTS_FILE}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
