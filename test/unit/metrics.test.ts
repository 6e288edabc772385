/**
 * berth's metrics registry against docs/observability.md ("Metrics reference"):
 * this file HOLDS the list of series (name, type, label set) and fails on any
 * drift in the registry, in either direction. Also: histogram buckets, process
 * metrics, cardinality rules, the text exposition (parsed line by line, through
 * the registry and through GET /metrics; its fast path and its fallback) and
 * setPhase.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Counter, Gauge, Histogram, Registry, Summary, type Metric, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { CHUNK_CHARS, expositionChunks, renderExposition, type FallbackReason } from '../../src/metrics/exposition.js';
import { BerthMetrics, PHASES } from '../../src/metrics/registry.js';
import { makeApi } from '../support/api.js';

type MetricType = 'counter' | 'gauge' | 'histogram';

/** docs/observability.md ("Metrics reference") and README.md ("Metrics"). Keep in step with both documents. */
const SERIES: Record<string, { type: MetricType; labels: string[] }> = {
  berth_reconcile_total: { type: 'counter', labels: ['app', 'result'] },
  berth_reconcile_duration_seconds: { type: 'histogram', labels: ['app'] },
  berth_queue_depth: { type: 'gauge', labels: [] },
  berth_release_desired_revision: { type: 'gauge', labels: ['app'] },
  berth_release_observed_revision: { type: 'gauge', labels: ['app'] },
  berth_rollout_hosts: { type: 'gauge', labels: ['app'] },
  berth_rollout_hosts_updated: { type: 'gauge', labels: ['app'] },
  berth_rollout_phase: { type: 'gauge', labels: ['app', 'phase'] },
  berth_rollout_duration_seconds: { type: 'histogram', labels: ['app', 'result'] },
  berth_health_checks_total: { type: 'counter', labels: ['app', 'host', 'result'] },
  berth_host_up: { type: 'gauge', labels: ['host'] },
  berth_leader: { type: 'gauge', labels: [] },
  berth_host_operation_duration_seconds: { type: 'histogram', labels: ['host', 'op'] },
  berth_rollbacks_total: { type: 'counter', labels: ['app', 'reason'] },
  berth_certificate_expiry_timestamp_seconds: { type: 'gauge', labels: ['app', 'host_name'] },
  berth_certificate_orders_total: { type: 'counter', labels: ['result'] },
  berth_build_info: { type: 'gauge', labels: ['version'] },
  berth_http_request_duration_seconds: { type: 'histogram', labels: ['method', 'route', 'status'] },
};

/** Whole rollouts: 1 s .. 30 min. Steps, passes, remote calls and requests: 5 ms .. 60 s. */
const ROLLOUT_RANGE = [1, 1800] as const;
const STEP_RANGE = [0.005, 60] as const;
const BUCKET_RANGES: Record<string, readonly [number, number]> = {
  berth_rollout_duration_seconds: ROLLOUT_RANGE,
  berth_reconcile_duration_seconds: STEP_RANGE,
  berth_host_operation_duration_seconds: STEP_RANGE,
  berth_http_request_duration_seconds: STEP_RANGE,
};

/** The only label names allowed: each takes values from a small, bounded set. */
// host_name: a TLS route's host name, one per app at most (bounded by the apps, like app)
const BOUNDED_LABELS = new Set(['app', 'result', 'host', 'host_name', 'op', 'phase', 'reason', 'method', 'route', 'status', 'version']);

/** prom-client's collectDefaultMetrics, under their standard names (what stock Node.js dashboards query). */
const isProcessMetric = (name: string) => name.startsWith('process_') || name.startsWith('nodejs_');

/** Touches every berth series with every label, as the controller, drivers and API do. */
function exercise(m: BerthMetrics): void {
  m.reconcileTotal.inc({ app: 'web', result: 'acted' });
  m.reconcileDuration.observe({ app: 'web' }, 0.042);
  m.queueDepth.set(3);
  m.desiredRevision.set({ app: 'web' }, 7);
  m.observedRevision.set({ app: 'web' }, 6);
  m.rolloutHosts.set({ app: 'web' }, 3);
  m.rolloutHostsUpdated.set({ app: 'web' }, 1);
  m.setPhase('web', 'Progressing');
  m.rolloutDuration.observe({ app: 'web', result: 'complete' }, 95);
  m.healthChecksTotal.inc({ app: 'web', host: 'h1', result: 'pass' });
  m.hostUp.set({ host: 'h1' }, 1);
  m.hostOperationDuration.observe({ host: 'h1', op: 'create' }, 0.3);
  m.rollbacksTotal.inc({ app: 'web', reason: 'health_check_failed' });
  m.httpRequestDuration.observe({ method: 'GET', route: '/v1/apps/:app', status: '2xx' }, 0.002);
  m.certificateExpiry.set({ app: 'web', host_name: 'web.example.com' }, 1_900_000_000);
  m.certificateOrdersTotal.inc({ result: 'issued' });
}

type Json = MetricObjectWithValues<MetricValue<string>>;

async function json(m: BerthMetrics): Promise<Map<string, Json>> {
  return new Map((await m.registry.getMetricsAsJSON()).map((j) => [j.name, j]));
}

/** The label names a metric was declared with (prom-client keeps them on the metric object). */
function declaredLabels(m: BerthMetrics, name: string): string[] {
  const metric = m.registry.getSingleMetric(name) as unknown as { labelNames?: readonly string[] } | undefined;
  assert.ok(metric, `${name} is registered`);
  return [...(metric.labelNames ?? [])].sort();
}

