import type { Registry } from 'prom-client';

/**
 * The Prometheus text exposition (format 0.0.4) of a registry: the samples of
 * prom-client's registry.metrics(), written several times faster. berth's per-app
 * series dominate a scrape (1,000 apps are ~60,000 samples, mostly histogram
 * buckets); prom-client builds an object per sample and formats its labels each time.
 *
 * Here each series' label string is formatted once and kept, keyed by prom-client's
 * own series hash, and a histogram series' lines are kept while its count is
 * unchanged (an idle app costs one array push per scrape). That reads prom-client's
 * internals (`hashMap` of {labels, value} or {labels, bucketValues, sum, count}, and
 * `upperBounds`; the same from v13 to v15). A metric without that shape, one of type
 * summary, or a registry with default labels goes through prom-client's public API
 * (`onFallback` is told which, and why). prom-client is pinned to an exact version in
 * package.json for this; test/unit/metrics.test.ts checks that both writers emit the
 * same samples, that berth's own and the process metrics all take the fast path (so an
 * upgrade that moves these fields fails there), and that the fallback matches
 * registry.metrics().
 *
 * One deliberate difference: NaN is written `NaN` (the format's spelling), where
 * prom-client writes `Nan`.
 */
export async function renderExposition(registry: Registry, opts: ExpositionOptions = {}): Promise<string> {
  const metrics = registry.getMetricsAsArray() as unknown as MetricLike[];
  const labels = defaultLabelsFallback(registry);
  if (labels) {
    for (const m of metrics) opts.onFallback?.(m.name, labels);
    return registry.metrics();
  }
  const families = await Promise.all(metrics.map((m) => renderFamily(registry, m, opts.onFallback)));
  return `${families.join('\n\n')}\n`;
}

/** Why a metric was written through prom-client's public API rather than from its internals. */
export type FallbackReason =
  /** The registry has default labels (merged into every series by prom-client's writer). */
  | 'default-labels'
  /** The registry has no `_defaultLabels` field: it may have default labels this writer cannot see. */
  | 'no-default-labels-field'
  /** A summary, or a type this writer does not know. */
  | 'type'
  /** The metric has no `hashMap` of series. */
  | 'no-hashMap'
  /** A histogram without `upperBounds`. */
  | 'no-upperBounds'
  /** A series in `hashMap` is not {labels, value} (counter, gauge) or {labels, bucketValues, sum, count} (histogram). */
  | 'series-shape';

export interface ExpositionOptions {
  /** Told about each metric that took the fallback, and why (for tests: see test/unit/metrics.test.ts). */
  onFallback?: (metric: string, reason: FallbackReason) => void;
}

type Labels = Record<string, string | number>;

interface MetricLike {
  name: string;
  help: string;
  type: string;
  hashMap?: unknown;
  upperBounds?: unknown;
  collect?: () => unknown;
  get?: () => Promise<{ values: Array<{ value: number; labels: Labels; metricName?: string }> }>;
}

interface HistogramChild {
  labels: Labels;
  bucketValues: Record<number, number>;
  sum: number;
  count: number;
}

interface ValueChild {
  labels: Labels;
  value: number;
}

interface SeriesCache {
  /** series hash -> `{a="x",b="y"}` (or '') */
  labels: Map<string, string>;
  /** series hash -> a counter's or gauge's line and the value it shows */
  values: Map<string, { value: number; line: string; gen: number }>;
  /** series hash -> the histogram series' rendered lines and the count they show */
  histograms: Map<string, { child: HistogramChild; count: number; sum: number; text: string; gen: number }>;
  /** The whole family as last written, and how many series it had: reused while no series changed. */
  family: { text: string; n: number } | null;
  /** Counts renders; a series entry's `gen` says in which render it was last written. */
  gen: number;
}

/** Per metric object: dies with it. */
const caches = new WeakMap<object, SeriesCache>();

function cacheOf(m: object): SeriesCache {
  let c = caches.get(m);
  if (!c) caches.set(m, (c = { labels: new Map(), values: new Map(), histograms: new Map(), family: null, gen: 0 }));
  return c;
}

