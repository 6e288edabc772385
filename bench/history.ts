/**
 * History at scale: 1,000 apps x 1,000 releases in the real store, then every API request
 * that reads or writes history, timed for how long it holds the event loop.
 *
 *   npm run bench -- history          (node --import tsx bench/history.ts; ~10-20 min on 2 cores)
 *
 * No hosts at all: the API is the real buildApp over the real store (a temp file, WAL,
 * synchronous=FULL, so every write is an fsync) with bearer auth; the controller seam
 * only records enqueues. The store is filled through the real repositories (upsertApp,
 * createRelease, writeStatus), the way PUT, POST releases and the controller write it:
 * - each app's spec is a realistic document (~1.5 KB: three hosts, a proxy route, hooks,
 *   fifteen env variables, secrets); it changes every 50 releases (a config edit), and
 *   every 97th release is a rollback to the previous version's spec, so most releases
 *   share their spec with others (dedup) and each app has ~20 distinct specs;
 * - LARGE_APPS apps carry a ~200 KB spec (a big env value), changed the same way;
 * - each app has a status (three hosts serving the newest revision) and its events
 *   (ReleaseCreated per release, AppUpdated per spec change).
 *
 * Then, for each request type, SAMPLES requests through app.inject(), one at a time:
 * the longest wall time of one request (every handler is synchronous, better-sqlite3,
 * so that is an upper bound on its event-loop block) and the event-loop delay
 * (monitorEventLoopDelay, 1 ms resolution) seen while they ran. Goal: none above 50 ms.
 * Then the database size: what schema 4 (a spec per release) would hold, what this
 * schema holds, a real 0004 -> 0005 migration of MIGRATE_APPS apps, and history
 * retention (history_limit 100: one pruneReleases batch per app per pass, as the
 * controller does) with the longest batch, before and after VACUUM.
 * Writes bench/results/history.json and prints tables.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { buildApp } from '../src/api/app.js';
import { NO_CONFIG_FILE } from '../src/api/context.js';
import { appDocument } from '../src/config/app-document.js';
import type { ControllerHandle } from '../src/api/context.js';
import type { AppSpec } from '../src/domain/app-spec.js';
import { mulberry32 } from '../src/domain/prng.js';
import { BerthMetrics } from '../src/metrics/registry.js';
import { AppSecretFiles } from '../src/secrets/app-secrets.js';
import { secretsDirPath } from '../src/defaults.js';
import { DEFAULT_MIGRATIONS_DIR, PRUNE_BATCH, loadMigrations, migrate, openStore, type Store } from '../src/store/index.js';
import { makeSpec } from '../test/support/fixtures.js';
import { machine } from './lib/machine.js';
import { calibrateDisk } from './lib/sqlite-cost.js';
import { ms, round, summarize, table } from './lib/stats.js';

const APPS = Number(process.env.BENCH_APPS ?? 1000);
const RELEASES = Number(process.env.BENCH_RELEASES ?? 1000);
const LARGE_APPS = Number(process.env.BENCH_LARGE_APPS ?? 5);
const LARGE_SPEC_BYTES = 200_000;
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 40);
const MIGRATE_APPS = Number(process.env.BENCH_MIGRATE_APPS ?? 50);
const HISTORY_LIMIT = 100;
const SPEC_CHANGE_EVERY = 50;
const ROLLBACK_EVERY = 97;
const TOKEN = 'bench-token-0123456789abcdef-history';
const GOAL_MS = 50;

const here = dirname(fileURLToPath(import.meta.url));
const log = (msg: string) => console.error(`[history] ${new Date().toISOString().slice(11, 19)} ${msg}`);
const appName = (i: number) => `app-${String(i).padStart(4, '0')}`;
const isLarge = (i: number) => i < LARGE_APPS;
const mb = (bytes: number) => round(bytes / 1e6, 1);

/** A realistic app spec; `edit` is the config edit number (changes env), large apps carry a ~200 KB value. */
function specOf(i: number, edit: number): AppSpec {
  const name = appName(i);
  const env: Record<string, string> = {
    APP_ENV: 'production',
    LOG_LEVEL: 'info',
    PORT: '3000',
    CONFIG_EDIT: String(edit),
    REDIS_URL: `redis://cache-${i % 7}.internal:6379/0`,
    S3_BUCKET: `assets-${name}`,
    FEATURE_FLAGS: 'search,new-checkout,beta-dashboard',
    SENTRY_ENVIRONMENT: 'production',
    TZ: 'UTC',
    WEB_CONCURRENCY: '4',
    RAILS_MAX_THREADS: '5',
    MALLOC_ARENA_MAX: '2',
    HOSTNAME_SUFFIX: '.prod.example.com',
    CDN_URL: `https://cdn.example.com/${name}`,
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel-collector.internal:4318',
  };
  if (isLarge(i)) env.BUNDLED_CONFIG = Buffer.from(mulberry32(i * 1000 + edit)().toString().repeat(LARGE_SPEC_BYTES / 16)).toString('base64').slice(0, LARGE_SPEC_BYTES);
  return makeSpec({
    name,
    image: `registry.example.com/team-${i % 13}/${name}`,
    hosts: ['h1', 'h2', 'h3'],
    healthcheck: { path: '/health', port: 3000, intervalMs: 2_000, timeoutMs: 1_000, maxAttempts: 15, minHealthyMs: 5_000 },
    hooks: { preDeploy: ['bin/rails db:migrate'], postDeploy: ['bin/notify-deploy'], timeoutMs: 600_000 },
    proxy: { port: 80, host: `${name}.example.com`, pathPrefix: null, drainTimeoutMs: 30_000 },
    env,
    secrets: ['DATABASE_URL', 'SECRET_KEY_BASE'],
  });
}