function bucketBounds(j: Json): number[] {
  const les = [...new Set(j.values.filter((v) => (v as { metricName?: string }).metricName?.endsWith('_bucket')).map((v) => String(v.labels.le)))];
  assert.equal(les.at(-1), '+Inf', `${j.name}: last bucket is +Inf`);
  return les.slice(0, -1).map(Number);
}

// ---------------------------------------------------------------------------
// Prometheus text exposition format 0.0.4, strictly enough to catch a broken scrape.

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * Prometheus parses sample values with Go's strconv.ParseFloat, which takes Inf and
 * NaN in any case; prom-client writes NaN as "Nan" (event-loop lag mean/stddev when
 * no lag was sampled since the last scrape), so the parser must take it too.
 */
function parseValue(s: string, where: string): number {
  if (/^\+?inf(inity)?$/i.test(s)) return Infinity;
  if (/^-inf(inity)?$/i.test(s)) return -Infinity;
  if (/^nan$/i.test(s)) return NaN;
  assert.match(s, /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/, `${where}: value ${JSON.stringify(s)} is a float`);
  return Number(s);
}

function parseLabels(body: string, where: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < body.length) {
    const eq = body.indexOf('=', i);
    assert.ok(eq > i, `${where}: label name at ${i}`);
    const name = body.slice(i, eq).trim();
    assert.match(name, LABEL_NAME, `${where}: label name ${JSON.stringify(name)}`);
    assert.ok(!(name in labels), `${where}: label ${name} repeated`);
    assert.equal(body[eq + 1], '"', `${where}: label ${name} value is quoted`);
    let j = eq + 2;
    let value = '';
    for (;;) {
      assert.ok(j < body.length, `${where}: label ${name} value is terminated`);
      const c = body[j]!;
      if (c === '\\') {
        const n = body[j + 1];
        assert.ok(n === '\\' || n === '"' || n === 'n', `${where}: escape \\${n} in label ${name}`);
        value += n === 'n' ? '\n' : n;
        j += 2;
      } else if (c === '"') {
        j += 1;
        break;
      } else {
        value += c;
        j += 1;
      }
    }
    labels[name] = value;
    if (body[j] === ',') j += 1;
    else assert.equal(j, body.length, `${where}: ',' or '}' after label ${name}`);
    i = j;
  }
  return labels;
}

/** Parses an exposition; throws (AssertionError) on anything malformed. */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  let current: Family | null = null;
  assert.ok(text.endsWith('\n'), 'exposition ends with a newline');
  const lines = text.split('\n').slice(0, -1);
  lines.forEach((line, n) => {
    const where = `line ${n + 1}`;
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) return; // a plain comment
      const [, kind, name, rest] = m as unknown as [string, 'HELP' | 'TYPE', string, string];
      assert.match(name, NAME, `${where}: metric name ${name}`);
      let f = families.get(name);
      if (!f) {
        f = { name, type: '', help: '', samples: [] };
        families.set(name, f);
      } else {
        assert.equal(current?.name, name, `${where}: # ${kind} ${name} belongs to the family being written`);
        assert.equal(f.samples.length, 0, `${where}: # ${kind} ${name} comes before its samples`);
      }
      if (kind === 'TYPE') {
        assert.equal(f.type, '', `${where}: one TYPE line for ${name}`);
        assert.ok(['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest), `${where}: type ${rest}`);
        f.type = rest;
      } else {
        f.help = rest;
      }
      current = f;
      return;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
    assert.ok(m, `${where}: sample line ${JSON.stringify(line)}`);
    const [, name, , body, value] = m as unknown as [string, string, string | undefined, string | undefined, string];
    assert.ok(current, `${where}: sample ${name} after a # TYPE line`);
    const fam: Family = current;
    const suffixes = fam.type === 'histogram' ? ['_bucket', '_sum', '_count'] : fam.type === 'summary' ? ['', '_sum', '_count'] : [''];
    assert.ok(
      suffixes.some((s) => name === fam.name + s),
      `${where}: sample ${name} belongs to family ${fam.name} (${fam.type})`,
    );
    const labels = body ? parseLabels(body, where) : {};
    if (name.endsWith('_bucket') && fam.type === 'histogram') assert.ok('le' in labels, `${where}: bucket has le`);
    fam.samples.push({ name, labels, value: parseValue(value, where) });
  });
  for (const f of families.values()) {
    assert.notEqual(f.type, '', `${f.name} has a # TYPE line`);
    if (f.type === 'histogram') checkHistogram(f);
  }
  return families;
}

/** Buckets are cumulative, end in +Inf, and +Inf equals _count, per label set. */
function checkHistogram(f: Family): void {
  const groups = new Map<string, Sample[]>();
  const key = (l: Record<string, string>) => JSON.stringify(Object.entries(l).filter(([k]) => k !== 'le').sort());
  for (const s of f.samples.filter((s) => s.name.endsWith('_bucket'))) groups.set(key(s.labels), [...(groups.get(key(s.labels)) ?? []), s]);
  for (const [k, buckets] of groups) {
    const les = buckets.map((b) => parseValue(b.labels.le!, `${f.name}${k}`));
    assert.deepEqual(les, [...les].sort((a, b) => a - b), `${f.name}${k}: buckets in ascending le`);
    assert.equal(les.at(-1), Infinity, `${f.name}${k}: last bucket le="+Inf"`);
    buckets.forEach((b, i) => i > 0 && assert.ok(b.value >= buckets[i - 1]!.value, `${f.name}${k}: buckets are cumulative`));
    const count = f.samples.find((s) => s.name === `${f.name}_count` && key(s.labels) === k);
    assert.ok(count, `${f.name}${k}: has _count`);
    assert.equal(count.value, buckets.at(-1)!.value, `${f.name}${k}: +Inf bucket equals _count`);
    assert.ok(f.samples.some((s) => s.name === `${f.name}_sum` && key(s.labels) === k), `${f.name}${k}: has _sum`);
  }
}

