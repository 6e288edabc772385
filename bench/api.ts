/**
 * HTTP API load benchmark: the real API, store and controller over SIMULATED hosts.
 *
 *   node --import tsx bench/api.ts            (about 30 s)
 *
 * The server is what `berth daemon` wires: buildApp over a real SQLite store in a temp
 * file (WAL, synchronous=FULL), a real Controller at its default concurrency, bearer
 * auth, JSON logs at info (to /dev/null here), listening on 127.0.0.1:0. The hosts are
 * src/hosts/simulated-driver.ts (in-memory, LAN-like latency): nothing here shows that
 * a deploy works. One app ("busy") is mid-rollout for the whole run: its new version
 * never passes its (simulated) health check, so the controller keeps probing it.
 *
 * Load: a worker thread (its own event loop, so the client does not steal the server's)
 * with a keep-alive agent and a fixed number of requests in flight, for a fixed time:
 *   GET  /v1/apps/busy                 (the app mid-rollout: status with per-host view)
 *   POST /v1/apps/:app/releases        (round-robin over the other apps; each one is a
 *                                       durable release + a controller enqueue, so the
 *                                       controller rolls those apps out meanwhile)
 * Writes bench/results/api.json and prints a table.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import { buildApp } from '../src/api/app.js';
import { NO_CONFIG_FILE } from '../src/api/context.js';
import { SEED_DEFAULTS } from '../src/domain/app-spec.js';
import { LABELS } from '../src/domain/labels.js';
import type { HostDriver } from '../src/hosts/host-driver.js';
import { LAN_LATENCY_MS, simulatedFleet } from '../src/hosts/simulated-driver.js';
import { BerthMetrics } from '../src/metrics/registry.js';
import { directTraffic } from '../src/proxy/traffic.js';
import { Controller } from '../src/reconciler/controller.js';
import { AppSecretFiles } from '../src/secrets/app-secrets.js';
import { secretsDirPath } from '../src/defaults.js';
import { openStore } from '../src/store/index.js';
import { makeSpec } from '../test/support/fixtures.js';
import { calibrateDisk, countCommits } from './lib/sqlite-cost.js';
import { machine } from './lib/machine.js';

const HOSTS = 10;
const APPS = 50;
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 5_000);
const WARMUP_MS = 1_000;
const TOKEN = 'bench-token-0123456789abcdef';
const BUSY = 'busy';


const here = dirname(fileURLToPath(import.meta.url));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const r1 = (x: number) => Math.round(x * 10) / 10;
const r2 = (x: number) => Math.round(x * 100) / 100;

function pct(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** The load generator, run in a worker thread (plain JS, CommonJS, no TypeScript). */
const CLIENT = String.raw`
const http = require('node:http');
const { performance } = require('node:perf_hooks');
const { parentPort, workerData: w } = require('node:worker_threads');
const agent = new http.Agent({ keepAlive: true, maxSockets: w.concurrency });
const latencies = [];
const statuses = {};
let errors = 0;
let firstError = null;
let seq = 0;
const start = performance.now();
const measureFrom = start + w.warmupMs;
const stopAt = measureFrom + w.durationMs;
let elu0 = null;
setTimeout(() => { elu0 = performance.eventLoopUtilization(); }, w.warmupMs).unref();

function once() {
  return new Promise((resolve) => {
    const i = seq++;
    const path = w.paths[i % w.paths.length];
    const body = w.method === 'POST' ? JSON.stringify({ version: w.versionPrefix + i }) : null;
    const headers = { authorization: 'Bearer ' + w.token };
    if (body) { headers['content-type'] = 'application/json'; headers['content-length'] = Buffer.byteLength(body); }
    const t0 = performance.now();
    const done = (status, err) => {
      if (t0 >= measureFrom) {
        latencies.push(performance.now() - t0);
        statuses[status] = (statuses[status] || 0) + 1;
        if (err || status !== w.expect) {
          errors += 1;
          if (!firstError) firstError = err ? String(err.message || err) : 'HTTP ' + status;
        }
      }
      resolve();
    };
    const req = http.request({ host: w.host, port: w.port, method: w.method, path, agent, headers }, (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode, null));
      res.on('error', (e) => done(0, e));
    });
    req.on('error', (e) => done(0, e));
    req.end(body || undefined);
  });
}

async function loop() {
  while (performance.now() < stopAt) await once();
}

Promise.all(Array.from({ length: w.concurrency }, loop)).then(() => {
  const elu = elu0 ? performance.eventLoopUtilization(elu0).utilization : NaN;
  agent.destroy();
  const lat = Float64Array.from(latencies);
  parentPort.postMessage({ latencies: lat, statuses, errors, firstError, clientElu: elu }, [lat.buffer]);
});
`;

interface ClientResult {
  latencies: Float64Array;
  statuses: Record<string, number>;
  errors: number;
  firstError: string | null;
  clientElu: number;
}