/** One app's history through the repositories, in one transaction (the fill is not what is measured). */
function fillApp(store: Store, i: number, releases: number): void {
  const name = appName(i);
  store.transaction(() => {
    let previousSpec: AppSpec | null = null;
    let currentSpec = specOf(i, 0);
    store.apps.upsertApp(currentSpec, 'bench');
    for (let r = 1; r <= releases; r++) {
      if (r % SPEC_CHANGE_EVERY === 1 && r > 1) {
        previousSpec = currentSpec;
        currentSpec = specOf(i, Math.floor(r / SPEC_CHANGE_EVERY));
        store.apps.upsertApp(currentSpec, 'bench');
      }
      if (r % ROLLBACK_EVERY === 0 && previousSpec) {
        store.releases.createRelease({ app: name, version: `v${r - SPEC_CHANGE_EVERY}`, spec: previousSpec, reason: 'rollback', actor: 'controller' });
      } else {
        store.releases.createRelease({ app: name, version: `v${r}`, reason: 'deploy', actor: 'ci' });
      }
    }
    const newest = store.releases.latestSummary(name)!;
    store.status.writeStatus({
      app: name,
      phase: 'Complete',
      observedRevision: newest.revision,
      conditions: [{ type: 'Progressing', status: 'False', reason: 'Complete', message: `revision ${newest.revision} serves on 3/3 hosts`, lastTransitionTime: newest.createdAt }],
      hosts: ['h1', 'h2', 'h3'].map((host, k) => ({ host, version: newest.version, revision: newest.revision, containerId: `c${i}-${k}`, health: 'healthy' as const, lastError: null, lastLogs: null })),
      updatedAt: '',
    });
  });
}

function fileBytes(store: Store | Database.Database, path: string): number {
  const db = 'db' in store ? store.db : store;
  db.pragma('wal_checkpoint(TRUNCATE)');
  return statSync(path).size;
}

interface Sample {
  wallMs: number;
  /** CPU time of the process during the request: the block itself, without the time other processes had the cores. */
  cpuMs: number;
  bytes: number;
  status: number;
}