// ---------------------------------------------------------------------------

describe('metrics registry (docs/observability.md, "Metrics reference")', () => {
  test('holds exactly the series of the metrics reference, with their types and label sets', async () => {
    const m = new BerthMetrics('1.2.3', { processMetrics: false });
    exercise(m);
    const all = await json(m);
    assert.deepEqual([...all.keys()].sort(), Object.keys(SERIES).sort(), 'series names');
    for (const [name, spec] of Object.entries(SERIES)) {
      const j = all.get(name)!;
      assert.equal(j.type, spec.type, `${name} type`);
      assert.deepEqual(declaredLabels(m, name), [...spec.labels].sort(), `${name} declared labels`);
      assert.ok(j.help.length > 10, `${name} has help text`);
      // What the registry actually emits carries exactly the declared labels (plus le on buckets).
      assert.ok(j.values.length > 0, `${name} was exercised`);
      for (const v of j.values) {
        const keys = Object.keys(v.labels).filter((k) => k !== 'le').sort();
        assert.deepEqual(keys, [...spec.labels].sort(), `${name} emitted labels`);
      }
    }
  });

  test('every label is from the bounded vocabulary: no revision, container id or other unbounded label', () => {
    const m = new BerthMetrics('1.2.3', { processMetrics: false });
    for (const name of Object.keys(SERIES)) {
      for (const l of declaredLabels(m, name)) {
        assert.ok(BOUNDED_LABELS.has(l), `${name}{${l}} is a bounded label`);
        if (l === 'version') assert.equal(name, 'berth_build_info', 'only build_info has a version label');
      }
    }
  });

  test('metric names follow Prometheus conventions (prefix, unit suffixes, counters end in _total)', () => {
    for (const [name, spec] of Object.entries(SERIES)) {
      assert.match(name, /^berth_[a-z_]+$/);
      if (spec.type === 'counter') assert.match(name, /_total$/, `${name}: counter ends in _total`);
      // promtool check metrics: "non-counter metrics should not have "_total" suffix".
      else assert.doesNotMatch(name, /_total$/, `${name}: only a counter ends in _total`);
      if (spec.type === 'histogram') assert.match(name, /_seconds$/, `${name}: histograms here measure seconds`);
    }
  });

  test('histogram buckets fit the quantity: rollouts 1 s..1800 s, steps 5 ms..60 s', async () => {
    const m = new BerthMetrics('1.2.3', { processMetrics: false });
    exercise(m);
    const all = await json(m);
    const histograms = Object.entries(SERIES).filter(([, s]) => s.type === 'histogram').map(([n]) => n);
    assert.deepEqual(histograms.sort(), Object.keys(BUCKET_RANGES).sort(), 'every histogram has an expected range');
    for (const [name, [lo, hi]] of Object.entries(BUCKET_RANGES)) {
      const bounds = bucketBounds(all.get(name)!);
      assert.equal(bounds[0], lo, `${name}: first bucket`);
      assert.equal(bounds.at(-1), hi, `${name}: last finite bucket`);
      bounds.forEach((b, i) => i > 0 && assert.ok(b > bounds[i - 1]!, `${name}: buckets strictly ascending`));
      assert.ok(bounds.length >= 8 && bounds.length <= 16, `${name}: ${bounds.length} buckets (enough resolution, bounded cost)`);
    }
  });

  test('observations land in the right buckets', async () => {
    const m = new BerthMetrics('1.2.3', { processMetrics: false });
    m.rolloutDuration.observe({ app: 'web', result: 'complete' }, 45);
    m.rolloutDuration.observe({ app: 'web', result: 'complete' }, 4000);
    const j = (await json(m)).get('berth_rollout_duration_seconds')!;
    const bucket = (le: string) => j.values.find((v) => String(v.labels.le) === le && v.labels.result === 'complete')!.value;
    assert.equal(bucket('30'), 0);
    assert.equal(bucket('60'), 1);
    assert.equal(bucket('1800'), 1);
    assert.equal(bucket('+Inf'), 2);
  });

  test('berth_build_info is 1 with the version', async () => {
    const m = new BerthMetrics('9.8.7', { processMetrics: false });
    const j = (await json(m)).get('berth_build_info')!;
    assert.deepEqual(
      j.values.map((v) => [v.labels, v.value]),
      [[{ version: '9.8.7' }, 1]],
    );
  });

  test('process metrics are present under their standard names process_* / nodejs_* (no berth_ prefix), and only when asked for', async () => {
    const on = await json(new BerthMetrics('1.2.3'));
    const processNames = [...on.keys()].filter(isProcessMetric);
    for (const name of [
      'process_cpu_seconds_total',
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
      'process_start_time_seconds',
      'process_open_fds',
      'nodejs_eventloop_lag_p99_seconds',
      'nodejs_eventloop_lag_seconds',
      'nodejs_heap_size_used_bytes',
      'nodejs_gc_duration_seconds',
      'nodejs_version_info',
    ]) {
      assert.ok(processNames.includes(name), `${name} present`);
    }
    // Nothing else sneaks in: every name is a documented series or a process metric.
    for (const name of on.keys()) assert.doesNotMatch(name, /^berth_(process|nodejs)_/, `${name}: process metrics are not prefixed`);
    for (const name of on.keys()) assert.ok(name in SERIES || isProcessMetric(name), `${name} is expected`);
    const off = await json(new BerthMetrics('1.2.3', { processMetrics: false }));
    assert.deepEqual([...off.keys()].filter(isProcessMetric), []);
  });

  test('two registries are independent (berth never uses prom-client global registry)', async () => {
    const a = new BerthMetrics('1.2.3', { processMetrics: false });
    const b = new BerthMetrics('1.2.3', { processMetrics: false });
    a.queueDepth.set(5);
    const depth = async (m: BerthMetrics) => (await json(m)).get('berth_queue_depth')!.values[0]?.value;
    assert.equal(await depth(a), 5);
    assert.equal(await depth(b), 0);
    const { register } = await import('prom-client');
    assert.equal(register.getSingleMetric('berth_queue_depth'), undefined);
  });
});