function runClient(opts: { port: number; method: 'GET' | 'POST'; paths: string[]; expect: number; versionPrefix?: string }): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(CLIENT, {
      eval: true,
      workerData: { host: '127.0.0.1', token: TOKEN, concurrency: CONCURRENCY, durationMs: DURATION_MS, warmupMs: WARMUP_MS, versionPrefix: '', ...opts },
    });
    worker.once('message', (m: ClientResult) => resolve(m));
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`load worker exited with ${code}`));
    });
  });
}


async function main(): Promise<void> {
  const dir = mkdtempSync(join(os.tmpdir(), 'berth-bench-api-'));
  const disk = calibrateDisk(dir);
  const store = openStore(join(dir, 'berth.db'));
  // As the daemon keeps them; these apps name no secret.
  const secrets = new AppSecretFiles(secretsDirPath(join(dir, 'berth.db')));
  const commits = countCommits(store);
  const log = pino({ level: 'info', base: { service: 'berth' } }, pino.destination({ dest: '/dev/null', sync: true }));
  const metrics = new BerthMetrics('bench');

  // The busy app's v2 answers 503 on /health until the run ends: its rollout stays active.
  let busyHealthy = false;
  const fleet = simulatedFleet(HOSTS, {
    prefix: 'sim',
    latencyMs: LAN_LATENCY_MS,
    jitter: 0.2,
    httpHandler: (c, path) =>
      !busyHealthy && path === '/health' && c.labels[LABELS.app] === BUSY && c.labels[LABELS.version] === 'v2' ? { status: 503, body: 'starting' } : null,
  });
  const hostNames = [...fleet.keys()];
  const appNames = [BUSY, ...Array.from({ length: APPS - 1 }, (_, i) => `app-${String(i + 1).padStart(2, '0')}`)];
  appNames.forEach((name, i) => {
    const hosts = [0, 1, 2].map((k) => hostNames[(i * 3 + k) % HOSTS]!);
    const healthcheck = name === BUSY ? { ...SEED_DEFAULTS.healthcheck, intervalMs: 1_000, maxAttempts: 100_000 } : { ...SEED_DEFAULTS.healthcheck };
    store.apps.upsertApp(makeSpec({ name, image: `10.77.0.1:5000/${name}`, hosts, healthcheck }), 'bench');
    store.releases.createRelease({ app: name, version: 'v1', reason: 'deploy', actor: 'bench' });
  });

  const controller = new Controller({ store, drivers: new Map<string, HostDriver>(fleet), traffic: directTraffic, metrics, log, resyncIntervalMs: SEED_DEFAULTS.resyncIntervalMs, secrets });
  const app = buildApp({ store, metrics, log, controller, secrets, auth: { token: TOKEN, openReads: false }, hostNames: () => hostNames, configFile: NO_CONFIG_FILE, version: 'bench' });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as AddressInfo).port;
  controller.start();

  process.stderr.write(`[api] converging ${APPS} apps on ${HOSTS} simulated hosts ...\n`);
  const t0 = performance.now();
  while (store.status.listStatus().filter((s) => s.phase === 'Complete' && s.observedRevision === 1).length < APPS) {
    if (performance.now() - t0 > 60_000) throw new Error('apps did not converge on v1 within 60 s');
    await sleep(50);
  }
  store.releases.createRelease({ app: BUSY, version: 'v2', reason: 'deploy', actor: 'bench' });
  controller.enqueue(BUSY);
  while (store.status.readStatus(BUSY)?.phase !== 'Progressing') await sleep(20);
  await sleep(2_000); // the busy app is now probing its first host's v2 container
  const busyBefore = store.status.readStatus(BUSY)!;

  type Phase = { name: string; method: 'GET' | 'POST'; paths: string[]; expect: number; versionPrefix?: string };
  const others = appNames.filter((n) => n !== BUSY);
  const phases: Phase[] = [
    { name: `GET /v1/apps/${BUSY} (mid-rollout)`, method: 'GET', paths: [`/v1/apps/${BUSY}`], expect: 200 },
    // Releases for the busy app only mark it dirty (its pass is stuck probing): API + store write path alone.
    { name: `POST /v1/apps/${BUSY}/releases (controller busy)`, method: 'POST', paths: [`/v1/apps/${BUSY}/releases`], expect: 202, versionPrefix: 'x' },
    // Releases round-robin over 49 idle apps: the controller rolls them out while the API takes more.
    { name: 'POST /v1/apps/:app/releases (49 apps, controller rolling)', method: 'POST', paths: others.map((n) => `/v1/apps/${n}/releases`), expect: 202, versionPrefix: 'b' },
  ];
  const results: Array<Record<string, unknown>> = [];
  for (const ph of phases) {
    process.stderr.write(`[api] ${ph.name}: ${CONCURRENCY} in flight, ${WARMUP_MS} ms warm-up + ${DURATION_MS} ms ...\n`);
    const lag = monitorEventLoopDelay({ resolution: 5 });
    let elu0 = performance.eventLoopUtilization();
    let cpu0 = process.cpuUsage();
    let commits0 = commits();
    const warm = setTimeout(() => {
      lag.enable();
      elu0 = performance.eventLoopUtilization();
      cpu0 = process.cpuUsage();
      commits0 = commits();
    }, WARMUP_MS);
    const r = await runClient({ port, ...ph });
    clearTimeout(warm);
    lag.disable();
    const elu = performance.eventLoopUtilization(elu0).utilization;
    const cpu = process.cpuUsage(cpu0);
    const phaseCommits = commits() - commits0;
    const sorted = Float64Array.from(r.latencies).sort();
    const count = sorted.length;
    results.push({
      phase: ph.name,
      concurrency: CONCURRENCY,
      durationMs: DURATION_MS,
      requests: count,
      requestsPerSecond: Math.round(count / (DURATION_MS / 1000)),
      latencyMs: { p50: r2(pct(sorted, 50)), p90: r2(pct(sorted, 90)), p99: r2(pct(sorted, 99)), max: r2(sorted[count - 1] ?? NaN) },
      errors: r.errors,
      firstError: r.firstError,
      statuses: r.statuses,
      server: {
        eventLoopUtilization: r2(elu),
        eventLoopLagMs: { p50: r1(lag.percentile(50) / 1e6), p99: r1(lag.percentile(99) / 1e6), max: r1(lag.max / 1e6) },
        processCpuSeconds: r2((cpu.user + cpu.system) / 1e6),
        durableCommits: phaseCommits,
        commitsPerSecond: Math.round(phaseCommits / (DURATION_MS / 1000)),
        controllerQueueDepthAfter: controller['queue'].depth,
      },
      client: { eventLoopUtilization: r2(r.clientElu) },
    });
  }
  const busyAfter = store.status.readStatus(BUSY)!;

  // Let the busy app pass its check so the pass in flight ends, then shut down as the daemon does.
  busyHealthy = true;
  await app.close();
  await controller.stop();
  store.close();
  rmSync(dir, { recursive: true, force: true });

  const out = {
    bench: 'api',
    simulated: true,
    note: 'Real API + store + controller; hosts simulated (src/hosts/simulated-driver.ts). Not evidence that deploys work.',
    machine: machine(),
    diskCalibration: disk,
    loadAverage1m: r1(os.loadavg()[0]!),
    date: new Date().toISOString(),
    config: { hosts: HOSTS, apps: APPS, concurrency: CONCURRENCY, durationMs: DURATION_MS, warmupMs: WARMUP_MS, keepAlive: true, client: 'node:http in a worker thread', store: 'SQLite temp file, WAL, synchronous=FULL', log: 'pino info -> /dev/null' },
    busyApp: { before: { phase: busyBefore.phase, hosts: busyBefore.hosts.map((h) => h.version) }, after: { phase: busyAfter.phase, hosts: busyAfter.hosts.map((h) => h.version) } },
    phases: results,
  };
  const file = join(here, 'results', 'api.json');
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(out, null, 2) + '\n');

  const m = out.machine;
  console.log('\nberth API bench (real API/store/controller, SIMULATED hosts)\n');
  console.log(`machine: ${m.nproc} cores (${m.cpu}), node ${m.node}, commit ${m.commit}, load avg ${out.loadAverage1m}`);
  console.log(`disk: one SQLite FULL commit p50 ${disk.p50Ms} ms, p99 ${disk.p99Ms} ms (calibration, ${disk.commits} commits)`);
  console.log(`setup: ${APPS} apps on ${HOSTS} simulated hosts; "${BUSY}" mid-rollout (${busyBefore.phase} -> ${busyAfter.phase}); ${CONCURRENCY} in flight, keep-alive, ${DURATION_MS / 1000} s per phase after ${WARMUP_MS / 1000} s warm-up\n`);
  const head = ['phase', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'errors', 'server ELU', 'CPU s', 'commits/s', 'loop lag p99', 'queue after'];
  const rows = results.map((x) => {
    const l = x.latencyMs as Record<string, number>;
    const s = x.server as { eventLoopUtilization: number; processCpuSeconds: number; commitsPerSecond: number; eventLoopLagMs: { p99: number }; controllerQueueDepthAfter: number };
    return [String(x.phase), String(x.requestsPerSecond), String(l.p50), String(l.p90), String(l.p99), String(l.max), `${String(x.errors)}/${String(x.requests)}`, String(s.eventLoopUtilization), String(s.processCpuSeconds), String(s.commitsPerSecond), `${s.eventLoopLagMs.p99} ms`, String(s.controllerQueueDepthAfter)];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(head));
  for (const r of rows) console.log(line(r));
  for (const x of results) if (x.firstError) console.log(`first error in ${String(x.phase)}: ${String(x.firstError)}`);
  console.log(`\nwrote ${file}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