interface RequestResult {
  request: string;
  samples: number;
  p50Ms: number;
  maxMs: number;
  cpuP50Ms: number;
  cpuMaxMs: number;
  loopDelayMaxMs: number;
  maxResponseKB: number;
  statuses: Record<string, number>;
}

const noController: ControllerHandle = {
  enqueue: () => undefined,
  isRunning: () => true,
  exec: () => Promise.reject(new Error('no hosts in this bench')),
  logs: () => {
    throw new Error('no hosts in this bench');
  },
};

async function measureRequests(store: Store, label: string): Promise<RequestResult[]> {
  const app = buildApp({
    store,
    metrics: new BerthMetrics('bench', { processMetrics: false }),
    log: pino({ level: 'warn' }),
    controller: noController,
    auth: { token: TOKEN, openReads: false },
    hostNames: () => ['h1', 'h2', 'h3'],
    configFile: NO_CONFIG_FILE,
    secrets: new AppSecretFiles(secretsDirPath(join(tmpdir(), 'berth-bench-history-no-secrets'))),
    version: 'bench',
  });
  await app.ready();
  const random = mulberry32(42);
  const pick = () => Math.floor(random() * APPS);
  /** Every other sample is a large-spec app: the worst case is what the goal is about. */
  const pickApp = (k: number) => appName(k % 2 === 0 && LARGE_APPS > 0 ? k % LARGE_APPS : pick());
  const results: RequestResult[] = [];

  interface Request {
    method: 'GET' | 'POST' | 'PUT';
    url: string;
    payload?: unknown;
  }
  async function run(request: string, next: (k: number) => Request | null): Promise<void> {
    const samples: Sample[] = [];
    const send = (req: Request) => app.inject({ method: req.method, url: req.url, headers: { authorization: `Bearer ${TOKEN}` }, ...(req.payload !== undefined ? { payload: req.payload as object } : {}) });
    // One request first, not measured: the route's first call compiles its schemas and warms the JIT.
    const first = next(0);
    if (first) await send(first.method === 'POST' && request.includes('releases') ? { ...first, payload: { version: `warmup-${label.replace(/\W/g, '')}` } } : first);
    const eld = monitorEventLoopDelay({ resolution: 1 });
    eld.enable();
    for (let k = 0; ; k++) {
      const req = next(k);
      if (!req) break;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const res = await send(req);
      const wallMs = performance.now() - t0;
      const cpu = process.cpuUsage(c0);
      samples.push({ wallMs, cpuMs: (cpu.user + cpu.system) / 1000, bytes: res.rawPayload.length, status: res.statusCode });
      lastBody = res.body;
      await new Promise((r) => setTimeout(r, 2));
    }
    eld.disable();
    const s = summarize(samples.map((x) => x.wallMs), 2);
    const c = summarize(samples.map((x) => x.cpuMs), 2);
    const statuses: Record<string, number> = {};
    for (const x of samples) statuses[x.status] = (statuses[x.status] ?? 0) + 1;
    results.push({
      request,
      samples: samples.length,
      p50Ms: s.p50,
      maxMs: s.max,
      cpuP50Ms: c.p50,
      cpuMaxMs: c.max,
      // The histogram counts from its resolution: a loop never blocked still reads ~1 ms.
      loopDelayMaxMs: round(eld.max / 1e6, 1),
      maxResponseKB: round(Math.max(...samples.map((x) => x.bytes)) / 1024, 0),
      statuses,
    });
    log(`${label}: ${request}: wall p50 ${s.p50} max ${s.max} ms, cpu p50 ${c.p50} max ${c.max} ms, loop delay max ${round(eld.max / 1e6, 1)} ms`);
  }
  let lastBody = '';
  const nextOf = (body: string): string | null => {
    const m = /"next":(null|"([^"]*)"|(\d+))\}$/.exec(body);
    return m ? (m[2] ?? m[3] ?? null) : null;
  };

  // Every page of the app list, following the cursor, at the default size and at the largest.
  for (const limit of [null, 1000]) {
    let cursor: string | null | undefined;
    await run(`GET /v1/apps${limit ? `?limit=${limit}` : ''} (every page)`, (k) => {
      if (k > 0) cursor = nextOf(lastBody);
      if (k > 0 && cursor === null) return null;
      const q = [limit ? `limit=${limit}` : null, cursor ? `after=${cursor}` : null].filter(Boolean).join('&');
      return { method: 'GET', url: `/v1/apps${q ? `?${q}` : ''}` };
    });
  }
  await run('GET /v1/apps/:app', (k) => (k < SAMPLES ? { method: 'GET', url: `/v1/apps/${pickApp(k)}` } : null));
  await run('GET /v1/apps/:app/releases', (k) => (k < SAMPLES ? { method: 'GET', url: `/v1/apps/${pickApp(k)}/releases` } : null));
  await run('GET /v1/apps/:app/releases?limit=1000', (k) => (k < SAMPLES ? { method: 'GET', url: `/v1/apps/${pickApp(k)}/releases?limit=1000` } : null));
  await run('GET /v1/apps/:app/events', (k) => (k < SAMPLES ? { method: 'GET', url: `/v1/apps/${pickApp(k)}/events` } : null));
  await run('GET /v1/apps/:app/events?limit=1000', (k) => (k < SAMPLES ? { method: 'GET', url: `/v1/apps/${pickApp(k)}/events?limit=1000` } : null));
  // A config edit through the API: it checks the new route against every app's (all specs read).
  await run('PUT /v1/apps/:app', (k) => {
    if (k >= SAMPLES) return null;
    const name = pickApp(k);
    return { method: 'PUT', url: `/v1/apps/${name}`, payload: appDocument(specOf(Number(name.slice(4)), 10_000 + k + (label === 'full history' ? 0 : SAMPLES))) };
  });
  await run('POST /v1/apps/:app/releases', (k) => (k < SAMPLES ? { method: 'POST', url: `/v1/apps/${pickApp(k)}/releases`, payload: { version: `bench-${label.replace(/\W/g, '')}-${k}` } } : null));
  await run('POST /v1/apps/:app/rollback {}', (k) => (k < SAMPLES ? { method: 'POST', url: `/v1/apps/${pickApp(k)}/rollback`, payload: {} } : null));
  await app.close();
  return results;
}