describe('text exposition', () => {
  test('the registry text parses, declares every family once, and carries every series', async () => {
    const m = new BerthMetrics('1.2.3');
    exercise(m);
    // Awkward label values are escaped, not emitted raw.
    m.hostOperationDuration.observe({ host: 'we"ird\\host\nname', op: 'pull' }, 1);
    const text = await m.text();
    const families = parseExposition(text);
    for (const [name, spec] of Object.entries(SERIES)) {
      const f = families.get(name);
      assert.ok(f, `${name} in the exposition`);
      assert.equal(f.type, spec.type, `${name} TYPE`);
      assert.ok(f.help.length > 0, `${name} HELP`);
    }
    assert.ok([...families.keys()].some(isProcessMetric), 'process metrics in the exposition');
    const weird = families.get('berth_host_operation_duration_seconds')!.samples.find((s) => s.labels.op === 'pull');
    assert.equal(weird?.labels.host, 'we"ird\\host\nname');
    const phase = families.get('berth_rollout_phase')!.samples.filter((s) => s.labels.app === 'web');
    assert.deepEqual(phase.map((s) => [s.labels.phase, s.value]).sort(), PHASES.map((p) => [p, p === 'Progressing' ? 1 : 0]).sort());
  });

  test("text() (berth's fast writer) emits exactly the samples of prom-client's registry.metrics()", async () => {
    const m = new BerthMetrics('1.2.3');
    exercise(m);
    for (let a = 0; a < 20; a++) {
      const app = `app-${a}`;
      m.setPhase(app, PHASES[a % PHASES.length]!);
      m.reconcileDuration.observe({ app }, a / 7);
      m.rolloutDuration.observe({ app, result: a % 2 ? 'failed' : 'complete' }, a * 97);
      m.healthChecksTotal.inc({ app, host: `h${a % 3}`, result: 'fail' }, a);
    }
    m.hostOperationDuration.observe({ host: 'we"ird\\host\nname', op: 'pull' }, 100);
    const theirs = parseExposition(await m.registry.metrics());
    const ours = parseExposition(await m.text());
    assert.deepEqual([...ours.keys()], [...theirs.keys()], 'same families, same order');
    const key = (s: Sample) => `${s.name}${JSON.stringify(Object.entries(s.labels).sort())}`;
    for (const [name, f] of theirs) {
      const o = ours.get(name)!;
      assert.equal(o.type, f.type, `${name} type`);
      assert.equal(o.help, f.help, `${name} help`);
      const mine = new Map(o.samples.map((s) => [key(s), s.value]));
      if (!isProcessMetric(name)) {
        assert.deepEqual([...mine.keys()].sort(), f.samples.map(key).sort(), `${name}: same series`);
        for (const s of f.samples) assert.deepEqual(mine.get(key(s)), s.value, `${name} ${key(s)}`);
        continue;
      }
      // Process metrics move between two scrapes: values change, and a series may come (the
      // first collection of a kind, between two chunks) but not go; except nodejs_active_*{type},
      // what is pending at that instant (prom-client's lag probe leaves an Immediate for its writer).
      if (!name.startsWith('nodejs_active_')) for (const s of f.samples) assert.ok(mine.has(key(s)), `${name} ${key(s)} written`);
    }
  });

  test('text() reflects every change between scrapes: its caches never serve a stale line', async () => {
    const m = new BerthMetrics('1.2.3', { processMetrics: false });
    const same = async (what: string) => {
      const theirs = parseExposition(await m.registry.metrics());
      const ours = parseExposition(await m.text());
      const flat = (fs: Map<string, Family>) =>
        [...fs.values()].flatMap((f) => f.samples.map((x) => `${x.name}${JSON.stringify(Object.entries(x.labels).sort())} ${x.value}`)).sort();
      assert.deepEqual(flat(ours), flat(theirs), what);
    };
    exercise(m);
    await same('first scrape');
    await same('nothing changed');
    m.reconcileDuration.observe({ app: 'web' }, 0.3);
    m.reconcileTotal.inc({ app: 'web', result: 'acted' });
    m.setPhase('web', 'Complete');
    m.hostUp.set({ host: 'h1' }, 0);
    await same('values changed');
    m.reconcileDuration.observe({ app: 'web' }, 0);
    await same('an observation of 0 (sum unchanged, count moved)');
    m.reconcileDuration.reset();
    m.reconcileDuration.observe({ app: 'web' }, 0.3);
    await same('histogram reset, then the same observation count as before');
    m.hostUp.remove({ host: 'h1' });
    m.rolloutPhase.reset();
    await same('series removed');
    for (let i = 0; i < 200; i++) m.hostUp.set({ host: `h${i}` }, 1);
    await same('many new series');
    m.hostUp.reset();
    m.hostUp.set({ host: 'h7' }, 1);
    await same('after the caches were pruned');
    // One series goes, another (seen before, same value) comes back: same count, same values.
    m.hostUp.set({ host: 'h8' }, 1);
    await same('two series');
    m.hostUp.remove({ host: 'h7' });
    m.hostUp.set({ host: 'h9' }, 1);
    await same('one series swapped for another');
    m.hostUp.remove({ host: 'h9' });
    m.hostUp.set({ host: 'h7' }, 1);
    await same('swapped back to a series the cache knows, with the same value');
  });

  test("the fast path is taken for every counter, gauge and histogram: prom-client's internals are where exposition.ts reads them", async () => {
    // exposition.ts reads prom-client's private fields (registry._defaultLabels, metric.hashMap and its
    // series' labels/value/bucketValues/sum/count, histogram.upperBounds); the version is pinned for it.
    const pinned = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> })
      .dependencies['prom-client'];
    const installed = (createRequire(import.meta.url)('prom-client/package.json') as { version: string }).version;
    assert.equal(pinned, installed, 'package.json pins prom-client to exactly the installed version');

    const m = new BerthMetrics('1.2.3');
    exercise(m);
    const fallbacks: string[] = [];
    const text = await renderExposition(m.registry, { onFallback: (name, why) => fallbacks.push(`${name}: ${why}`) });
    assert.deepEqual(fallbacks, [], 'no metric went through the fallback');
    const types = new Set(m.registry.getMetricsAsArray().map((x) => String(x.type)));
    for (const t of ['counter', 'gauge', 'histogram']) assert.ok(types.has(t), `the registry has a ${t}`);
    assert.ok(parseExposition(text).size >= Object.keys(SERIES).length);
  });

  test("the fallback (a metric of unknown shape, a summary, default labels) writes exactly prom-client's registry.metrics()", async () => {
    /**
     * `metric` as exposition.ts would see it if prom-client renamed `field` (or changed it, with
     * `replace`): prom-client's own methods still run on the real object, so registry.metrics() works.
     */
    const hiding = <T extends object>(metric: T, field: string, replace?: (real: unknown) => unknown): T =>
      new Proxy(metric, {
        get(target, key) {
          const real: unknown = Reflect.get(target, key, target);
          if (key === field) return replace ? replace(real) : undefined;
          return typeof real === 'function' ? (real as (...a: unknown[]) => unknown).bind(target) : real;
        },
      });
    /** Series renamed: {labels, val} and {labels, buckets, sum, count}. */
    const renamed = (field: string, to: string) => (real: unknown) =>
      Object.fromEntries(
        Object.entries(real as Record<string, Record<string, unknown>>).map(([hash, { [field]: v, ...rest }]) => [hash, { ...rest, [to]: v }]),
      );

    const reg = new Registry();
    const labelNames = ['app', 'host'] as const;
    const counter = new Counter({ name: 'berth_fb_counter_total', help: 'no hashMap', labelNames, registers: [] });
    const gauge = new Gauge({ name: 'berth_fb_gauge', help: 'series {labels, val}', labelNames, registers: [] });
    const histogram = new Histogram({ name: 'berth_fb_seconds', help: 'no upperBounds', labelNames, buckets: [0.1, 1, 10], registers: [] });
    const histogram2 = new Histogram({ name: 'berth_fb2_seconds', help: 'series without bucketValues', labelNames, buckets: [1, 5], registers: [] });
    const summary = new Summary({ name: 'berth_fb_summary_seconds', help: 'a summary', labelNames, percentiles: [0.5, 0.9], registers: [] });
    const fast = new Gauge({ name: 'berth_fast_gauge', help: 'still the fast path, between fallbacks', labelNames, registers: [] });
    const custom = {
      name: 'berth_fb_custom',
      help: 'A metric object prom-client did not make,\nwith a \\ in its help.',
      type: 'gauge',
      async get() {
        return { name: this.name, help: this.help, type: this.type, aggregator: 'sum', values: [{ labels: { kind: 'we"ird\\x\ny' }, value: 2 }, { labels: {}, value: 0.5 }] };
      },
    };
    reg.registerMetric(hiding(counter, 'hashMap'));
    reg.registerMetric(hiding(gauge, 'hashMap', renamed('value', 'val')));
    reg.registerMetric(fast);
    reg.registerMetric(hiding(histogram, 'upperBounds'));
    reg.registerMetric(hiding(histogram2, 'hashMap', renamed('bucketValues', 'buckets')));
    reg.registerMetric(summary);
    reg.registerMetric(custom as unknown as Metric);
    for (const [i, app] of ['web', 'api', 'we"ird\\app\nname'].entries()) {
      const labels = { app, host: `h${i}` };
      counter.inc(labels, i + 1);
      gauge.set(labels, -i - 0.25);
      fast.set(labels, i);
      histogram.observe(labels, i * 3.3);
      histogram2.observe(labels, i);
      summary.observe(labels, i / 2);
    }
    gauge.set({ app: 'web', host: 'h9' }, Infinity);

    const fallbacks = new Map<string, FallbackReason>();
    const ours = await renderExposition(reg, { onFallback: (name, why) => fallbacks.set(name, why) });
    assert.deepEqual(
      Object.fromEntries(fallbacks),
      {
        berth_fb_counter_total: 'no-hashMap',
        berth_fb_gauge: 'series-shape',
        berth_fb_seconds: 'no-upperBounds',
        berth_fb2_seconds: 'series-shape',
        berth_fb_summary_seconds: 'type',
        berth_fb_custom: 'no-hashMap',
      },
      'each metric of unknown shape took the fallback, for its reason',
    );
    assert.equal(ours, await reg.metrics(), 'same text as prom-client');
    parseExposition(ours);

    // Default labels: prom-client merges them into every series, so the whole registry falls back.
    const m = new BerthMetrics('1.2.3', { processMetrics: false });
    exercise(m);
    m.registry.setDefaultLabels({ instance: 'berth-1' });
    const all: string[] = [];
    const text = await renderExposition(m.registry, { onFallback: (name, why) => all.push(`${name}: ${why}`) });
    assert.deepEqual(all.sort(), Object.keys(SERIES).map((n) => `${n}: default-labels`).sort());
    assert.equal(text, await m.registry.metrics());
    assert.ok([...parseExposition(text).values()].every((f) => f.samples.every((s) => s.labels.instance === 'berth-1')));
  });

  test('the parser rejects broken expositions', () => {
    assert.throws(() => parseExposition('berth_x 1\n'), /after a # TYPE line/);
    assert.throws(() => parseExposition('# TYPE berth_x gauge\nberth_x{a="1} 1\n'), /terminated/);
    assert.throws(() => parseExposition('# TYPE berth_x gauge\nberth_x one\n'), /float/);
    assert.throws(() => parseExposition('# TYPE berth_x gauge\nberth_y 1\n'), /belongs to family/);
    assert.throws(
      () => parseExposition('# TYPE berth_h histogram\nberth_h_bucket{le="1"} 2\nberth_h_bucket{le="+Inf"} 1\nberth_h_sum 1\nberth_h_count 1\n'),
      /cumulative/,
    );
    assert.throws(() => parseExposition('# TYPE berth_x gauge\nberth_x 1'), /newline/);
  });

  test('GET /metrics serves the exposition with the Prometheus content type, without a token', async () => {
    const api = makeApi();
    try {
      exercise(api.metrics);
      await api.call({ method: 'GET', url: '/healthz', auth: false });
      const res = await api.call({ method: 'GET', url: '/metrics', auth: false });
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4; charset=utf-8$/);
      const families = parseExposition(res.body);
      for (const name of Object.keys(SERIES)) assert.ok(families.has(name), `${name} served`);
      // The HTTP hook labels by route template and status class.
      const http = families.get('berth_http_request_duration_seconds')!.samples.filter((s) => s.name.endsWith('_count'));
      assert.ok(
        http.some((s) => s.labels.route === '/healthz' && s.labels.method === 'GET' && s.labels.status === '2xx' && s.value >= 1),
        `healthz request counted: ${JSON.stringify(http)}`,
      );
    } finally {
      await api.close();
    }
  });

  test('the HTTP hook never labels by raw URL: unmatched paths share one route value', async () => {
    const api = makeApi();
    try {
      for (let i = 0; i < 20; i++) await api.call({ method: 'GET', url: `/no-such-path-${i}`, auth: false });
      await api.call({ method: 'GET', url: '/v1/apps/some-app-1' });
      await api.call({ method: 'GET', url: '/v1/apps/some-app-2' });
      const j = (await json(api.metrics)).get('berth_http_request_duration_seconds')!;
      const routes = new Set(j.values.map((v) => String(v.labels.route)));
      for (const r of routes) assert.doesNotMatch(r, /no-such-path|some-app/, `route label ${r} is a template`);
      assert.ok(routes.has('/v1/apps/:app'), `template route present: ${[...routes].join(', ')}`);
    } finally {
      await api.close();
    }
  });
});