function defaultLabelsFallback(registry: Registry): FallbackReason | null {
  const d = (registry as unknown as { _defaultLabels?: Record<string, unknown> })._defaultLabels;
  if (d === undefined) return 'no-default-labels-field';
  return Object.keys(d).length > 0 ? 'default-labels' : null;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

const isHistogramChild = (c: unknown): c is HistogramChild =>
  isRecord(c) && isRecord(c.labels) && isRecord(c.bucketValues) && typeof c.count === 'number' && typeof c.sum === 'number';
const isValueChild = (c: unknown): c is ValueChild => isRecord(c) && isRecord(c.labels) && typeof c.value === 'number';

/** Thrown (and caught below) when a metric's internals are not the shape this writer knows. */
const UNKNOWN_SHAPE = Symbol('unknown shape');

/** Why `m` cannot be written from prom-client's internals, as far as the metric object shows; null when it can. */
function metricFallback(m: MetricLike): FallbackReason | null {
  if (m.type !== 'counter' && m.type !== 'gauge' && m.type !== 'histogram') return 'type';
  if (!isRecord(m.hashMap)) return 'no-hashMap';
  if (m.type === 'histogram' && !Array.isArray(m.upperBounds)) return 'no-upperBounds';
  return null;
}

async function renderFamily(registry: Registry, m: MetricLike, onFallback: ExpositionOptions['onFallback']): Promise<string> {
  const reason = metricFallback(m);
  if (reason) {
    onFallback?.(m.name, reason);
    return renderPublic(registry, m);
  }
  // collect() (process metrics) refreshes hashMap before it is read.
  if (typeof m.collect === 'function') await m.collect();
  try {
    return m.type === 'histogram' ? renderHistogram(m) : renderValues(m);
  } catch (err) {
    if (err !== UNKNOWN_SHAPE) throw err;
    onFallback?.(m.name, 'series-shape');
    return renderPublic(registry, m);
  }
}

function header(m: MetricLike): string[] {
  return [`# HELP ${m.name} ${escapeHelp(m.help)}`, `# TYPE ${m.name} ${m.type}`];
}

function renderHistogram(m: MetricLike): string {
  const lines = header(m);
  const cache = cacheOf(m);
  const hashMap = m.hashMap as Record<string, unknown>;
  const upperBounds = m.upperBounds as number[];
  const les = upperBounds.map(formatValue);
  const gen = ++cache.gen;
  let n = 0;
  let changed = false;
  for (const hash in hashMap) {
    const child = hashMap[hash];
    if (!isHistogramChild(child)) throw UNKNOWN_SHAPE;
    n++;
    const kept = cache.histograms.get(hash);
    if (kept && kept.child === child && kept.count === child.count && Object.is(kept.sum, child.sum)) {
      if (kept.gen !== gen - 1) changed = true;
      kept.gen = gen;
      lines.push(kept.text);
      continue;
    }
    changed = true;
    const text = renderHistogramSeries(m.name, upperBounds, les, child, labelString(cache, hash, child.labels));
    cache.histograms.set(hash, { child, count: child.count, sum: child.sum, text, gen });
    lines.push(text);
  }
  return finish(cache, hashMap, n, changed, lines);
}

function renderValues(m: MetricLike): string {
  const lines = header(m);
  const cache = cacheOf(m);
  const hashMap = m.hashMap as Record<string, unknown>;
  const gen = ++cache.gen;
  let n = 0;
  let changed = false;
  for (const hash in hashMap) {
    const child = hashMap[hash];
    if (!isValueChild(child)) throw UNKNOWN_SHAPE;
    n++;
    const kept = cache.values.get(hash);
    if (kept && Object.is(kept.value, child.value)) {
      if (kept.gen !== gen - 1) changed = true;
      kept.gen = gen;
      lines.push(kept.line);
      continue;
    }
    changed = true;
    const line = `${m.name}${labelString(cache, hash, child.labels)} ${formatValue(child.value)}`;
    cache.values.set(hash, { value: child.value, line, gen });
    lines.push(line);
  }
  return finish(cache, hashMap, n, changed, lines);
}

/**
 * The family's text: the one written last time when no series changed and none came
 * or went (every series hit its cache, each was in the last render, and the count is
 * the same as then: so the set of series is the same).
 */
function finish(cache: SeriesCache, live: Record<string, unknown>, n: number, changed: boolean, lines: string[]): string {
  prune(cache, live, n);
  if (!changed && cache.family?.n === n) return cache.family.text;
  const text = lines.join('\n');
  cache.family = { text, n };
  return text;
}

/** Any other metric (summary, or internals of an unknown shape): prom-client's public API. */
async function renderPublic(registry: Registry, m: MetricLike): Promise<string> {
  if (m.type === 'summary' || typeof m.get !== 'function') return registry.getSingleMetricAsString(m.name);
  const lines = header(m);
  const data = await m.get();
  for (const v of data.values) lines.push(`${v.metricName ?? m.name}${formatLabels(v.labels)} ${formatValue(v.value)}`);
  return lines.join('\n');
}

function renderHistogramSeries(name: string, upperBounds: readonly number[], les: readonly string[], child: HistogramChild, labels: string): string {
  // `{a="x"}` -> `{a="x",le="` ; `` -> `{le="`
  const bucket = labels === '' ? `${name}_bucket{le="` : `${name}_bucket${labels.slice(0, -1)},le="`;
  const lines: string[] = [];
  let acc = 0;
  for (let i = 0; i < upperBounds.length; i++) {
    acc += child.bucketValues[upperBounds[i]!] ?? 0;
    lines.push(`${bucket}${les[i]}"} ${formatValue(acc)}`);
  }
  lines.push(`${bucket}+Inf"} ${formatValue(child.count)}`, `${name}_sum${labels} ${formatValue(child.sum)}`, `${name}_count${labels} ${formatValue(child.count)}`);
  return lines.join('\n');
}

function labelString(cache: SeriesCache, hash: string, labels: Labels): string {
  let s = cache.labels.get(hash);
  if (s === undefined) {
    s = formatLabels(labels);
    cache.labels.set(hash, s);
  }
  return s;
}

/** Forgets series prom-client no longer has (remove(), reset()), once the cache holds over twice the live `n`. */
function prune(cache: SeriesCache, live: Record<string, unknown>, n: number): void {
  const limit = 2 * n + 16;
  if (cache.labels.size <= limit && cache.values.size <= limit && cache.histograms.size <= limit) return;
  for (const map of [cache.labels, cache.values, cache.histograms]) for (const k of map.keys()) if (!(k in live)) map.delete(k);
}

function formatLabels(labels: Labels | undefined): string {
  if (!labels) return '';
  let s = '';
  for (const key of Object.keys(labels)) {
    const v = labels[key];
    if (v === undefined) continue;
    s += `${s === '' ? '' : ','}${key}="${escapeLabelValue(String(v))}"`;
  }
  return s === '' ? '' : `{${s}}`;
}

const LABEL_ESCAPES = /[\\\n"]/;
function escapeLabelValue(v: string): string {
  return LABEL_ESCAPES.test(v) ? v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"') : v;
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return `${v}`;
}