/** A real 0004 -> 0005 migration: `apps` apps of the same history written at schema 4 (a spec per release). */
function measureMigration(dir: string, apps: number): Record<string, number> {
  const file = join(dir, 'v4.db');
  const migrations = join(dir, 'migrations-v4');
  mkdirSync(migrations);
  for (const m of loadMigrations().slice(0, 4)) copyFileSync(join(DEFAULT_MIGRATIONS_DIR, m.file), join(migrations, m.file));
  // Filled at schema 5 through the repositories, then copied row for row into a schema-4 file.
  const scratch = openStore(join(dir, 'scratch.db'), { lock: false });
  for (let i = 0; i < apps; i++) fillApp(scratch, i, RELEASES);
  scratch.close();
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  migrate(db, { dir: migrations });
  db.exec(`ATTACH '${join(dir, 'scratch.db')}' AS s;
    INSERT INTO apps SELECT * FROM s.apps;
    INSERT INTO releases SELECT r.app, r.revision, r.version, sp.spec, r.reason, r.actor, r.created_at FROM s.releases r JOIN s.specs sp ON sp.digest = r.spec_digest;
    INSERT INTO events SELECT * FROM s.events;
    INSERT INTO status SELECT * FROM s.status;
    DETACH s;`);
  const before = fileBytes(db, file);
  db.close();
  const t0 = performance.now();
  const store = openStore(file, { lock: false, onWarning: () => undefined });
  const migrateMs = performance.now() - t0;
  const after = fileBytes(store, file);
  store.db.exec('VACUUM');
  const vacuumed = fileBytes(store, file);
  const releases = store.db.prepare('SELECT count(*) FROM releases').pluck().get() as number;
  const specs = store.db.prepare('SELECT count(*) FROM specs').pluck().get() as number;
  store.close();
  return { apps, releases, specs, schema4MB: mb(before), migrateMs: Math.round(migrateMs), afterMigrateMB: mb(after), afterVacuumMB: mb(vacuumed) };
}