describe('setPhase', () => {
  const phaseValues = async (m: BerthMetrics, app: string) =>
    new Map(
      (await json(m))
        .get('berth_rollout_phase')!
        .values.filter((v) => v.labels.app === app)
        .map((v) => [String(v.labels.phase), v.value]),
    );

  test('sets exactly one phase to 1 and every other phase to 0, for that app only', async () => {
    const m = new BerthMetrics('1.2.3', { processMetrics: false });
    m.setPhase('api', 'Complete');
    for (const phase of PHASES) {
      m.setPhase('web', phase);
      const values = await phaseValues(m, 'web');
      assert.deepEqual([...values.keys()].sort(), [...PHASES].sort(), 'a series for every phase');
      assert.deepEqual(
        [...values].filter(([, v]) => v === 1).map(([p]) => p),
        [phase],
        `exactly ${phase} is 1`,
      );
      assert.ok([...values.values()].every((v) => v === 0 || v === 1));
      assert.equal([...values.values()].reduce((a, b) => a + b, 0), 1, 'sum over phases is 1');
      const other = await phaseValues(m, 'api');
      assert.equal(other.get('Complete'), 1, 'another app keeps its phase');
    }
  });

  test('PHASES covers every AppPhase the controller reports', () => {
    assert.deepEqual([...PHASES].sort(), ['Complete', 'Failed', 'Paused', 'Progressing', 'RolledBack']);
  });

  test('a null phase (no release yet) leaves every phase at 0', async () => {
    const m = new BerthMetrics('1.2.3', { processMetrics: false });
    m.setPhase('web', 'Failed');
    m.setPhase('web', null);
    const values = await phaseValues(m, 'web');
    assert.equal(values.size, PHASES.length);
    assert.ok([...values.values()].every((v) => v === 0));
  });
});

// A full collection before each heap reading, so what is counted is what is held.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heapAfterGc = () => (gc(), gc(), process.memoryUsage().heapUsed);

describe('per-app series at 10,000 apps (docs/benchmarks.md, "Memory at 10,000 apps")', () => {
  test('berth_rollout_duration_seconds keeps a series in under 2 KB (prom-client alone: 14.6 KB, 146 MB at 10,000 apps)', () => {
    const m = new BerthMetrics('1.2.3', { processMetrics: false });
    const apps = 5_000;
    const before = heapAfterGc();
    for (let a = 0; a < apps; a++) m.rolloutDuration.observe({ app: `app-${a}`, result: 'complete' }, 95);
    const perSeries = (heapAfterGc() - before) / apps;
    assert.ok(perSeries < 2048, `${Math.round(perSeries)} bytes a series`);
  });

  test('forgetApp still finds and drops those series', async () => {
    const m = new BerthMetrics('1.2.3', { processMetrics: false });
    m.rolloutDuration.observe({ app: 'web', result: 'complete' }, 95);
    m.rolloutDuration.observe({ app: 'api', result: 'failed' }, 5);
    await m.forgetApp('web');
    const j = (await json(m)).get('berth_rollout_duration_seconds')!;
    assert.deepEqual([...new Set(j.values.map((v) => v.labels.app))], ['api']);
  });
});