async function main(): Promise<void> {
  const m = machine();
  const dir = mkdtempSync(join(tmpdir(), 'berth-bench-history-'));
  const file = join(dir, 'berth.db');
  try {
    const store = openStore(file, { lock: false });
    log(`filling ${APPS} apps x ${RELEASES} releases (${LARGE_APPS} with a ~${LARGE_SPEC_BYTES / 1000} KB spec) in ${file}`);
    const f0 = performance.now();
    for (let i = 0; i < APPS; i++) {
      fillApp(store, i, RELEASES);
      if ((i + 1) % 100 === 0) log(`  ${i + 1} apps (${Math.round((performance.now() - f0) / 1000)} s)`);
    }
    const fillS = Math.round((performance.now() - f0) / 1000);
    const count = (sql: string) => store.db.prepare(sql).pluck().get() as number;
    const filled = {
      releases: count('SELECT count(*) FROM releases'),
      specs: count('SELECT count(*) FROM specs'),
      events: count('SELECT count(*) FROM events'),
      specBytesStored: count('SELECT sum(length(spec)) FROM specs'),
      // What schema 4 stored: the spec text of every release, once per release.
      specBytesPerRelease: count('SELECT sum(length(s.spec)) FROM releases r JOIN specs s ON s.digest = r.spec_digest'),
      fileBytes: fileBytes(store, file),
    };
    log(`filled in ${fillS} s: ${JSON.stringify(filled)}`);

    const full = await measureRequests(store, 'full history');

    log(`retention: history_limit ${HISTORY_LIMIT}, one batch of ${PRUNE_BATCH} per app per pass`);
    const batchMs: number[] = [];
    const batchCpuMs: number[] = [];
    let passes = 0;
    let removed = 0;
    const r0 = performance.now();
    for (let more = true; more; passes++) {
      more = false;
      for (let i = 0; i < APPS; i++) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        const n = store.releases.pruneReleases(appName(i), { limit: HISTORY_LIMIT });
        batchMs.push(performance.now() - t0);
        const cpu = process.cpuUsage(c0);
        batchCpuMs.push((cpu.user + cpu.system) / 1000);
        removed += n;
        if (n === PRUNE_BATCH) more = true;
      }
    }
    const retentionS = round((performance.now() - r0) / 1000, 1);
    const batches = summarize(batchMs, 2);
    const batchesCpu = summarize(batchCpuMs, 2);
    const pruned = {
      passes,
      removed,
      retentionS,
      batchP50Ms: batches.p50,
      batchMaxMs: batches.max,
      batchCpuP50Ms: batchesCpu.p50,
      batchCpuMaxMs: batchesCpu.max,
      releases: count('SELECT count(*) FROM releases'),
      specs: count('SELECT count(*) FROM specs'),
      fileBytes: fileBytes(store, file),
    };
    const v0 = performance.now();
    store.db.exec('VACUUM');
    const vacuum = { seconds: round((performance.now() - v0) / 1000, 1), fileBytes: fileBytes(store, file) };
    log(`retention: ${JSON.stringify(pruned)}; VACUUM ${JSON.stringify(vacuum)}`);

    const retained = await measureRequests(store, 'after retention');
    store.close();

    log(`migration: ${MIGRATE_APPS} apps x ${RELEASES} releases written at schema 4, then opened (0005)`);
    const migration = measureMigration(dir, MIGRATE_APPS);

    // A write request's wall time includes its commit's fsync (synchronous=FULL), on the event loop.
    const disk = calibrateDisk(dir);
    const out = { machine: m, disk, config: { APPS, RELEASES, LARGE_APPS, LARGE_SPEC_BYTES, SAMPLES, HISTORY_LIMIT, SPEC_CHANGE_EVERY, ROLLBACK_EVERY }, fillS, filled, full, pruned, vacuum, retained, migration };
    mkdirSync(join(here, 'results'), { recursive: true });
    writeFileSync(join(here, 'results', 'history.json'), JSON.stringify(out, null, 2) + '\n');

    console.log(`\nhistory: ${APPS} apps x ${RELEASES} releases (${LARGE_APPS} apps with ~${LARGE_SPEC_BYTES / 1000} KB specs); ${m.nproc} CPUs, ${m.cpu}, Node ${m.node}, commit ${m.commit}\n`);
    const rows = (rs: RequestResult[]) =>
      rs.map((r) => [r.request, r.samples, ms(r.p50Ms), ms(r.maxMs), ms(r.cpuP50Ms), ms(r.cpuMaxMs), ms(r.loopDelayMaxMs), r.maxResponseKB, Object.entries(r.statuses).map(([k, v]) => `${k}x${v}`).join(' '), r.cpuMaxMs <= GOAL_MS ? 'yes' : 'NO']);
    const header = ['request', 'n', 'wall p50 ms', 'wall max ms', 'cpu p50 ms', 'cpu max ms', 'loop delay max ms', 'max KB', 'status', `cpu <= ${GOAL_MS} ms`];
    console.log(`At ${RELEASES} releases per app:\n${table(header, rows(full))}\n`);
    console.log(`After retention (${HISTORY_LIMIT} per app):\n${table(header, rows(retained))}\n`);
    console.log(
      table(
        ['database', 'releases', 'specs', 'MB'],
        [
          ['schema 4 (spec per release), estimated: this file + spec text per release - specs stored', filled.releases, filled.releases, mb(filled.fileBytes - filled.specBytesStored + filled.specBytesPerRelease)],
          ['schema 5 (spec once per content), full history', filled.releases, filled.specs, mb(filled.fileBytes)],
          [`after retention (history_limit ${HISTORY_LIMIT}), before VACUUM`, pruned.releases, pruned.specs, mb(pruned.fileBytes)],
          ['after VACUUM', pruned.releases, pruned.specs, mb(vacuum.fileBytes)],
        ],
      ),
    );
    console.log(`\nspec text: ${mb(filled.specBytesPerRelease)} MB once per release (schema 4), ${mb(filled.specBytesStored)} MB once per content`);
    console.log(`retention: ${pruned.removed} releases removed in ${pruned.passes} passes over ${APPS} apps, ${pruned.retentionS} s; one batch (<= ${PRUNE_BATCH} releases) wall p50 ${ms(pruned.batchP50Ms)} ms, max ${ms(pruned.batchMaxMs)} ms, cpu p50 ${ms(pruned.batchCpuP50Ms)} ms, max ${ms(pruned.batchCpuMaxMs)} ms; VACUUM ${vacuum.seconds} s`);
    console.log(`migration 0004 -> 0005, measured on ${migration.apps} apps (${migration.releases} releases, ${migration.specs} distinct specs): ${migration.schema4MB} MB -> ${migration.afterMigrateMB} MB in ${migration.migrateMs} ms, ${migration.afterVacuumMB} MB after VACUUM`);
    console.log(`one durable commit on this disk now (500 small ones): p50 ${disk.p50Ms} ms, p99 ${disk.p99Ms} ms, max ${disk.maxMs} ms`);
    console.log(`fill: ${fillS} s; load average at the end ${machine().loadavg.join(' ')} (at the start ${m.loadavg.join(' ')})`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