/**
 * What text() wrote before the exposition was streamed (commit eec5e82's writer, which
 * cached every series' text), byte for byte: separators, blank lines between families, an
 * empty family, label order with `le` last, escapes, NaN and infinities.
 */
const GOLDEN = [
  '# HELP berth_g_total A counter,\\nwith a \\\\ in its help.',
  '# TYPE berth_g_total counter',
  'berth_g_total{app="web",result="acted"} 3',
  'berth_g_total{app="we\\"ird\\\\app\\nname",result="error"} 1',
  '',
  '# HELP berth_g_gauge A gauge.',
  '# TYPE berth_g_gauge gauge',
  'berth_g_gauge{host="h1"} -0.25',
  'berth_g_gauge{host="h2"} NaN',
  'berth_g_gauge{host="h3"} +Inf',
  'berth_g_gauge{host="h4"} -Inf',
  'berth_g_gauge{host="h5"} 1e+21',
  '',
  '# HELP berth_g_empty No series.',
  '# TYPE berth_g_empty gauge',
  '',
  '# HELP berth_g_plain No labels.',
  '# TYPE berth_g_plain gauge',
  'berth_g_plain 7',
  '',
  '# HELP berth_g_seconds A histogram.',
  '# TYPE berth_g_seconds histogram',
  'berth_g_seconds_bucket{app="web",le="0.5"} 1',
  'berth_g_seconds_bucket{app="web",le="1"} 1',
  'berth_g_seconds_bucket{app="web",le="2.5"} 2',
  'berth_g_seconds_bucket{app="web",le="+Inf"} 2',
  'berth_g_seconds_sum{app="web"} 2.3',
  'berth_g_seconds_count{app="web"} 2',
  'berth_g_seconds_bucket{app="api",le="0.5"} 0',
  'berth_g_seconds_bucket{app="api",le="1"} 0',
  'berth_g_seconds_bucket{app="api",le="2.5"} 0',
  'berth_g_seconds_bucket{app="api",le="+Inf"} 1',
  'berth_g_seconds_sum{app="api"} 9',
  'berth_g_seconds_count{app="api"} 1',
  '',
  '# HELP berth_g_plain_seconds A histogram without labels.',
  '# TYPE berth_g_plain_seconds histogram',
  'berth_g_plain_seconds_bucket{le="1"} 1',
  'berth_g_plain_seconds_bucket{le="+Inf"} 1',
  'berth_g_plain_seconds_sum 0.5',
  'berth_g_plain_seconds_count 1',
  ''
].join('\n');

/** A fleet's worth of series: `apps` apps on 3 hosts each, in the biggest families a daemon has. */
function fleet(m: BerthMetrics, apps: number): BerthMetrics {
  for (let a = 0; a < apps; a++) {
    const app = `app-${a}`;
    m.setRollout(app, { desiredRevision: a, observedRevision: a, phase: PHASES[a % PHASES.length]!, hostsTotal: 3, hostsUpdated: 3 });
    for (const result of ['acted', 'waiting', 'converged']) m.reconcileTotal.inc({ app, result }, a);
    m.reconcileDuration.observe({ app }, a / 1000);
    for (let h = 0; h < 3; h++) m.healthChecksTotal.inc({ app, host: `h${(a + h) % 100}`, result: 'pass' });
  }
  return m;
}

describe('streamed exposition (GET /metrics at 10,000 apps: docs/benchmarks.md, "A /metrics scrape at 10,000 apps")', () => {
  test('writes exactly the text it wrote before it was streamed', async () => {
    const reg = new Registry();
    const c = new Counter({ name: 'berth_g_total', help: 'A counter,\nwith a \\ in its help.', labelNames: ['app', 'result'], registers: [reg] });
    const g = new Gauge({ name: 'berth_g_gauge', help: 'A gauge.', labelNames: ['host'], registers: [reg] });
    new Gauge({ name: 'berth_g_empty', help: 'No series.', labelNames: ['app'], registers: [reg] });
    const u = new Gauge({ name: 'berth_g_plain', help: 'No labels.', registers: [reg] });
    const h = new Histogram({ name: 'berth_g_seconds', help: 'A histogram.', labelNames: ['app'], buckets: [0.5, 1, 2.5], registers: [reg] });
    const hu = new Histogram({ name: 'berth_g_plain_seconds', help: 'A histogram without labels.', buckets: [1], registers: [reg] });
    c.inc({ app: 'web', result: 'acted' }, 3);
    c.inc({ app: 'we"ird\\app\nname', result: 'error' });
    g.set({ host: 'h1' }, -0.25);
    g.set({ host: 'h2' }, NaN);
    g.set({ host: 'h3' }, Infinity);
    g.set({ host: 'h4' }, -Infinity);
    g.set({ host: 'h5' }, 1e21);
    u.set(7);
    h.observe({ app: 'web' }, 0.3);
    h.observe({ app: 'web' }, 2);
    h.observe({ app: 'api' }, 9);
    hu.observe(0.5);
    assert.equal(await renderExposition(reg), GOLDEN);
  });

  test('the stream is text(), byte for byte, in chunks of about CHUNK_CHARS; GET /metrics serves it', async () => {
    const m = fleet(new BerthMetrics('1.2.3', { processMetrics: false }), 1500);
    const text = await m.text();
    const chunks: Buffer[] = [];
    for await (const chunk of m.stream()) chunks.push(chunk as Buffer);
    assert.ok(chunks.length > 5, `${chunks.length} chunks for ${text.length} bytes`);
    // Each chunk ends after the series that filled it: at most one series (here < 2 KB) over.
    for (const chunk of chunks.slice(0, -1)) assert.ok(chunk.length >= CHUNK_CHARS && chunk.length < CHUNK_CHARS + 2048, `chunk of ${chunk.length} bytes`);
    assert.equal(Buffer.concat(chunks).toString('utf8'), text);
    parseExposition(text);

    const api = makeApi();
    try {
      fleet(api.metrics, 1500);
      // Before the request: the request itself is counted once its reply has been sent.
      const expected = await api.metrics.text();
      const res = await api.call({ method: 'GET', url: '/metrics', auth: false });
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['content-length'], undefined, 'streamed: no length known up front');
      assert.equal(res.body, expected);
    } finally {
      await api.close();
    }
  });

  test('a scrape gives the event loop a turn between two chunks', async () => {
    const m = fleet(new BerthMetrics('1.2.3', { processMetrics: false }), 1500);
    let turns = 0;
    let done = false;
    const turn = () => {
      turns++;
      if (!done) setImmediate(turn);
    };
    setImmediate(turn);
    let chunks = 0;
    for await (const _ of expositionChunks(m.registry)) chunks++;
    done = true;
    assert.ok(chunks > 5, `${chunks} chunks`);
    assert.ok(turns >= chunks - 1, `${turns} turns of the event loop while ${chunks} chunks were written`);
  });

  test('a scrape keeps nothing: heap after a full collection is the same before and after three', async () => {
    const m = fleet(new BerthMetrics('1.2.3', { processMetrics: false }), 3000);
    await m.text();
    const before = heapAfterGc();
    for (let i = 0; i < 3; i++) {
      m.reconcileDuration.observe({ app: `app-${i}` }, 0.5);
      await m.text();
    }
    const held = heapAfterGc() - before;
    assert.ok(held < 1024 * 1024, `${Math.round(held / 1024)} KiB held after three scrapes`);
  });

  test('destroying the stream (the scraper went away) stops the writing', async () => {
    const m = fleet(new BerthMetrics('1.2.3', { processMetrics: false }), 1500);
    let collected = 0;
    // Registered last: its collect() runs when the writing reaches it.
    new Gauge({ name: 'berth_t_last', help: 'Last family.', registers: [m.registry], collect: () => void collected++ });
    const stream = m.stream();
    for await (const _ of stream) break;
    assert.ok(stream.destroyed);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(collected, 0, 'the last family was never reached');
    await m.text();
    assert.equal(collected, 1, 'a whole scrape reaches it');
  });

  test('a series removed while a scrape is under way is left out, and the text still parses', async () => {
    const m = fleet(new BerthMetrics('1.2.3', { processMetrics: false }), 1500);
    const chunks = expositionChunks(m.registry);
    const first = await chunks.next();
    assert.match(String(first.value), /^# HELP berth_reconcile_total /);
    assert.doesNotMatch(String(first.value), /app-1499"/, 'the first chunk ends before the family does');
    m.reconcileTotal.remove({ app: 'app-1499', result: 'converged' });
    m.healthChecksTotal.remove({ app: 'app-7', host: 'h7', result: 'pass' });
    let text = String(first.value);
    for await (const chunk of chunks) text += chunk;
    const families = parseExposition(text);
    const reconcile = families.get('berth_reconcile_total')!.samples.filter((s) => s.labels.app === 'app-1499');
    assert.deepEqual(reconcile.map((s) => s.labels.result).sort(), ['acted', 'waiting']);
    assert.ok(!families.get('berth_health_checks_total')!.samples.some((s) => s.labels.app === 'app-7' && s.labels.host === 'h7'));
  });
});
